"""The endpoints behind the auditor's and the agencies' pages (issue 15), over HTTP
on both stores, written as the callers (and attackers) would call them:
``/v1/me``, ``/v1/agencies``, ``/v1/audit/cases``, ``/v1/cases/{id}/replay``,
``/v1/audit/cases/{id}/verify``, ``/v1/cases/{id}/actions``, and the pages
themselves (no inline script or style, every asset served)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from fastapi.testclient import TestClient

from services.access import Principal, ReadService
from services.api.app import create_app
from services.bootstrap import Hub
from services.demo import demo_id, load_demo
from tests.factories import T0, message, offer
from tests.http_helpers import Tokens, assert_error, bearer, demo_tokens
from tests.integration.test_audit_tamper import rewrite_event

S2 = demo_id("s2/case")  # jc-trier, aa-trier, drv-rlp
S4 = demo_id("s4/case")  # klinik-erzgebirge, jc-erzgebirge, kopra-erzgebirge
REVOKED = "erz-0815-health-kopra"  # revoked on 6 May 2026 (agencies' clock)


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


def get(api: TestClient, path: str, headers: dict[str, str]) -> Any:
    response = api.get(path, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def reads_of(api: TestClient, tokens: Tokens, case_id: UUID) -> list[dict[str, Any]]:
    history = get(api, f"/v1/cases/{case_id}/history", tokens.audit())
    return [i["payload"] for i in history["items"] if i["type"] == "CaseRead"]


# ---- who is calling, the registry -------------------------------------------------------


def test_me_names_the_caller_and_agencies_lists_the_registry(
    api: TestClient, tokens: Tokens, hub: Hub
) -> None:
    assert get(api, "/v1/me", tokens.of("drv-rlp")) == {
        "role": "agency",
        "agency_id": "drv-rlp",
        "name": "Deutsche Rentenversicherung Rheinland-Pfalz",
        "user": None,
    }
    assert get(api, "/v1/me", tokens.audit())["agency_id"] is None
    assert get(api, "/v1/me", tokens.audit())["role"] == "auditor"
    personal = hub.tokens.issue_agency_token("coach-trier", user="coach-mueller")
    assert get(api, "/v1/me", bearer(personal))["user"] == "coach-mueller"
    claimed = {**tokens.of("jc-trier"), "X-Hub-User": "fallmanager-3"}
    assert get(api, "/v1/me", claimed)["user"] == "fallmanager-3"

    registry = get(api, "/v1/agencies", tokens.of("coach-trier"))["items"]
    assert {
        "agency_id": "aa-trier",
        "kind": "employment_agency",
        "name": "Agentur für Arbeit Trier",
    } in registry
    assert len(registry) == 12
    for path in ("/v1/me", "/v1/agencies"):
        assert_error(api.get(path), 401, "unauthenticated")
        assert_error(api.get(path, headers=bearer("hub_not-a-token")), 401, "unauthenticated")


# ---- the auditor's search ---------------------------------------------------------------


def test_the_auditor_finds_a_case_by_pseudonym_or_id_and_each_search_is_recorded(
    api: TestClient, tokens: Tokens
) -> None:
    found = get(api, "/v1/audit/cases?pseudonym=erz-0815", tokens.audit())["items"]
    assert [(c["case_id"], c["pseudonym"], c["stage"]) for c in found] == [
        (str(S4), "ERZ-0815", "opened")
    ]
    assert set(found[0]) == {
        "case_id", "pseudonym", "programme", "site", "stage", "outcome", "lead_agency",
        "opened_at", "closed_at", "erased",
    }  # fmt: skip
    # Exact, not a prefix; LIKE's wildcards are only characters.
    for almost in ("ERZ-081", "ERZ-0815 ", "%", "_RZ-0815", "ERZ%", '"'):
        response = api.get("/v1/audit/cases", params={"pseudonym": almost}, headers=tokens.audit())
        assert response.status_code == 200, response.text
        assert response.json()["items"] == [], almost
    by_id = get(api, f"/v1/audit/cases?case_id={S2}", tokens.audit())["items"]
    assert [c["pseudonym"] for c in by_id] == ["TR-0042"]
    erased = get(api, "/v1/audit/cases?pseudonym=AC-0300", tokens.audit())["items"]
    assert erased[0]["erased"] is True

    # Each case found records a read of it; a search that finds nothing, what was sought.
    assert [r["scope"] for r in reads_of(api, tokens, S4)].count("search") == 1
    day = datetime.now(UTC).date().isoformat()
    log = get(api, f"/v1/audit/reads?day={day}", tokens.audit())["items"]
    targets = [r["payload"]["target"] for r in log if r["payload"]["scope"] == "search"]
    assert "pseudonym:ERZ-081" in targets
    assert "pseudonym:%" in targets


def test_an_agency_cannot_search_cases_and_bad_searches_are_refused(
    api: TestClient, tokens: Tokens
) -> None:
    for agency in ("jc-erzgebirge", "kopra-erzgebirge"):
        assert_error(
            api.get("/v1/audit/cases?pseudonym=ERZ-0815", headers=tokens.of(agency)),
            403,
            "forbidden",
        )
        assert_error(api.get(f"/v1/audit/cases?case_id={S4}", headers=tokens.of(agency)), 403)
    assert_error(api.get("/v1/audit/cases", headers=tokens.audit()), 422, "invalid_request")
    both = f"/v1/audit/cases?pseudonym=ERZ-0815&case_id={S4}"
    assert_error(api.get(both, headers=tokens.audit()), 422, "invalid_request")
    assert_error(api.get("/v1/audit/cases?case_id=nope", headers=tokens.audit()), 422)
    too_long = "x" * 65
    assert_error(api.get(f"/v1/audit/cases?pseudonym={too_long}", headers=tokens.audit()), 422)
    assert_error(api.get("/v1/audit/cases?pseudonym=ERZ-0815"), 401)


# ---- the replay ---------------------------------------------------------------------------


def _cli_replay(hub: Hub, case_id: UUID, as_of: datetime) -> dict[str, Any]:
    """What ``hub replay --as-of … --axis occurred --json`` prints (the same call)."""
    reads = ReadService(
        hub.app, hub.queries, hub.messages, hub.view_store, hub.cipher,
        policy_book=hub.settings.policy_book,
    )  # fmt: skip
    return reads.replay(Principal("auditor", "cli", "cli"), str(case_id), as_of, "occurred")


def test_the_replay_is_the_clis_with_the_consents_in_force_at_that_moment(
    api: TestClient, tokens: Tokens, hub: Hub
) -> None:
    before = datetime(2026, 5, 1, 12, tzinfo=UTC)
    after = datetime(2026, 5, 10, 12, tzinfo=UTC)
    for moment, in_force in ((before, True), (after, False)):
        response = api.get(
            f"/v1/cases/{S4}/replay",
            params={"as_of": moment.isoformat(), "axis": "occurred"},
            headers=tokens.audit(),
        )
        assert response.status_code == 200, response.text
        answer = response.json()
        cli = _cli_replay(hub, S4, moment)
        assert answer["events"] == cli["events"]
        consents = {c["consent_id"]: c.pop("in_force") for c in answer["state"]["consents"]}
        assert answer["state"] == cli["state"]
        assert consents[REVOKED] is in_force
        assert consents["erz-0815-jc"] is True
    # Before the case was opened there is no state; without as_of, today's.
    early = api.get(
        f"/v1/cases/{S4}/replay",
        params={"as_of": "2026-01-01T00:00:00+01:00", "axis": "occurred"},
        headers=tokens.audit(),
    ).json()
    assert (early["state"], early["events"]) == (None, [])
    today = get(api, f"/v1/cases/{S4}/replay", tokens.audit())
    assert today["axis"] == "recorded"
    assert {c["consent_id"]: c["in_force"] for c in today["state"]["consents"]}[REVOKED] is False
    # Every replay is recorded as the auditor's read.
    assert [r["scope"] for r in reads_of(api, tokens, S4)].count("replay") >= 4


def test_an_agency_replays_only_its_part_and_a_case_it_is_not_in_is_unknown_to_it(
    api: TestClient, tokens: Tokens
) -> None:
    own = get(api, f"/v1/cases/{S4}/replay", tokens.of("kopra-erzgebirge"))
    assert own["agency"] == "kopra-erzgebirge"
    assert own["reads"] == []
    assert all(
        c["source_agency"] == "kopra-erzgebirge" or "kopra-erzgebirge" in c["recipients"]
        or c["granted_by"] == "kopra-erzgebirge"
        for c in own["state"]["consents"]
    )  # fmt: skip

    unknown = uuid4()
    not_there = assert_error(
        api.get(f"/v1/cases/{unknown}/replay", headers=tokens.of("drv-rlp")), 404
    )
    not_mine = assert_error(api.get(f"/v1/cases/{S4}/replay", headers=tokens.of("drv-rlp")), 404)
    # Refused exactly as an unknown case: the answer does not tell the case exists.
    assert not_mine["code"] == not_there["code"] == "case_not_found"
    assert not_mine["message"] == not_there["message"].replace(str(unknown), str(S4))
    # Before kopra was involved (its assignment was offered on day 5), also unknown to it.
    early = api.get(
        f"/v1/cases/{S4}/replay",
        params={"as_of": "2026-04-07T12:00:00+02:00", "axis": "occurred"},
        headers=tokens.of("kopra-erzgebirge"),
    )
    assert_error(early, 404, "case_not_found")
    naive = api.get(f"/v1/cases/{S4}/replay?as_of=2026-05-01T12:00:00", headers=tokens.audit())
    assert_error(naive, 422, "invalid_request")
    assert_error(api.get(f"/v1/cases/{S4}/replay?axis=sideways", headers=tokens.audit()), 422)
    assert_error(api.get(f"/v1/cases/{S4}/replay"), 401)


# ---- one case's chain check -------------------------------------------------------------


def test_the_case_chain_check_finds_a_changed_event_of_that_case(
    api: TestClient, tokens: Tokens, hub: Hub, database_url: str
) -> None:
    entries = len(hub.queries.audit_trail(str(S4)))
    intact = get(api, f"/v1/audit/cases/{S4}/verify", tokens.audit())
    assert intact["ok"] is True
    assert intact["first_broken_position"] is None
    assert intact["entries_checked"] == entries  # its own read is recorded after the check
    assert "checkpoint" in intact
    assert "verify" in [r["scope"] for r in reads_of(api, tokens, S4)]

    revoked = next(
        row["position"]
        for row in hub.queries.audit_trail(str(S4))
        if row["type"] == "ConsentRevoked"
    )
    rewrite_event(
        database_url,
        revoked,
        lambda state: state.replace(b'"actor":"integration-4"', b'"actor":"integration-9"'),
    )
    broken = get(api, f"/v1/audit/cases/{S4}/verify", tokens.audit())
    assert broken["ok"] is False
    assert broken["first_broken_position"] == revoked
    assert broken["reason"] == "stored event does not match its audit hash"
    # Another case's entries still verify: the check is the case's own.
    assert get(api, f"/v1/audit/cases/{S2}/verify", tokens.audit())["ok"] is True
    whole = get(api, "/v1/audit/verify", tokens.audit())
    assert (whole["ok"], whole["first_broken_position"]) == (False, revoked)


def test_only_auditors_check_a_cases_chain(api: TestClient, tokens: Tokens) -> None:
    assert_error(
        api.get(f"/v1/audit/cases/{S4}/verify", headers=tokens.of("jc-erzgebirge")),
        403,
        "forbidden",
    )
    assert_error(api.get(f"/v1/audit/cases/{uuid4()}/verify", headers=tokens.audit()), 404)
    assert_error(api.get("/v1/audit/cases/nope/verify", headers=tokens.audit()), 422)


# ---- what an agency may do ----------------------------------------------------------------


def _now_day() -> float:
    """The factories' day number of a few minutes ago (they count from ``T0``)."""
    return (datetime.now(UTC) - T0 - timedelta(minutes=10)).total_seconds() / 86_400


def _post(api: TestClient, tokens: Tokens, agency: str, body: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/v1/messages", json=body, headers=tokens.of(agency))
    assert response.status_code in (200, 201), response.text
    return response.json()


def _actions(api: TestClient, tokens: Tokens, agency: str, case_id: UUID) -> dict[str, Any]:
    answer = get(api, f"/v1/cases/{case_id}/actions", tokens.of(agency))
    return {item["handover_id"]: item for item in answer["items"]}


def test_actions_follow_the_rules_of_section_14_and_record_nothing(
    api: TestClient, tokens: Tokens, hub: Hub
) -> None:
    case_id, first, second = uuid4(), uuid4(), uuid4()
    day = _now_day()
    body = {"programme": "Inklusionsinitiative Trier", "participant": {"pseudonym": "TR-9"}}
    _post(api, tokens, "jc-trier", message("case.opened", "jc-trier", case_id, body, day=day))
    _post(
        api, tokens, "jc-trier",
        offer("jc-trier", case_id, first, kind="rehab_application", to="aa-trier", day=day),
    )  # fmt: skip
    events = hub.app.recorder.max_notification_id()

    offered = _actions(api, tokens, "aa-trier", case_id)[str(first)]
    # The domain lets the receiver decide on the offer itself, too (without accepting).
    assert offered["actions"] == ["accept", "decline", "decide", "forward"]
    # Forwarded only to a rehabilitation agency (or employment agency), not back.
    assert offered["forward_to"] == ["drv-rlp"]
    assert offered["forward_until"] == (T0 + timedelta(days=day + 14)).isoformat()
    # The sender receives nothing here: no actions of a receiver.
    assert _actions(api, tokens, "jc-trier", case_id) == {}
    # The dry runs recorded nothing (the agency's read shows no personal data).
    assert hub.app.recorder.max_notification_id() == events

    forward = message(
        "handover.forwarded",
        "aa-trier",
        case_id,
        {
            "handover_id": str(first),
            "new_handover_id": str(second),
            "to_agency": "drv-rlp",
            "reason": "Zuständigkeit der Rentenversicherung",
        },
        day=day,
    )
    _post(api, tokens, "aa-trier", forward)
    # The second agency of § 14 may neither decline nor forward: it decides.
    assert _actions(api, tokens, "drv-rlp", case_id)[str(second)]["actions"] == ["accept", "decide"]
    assert _actions(api, tokens, "aa-trier", case_id)[str(first)]["actions"] == []
    accept = message("handover.accepted", "drv-rlp", case_id, {"handover_id": str(second)}, day=day)
    _post(api, tokens, "drv-rlp", accept)
    assert _actions(api, tokens, "drv-rlp", case_id)[str(second)]["actions"] == ["decide"]


def test_an_accepted_assignment_may_be_completed_and_a_closed_case_allows_nothing(
    api: TestClient, tokens: Tokens
) -> None:
    s4_assignment = str(demo_id("s4/assignment"))
    assert _actions(api, tokens, "kopra-erzgebirge", S4)[s4_assignment]["actions"] == ["complete"]
    s3 = demo_id("s3/case")  # closed (moved away)
    assert all(not item["actions"] for item in _actions(api, tokens, "coach-trier", s3).values())


def test_actions_are_for_involved_agencies_only(api: TestClient, tokens: Tokens) -> None:
    unknown = assert_error(
        api.get(f"/v1/cases/{uuid4()}/actions", headers=tokens.of("drv-rlp")), 404
    )
    not_mine = assert_error(api.get(f"/v1/cases/{S4}/actions", headers=tokens.of("drv-rlp")), 404)
    assert not_mine["code"] == unknown["code"] == "case_not_found"
    assert_error(api.get(f"/v1/cases/{S4}/actions", headers=tokens.audit()), 403, "forbidden")
    assert_error(api.get(f"/v1/cases/{S4}/actions"), 401)


# ---- the pages themselves -----------------------------------------------------------------


def test_the_pages_load_only_their_own_assets(api: TestClient) -> None:
    for path in ("/audit", f"/audit/cases/{S4}", "/inbox", f"/inbox/cases/{S4}"):
        page = api.get(path)
        assert page.status_code == 200, path
        assert page.headers["content-type"].startswith("text/html")
        html = page.text
        # Under CSP default-src 'self': no inline script, style or handler, no other host.
        assert "<style" not in html
        assert " style=" not in html
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), path
        assert not re.search(r"\son[a-z]+=", html), path
        assert "http://" not in html
        assert "https://" not in html
        for asset in re.findall(r'(?:src|href)="(/assets/[^"]+)"', html):
            served = api.get(asset)
            assert served.status_code == 200, asset
    for asset, kind in (
        ("/assets/common.js", "text/javascript"),
        ("/assets/pages.css", "text/css"),
        ("/assets/labels.json", "application/json"),
    ):
        assert api.get(asset).headers["content-type"].startswith(kind)
    # Imports between the modules name served assets too.
    for module in ("audit.js", "inbox.js", "case.js", "actions.js", "details.js"):
        text = api.get(f"/assets/{module}").text
        for imported in re.findall(r'from "\./([^"]+)"', text):
            assert api.get(f"/assets/{imported}").status_code == 200, imported
    assert_error(api.get("/assets/app.py"), 404, "not_found")
    assert_error(api.get("/assets/..%2Fapp.py"), 404)


def test_every_page_is_the_one_shell_with_its_own_title_script_and_sign_in(
    api: TestClient,
) -> None:
    """One head, header and sign-in form for every page (``static/page.html``): each
    page fills in its own parts; only the agency pages ask for a user id."""
    pages = {
        "/audit": ("audit", "Prüfung", "tokenHelp.audit", False),
        f"/audit/cases/{S4}": ("audit", "Prüfung", "tokenHelp.audit", False),
        "/inbox": ("inbox", "Posteingang", "tokenHelp.inbox", True),
        f"/inbox/cases/{S4}": ("case", "Fall", "tokenHelp.inbox", True),
    }
    for path, (script, title, help_key, asks_user) in pages.items():
        html = api.get(path).text
        assert "{{" not in html, path
        assert "<!--" not in html, path
        assert html.count("<script ") == 1, path
        assert f'<script type="module" src="/assets/{script}.js"></script>' in html, path
        assert f"<title>Übergabe-Hub: {title}</title>" in html, path
        assert f'<h1 data-i18n="title.{script}">Übergabe-Hub: {title}</h1>' in html, path
        assert html.count('<form id="login"') == 1, path
        assert f'data-i18n="{help_key}"' in html, path
        assert ('id="user"' in html) is asks_user, path
        assert html.count('<div id="app" hidden>') == 1, path
        assert html.rstrip().endswith("</html>"), path
