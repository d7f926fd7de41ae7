"""Every endpoint of API.md against every role: the agency involved, an agency not
involved, the auditor, no token and a wrong token. Status codes and the error body
``{"error": {"code", "message", "details"}}`` are checked, on SQLite and PostgreSQL.

The store holds DOMAIN.md's five scenarios (loaded through the service); every
request goes through the HTTP app.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.bootstrap import Hub
from services.demo import demo_id, load_demo
from services.messages import message_json_schema
from services.replay import replay_case
from tests.factories import message, offer, opened
from tests.http_helpers import AUDITOR, Tokens, assert_error, bearer, demo_tokens

S2 = demo_id("s2/case")  # jc-trier → aa-trier → drv-rlp (rehab application)
S4 = demo_id("s4/case")  # klinik-erzgebirge, jc-erzgebirge, kopra-erzgebirge (consent revoked)
UNKNOWN_CASE = uuid4()
HISTORY_KEYS = {
    "position",
    "type",
    "agency",
    "actor",
    "occurred_at",
    "recorded_at",
    "legal_basis",
    "hash",
    "payload",
}


@pytest.fixture
def tokens(hub: Hub) -> Tokens:
    issued = demo_tokens(hub)
    list(load_demo(hub.registry, hub.messages))
    hub.views.catch_up()
    return issued


@pytest.fixture
def api(hub: Hub, tokens: Tokens) -> Iterator[TestClient]:
    with TestClient(create_app(hub)) as client:
        yield client


@pytest.fixture
def bare_api(hub: Hub) -> Iterator[TestClient]:
    """Agencies and tokens only: enough for answers that come before any read."""
    demo_tokens(hub)
    with TestClient(create_app(hub)) as client:
        yield client


def _note(agency: str, case_id: Any = S2, **kw: Any) -> dict[str, Any]:
    return message(
        "note.added", agency, case_id, {"text": "Rückruf vereinbart", "category": "notes"}, **kw
    )


def _head(hub: Hub) -> int:
    return hub.app.recorder.max_notification_id() or 0


# ---- authentication: every protected endpoint ------------------------------------------

PROTECTED = [
    ("POST", "/v1/messages"),
    ("GET", "/v1/agencies/jc-trier/inbox"),
    ("GET", "/v1/agencies/jc-trier/cases"),
    ("GET", f"/v1/cases/{S2}"),
    ("GET", f"/v1/cases/{S2}/history"),
    ("GET", "/v1/audit/verify"),
    ("GET", "/v1/audit/reads?day=2026-01-01"),
    ("GET", "/v1/dashboard"),
]
BAD_CREDENTIALS = {
    "no token": {},
    "wrong token": bearer("not-a-token-this-hub-issued-0123456789"),
    "empty bearer": {"Authorization": "Bearer "},
    "basic scheme": {"Authorization": "Basic amMtdHJpZXI6c2VjcmV0"},
    "token without scheme": {"Authorization": "0123456789abcdef0123456789abcdef"},
}


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize("credentials", ["no token", "wrong token"])
def test_protected_endpoints_answer_401_without_a_valid_token(
    bare_api: TestClient, hub: Hub, method: str, path: str, credentials: str
) -> None:
    before = _head(hub)
    body = _note("jc-trier") if method == "POST" else None
    response = bare_api.request(method, path, json=body, headers=BAD_CREDENTIALS[credentials])
    assert_error(response, 401, "unauthenticated")
    assert _head(hub) == before  # nothing recorded, not even an audit read


@pytest.mark.parametrize("credentials", ["empty bearer", "basic scheme", "token without scheme"])
def test_malformed_authorization_headers_are_401(bare_api: TestClient, credentials: str) -> None:
    for method, path in (("GET", "/v1/dashboard"), ("POST", "/v1/messages")):
        response = bare_api.request(method, path, json={}, headers=BAD_CREDENTIALS[credentials])
        assert_error(response, 401, "unauthenticated")


def test_a_token_of_another_hub_role_spelling_is_not_accepted(
    api: TestClient, tokens: Tokens
) -> None:
    # The token is compared whole: a prefix or a changed letter is a wrong token.
    token = tokens.agencies["jc-trier"]
    for wrong in (
        token[:-1],
        token + "x",
        token.upper() if token != token.upper() else token.lower(),
    ):
        assert_error(api.get("/v1/dashboard", headers=bearer(wrong)), 401, "unauthenticated")


@pytest.mark.parametrize(
    "path",
    ["/healthz", "/readyz", "/metrics", "/openapi.json", "/v1/schema/messages", "/dashboard"],
)
@pytest.mark.parametrize("credentials", ["no token", "wrong token"])
def test_public_endpoints_need_no_token(bare_api: TestClient, path: str, credentials: str) -> None:
    response = bare_api.get(path, headers=BAD_CREDENTIALS[credentials])
    assert response.status_code == 200, response.text


# ---- POST /v1/messages ------------------------------------------------------------------


def test_involved_agency_records_a_message_and_a_repeat_is_a_duplicate(
    api: TestClient, tokens: Tokens
) -> None:
    note = _note("jc-trier")
    first = api.post("/v1/messages", json=note, headers=tokens.of("jc-trier"))
    assert first.status_code == 201, first.text
    result = first.json()
    assert result["case_id"] == str(S2)
    assert result["message_id"] == note["message_id"]
    assert result["duplicate"] is False
    assert isinstance(result["position"], int)

    again = api.post("/v1/messages", json=note, headers=tokens.of("jc-trier"))
    assert again.status_code == 200, again.text
    assert again.json() == {**result, "duplicate": True}


def test_an_offer_answers_with_its_handover_id(api: TestClient, tokens: Tokens) -> None:
    case_id, handover_id = uuid4(), uuid4()
    assert (
        api.post(
            "/v1/messages", json=opened("jc-trier", case_id), headers=tokens.of("jc-trier")
        ).status_code
        == 201
    )
    sent = offer("jc-trier", case_id, handover_id, kind="assignment", to="coach-trier")
    response = api.post("/v1/messages", json=sent, headers=tokens.of("jc-trier"))
    assert response.status_code == 201, response.text
    assert response.json()["handover_id"] == str(handover_id)


def test_agency_field_must_match_the_token(api: TestClient, hub: Hub, tokens: Tokens) -> None:
    before = _head(hub)
    # jc-trier's token, aa-trier's name: refused before any rule looks at it.
    error = assert_error(
        api.post("/v1/messages", json=_note("aa-trier"), headers=tokens.of("jc-trier")),
        403,
        "agency_mismatch",
    )
    assert "jc-trier" in error["message"]
    assert _head(hub) == before


def test_agency_not_involved_is_answered_as_for_an_unknown_case(
    api: TestClient, hub: Hub, tokens: Tokens
) -> None:
    """Refused by the rules; answered 404 ``case_not_found`` (was 409 ``not_involved``):
    an outsider does not learn that the case exists (issue 13)."""
    before = _head(hub)
    response = api.post("/v1/messages", json=_note("hwk-ffo"), headers=tokens.of("hwk-ffo"))
    assert_error(response, 404, "case_not_found")
    assert _head(hub) == before


@pytest.mark.parametrize("agency", ["jc-trier", "auditor"])
def test_auditor_does_not_send_handover_messages(
    api: TestClient, hub: Hub, tokens: Tokens, agency: str
) -> None:
    before = _head(hub)
    assert_error(
        api.post("/v1/messages", json=_note(agency), headers=tokens.audit()), 403, "forbidden"
    )
    assert _head(hub) == before


# ---- inbox and caseload --------------------------------------------------------------------


@pytest.fixture
def open_offer(api: TestClient, tokens: Tokens) -> dict[str, str]:
    """A fresh case with one open assignment from jc-trier to coach-trier."""
    case_id, handover_id = uuid4(), uuid4()
    for sent in (
        opened("jc-trier", case_id),
        offer("jc-trier", case_id, handover_id, kind="assignment", to="coach-trier"),
    ):
        response = api.post("/v1/messages", json=sent, headers=tokens.of("jc-trier"))
        assert response.status_code == 201, response.text
    return {"case_id": str(case_id), "handover_id": str(handover_id)}


def test_inbox_own_agency_and_auditor_read_it(
    api: TestClient, tokens: Tokens, open_offer: dict[str, str]
) -> None:
    own = api.get("/v1/agencies/coach-trier/inbox", headers=tokens.of("coach-trier"))
    assert own.status_code == 200, own.text
    items = own.json()["items"]
    assert [i["handover_id"] for i in items] == [open_offer["handover_id"]]
    item = items[0]
    assert {
        "handover_id",
        "case_id",
        "kind",
        "from_agency",
        "offered_at",
        "due_at",
        "overdue",
    } <= set(item)
    assert (item["case_id"], item["kind"], item["from_agency"]) == (
        open_offer["case_id"],
        "assignment",
        "jc-trier",
    )
    assert item["overdue"] is True  # offered in March 2026 with a seven-day deadline

    audited = api.get("/v1/agencies/coach-trier/inbox", headers=tokens.audit())
    assert audited.status_code == 200
    assert audited.json() == own.json()


@pytest.mark.parametrize("view", ["inbox", "cases"])
def test_another_agencys_views_are_forbidden(api: TestClient, tokens: Tokens, view: str) -> None:
    # jc-trier is the sender of coach-trier's offers, and still may not read its views.
    response = api.get(f"/v1/agencies/coach-trier/{view}", headers=tokens.of("jc-trier"))
    error = assert_error(response, 403, "forbidden")
    assert "jc-trier" in error["message"]


def test_caseload_own_agency_and_auditor_read_it(api: TestClient, tokens: Tokens) -> None:
    own = api.get("/v1/agencies/jc-trier/cases", headers=tokens.of("jc-trier"))
    assert own.status_code == 200, own.text
    rows = {r["case_id"]: r for r in own.json()["items"]}
    assert set(rows) == {str(demo_id("s2/case")), str(demo_id("s3/case"))}
    for row in rows.values():
        assert {"case_id", "stage", "lead_agency", "next_due_at", "last_activity_at"} <= set(row)
    assert rows[str(demo_id("s3/case"))]["stage"] == "closed"
    assert rows[str(S2)]["lead_agency"] == "jc-trier"

    audited = api.get("/v1/agencies/jc-trier/cases", headers=tokens.audit())
    assert audited.status_code == 200
    assert audited.json() == own.json()


@pytest.mark.parametrize("view", ["inbox", "cases"])
def test_views_of_an_id_no_agency_can_have_are_422(
    api: TestClient, tokens: Tokens, view: str
) -> None:
    error = assert_error(
        api.get(f"/v1/agencies/NOT%20AN%20ID/{view}", headers=tokens.audit()),
        422,
        "invalid_request",
    )
    assert error["details"][0]["path"] == "path.agency_id"


# ---- GET /v1/cases/{id} -------------------------------------------------------------------


def test_involved_agencies_see_only_what_they_are_entitled_to(
    api: TestClient, tokens: Tokens
) -> None:
    clinic = api.get(f"/v1/cases/{S4}", headers=tokens.of("klinik-erzgebirge"))
    coach = api.get(f"/v1/cases/{S4}", headers=tokens.of("kopra-erzgebirge"))
    assert clinic.status_code == coach.status_code == 200
    for view in (clinic.json(), coach.json()):
        assert {"case_id", "stage", "lead_agency", "agencies", "handovers", "participant"} <= set(
            view
        )
        assert view["case_id"] == str(S4)
        assert view["lead_agency"] == "jc-erzgebirge"
        for handover in view["handovers"]:
            assert {"handover_id", "kind", "from_agency", "to_agency", "state"} <= set(handover)

    # The clinic is the source of the participant's identity and sees it ...
    assert clinic.json()["participant"] == {
        "pseudonym": "ERZ-0815",
        "name": "Jonas Vorbild",
        "birth_date": "1995-07-01",
    }
    assert "identity" in clinic.json()["categories_shown"]
    # ... the coordination point received it by the lead's accepted assignment, which
    # carried identity and contact under the lead's consent; health no longer (revoked).
    identity = {"pseudonym": "ERZ-0815", "name": "Jonas Vorbild", "birth_date": "1995-07-01"}
    assert coach.json()["participant"] == identity
    assert "identity" in coach.json()["categories_shown"]
    assert "health" not in coach.json()["categories_shown"]
    # The lead Jobcenter holds its participant's identity by its statutory task.
    jobcenter = api.get(f"/v1/cases/{S4}", headers=tokens.of("jc-erzgebirge"))
    assert jobcenter.json()["participant"] == identity
    assert "identity" in jobcenter.json()["categories_shown"]


def test_agency_not_involved_may_not_read_the_case(
    api: TestClient, hub: Hub, tokens: Tokens
) -> None:
    """404 as for an unknown case (was 403 ``forbidden``, an existence oracle)."""
    before = _head(hub)
    error = assert_error(
        api.get(f"/v1/cases/{S4}", headers=tokens.of("jc-trier")), 404, "case_not_found"
    )
    assert error["message"] == f"case {S4} does not exist"
    assert _head(hub) == before


def test_auditor_sees_everything_and_the_read_shows_in_the_history(
    api: TestClient, hub: Hub, tokens: Tokens
) -> None:
    before = _head(hub)
    view = api.get(f"/v1/cases/{S4}", headers=tokens.audit())
    assert view.status_code == 200, view.text
    assert view.json()["participant"]["name"] == "Jonas Vorbild"
    assert {"health", "identity"} <= set(view.json()["categories_shown"])
    assert _head(hub) == before + 1

    history = api.get(f"/v1/cases/{S4}/history", headers=tokens.audit()).json()["items"]
    reads = [i for i in history if i["type"] == "CaseRead"]
    case_read = next(i for i in reads if i["payload"]["scope"] == "case")
    assert case_read["position"] == before + 1
    assert (case_read["agency"], case_read["actor"]) == ("auditor", AUDITOR)
    assert case_read["payload"]["role"] == "auditor"
    assert {"health", "identity"} <= set(case_read["payload"]["categories"])  # what was seen
    assert case_read["recorded_at"]  # when
    assert case_read["hash"]
    assert case_read["legal_basis"]


@pytest.mark.parametrize("who", ["jc-trier", "auditor"])
def test_unknown_case_is_404(api: TestClient, tokens: Tokens, who: str) -> None:
    headers = tokens.audit() if who == "auditor" else tokens.of(who)
    for path in (f"/v1/cases/{UNKNOWN_CASE}", f"/v1/cases/{UNKNOWN_CASE}/history"):
        assert_error(api.get(path, headers=headers), 404, "case_not_found")


def test_a_case_id_that_is_no_uuid_is_422(api: TestClient, tokens: Tokens) -> None:
    error = assert_error(
        api.get("/v1/cases/not-a-uuid", headers=tokens.audit()), 422, "invalid_request"
    )
    assert error["details"][0]["path"] == "path.case_id"


# ---- GET /v1/cases/{id}/history -------------------------------------------------------------


def test_auditor_reads_the_full_history_and_that_read_is_recorded(
    api: TestClient, hub: Hub, tokens: Tokens
) -> None:
    events = replay_case(hub.app, S4)["events"]
    first = api.get(f"/v1/cases/{S4}/history", headers=tokens.audit())
    assert first.status_code == 200, first.text
    items = first.json()["items"]
    assert [i["position"] for i in items] == [e["position"] for e in events]
    assert all(set(i) >= HISTORY_KEYS for i in items)
    assert all(re.fullmatch(r"[0-9a-f]{64}", i["hash"]) for i in items)
    assert items[0]["type"] == "CaseOpened"

    second = api.get(f"/v1/cases/{S4}/history", headers=tokens.audit()).json()["items"]
    assert len(second) == len(items) + 1
    read = second[-1]
    assert (read["type"], read["agency"], read["actor"]) == ("CaseRead", "auditor", AUDITOR)
    assert read["payload"]["scope"] == "history"


def test_involved_agency_reads_only_its_part_of_the_history(
    api: TestClient, tokens: Tokens
) -> None:
    full = api.get(f"/v1/cases/{S4}/history", headers=tokens.audit()).json()["items"]
    part = api.get(f"/v1/cases/{S4}/history", headers=tokens.of("kopra-erzgebirge"))
    assert part.status_code == 200, part.text
    items = part.json()["items"]
    assert items
    assert {i["position"] for i in items} < {i["position"] for i in full}
    kinds = {(i["type"], i["agency"]) for i in items}
    assert ("HandoverAccepted", "kopra-erzgebirge") in kinds
    # The participant revoked the clinic's consent to it through the lead Jobcenter.
    assert ("ConsentRevoked", "jc-erzgebirge") in kinds
    # The case's opening is its part for the participant's identity alone, which its
    # case view shows too (carried by the assignment); the discharge to the Jobcenter
    # is not its part.
    view = api.get(f"/v1/cases/{S4}", headers=tokens.of("kopra-erzgebirge")).json()
    opened = [i["payload"]["participant"] for i in items if i["type"] == "CaseOpened"]
    assert opened == [view["participant"]]
    assert view["participant"]["name"] == "Jonas Vorbild"
    discharge = str(demo_id("s4/discharge"))
    assert all(i["payload"].get("handover_id") != discharge for i in items)
    # Every other item is its own act, a handover it is party to, or a consent naming it.
    items = [i for i in items if i["type"] != "CaseOpened"]
    kopra_handovers = {str(demo_id("s4/assignment")), str(demo_id("s4/report-1"))}
    kopra_consents = {"erz-0815-kopra", "erz-0815-health-kopra"}
    for item in items:
        assert (
            item["agency"] == "kopra-erzgebirge"
            or item["payload"].get("handover_id") in kopra_handovers
            or item["payload"].get("consent_id") in kopra_consents
        )


def test_agency_not_involved_may_not_read_the_history(api: TestClient, tokens: Tokens) -> None:
    """404 as for an unknown case (was 403 ``forbidden``)."""
    assert_error(
        api.get(f"/v1/cases/{S4}/history", headers=tokens.of("coach-trier")),
        404,
        "case_not_found",
    )


def test_history_as_of_a_moment_shows_what_was_recorded_by_then(
    api: TestClient, tokens: Tokens
) -> None:
    full = api.get(f"/v1/cases/{S2}/history", headers=tokens.audit()).json()["items"]
    moment = full[3]["recorded_at"]
    past = api.get(f"/v1/cases/{S2}/history", params={"as_of": moment}, headers=tokens.audit())
    assert past.status_code == 200, past.text
    assert [i["position"] for i in past.json()["items"]] == [i["position"] for i in full[:4]]

    before_anything = api.get(
        f"/v1/cases/{S2}/history",
        params={"as_of": "2000-01-01T00:00:00+00:00"},
        headers=tokens.audit(),
    )
    assert before_anything.json()["items"] == []

    # The agency's part is filtered by the same moment.
    jc_part = api.get(
        f"/v1/cases/{S2}/history", params={"as_of": moment}, headers=tokens.of("jc-trier")
    )
    assert jc_part.status_code == 200
    assert {i["position"] for i in jc_part.json()["items"]} <= {i["position"] for i in full[:4]}


@pytest.mark.parametrize("as_of", ["2026-03-02T10:00:00", "yesterday", "2026-13-45T00:00:00Z"])
def test_history_as_of_must_be_a_moment_with_a_timezone(
    api: TestClient, tokens: Tokens, as_of: str
) -> None:
    response = api.get(f"/v1/cases/{S2}/history", params={"as_of": as_of}, headers=tokens.audit())
    assert_error(response, 422, "invalid_request")


# ---- audit verify, dashboard, schema, operations --------------------------------------------


def test_audit_verify_is_for_auditors_only(api: TestClient, tokens: Tokens) -> None:
    response = api.get("/v1/audit/verify", headers=tokens.audit())
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["ok"] is True
    assert result["events_checked"] > 50
    assert re.fullmatch(r"[0-9a-f]{64}", result["head_hash"])

    for agency in ("jc-trier", "kopra-erzgebirge"):
        assert_error(api.get("/v1/audit/verify", headers=tokens.of(agency)), 403, "forbidden")


@pytest.mark.parametrize("who", ["jc-trier", "hwk-ffo", "auditor"])
def test_dashboard_for_any_token(api: TestClient, tokens: Tokens, who: str) -> None:
    headers = tokens.audit() if who == "auditor" else tokens.of(who)
    response = api.get("/v1/dashboard", headers=headers)
    assert response.status_code == 200, response.text
    figures = response.json()
    for key in (
        "generated_at",
        "cases_by_stage",
        "handovers_by_state",
        "offer_to_accept",
        "places",
        "open_offers",
    ):
        assert key in figures
    if who == "auditor":
        assert sum(r["count"] for r in figures["cases_by_stage"]) == 5
    else:  # an agency: its programmes only (the disclosure test checks which)
        assert 0 < sum(r["count"] for r in figures["cases_by_stage"]) < 5


def test_message_schema_is_served(api: TestClient) -> None:
    response = api.get("/v1/schema/messages")
    assert response.status_code == 200
    schema = response.json()
    assert schema == message_json_schema()
    assert len(schema["oneOf"]) == 29
    assert schema["discriminator"]["propertyName"] == "type"


def test_healthz(api: TestClient) -> None:
    response = api.get("/healthz")
    assert response.json() == {"status": "ok"}
    assert response.headers["x-request-id"]


def test_request_id_is_echoed_or_made(api: TestClient) -> None:
    assert (
        api.get("/healthz", headers={"x-request-id": "abc-123"}).headers["x-request-id"]
        == "abc-123"
    )
    made = api.get("/healthz", headers={"x-request-id": "x" * 500}).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)


def test_metrics_count_requests_messages_and_lag(api: TestClient, tokens: Tokens) -> None:
    assert (
        api.post("/v1/messages", json=_note("jc-trier"), headers=tokens.of("jc-trier")).status_code
        == 201
    )
    api.get("/v1/dashboard")  # 401
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'hub_http_requests_total{route="/v1/messages",status="201"} 1.0' in text
    assert 'hub_http_requests_total{route="/v1/dashboard",status="401"} 1.0' in text
    assert 'hub_messages_recorded_total{entrypoint="http",type="note.added"} 1.0' in text
    lags = re.findall(r'^hub_projection_lag_events\{view="(\w+)"\} (\S+)$', text, re.MULTILINE)
    assert {view for view, _ in lags} >= {"cases", "dashboard", "audit"}
    assert all(float(value) >= 0 for _, value in lags)


def test_openapi_names_every_endpoint_and_the_bearer_scheme(api: TestClient) -> None:
    document = api.get("/openapi.json").json()
    for path, method in [
        ("/v1/messages", "post"),
        ("/v1/agencies/{agency_id}/inbox", "get"),
        ("/v1/agencies/{agency_id}/cases", "get"),
        ("/v1/cases/{case_id}", "get"),
        ("/v1/cases/{case_id}/history", "get"),
        ("/v1/cases/{case_id}/subject-report", "get"),
        ("/v1/audit/verify", "get"),
        ("/v1/audit/reads", "get"),
        ("/v1/dashboard", "get"),
        ("/v1/schema/messages", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    ]:
        assert method in document["paths"][path], path
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    post = document["paths"]["/v1/messages"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Message"
    }
    assert {"401", "403", "409", "413", "422"} <= set(post["responses"])
    error = document["components"]["schemas"]["ErrorBody"]
    assert error["required"] == ["error"]


def test_request_logs_are_structured_and_carry_the_request_id(
    api: TestClient, tokens: Tokens
) -> None:
    from structlog.contextvars import merge_contextvars
    from structlog.testing import capture_logs

    note = _note("jc-trier")
    with capture_logs(processors=[merge_contextvars]) as logs:
        response = api.post(
            "/v1/messages", json=note, headers={**tokens.of("jc-trier"), "x-request-id": "req-42"}
        )
    assert response.status_code == 201
    assert response.headers["x-request-id"] == "req-42"
    request = next(e for e in logs if e["event"] == "request")
    assert request["request_id"] == "req-42"
    assert (request["route"], request["status"], request["method"]) == ("/v1/messages", 201, "POST")
    recorded = next(e for e in logs if e["event"] == "message_recorded")
    assert recorded["request_id"] == "req-42"  # the service's own line names the request too
    assert recorded["message_id"] == note["message_id"]
    # Never the token, never the note's text.
    flat = repr(logs)
    assert tokens.agencies["jc-trier"] not in flat
    assert "Rückruf vereinbart" not in flat


def test_verify_is_not_fooled_by_the_views_advancing_while_it_runs(
    hub: Hub, tokens: Tokens
) -> None:
    from services.views.store import tracking_name
    from services.views.verify import verify_chain

    class OneBehind:
        """The audit view as verify sees it when the live runner commits the next
        entry between verify's first read (its bound) and its last query."""

        def __init__(self, views: Any) -> None:
            self._views = views

        def __getattr__(self, name: str) -> Any:
            return getattr(self._views, name)

        def max_tracking_id(self, name: str) -> int | None:
            value = self._views.max_tracking_id(name)
            return value - 1 if name == tracking_name("audit") and value else value

    assert verify_chain(hub.app.recorder, hub.view_store).ok
    result = verify_chain(hub.app.recorder, OneBehind(hub.view_store))
    assert result.ok, result


def test_auditor_may_send_only_an_erasure_and_its_views_show_it_at_once(
    api: TestClient, tokens: Tokens
) -> None:
    case_id = demo_id("s3/case")  # closed
    erase = message(
        "participant.erased",
        "auditor",
        case_id,
        {"reason": "Löschfrist", "ground": "Art. 17 (1) b DSGVO"},
    )
    response = api.post("/v1/messages", json=erase, headers=tokens.audit())
    assert response.status_code == 201, response.text
    # Read-your-writes for the auditor too: the case view already shows the erasure.
    view = api.get(f"/v1/cases/{case_id}", headers=tokens.audit()).json()
    assert view["participant"]["erased"] is True
    assert view["erased_at"] is not None
    # An agency cannot send as the auditor.
    as_auditor = message(
        "participant.erased", "auditor", S2, {"reason": "x", "ground": "Art. 17 (1) b DSGVO"}
    )
    assert_error(
        api.post("/v1/messages", json=as_auditor, headers=tokens.of("jc-trier")),
        403,
        "agency_mismatch",
    )
