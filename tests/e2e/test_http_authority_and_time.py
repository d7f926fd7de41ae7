"""DOMAIN rules 2, 4, 6 and 7 and the consent section, tried over HTTP as the attacker
would: another agency, a wrong clock, an agency of the wrong kind.

Each test is a reproduction from the "authority and time" issue: on the code before
it, every one of these requests was recorded (or answered 500). Times are relative
to the hub's own clock, because the hub's clock decides. Every refusal must leave
the store as it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.bootstrap import Hub
from tests.http_helpers import Tokens, assert_error, demo_tokens

CLINIC, JC, COACH = "klinik-erzgebirge", "jc-erzgebirge", "kopra-erzgebirge"
JC_TRIER, AA, DRV, CHAMBER, COACH_TRIER = (
    "jc-trier",
    "aa-trier",
    "drv-rlp",
    "hwk-ffo",
    "coach-trier",
)


@pytest.fixture
def tokens(hub: Hub) -> Tokens:
    return demo_tokens(hub)


@pytest.fixture
def api(hub: Hub, tokens: Tokens) -> Iterator[TestClient]:
    with TestClient(create_app(hub)) as client:
        yield client


def ago(days: float = 0, hours: float = 0) -> str:
    return (datetime.now(UTC) - timedelta(days=days, hours=hours)).isoformat()


class Agencies:
    """Posts messages as each agency, with its own token."""

    def __init__(self, api: TestClient, tokens: Tokens, hub: Hub) -> None:
        self.api, self.tokens, self.hub = api, tokens, hub

    def send(
        self,
        agency: str,
        type_: str,
        case_id: UUID,
        payload: dict[str, Any] | None = None,
        *,
        at: str | None = None,
    ) -> Any:
        body = {
            "message_id": str(uuid4()),
            "type": type_,
            "agency": agency,
            "case_id": str(case_id),
            "occurred_at": at or ago(),
            "actor": f"user@{agency}",
            "payload": payload or {},
        }
        return self.api.post("/v1/messages", json=body, headers=self.tokens.of(agency))

    def ok(self, agency: str, type_: str, case_id: UUID, payload: Any = None, **kw: Any) -> Any:
        response = self.send(agency, type_, case_id, payload, **kw)
        assert response.status_code in (200, 201, 202), response.text
        return response.json()

    def refused(
        self,
        status: int,
        code: str,
        agency: str,
        type_: str,
        case_id: UUID,
        payload: Any = None,
        **kw: Any,
    ) -> dict[str, Any]:
        head = self.hub.app.recorder.max_notification_id()
        error = assert_error(self.send(agency, type_, case_id, payload, **kw), status, code)
        assert self.hub.app.recorder.max_notification_id() == head, "a refusal wrote events"
        return error

    # -- the usual steps ---------------------------------------------------------

    def open(self, agency: str, at: str | None = None) -> UUID:
        case_id = uuid4()
        self.ok(
            agency,
            "case.opened",
            case_id,
            {"programme": "KoPrA", "participant": {"pseudonym": "ERZ-1", "name": "Jonas"}},
            at=at,
        )
        return case_id

    def consent(
        self,
        agency: str,
        case_id: UUID,
        recipients: list[str],
        categories: list[str],
        *,
        source: str | None = None,
        valid_from: str | None = None,
        valid_until: str | None = None,
        at: str | None = None,
    ) -> str:
        consent_id = f"c-{uuid4().hex[:8]}"
        payload: dict[str, Any] = {
            "consent_id": consent_id,
            "categories": categories,
            "source_agency": source or agency,
            "recipients": recipients,
            "valid_from": valid_from or ago(60),
        }
        if valid_until:
            payload["valid_until"] = valid_until
        self.ok(agency, "consent.granted", case_id, payload, at=at)
        return consent_id

    def offer(
        self,
        agency: str,
        case_id: UUID,
        to: str,
        kind: str,
        categories: list[str] | None = None,
        at: str | None = None,
    ) -> str:
        handover_id = str(uuid4())
        payload = {
            "handover_id": handover_id,
            "kind": kind,
            "to_agency": to,
            "data_categories": categories or [],
        }
        self.ok(agency, "handover.offered", case_id, payload, at=at)
        return handover_id


@pytest.fixture
def agencies(api: TestClient, tokens: Tokens, hub: Hub) -> Agencies:
    return Agencies(api, tokens, hub)


def kopra_case(a: Agencies) -> tuple[UUID, str]:
    """KoPrA: the clinic opens, consents health+contact to the Jobcenter, discharges
    to it (the Jobcenter becomes lead), which assigns the coordination point."""
    case_id = a.open(CLINIC, at=ago(30))
    consent = a.consent(CLINIC, case_id, [JC], ["health", "contact"], at=ago(30))
    discharge = a.offer(CLINIC, case_id, JC, "discharge", ["health", "contact"], at=ago(30))
    a.ok(JC, "handover.accepted", case_id, {"handover_id": discharge}, at=ago(29))
    assignment = a.offer(JC, case_id, COACH, "assignment", at=ago(28))
    a.ok(COACH, "handover.accepted", case_id, {"handover_id": assignment}, at=ago(27))
    return case_id, consent


# ---- consent authority ----------------------------------------------------------------


def test_an_agency_cannot_record_a_consent_in_the_name_of_another_source(
    agencies: Agencies, api: TestClient, tokens: Tokens, hub: Hub
) -> None:
    case_id, _ = kopra_case(agencies)

    agencies.refused(
        409,
        "not_consent_source",
        COACH,
        "consent.granted",
        case_id,
        {
            "consent_id": "forged",
            "categories": ["health", "identity"],
            "source_agency": CLINIC,
            "recipients": [COACH],
            "valid_from": ago(1),
        },
    )
    hub.views.catch_up()
    view = api.get(f"/v1/cases/{case_id}", headers=tokens.of(COACH)).json()
    assert "name" not in view["participant"]
    assert all(c["consent_id"] != "forged" for c in view["consents"])


def test_only_the_source_or_the_lead_revokes_a_consent(agencies: Agencies) -> None:
    case_id, consent = kopra_case(agencies)

    agencies.refused(
        409, "not_consent_source", COACH, "consent.revoked", case_id, {"consent_id": consent}
    )
    agencies.ok(JC, "consent.revoked", case_id, {"consent_id": consent})


# ---- roles follow kinds ---------------------------------------------------------------


def test_a_chamber_cannot_hand_the_lead_to_a_coach_by_a_discharge(agencies: Agencies) -> None:
    case_id = agencies.open(JC_TRIER, at=ago(10))
    placement = agencies.offer(JC_TRIER, case_id, CHAMBER, "placement_support", at=ago(9))
    agencies.ok(CHAMBER, "handover.accepted", case_id, {"handover_id": placement}, at=ago(8))

    error = agencies.refused(
        409,
        "kind_not_allowed",
        CHAMBER,
        "handover.offered",
        case_id,
        {"handover_id": str(uuid4()), "kind": "discharge", "to_agency": COACH_TRIER},
    )
    assert "chamber" in error["message"]
    # The Jobcenter still leads: it can extend and close.
    agencies.ok(JC_TRIER, "assignment.extended", case_id, {"months": 1, "reason": "Praktikum"})


def test_a_coach_cannot_open_a_case_as_its_lead(agencies: Agencies) -> None:
    agencies.refused(
        409,
        "kind_not_allowed",
        COACH,
        "case.opened",
        uuid4(),
        {"programme": "KoPrA", "participant": {"pseudonym": "X-1"}},
    )


def test_the_lead_moves_only_by_an_explicit_transfer_from_the_lead(agencies: Agencies) -> None:
    case_id = agencies.open(JC_TRIER, at=ago(10))
    rehab = agencies.offer(JC_TRIER, case_id, AA, "rehab_application", at=ago(9))
    agencies.ok(AA, "handover.accepted", case_id, {"handover_id": rehab}, at=ago(8))

    transfer = {"to_agency": AA, "reason": "SGB III"}
    agencies.refused(409, "not_lead_agency", AA, "lead.transferred", case_id, transfer)
    agencies.ok(JC_TRIER, "lead.transferred", case_id, transfer)
    agencies.refused(
        409,
        "not_lead_agency",
        JC_TRIER,
        "assignment.extended",
        case_id,
        {"months": 1, "reason": "x"},
    )


# ---- the hub's clock decides --------------------------------------------------------------


def test_a_backdated_offer_cannot_use_a_consent_that_expired_before_it_was_recorded(
    agencies: Agencies,
) -> None:
    case_id = agencies.open(JC_TRIER, at=ago(40))
    agencies.consent(
        JC_TRIER, case_id, [COACH_TRIER], ["identity"], valid_from=ago(40), valid_until=ago(19)
    )

    agencies.refused(
        409,
        "consent_missing",
        JC_TRIER,
        "handover.offered",
        case_id,
        {
            "handover_id": str(uuid4()),
            "kind": "assignment",
            "to_agency": COACH_TRIER,
            "data_categories": ["identity"],
        },
        at=ago(26),  # when the consent still ran, by the agency's word
    )


def test_an_acceptance_dated_before_its_offer_is_refused(agencies: Agencies) -> None:
    case_id = agencies.open(JC_TRIER, at=ago(5))
    assignment = agencies.offer(JC_TRIER, case_id, COACH_TRIER, "assignment", at=ago(2))

    agencies.refused(
        409,
        "occurred_too_early",
        COACH_TRIER,
        "handover.accepted",
        case_id,
        {"handover_id": assignment},
        at=ago(3),
    )


def test_an_act_dated_in_the_future_is_refused(agencies: Agencies) -> None:
    case_id = agencies.open(JC_TRIER, at=ago(5))
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    agencies.refused(
        409,
        "occurred_in_future",
        JC_TRIER,
        "note.added",
        case_id,
        {"text": "Termin", "category": "notes"},
        at=future,
    )


def test_employment_starting_before_the_case_is_refused(agencies: Agencies) -> None:
    case_id = agencies.open(JC_TRIER, at=ago(5))
    agencies.refused(
        409,
        "occurred_too_early",
        JC_TRIER,
        "employment.started",
        case_id,
        {"employer": "Beispiel GmbH", "kind": "employment", "start_date": "2020-01-01"},
    )


@pytest.mark.parametrize("moment", ["9999-12-30T00:00:00+00:00", "1850-01-01T00:00:00+00:00"])
def test_dates_outside_1900_to_2200_are_a_422_not_a_500(agencies: Agencies, moment: str) -> None:
    case_id = agencies.open(JC_TRIER, at=ago(5))
    agencies.refused(
        422,
        "schema_invalid",
        JC_TRIER,
        "handover.offered",
        case_id,
        {"handover_id": str(uuid4()), "kind": "assignment", "to_agency": COACH_TRIER},
        at=moment,
    )


# ---- § 14 SGB IX ------------------------------------------------------------------------


def forwarded_application(a: Agencies) -> tuple[UUID, str, str]:
    case_id = a.open(JC_TRIER, at=ago(20))
    first = a.offer(JC_TRIER, case_id, AA, "rehab_application", at=ago(20))
    second = str(uuid4())
    a.ok(
        AA,
        "handover.forwarded",
        case_id,
        {"handover_id": first, "new_handover_id": second, "to_agency": DRV, "reason": "DRV"},
        at=ago(11),
    )
    return case_id, first, second


def test_the_second_agency_cannot_decline_or_forward_it_decides(agencies: Agencies) -> None:
    case_id, _, second = forwarded_application(agencies)

    agencies.refused(
        409,
        "decision_required",
        DRV,
        "handover.declined",
        case_id,
        {"handover_id": second, "reason": "nicht zuständig"},
    )
    agencies.refused(
        409,
        "forward_limit_reached",
        DRV,
        "handover.forwarded",
        case_id,
        {"handover_id": second, "new_handover_id": str(uuid4()), "to_agency": AA, "reason": "x"},
    )
    agencies.ok(DRV, "rehab.decided", case_id, {"handover_id": second, "outcome": "granted"})


def test_the_forwarder_cannot_withdraw_the_forwarded_application(agencies: Agencies) -> None:
    case_id, _, second = forwarded_application(agencies)
    agencies.refused(
        409,
        "decision_required",
        AA,
        "handover.withdrawn",
        case_id,
        {"handover_id": second, "reason": "zurück"},
    )


def test_no_new_rehab_application_while_one_awaits_its_decision(agencies: Agencies) -> None:
    case_id, _, _ = forwarded_application(agencies)
    agencies.refused(
        409,
        "rehab_application_open",
        JC_TRIER,
        "handover.offered",
        case_id,
        {"handover_id": str(uuid4()), "kind": "rehab_application", "to_agency": DRV},
    )


def test_a_forward_after_the_competence_period_is_refused(agencies: Agencies) -> None:
    case_id = agencies.open(JC_TRIER, at=ago(41))
    first = agencies.offer(JC_TRIER, case_id, AA, "rehab_application", at=ago(40))
    agencies.refused(
        409,
        "forward_period_over",
        AA,
        "handover.forwarded",
        case_id,
        {"handover_id": first, "new_handover_id": str(uuid4()), "to_agency": DRV, "reason": "x"},
    )


def test_an_application_is_forwarded_only_to_a_rehabilitation_agency(agencies: Agencies) -> None:
    case_id = agencies.open(JC_TRIER, at=ago(5))
    first = agencies.offer(JC_TRIER, case_id, AA, "rehab_application", at=ago(4))
    agencies.refused(
        409,
        "kind_not_allowed",
        AA,
        "handover.forwarded",
        case_id,
        {
            "handover_id": first,
            "new_handover_id": str(uuid4()),
            "to_agency": CHAMBER,
            "reason": "x",
        },
    )


def test_an_accepted_application_past_its_decision_date_is_overdue_in_the_inbox(
    agencies: Agencies, api: TestClient, tokens: Tokens, hub: Hub
) -> None:
    case_id = agencies.open(JC_TRIER, at=ago(30))
    first = agencies.offer(JC_TRIER, case_id, AA, "rehab_application", at=ago(30))
    agencies.ok(AA, "handover.accepted", case_id, {"handover_id": first}, at=ago(29))
    hub.views.catch_up()

    inbox = api.get(f"/v1/agencies/{AA}/inbox", headers=tokens.of(AA)).json()["items"]
    [row] = [r for r in inbox if r["handover_id"] == first]
    assert row["overdue"] is True  # decision due 21 days after receipt: 9 days ago


# ---- closure and involvement ----------------------------------------------------------------


def test_closing_with_open_handovers_is_refused_unless_it_withdraws_them(
    agencies: Agencies, api: TestClient, tokens: Tokens, hub: Hub
) -> None:
    case_id = agencies.open(JC_TRIER, at=ago(5))
    assignment = agencies.offer(JC_TRIER, case_id, COACH_TRIER, "assignment", at=ago(4))

    error = agencies.refused(
        409, "open_handovers", JC_TRIER, "case.closed", case_id, {"outcome": "other"}
    )
    assert error["details"]["handover_ids"] == [assignment]

    agencies.ok(JC_TRIER, "case.closed", case_id, {"outcome": "other", "withdraw_open": True})
    hub.views.catch_up()
    view = api.get(f"/v1/cases/{case_id}", headers=tokens.of(JC_TRIER)).json()
    assert [h["state"] for h in view["handovers"]] == ["withdrawn"]


def test_a_pending_decision_blocks_closure_even_with_withdraw_open(agencies: Agencies) -> None:
    case_id, _, _ = forwarded_application(agencies)
    agencies.refused(
        409,
        "decision_pending",
        JC_TRIER,
        "case.closed",
        case_id,
        {"outcome": "other", "withdraw_open": True},
    )


def test_an_agency_that_declined_its_only_handover_is_no_longer_involved(
    agencies: Agencies,
) -> None:
    case_id = agencies.open(JC_TRIER, at=ago(5))
    assignment = agencies.offer(JC_TRIER, case_id, COACH_TRIER, "assignment", at=ago(4))
    agencies.ok(
        COACH_TRIER,
        "handover.declined",
        case_id,
        {"handover_id": assignment, "reason": "keine Plätze"},
        at=ago(3),
    )

    # No longer involved: answered as for an unknown case (was 409 not_involved).
    agencies.refused(
        404,
        "case_not_found",
        COACH_TRIER,
        "employment.started",
        case_id,
        {"employer": "Beispiel GmbH", "kind": "employment", "start_date": ago(1)[:10]},
    )


# ---- late entries ----------------------------------------------------------------------


def test_a_late_entry_is_kept_and_marked_in_history(
    agencies: Agencies, api: TestClient, tokens: Tokens, hub: Hub
) -> None:
    case_id = agencies.open(JC_TRIER, at=ago(5))  # recorded now, happened five days ago
    agencies.ok(JC_TRIER, "note.added", case_id, {"text": "Rückruf", "category": "notes"})
    hub.views.catch_up()

    items = api.get(f"/v1/cases/{case_id}/history", headers=tokens.audit()).json()["items"]
    assert [(i["type"], i["late_entry"]) for i in items if i["type"] != "CaseRead"] == [
        ("CaseOpened", True),
        ("NoteAdded", False),
    ]


def decision_figures(api: TestClient, tokens: Tokens, hub: Hub) -> dict[str, Any]:
    hub.views.catch_up()
    rows = api.get("/v1/dashboard", headers=tokens.audit()).json()["rehab_decisions"]
    return {r["agency"]: (r["met"], r["missed"]) for r in rows}


@pytest.mark.parametrize(("document_ref", "counted"), [(None, (0, 1)), ("Bescheid-1", (1, 0))])
def test_a_backdated_decision_counts_as_met_only_with_its_notice(
    agencies: Agencies,
    api: TestClient,
    tokens: Tokens,
    hub: Hub,
    document_ref: str | None,
    counted: tuple[int, int],
) -> None:
    """Received 30 days ago, decided (by the agency's word) on day 10, recorded today:
    past the three-week window on the hub's clock."""
    case_id = agencies.open(JC_TRIER, at=ago(31))
    application = agencies.offer(JC_TRIER, case_id, DRV, "rehab_application", at=ago(30))
    payload: dict[str, Any] = {"handover_id": application, "outcome": "refused"}
    if document_ref:
        payload["document_ref"] = document_ref
    agencies.ok(DRV, "rehab.decided", case_id, payload, at=ago(20))

    assert decision_figures(api, tokens, hub)[DRV] == counted


# ---- what the case view tells about the others (DOMAIN "Views") ---------------------------


def test_an_agency_sees_only_the_handovers_it_sent_or_received(
    agencies: Agencies, api: TestClient, tokens: Tokens, hub: Hub
) -> None:
    """Reproduction: a chamber with no health consent learned from the handover list
    that a psychiatric clinic had discharged the participant."""
    case_id = agencies.open(CLINIC, at=ago(10))
    discharge = agencies.offer(CLINIC, case_id, JC, "discharge", at=ago(10))
    agencies.ok(JC, "handover.accepted", case_id, {"handover_id": discharge}, at=ago(9))
    assignment = agencies.offer(JC, case_id, COACH, "assignment", at=ago(8))
    agencies.ok(COACH, "handover.accepted", case_id, {"handover_id": assignment}, at=ago(7))
    hub.views.catch_up()

    coach = api.get(f"/v1/cases/{case_id}", headers=tokens.of(COACH)).json()
    assert [h["handover_id"] for h in coach["handovers"]] == [assignment]
    assert CLINIC not in coach["agencies"]
    lead = api.get(f"/v1/cases/{case_id}", headers=tokens.of(JC)).json()
    assert [h["handover_id"] for h in lead["handovers"]] == [discharge, assignment]
    audit = api.get(f"/v1/cases/{case_id}", headers=tokens.audit()).json()
    assert len(audit["handovers"]) == 2


# ---- erasure ends retention -----------------------------------------------------------------


def test_erasure_waits_for_closure_and_retention_unless_an_art_17_ground_is_stated(
    agencies: Agencies, api: TestClient, tokens: Tokens, hub: Hub
) -> None:
    """Reproduction (disclosure issue): erasure was accepted on an open case, which then
    kept running with its participant's key gone."""
    case_id = agencies.open(JC_TRIER, at=ago(40))
    agencies.refused(
        409, "retention_running", JC_TRIER, "participant.erased", case_id, {"reason": "x"}
    )
    agencies.ok(JC_TRIER, "case.closed", case_id, {"outcome": "other"}, at=ago(30))
    error = agencies.refused(
        409, "retention_running", JC_TRIER, "participant.erased", case_id, {"reason": "x"}
    )
    assert "retention_ends_at" in error["details"]

    ground = "Art. 17 (1) b DSGVO"
    agencies.ok(JC_TRIER, "participant.erased", case_id, {"reason": "Antrag", "ground": ground})
    hub.views.catch_up()
    items = api.get(f"/v1/cases/{case_id}/history", headers=tokens.audit()).json()["items"]
    erased = next(i for i in items if i["type"] == "ParticipantErased")
    assert erased["payload"]["ground"] == ground
