"""schemathesis against the OpenAPI document the hub serves, over a real socket.

For every operation, valid (positive) and invalid (negative) requests generated from
``/openapi.json`` go to a uvicorn server holding the demo data, with an agency's and
with the auditor's token. No answer may be a 5xx, and every answer must match what the
document promises for it (status code, content type, body schema). Bounded: a few
dozen examples per operation and mode, no deadline, SQLite only (the store adds no
behaviour here that the other HTTP tests do not cover on both stores).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from services.api.app import create_app
from services.bootstrap import build_hub
from services.demo import demo_id, load_demo
from services.settings import Settings
from tests.http_helpers import bearer, demo_tokens, served

# CI keeps to 40 per operation, role and mode; the reliability report's run
# (``python -m bench report --run-tests``) asks for more through the environment and
# has the generated requests counted into HUB_SCHEMATHESIS_COUNT_FILE.
MAX_EXAMPLES = int(os.environ.get("HUB_SCHEMATHESIS_MAX_EXAMPLES", "40"))
COUNT_FILE = os.environ.get("HUB_SCHEMATHESIS_COUNT_FILE")
SENT: Counter = Counter()  # generated requests by "METHOD path mode"
OPERATIONS = [
    ("POST", "/v1/messages"),
    ("GET", "/v1/agencies/{agency_id}/inbox"),
    ("GET", "/v1/agencies/{agency_id}/cases"),
    ("GET", "/v1/cases/{case_id}"),
    ("GET", "/v1/cases/{case_id}/history"),
    ("GET", "/v1/cases/{case_id}/subject-report"),
    ("GET", "/v1/audit/verify"),
    ("GET", "/v1/audit/reads"),
    ("GET", "/v1/dashboard"),
    # For the pages (issue 15).
    ("GET", "/v1/me"),
    ("GET", "/v1/agencies"),
    ("GET", "/v1/audit/cases"),
    ("GET", "/v1/cases/{case_id}/replay"),
    ("GET", "/v1/audit/cases/{case_id}/verify"),
    ("GET", "/v1/cases/{case_id}/actions"),
    ("GET", "/v1/schema/messages"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
]
# In the document, not fuzzed here: a feed request may long-poll 30 s (`wait`), and an
# endpoint's URL is resolved by DNS; tests/e2e/test_http_feed.py and test_webhooks.py
# cover their refusals.
NOT_FUZZED = [
    ("GET", "/v1/agencies/{agency_id}/feed"),
    ("GET", "/v1/audit/feed"),
    ("GET", "/v1/agencies/{agency_id}/webhooks"),
    ("POST", "/v1/agencies/{agency_id}/webhooks"),
    ("DELETE", "/v1/agencies/{agency_id}/webhooks/{endpoint_id}"),
    ("POST", "/v1/agencies/{agency_id}/webhooks/{endpoint_id}/enable"),
    ("GET", "/v1/agencies/{agency_id}/webhooks/{endpoint_id}/deliveries"),
]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder: Path = tmp_path_factory.mktemp("schemathesis")
    hub = build_hub(Settings(database_url=f"sqlite:///{folder / 'hub.db'}", var_dir=folder / "var"))
    try:
        tokens = demo_tokens(hub)
        list(load_demo(hub.registry, hub.messages))
        hub.views.catch_up()
        with served(create_app(hub)) as base_url:
            schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
            yield {
                "base_url": base_url,
                "schema": schema,
                "headers": {
                    "agency": bearer(tokens.agencies["jc-trier"]),
                    "auditor": bearer(tokens.auditor),
                },
            }
            if COUNT_FILE:
                _write_counts(base_url)
    finally:
        hub.close()


def _write_counts(base_url: str) -> None:
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    answered = re.findall(
        r'^hub_http_requests_total\{route="[^"]*",status="(\d+)"\} (\S+)', text, re.M
    )
    by_status: Counter = Counter()
    for status, count in answered:
        by_status[status] += int(float(count))
    Path(COUNT_FILE or "").write_text(
        json.dumps(
            {
                "max_examples": MAX_EXAMPLES,
                "generated_requests": sum(SENT.values()),
                "by_run": dict(SENT),
                "server_answers_by_status": dict(by_status),
            },
            indent=2,
        )
    )


def test_the_served_document_has_exactly_the_api_md_operations(server: dict[str, Any]) -> None:
    found = {
        (operation.method.upper(), operation.path)
        for operation in (result.ok() for result in server["schema"].get_all_operations())
    }
    assert found == set(OPERATIONS) | set(NOT_FUZZED)


# Random ids only ever meet 404s and agency mismatches; half the valid cases are
# pointed at the demo's cases and sent as the token's own agency, so the rules and
# the reads are exercised too.
AIMS = [None, *(str(demo_id(f"s{n}/case")) for n in range(1, 6))]


def _aim_at_real_data(case: schemathesis.Case, case_id: str) -> None:
    if isinstance(case.body, dict):
        case.body["agency"] = "jc-trier"
        case.body["case_id"] = case_id
    if case.path_parameters and "case_id" in case.path_parameters:
        case.path_parameters["case_id"] = case_id
    if case.path_parameters and "agency_id" in case.path_parameters:
        case.path_parameters["agency_id"] = "jc-trier"


# Operations whose query parameters are all optional (see the note in the test).
OPTIONAL_QUERY_ONLY = {
    "/v1/agencies/{agency_id}/cases",
    "/v1/audit/reads",
    "/v1/dashboard",
    "/v1/audit/cases",
    "/v1/cases/{case_id}/replay",
}
# Operations without any input (no parameters, body or token) have no invalid request.
WITHOUT_INPUT = {"/v1/schema/messages", "/healthz", "/readyz", "/metrics"}
RUNS = [
    pytest.param(method, path, role, mode, id=f"{method} {path} {role} {mode}")
    for method, path in OPERATIONS
    for role in ("agency", "auditor")
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if not (mode is GenerationMode.NEGATIVE and path in WITHOUT_INPUT)
]


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path", "role", "mode"), RUNS)
def test_no_5xx_and_every_answer_matches_the_document(
    server: dict[str, Any], method: str, path: str, role: str, mode: GenerationMode
) -> None:
    operation = server["schema"][path][method]
    headers = server["headers"][role]
    checks = [*CHECKS, negative_data_rejection] if mode is GenerationMode.NEGATIVE else CHECKS
    if path in OPTIONAL_QUERY_ONLY:
        # Optional query parameters (paging, a search's either-or, a replay's
        # moment) make schemathesis count requests carrying only unknown,
        # empty-named query parameters as invalid; the API ignores
        # unknown parameters like any HTTP API. 5xx and schema checks still apply.
        checks = CHECKS

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode), aim=st.sampled_from(AIMS))
    def check(case: schemathesis.Case, aim: str | None) -> None:
        if mode is GenerationMode.POSITIVE and aim is not None:
            _aim_at_real_data(case, aim)
        response = case.call(base_url=server["base_url"], headers=headers, timeout=10)
        SENT[f"{method} {path} {role} {mode.value}"] += 1
        case.validate_response(response, checks=checks, headers=headers)

    check()


def test_the_server_counted_no_5xx(server: dict[str, Any]) -> None:
    """Belt and braces, after the runs above (same module server): /metrics counted
    requests by route and status, and none of them was a 5xx."""
    text = httpx.get(f"{server['base_url']}/metrics", timeout=10).text
    statuses = re.findall(r'^hub_http_requests_total\{route="[^"]*",status="(\d+)"\}', text, re.M)
    assert statuses
    assert not [s for s in statuses if s.startswith("5")]
