"""The GET answers of the OpenAPI document are typed (issue 16, build 5): an agency
can generate a client from ``/openapi.json``. That the real answers match these
types is the schemathesis run's ``response_schema_conformance``
(tests/e2e/test_schemathesis.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.bootstrap import Hub

TYPED = {
    "/v1/agencies/{agency_id}/inbox": {"items"},
    "/v1/agencies/{agency_id}/cases": {"items", "next"},
    "/v1/cases/{case_id}": {"case_id", "stage", "lead_agency", "agencies", "handovers"},
    "/v1/cases/{case_id}/history": {"items"},
    "/v1/audit/verify": {"ok", "events_checked", "head_hash"},
    "/v1/dashboard": {"cases_by_stage", "open_offers", "overdue_handovers"},
}


@pytest.fixture
def document(hub: Hub) -> Iterator[dict[str, Any]]:
    with TestClient(create_app(hub)) as client:
        yield client.get("/openapi.json").json()


def _resolved(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


@pytest.mark.parametrize("path", sorted(TYPED))
def test_a_get_answer_names_its_fields(document: dict[str, Any], path: str) -> None:
    answer = document["paths"][path]["get"]["responses"]["200"]
    schema = _resolved(document, answer["content"]["application/json"]["schema"])
    assert TYPED[path] <= set(schema.get("properties", {})), schema
    assert TYPED[path] <= set(schema.get("required", [])) | {"next", "head_hash"}


def test_an_inbox_item_is_typed_down_to_its_fields(document: dict[str, Any]) -> None:
    answer = document["paths"]["/v1/agencies/{agency_id}/inbox"]["get"]["responses"]["200"]
    inbox = _resolved(document, answer["content"]["application/json"]["schema"])
    item = _resolved(document, inbox["properties"]["items"]["items"])
    assert item["properties"]["overdue"]["type"] == "boolean"
    assert {"handover_id", "case_id", "kind", "from_agency", "due_at"} <= set(item["required"])


def test_dashboard_rows_are_typed(document: dict[str, Any]) -> None:
    answer = document["paths"]["/v1/dashboard"]["get"]["responses"]["200"]
    dashboard = _resolved(document, answer["content"]["application/json"]["schema"])
    row = _resolved(document, dashboard["properties"]["open_offers"]["items"])
    assert row["properties"]["overdue"]["type"] == "integer"
