"""Disclosure over HTTP (issue "Trust model, part 2 — disclosure"; DOMAIN rule 3,
"Consent", "Views"): data reaches an agency's view only by a handover that carried
its category to it under a consent still valid, or by the lead's statutory basis.

Each test is a reproduction: on the code before ``projections.disclosure`` a consent
alone granted visibility (the health note showed although no handover carried
health), the lead never saw its participant's name, plan or employment, and the
history showed what the case view hid. Both stores, via the ``hub`` fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID, uuid4

import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.bootstrap import Hub
from tests.e2e.test_http_authority_and_time import Agencies, ago
from tests.http_helpers import Tokens, demo_tokens

CLINIC, JC, COACH = "klinik-erzgebirge", "jc-erzgebirge", "kopra-erzgebirge"
GAL_CLINIC, GAL_JC = "klinik-oder-spree", "jc-oder-spree"
NAME = "Jonas Vorbild"
HEALTH_NOTE = "Belastbarkeit drei Stunden täglich"
ASSESSMENT_NOTE = "Arbeitserprobung: gute Ausdauer"


@pytest.fixture
def tokens(hub: Hub) -> Tokens:
    return demo_tokens(hub)


@pytest.fixture
def api(hub: Hub, tokens: Tokens) -> Iterator[TestClient]:
    with TestClient(create_app(hub)) as client:
        yield client


@pytest.fixture
def agencies(api: TestClient, tokens: Tokens, hub: Hub) -> Agencies:
    return Agencies(api, tokens, hub)


def view(a: Agencies, agency: str, case_id: UUID) -> dict[str, Any]:
    a.hub.views.catch_up()
    response = a.api.get(f"/v1/cases/{case_id}", headers=a.tokens.of(agency))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def history(a: Agencies, agency: str, case_id: UUID) -> Any:
    a.hub.views.catch_up()
    response = a.api.get(f"/v1/cases/{case_id}/history", headers=a.tokens.of(agency))
    assert response.status_code == 200, response.text
    return response


def open_case(a: Agencies, agency: str, programme: str = "KoPrA", at: str | None = None) -> UUID:
    case_id = uuid4()
    participant = {"pseudonym": "ERZ-1", "name": NAME, "contact": "Annaberg, Tel. 0"}
    a.ok(
        agency,
        "case.opened",
        case_id,
        {"programme": programme, "participant": participant},
        at=at or ago(30),
    )
    return case_id


def note(a: Agencies, agency: str, case_id: UUID, text: str, category: str, at: str) -> None:
    a.ok(agency, "note.added", case_id, {"text": text, "category": category}, at=at)


def texts(v: dict[str, Any]) -> list[str]:
    return [n["text"] for n in v["notes"]]


def kopra(a: Agencies) -> UUID:
    """KoPrA: the clinic opens and discharges to the Jobcenter (contact), which leads
    and assigns the coordination point with identity and contact under its own
    consent; the coach accepts."""
    case_id = open_case(a, CLINIC)
    a.consent(CLINIC, case_id, [JC], ["contact"], at=ago(30))
    discharge = a.offer(CLINIC, case_id, JC, "discharge", ["contact"], at=ago(30))
    a.ok(JC, "handover.accepted", case_id, {"handover_id": discharge}, at=ago(29))
    a.consent(JC, case_id, [COACH], ["identity", "contact"], at=ago(28))
    assignment = a.offer(JC, case_id, COACH, "assignment", ["identity", "contact"], at=ago(28))
    a.ok(COACH, "handover.accepted", case_id, {"handover_id": assignment}, at=ago(27))
    return case_id


# (i) ------------------------------------------------------------------------------------


def test_a_consent_alone_grants_nothing_the_handover_did_not_carry(agencies: Agencies) -> None:
    case_id = kopra(agencies)
    agencies.consent(CLINIC, case_id, [COACH], ["health", "assessment"], at=ago(20))
    note(agencies, CLINIC, case_id, HEALTH_NOTE, "health", at=ago(20))
    note(agencies, CLINIC, case_id, ASSESSMENT_NOTE, "assessment", at=ago(20))
    report = agencies.offer(CLINIC, case_id, COACH, "discharge", ["assessment"], at=ago(19))

    offered = view(agencies, COACH, case_id)
    assert texts(offered) == [ASSESSMENT_NOTE]  # carried, under a valid consent
    assert "health" not in offered["categories_shown"]

    agencies.ok(
        COACH,
        "handover.declined",
        case_id,
        {"handover_id": report, "reason": "nicht zuständig"},
        at=ago(18),
    )
    declined = view(agencies, COACH, case_id)
    assert texts(declined) == []  # what only the declined handover carried is gone
    assert "health" not in declined["categories_shown"]
    assert "assessment" not in declined["categories_shown"]
    assert HEALTH_NOTE not in history(agencies, COACH, case_id).text


# (ii) -----------------------------------------------------------------------------------


def test_the_gal_lead_jobcenter_sees_its_participants_name(agencies: Agencies) -> None:
    case_id = open_case(agencies, GAL_CLINIC, programme="G-A-L")
    agencies.consent(GAL_CLINIC, case_id, [GAL_JC], ["health", "contact"], at=ago(30))
    discharge = agencies.offer(
        GAL_CLINIC, case_id, GAL_JC, "discharge", ["health", "contact"], at=ago(30)
    )
    agencies.ok(GAL_JC, "handover.accepted", case_id, {"handover_id": discharge}, at=ago(27))

    lead = view(agencies, GAL_JC, case_id)
    assert lead["lead_agency"] == GAL_JC
    assert lead["participant"]["name"] == NAME
    assert lead["participant"]["contact"] == "Annaberg, Tel. 0"
    assert {"identity", "contact"} <= set(lead["categories_shown"])


# (iii) ----------------------------------------------------------------------------------


def test_the_kopra_coach_sees_the_name_the_lead_handed_on(agencies: Agencies) -> None:
    case_id = kopra(agencies)

    coach = view(agencies, COACH, case_id)
    assert coach["participant"]["name"] == NAME
    assert coach["participant"]["contact"] == "Annaberg, Tel. 0"
    assert view(agencies, JC, case_id)["participant"]["name"] == NAME


# (iv) -----------------------------------------------------------------------------------


def test_the_lead_sees_plan_and_employment_but_health_only_when_handed_over(
    agencies: Agencies,
) -> None:
    case_id = kopra(agencies)
    agencies.consent(CLINIC, case_id, [JC], ["health"], at=ago(26))
    note(agencies, CLINIC, case_id, HEALTH_NOTE, "health", at=ago(26))
    plan = {"goals": ["Teilzeitstelle"], "modules": ["Bewerbungstraining"]}
    agencies.ok(COACH, "plan.agreed", case_id, plan, at=ago(25))
    measure = {"measure_id": str(uuid4()), "kind": "internship", "title": "Praktikum Gärtnerei"}
    agencies.ok(COACH, "measure.started", case_id, measure, at=ago(24))
    employment = {"employer": "Gärtnerei Grünwerk", "kind": "employment", "start_date": ago(1)[:10]}
    agencies.ok(COACH, "employment.started", case_id, employment, at=ago(1))

    lead = view(agencies, JC, case_id)
    assert lead["plan"]["goals"] == ["Teilzeitstelle"]
    assert [m["title"] for m in lead["measures"]] == ["Praktikum Gärtnerei"]
    assert lead["employment"]["employer"] == "Gärtnerei Grünwerk"
    assert {"plan", "employment_history"} <= set(lead["categories_shown"])
    assert texts(lead) == []  # a consent for health, but no handover carried it
    assert "health" not in lead["categories_shown"]
    assert HEALTH_NOTE not in history(agencies, JC, case_id).text

    report = agencies.offer(CLINIC, case_id, JC, "discharge", ["health"], at=ago(0.5))
    assert texts(view(agencies, JC, case_id)) == [HEALTH_NOTE]
    agencies.ok(JC, "handover.accepted", case_id, {"handover_id": report}, at=ago(0.4))
    carried = view(agencies, JC, case_id)
    assert texts(carried) == [HEALTH_NOTE]
    assert "health" in carried["categories_shown"]


# (v) ------------------------------------------------------------------------------------


def test_after_revocation_the_coachs_history_shows_no_health_text(agencies: Agencies) -> None:
    case_id = kopra(agencies)
    consent = agencies.consent(CLINIC, case_id, [COACH], ["health"], at=ago(20))
    report = agencies.offer(CLINIC, case_id, COACH, "discharge", ["health"], at=ago(20))
    agencies.ok(COACH, "handover.accepted", case_id, {"handover_id": report}, at=ago(19))
    note(agencies, COACH, case_id, HEALTH_NOTE, "health", at=ago(19))
    assert HEALTH_NOTE in history(agencies, COACH, case_id).text
    assert texts(view(agencies, COACH, case_id)) == [HEALTH_NOTE]

    agencies.ok(JC, "consent.revoked", case_id, {"consent_id": consent}, at=ago(1))

    assert texts(view(agencies, COACH, case_id)) == []
    items = history(agencies, COACH, case_id).json()["items"]
    notes = [i for i in items if i["type"] == "NoteAdded"]
    assert notes, "the coach's own act stays in its history"
    assert all("text" not in i["payload"] for i in notes)
    assert HEALTH_NOTE not in str(items)
    # The auditor still sees everything.
    auditor = agencies.api.get(f"/v1/cases/{case_id}/history", headers=agencies.tokens.audit())
    assert HEALTH_NOTE in auditor.text


# A note's source --------------------------------------------------------------------


def test_a_coachs_own_note_is_not_the_clinics_because_a_consent_names_the_coach(
    agencies: Agencies,
) -> None:
    """Before, a note's source came from consents alone: a coach named in the clinic's
    health consent (but handed no health data) wrote a health note, and the clinic, as
    its supposed source, saw the coach's own note. Now only a handover that carried the
    category makes the note the sender's data."""
    case_id = kopra(agencies)
    agencies.consent(CLINIC, case_id, [COACH], ["health"], at=ago(20))
    own = "Eigene Beobachtung: müde am Morgen"
    note(agencies, COACH, case_id, own, "health", at=ago(19))

    assert own in texts(view(agencies, COACH, case_id))  # the author's own data
    assert own not in texts(view(agencies, CLINIC, case_id))
    assert own not in history(agencies, CLINIC, case_id).text

    # Once a handover carried health to the coach, what it writes down is the clinic's.
    report = agencies.offer(CLINIC, case_id, COACH, "discharge", ["health"], at=ago(15))
    agencies.ok(COACH, "handover.accepted", case_id, {"handover_id": report}, at=ago(14))
    handed = "Laut Entlassbericht: Belastbarkeit vier Stunden"
    note(agencies, COACH, case_id, handed, "health", at=ago(13))
    assert handed in texts(view(agencies, CLINIC, case_id))
