"""DOMAIN.md's five scenarios driven over HTTP only, on SQLite and PostgreSQL.

Agencies and their tokens are set up through the hub service (as ``hub agency add``
would); every message is then POSTed with the token of the agency that sends it.
Refusals the scenarios expect come back 409 with their code. After every 201 the
sender's views already show the change (read-your-writes); after the scenario its
outcome is read back through the agencies' and the auditor's endpoints.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.bootstrap import Hub
from services.demo import Scenario, demo_id, scenarios
from tests.http_helpers import Tokens, assert_error, demo_tokens

SCENARIOS = {s.number: s for s in scenarios()}


@pytest.fixture
def tokens(hub: Hub) -> Tokens:
    return demo_tokens(hub)


@pytest.fixture
def api(hub: Hub, tokens: Tokens) -> Iterator[TestClient]:
    # A generous bound: a 202 (views lagging) would fail the read-your-writes checks.
    with TestClient(create_app(hub, read_your_writes_timeout=10.0)) as client:
        yield client


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _inbox_ids(api: TestClient, tokens: Tokens, agency: str) -> set[str]:
    response = api.get(f"/v1/agencies/{agency}/inbox", headers=tokens.of(agency))
    assert response.status_code == 200, response.text
    return {item["handover_id"] for item in response.json()["items"]}


def _caseload_row(api: TestClient, tokens: Tokens, agency: str, case_id: str) -> dict[str, Any]:
    response = api.get(f"/v1/agencies/{agency}/cases", headers=tokens.of(agency))
    assert response.status_code == 200, response.text
    rows = [r for r in response.json()["items"] if r["case_id"] == case_id]
    assert len(rows) == 1, (agency, response.json())
    return rows[0]


def _check_read_your_writes(api: TestClient, tokens: Tokens, sent: dict[str, Any]) -> None:
    """Right after the 201, without waiting: the sender's views show this message."""
    agency, case_id, payload = sent["agency"], sent["case_id"], sent["payload"]
    row = _caseload_row(api, tokens, agency, case_id)
    assert _at(row["last_activity_at"]) == _at(sent["occurred_at"]), (sent["type"], row)
    if sent["type"] == "case.closed":
        assert row["stage"] == "closed"
    handover = payload.get("handover_id")
    if sent["type"] == "handover.offered":
        assert handover in _inbox_ids(api, tokens, payload["to_agency"])
    elif sent["type"] in {"handover.declined", "handover.forwarded", "rehab.decided"}:
        assert handover not in _inbox_ids(api, tokens, agency)
    elif sent["type"] == "handover.accepted":
        # Accepted is no longer an open offer; an application stays until it is decided.
        response = api.get(f"/v1/agencies/{agency}/inbox", headers=tokens.of(agency))
        kinds = {i["kind"] for i in response.json()["items"] if i["handover_id"] == handover}
        assert kinds <= {"rehab_application"}
    if sent["type"] == "handover.forwarded":
        assert payload["new_handover_id"] in _inbox_ids(api, tokens, payload["to_agency"])


def drive(api: TestClient, tokens: Tokens, scenario: Scenario) -> list[str]:
    """POST every step with its sender's token; returns the refusal codes seen."""
    refusals = []
    for step in scenario.steps:
        sent = step.message
        response = api.post("/v1/messages", json=sent, headers=tokens.of(sent["agency"]))
        if step.expect_refusal is not None:
            assert_error(response, 409, step.expect_refusal)
            refusals.append(step.expect_refusal)
            continue
        assert response.status_code == 201, (sent["type"], response.text)
        result = response.json()
        assert result["case_id"] == sent["case_id"]
        assert result["duplicate"] is False
        _check_read_your_writes(api, tokens, sent)
    return refusals


def _case(api: TestClient, tokens: Tokens, number: int, agency: str) -> dict[str, Any]:
    response = api.get(f"/v1/cases/{demo_id(f's{number}/case')}", headers=tokens.of(agency))
    assert response.status_code == 200, response.text
    return response.json()


def _handovers(view: dict[str, Any], number: int) -> dict[str, dict[str, Any]]:
    names = {str(demo_id(f"s{number}/{n}")): n for n in _HANDOVER_NAMES}
    return {names.get(h["handover_id"], h["handover_id"]): h for h in view["handovers"]}


_HANDOVER_NAMES = (
    "discharge",
    "placement",
    "reha-1",
    "reha-2",
    "reha-3",
    "assignment",
    "report-1",
    "report-2",
)


def _history(api: TestClient, tokens: Tokens, number: int) -> list[dict[str, Any]]:
    response = api.get(f"/v1/cases/{demo_id(f's{number}/case')}/history", headers=tokens.audit())
    assert response.status_code == 200, response.text
    return response.json()["items"]


def test_scenario_1_clinic_to_jobcenter(api: TestClient, tokens: Tokens) -> None:
    assert drive(api, tokens, SCENARIOS[1]) == []
    view = _case(api, tokens, 1, "jc-oder-spree")
    assert (view["stage"], view["outcome"], view["lead_agency"]) == (
        "closed",
        "employed",
        "jc-oder-spree",
    )
    handovers = _handovers(view, 1)
    assert handovers["discharge"]["state"] == handovers["placement"]["state"] == "completed"
    assert (handovers["placement"]["from_agency"], handovers["placement"]["to_agency"]) == (
        "jc-oder-spree",
        "hwk-ffo",
    )
    assert view["aftercare"]["ended_at"] is not None
    # The Jobcenter received health and contact with the discharge, under consent.
    assert view["participant"]["contact"] == "Beeskow, Tel. 03366 000000"
    for agency in ("klinik-oder-spree", "jc-oder-spree", "hwk-ffo"):
        row = _caseload_row(api, tokens, agency, str(demo_id("s1/case")))
        assert row["stage"] == "closed"
        assert row["next_due_at"] is None
        assert _inbox_ids(api, tokens, agency) == set()


def test_scenario_2_rehab_ping_pong_stopped(api: TestClient, tokens: Tokens) -> None:
    assert drive(api, tokens, SCENARIOS[2]) == ["forward_limit_reached"]
    view = _case(api, tokens, 2, "drv-rlp")
    handovers = _handovers(view, 2)
    assert set(handovers) == {"reha-1", "reha-2"}  # the refused second forward made nothing
    assert handovers["reha-1"]["state"] == "forwarded"
    assert handovers["reha-1"]["forwarded_to"] == str(demo_id("s2/reha-2"))
    second = handovers["reha-2"]
    assert (second["from_agency"], second["to_agency"], second["state"]) == (
        "aa-trier",
        "drv-rlp",
        "completed",
    )
    assert second["forwarded_from"] == str(demo_id("s2/reha-1"))
    # Three weeks for the decision, from the DRV's own receipt on day 9.
    assert (_at(second["decide_due_at"]) - _at(second["offered_at"])).days == 21
    assert "reha-3" not in {h["type"] for h in _history(api, tokens, 2)}
    assert _inbox_ids(api, tokens, "drv-rlp") == set()
    assert _inbox_ids(api, tokens, "aa-trier") == set()
    # The dashboard shows the deadline met.
    dashboard = api.get("/v1/dashboard", headers=tokens.of("jc-trier")).json()
    assert {"agency": "drv-rlp", "met": 1, "missed": 0} in dashboard["rehab_decisions"]


def test_scenario_3_coaching_in_trier(api: TestClient, tokens: Tokens) -> None:
    assert drive(api, tokens, SCENARIOS[3]) == []
    view = _case(api, tokens, 3, "coach-trier")
    assert (view["stage"], view["outcome"], view["coach"]) == (
        "closed",
        "moved_away",
        "coach-mueller",
    )
    assert view["plan"]["modules"] == ["Bewerbungstraining", "Praktikum"]
    info = next(a for a in view["appointments"] if a["kind"] == "information")
    accepted_day = _at(SCENARIOS[3].steps[3].message["occurred_at"])
    assert info["state"] == "held"
    assert (_at(info["at"]) - accepted_day).days <= 7
    assert view["agreement_signed_at"] is not None
    extended = [h for h in _history(api, tokens, 3) if h["type"] == "AssignmentExtended"]
    assert len(extended) == 1
    assert extended[0]["payload"]["months"] == 3
    assert _caseload_row(api, tokens, "jc-trier", str(demo_id("s3/case")))["stage"] == "closed"


def test_scenario_4_consent_revoked(api: TestClient, tokens: Tokens) -> None:
    assert drive(api, tokens, SCENARIOS[4]) == ["consent_missing"]
    view = _case(api, tokens, 4, "kopra-erzgebirge")
    handovers = _handovers(view, 4)
    assert "report-2" not in handovers  # refused: nothing recorded
    assert handovers["report-1"]["state"] == "accepted"
    revoked = next(c for c in view["consents"] if c["consent_id"] == "erz-0815-health-kopra")
    assert revoked["revoked_at"] is not None
    # The coach holds the identity the lead handed on with the accepted assignment (under
    # the lead's consent), and nothing of the clinic's health data now.
    assert view["participant"] == {
        "pseudonym": "ERZ-0815",
        "name": "Jonas Vorbild",
        "birth_date": "1995-07-01",
    }
    assert "health" not in view["categories_shown"]
    assert _inbox_ids(api, tokens, "kopra-erzgebirge") == set()
    history = _history(api, tokens, 4)
    assert [h["type"] for h in history].count("HandoverOffered") == 3


def test_scenario_4_coach_view_shows_no_health_data_after_revocation(
    api: TestClient, tokens: Tokens
) -> None:
    drive(api, tokens, SCENARIOS[4])
    view = _case(api, tokens, 4, "kopra-erzgebirge")
    assert "health" not in view["categories_shown"]
    assert all(note["category"] != "health" for note in view["notes"])


def test_scenario_5_erasure(api: TestClient, tokens: Tokens) -> None:
    assert drive(api, tokens, SCENARIOS[5]) == []
    view = _case(api, tokens, 5, "jc-aachen")
    assert view["participant"]["pseudonym"] == "AC-0300"
    assert view["participant"]["erased"] is True
    assert view["erased_at"] is not None
    response = api.get(f"/v1/cases/{demo_id('s5/case')}/history", headers=tokens.audit())
    history = response.json()["items"]
    types = [h["type"] for h in history]
    # The full sequence of handovers still replays ...
    assert (
        types.index("HandoverOffered")
        < types.index("HandoverAccepted")
        < types.index("ParticipantErased")
    )
    # ... with the personal fields erased, everywhere the auditor looks.
    for personal in ("Sabine Platzhalter", "1984-02-29", "0241 000000", "Vorstellungsgespräch"):
        assert personal not in response.text
        assert (
            personal not in api.get(f"/v1/cases/{demo_id('s5/case')}", headers=tokens.audit()).text
        )
    # The auditor's reads are on record, after the erasure.
    later = [h["type"] for h in _history(api, tokens, 5)]
    assert later[: len(types)] == types
    assert set(later[len(types) :]) == {"CaseRead"}
    # The chain still verifies.
    verify = api.get("/v1/audit/verify", headers=tokens.audit()).json()
    assert verify["ok"] is True, repr(verify)


def test_every_scenario_in_one_store_then_the_dashboard(api: TestClient, tokens: Tokens) -> None:
    for scenario in SCENARIOS.values():
        drive(api, tokens, scenario)
    dashboard = api.get("/v1/dashboard", headers=tokens.audit()).json()
    stages: dict[str, int] = {}
    for row in dashboard["cases_by_stage"]:
        stages[row["stage"]] = stages.get(row["stage"], 0) + row["count"]
    assert sum(stages.values()) == 5
    assert stages["closed"] == 3  # scenarios 1, 3 and 5
    pairs = {(p["from_agency"], p["to_agency"]) for p in dashboard["offer_to_accept"]}
    assert ("klinik-oder-spree", "jc-oder-spree") in pairs
    assert ("aa-trier", "drv-rlp") in pairs
    assert sum(o["open"] for o in dashboard["open_offers"]) == 0
    # Sending everything again is answered with duplicates, nothing new is recorded.
    for scenario in SCENARIOS.values():
        for step in scenario.steps:
            if step.expect_refusal is None:
                sent = step.message
                again = api.post("/v1/messages", json=sent, headers=tokens.of(sent["agency"]))
                assert again.status_code == 200, again.text
                assert again.json()["duplicate"] is True


def test_when_the_views_lag_past_the_bound_the_answer_is_202_with_the_position(
    hub: Hub, tokens: Tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The views never catch up: the live runner applies nothing (patched before it
    # starts), and the tables, read for what another process's runner may have
    # applied, stay behind too.
    monkeypatch.setattr(hub.views, "catch_up", lambda *_, **__: 0)
    monkeypatch.setattr(hub.views, "position", lambda: 0)
    with TestClient(create_app(hub, read_your_writes_timeout=0.3)) as client:
        sent = SCENARIOS[3].steps[0].message
        response = client.post("/v1/messages", json=sent, headers=tokens.of(sent["agency"]))
        assert response.status_code == 202, response.text
        result = response.json()
        assert result["position"] > 0
        assert result["duplicate"] is False
        monkeypatch.undo()
        # Recorded all the same: the repeat is a duplicate with the same position.
        again = client.post("/v1/messages", json=sent, headers=tokens.of(sent["agency"]))
        assert again.status_code == 200
        assert again.json()["position"] == result["position"]
