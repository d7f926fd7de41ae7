"""The typed GET answers (``services/api/models.py``) hold for what the disclosure rule
withholds, for an erased participant and for events stored in schema v1: every
demo case erased, then read by every demo agency (each kind) and by an auditor over
HTTP; every GET answers 200 (or the refusal its caller is owed: 404 for a case an
agency is not involved in, 403 for a role's route) with a body its model accepts,
never a 500 from a field the model requires and the answer left null.

Both stores for the erased demo; the v1 fixture database (``tests/fixtures/
hub-v1.db``, SQLite) for the legacy events."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from services.api import models
from services.api.app import create_app
from services.application import AUDITOR
from services.bootstrap import Hub, build_hub
from services.demo import AGENCIES, load_demo
from services.messages import parse_message
from services.settings import Settings
from tests.http_helpers import Tokens, demo_tokens

ROOT = Path(__file__).resolve().parents[2]
KINDS = {agency: kind for agency, kind, _ in AGENCIES}


def _erase_every_case(hub: Hub) -> list[UUID]:
    """Every case's participant erased by an auditor (an Art. 17 ground: open cases
    too); those the demo erased itself stay as they are."""
    hub.views.catch_up()
    rows = hub.view_store.query("SELECT case_id FROM view_case_docs")
    cases = [UUID(row["case_id"]) for row in rows]
    for case_id in cases:
        if hub.queries.case_doc(str(case_id))["erased_at"] is not None:
            continue
        message = {
            "message_id": str(uuid4()),
            "type": "participant.erased",
            "agency": AUDITOR,
            "case_id": str(case_id),
            "occurred_at": datetime.now(UTC).isoformat(),
            "actor": "datenschutz-test",
            "payload": {"reason": "test", "ground": "Art. 17 (1) b"},
        }
        hub.messages.record(parse_message(message), as_auditor=True)
    hub.views.catch_up()
    assert all(hub.queries.case_doc(str(c))["erased_at"] is not None for c in cases)
    return cases


def _valid(model: type[BaseModel] | None, body: Any) -> None:
    if model is not None:
        model.model_validate(body)


def _sweep(api: TestClient, tokens: Tokens, cases: list[UUID]) -> Counter[str]:
    """Every GET of every caller; returns how many 200s each kind (and the auditor)
    had on a case and its history."""
    seen: Counter[str] = Counter()
    callers = [(a, tokens.of(a)) for a in tokens.agencies] + [(None, tokens.audit())]
    for agency, headers in callers:
        who = KINDS[agency] if agency else "auditor"
        own = [agency] if agency else list(tokens.agencies)
        general: list[tuple[str, type[BaseModel] | None, set[int]]] = [
            ("/v1/me", None, {200}),
            ("/v1/agencies", None, {200}),
            ("/v1/dashboard", models.Dashboard, {200}),
            ("/v1/audit/verify", models.Verified, {200} if agency is None else {403}),
            ("/v1/audit/feed", None, {200} if agency is None else {403}),
        ]
        for a in own:
            general += [
                (f"/v1/agencies/{a}/inbox", models.Inbox, {200}),
                (f"/v1/agencies/{a}/cases", models.Caseload, {200}),
                (f"/v1/agencies/{a}/feed", None, {200} if agency else {403}),
            ]
        for case_id in cases:
            maybe = {200} if agency is None else {200, 404}
            general += [
                (f"/v1/cases/{case_id}", models.CaseView, maybe),
                (f"/v1/cases/{case_id}/history", models.CaseHistory, maybe),
                (f"/v1/cases/{case_id}/replay", None, maybe),
                (f"/v1/cases/{case_id}/subject-report", None, maybe | {403}),
                (
                    f"/v1/cases/{case_id}/actions",
                    None,
                    {403} if agency is None else {200, 404},
                ),
                (
                    f"/v1/audit/cases/{case_id}/verify",
                    None,
                    {200} if agency is None else {403},
                ),
            ]
        for path, model, statuses in general:
            response = api.get(path, headers=headers)
            assert response.status_code in statuses, (who, path, response.text[:300])
            if response.status_code == 200:
                _valid(model, response.json())
                if model in (models.CaseView, models.CaseHistory):
                    seen[who] += 1
    return seen


def _check(hub: Hub, tokens: Tokens) -> None:
    cases = _erase_every_case(hub)
    with TestClient(create_app(hub)) as api:
        seen = _sweep(api, tokens, cases)
    # Every kind of agency (and the auditor) read some erased case and its history.
    assert set(seen) == {*KINDS.values(), "auditor"}, seen
    assert seen["auditor"] == 2 * len(cases)


def test_every_get_of_erased_cases_answers_with_a_valid_body(hub: Hub) -> None:
    tokens = demo_tokens(hub)
    list(load_demo(hub.registry, hub.messages))
    _check(hub, tokens)


@pytest.fixture
def v1_hub(tmp_path: Path) -> Iterator[Hub]:
    copy = tmp_path / "old.db"
    shutil.copy(ROOT / "tests" / "fixtures" / "hub-v1.db", copy)
    hub = build_hub(Settings(database_url=f"sqlite:///{copy}", var_dir=tmp_path / "var"))
    hub.views.rebuild()
    yield hub
    hub.close()


def test_every_get_of_a_schema_v1_store_answers_with_a_valid_body(v1_hub: Hub) -> None:
    _check(v1_hub, demo_tokens(v1_hub))
