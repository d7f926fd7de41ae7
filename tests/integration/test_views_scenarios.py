"""The views after DOMAIN.md's five scenarios, on both stores.

Each scenario is recorded through the application service (``services.demo``), the
views are caught up, and inbox, caseload, case view per agency, audit trail and
dashboard are read through ``ViewQueries`` with an injected reading moment.
Consent revocation and overdue handovers are checked on small cases of their own.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from domain.errors import ConsentMissing, DomainError
from services.bootstrap import Hub, build_hub
from services.demo import CET, demo_id, load_demo, register_demo_agencies, scenarios
from services.errors import ServiceError
from services.settings import Settings
from services.views.queries import ViewQueries
from services.views.verify import verify_chain
from tests.factories import T0, consent, decide, message, offer, opened
from tests.view_helpers import (
    CHAMBER,
    CLINIC,
    COACH,
    JOBCENTER,
    expected_chain,
    iso,
    register_test_agencies,
    snapshot,
    stable_id,
)

ST = "statutory_task"
S1 = datetime(2026, 2, 2, 9, tzinfo=CET)
S2 = datetime(2026, 3, 2, 10, tzinfo=CET)
S3 = datetime(2025, 10, 6, 8, tzinfo=CET)  # ends before today: no occurred_at in the future
S4 = datetime(2026, 4, 6, 9, tzinfo=CET)
S5 = datetime(2025, 1, 13, 9, tzinfo=CET)


def _case(number: int) -> str:
    return str(demo_id(f"s{number}/case"))


def _id(number: int, name: str) -> str:
    return str(demo_id(f"s{number}/{name}"))


def _play(hub: Hub, number: int, stop: int | None = None, start: int = 0) -> None:
    """Record steps ``start:stop`` of scenario ``number`` and catch the views up."""
    register_demo_agencies(hub.registry)
    scenario = next(s for s in scenarios() if s.number == number)
    for step in scenario.steps[start:stop]:
        if step.expect_refusal is None:
            hub.messages.record_raw(step.message)
            continue
        with pytest.raises((DomainError, ServiceError)) as refusal:
            hub.messages.record_raw(step.message)
        assert refusal.value.code == step.expect_refusal
    hub.views.catch_up()


def _load_all(hub: Hub) -> None:
    list(load_demo(hub.registry, hub.messages))
    hub.views.catch_up()


def _at(start: datetime, days: float, hours: float = 0) -> datetime:
    return start + timedelta(days=days, hours=hours)


def _view(hub: Hub, case_id: str, agency: str, at: datetime) -> dict[str, Any]:
    """``agency``'s case view at ``at``: filtered from the stored view, then decrypted
    (the views hold personal fields only as ciphertext)."""
    return hub.cipher.reveal(hub.queries.case_for(case_id, agency, at))


# ---- inbox and caseload, step by step ------------------------------------------------


def test_scenario_1_inbox_and_caseload_follow_the_handovers(hub: Hub) -> None:
    case = _case(1)
    _play(hub, 1, stop=3)  # opened, consent, discharge offered on day 0

    discharge = {
        "handover_id": _id(1, "discharge"),
        "case_id": case,
        "kind": "discharge",
        "from_agency": "klinik-oder-spree",
        "offered_at": "2026-02-02T09:00:00+01:00",
        "due_at": "2026-02-09T09:00:00+01:00",  # 7 days: the default policy
    }
    assert hub.queries.inbox("jc-oder-spree", _at(S1, 6)) == {
        "items": [{**discharge, "overdue": False}]
    }
    assert hub.queries.inbox("jc-oder-spree", _at(S1, 7, hours=1)) == {
        "items": [{**discharge, "overdue": True}]
    }
    assert hub.queries.inbox("klinik-oder-spree", _at(S1, 6)) == {"items": []}
    row = {
        "case_id": case,
        "programme": "G-A-L",
        "site": "Beeskow",
        "stage": "opened",
        "lead_agency": "klinik-oder-spree",
        "coach": None,
        "last_activity_at": "2026-02-02T09:00:00+01:00",
    }
    assert hub.queries.caseload("jc-oder-spree") == {
        "items": [{**row, "next_due_at": "2026-02-09T09:00:00+01:00"}],
        "next": None,
    }
    assert hub.queries.caseload("klinik-oder-spree")["items"] == [{**row, "next_due_at": None}]
    assert hub.queries.caseload("hwk-ffo") == {"items": [], "next": None}

    _play(hub, 1, start=3, stop=4)  # accepted on day 3: the Jobcenter becomes lead
    assert hub.queries.inbox("jc-oder-spree", _at(S1, 8)) == {"items": []}
    assert hub.queries.caseload("jc-oder-spree")["items"][0] == {
        **row,
        "lead_agency": "jc-oder-spree",
        "next_due_at": None,
        "last_activity_at": "2026-02-05T09:00:00+01:00",
    }

    _play(hub, 1, start=4, stop=7)  # placement support offered to the chamber on day 12
    assert hub.queries.inbox("hwk-ffo", _at(S1, 20)) == {
        "items": [
            {
                "handover_id": _id(1, "placement"),
                "case_id": case,
                "kind": "placement_support",
                "from_agency": "jc-oder-spree",
                "offered_at": "2026-02-14T09:00:00+01:00",
                "due_at": "2026-02-28T09:00:00+01:00",  # 14 days
                "overdue": False,
            }
        ]
    }
    assert [r["next_due_at"] for r in hub.queries.caseload("hwk-ffo")["items"]] == [
        "2026-02-28T09:00:00+01:00"
    ]

    _play(hub, 1, start=7)
    final = {
        **row,
        "stage": "closed",
        "lead_agency": "jc-oder-spree",
        "next_due_at": None,
        "last_activity_at": "2026-10-04T09:00:00+01:00",
    }
    for agency in ("klinik-oder-spree", "jc-oder-spree", "hwk-ffo"):
        assert hub.queries.inbox(agency, _at(S1, 400)) == {"items": []}
        assert hub.queries.caseload(agency) == {"items": [final], "next": None}


def test_scenario_2_the_drv_inbox_runs_from_its_own_receipt(hub: Hub) -> None:
    case = _case(2)
    _play(hub, 2, stop=3)
    assert hub.queries.inbox("aa-trier", _at(S2, 1)) == {
        "items": [
            {
                "handover_id": _id(2, "reha-1"),
                "case_id": case,
                "kind": "rehab_application",
                "from_agency": "jc-trier",
                "offered_at": "2026-03-02T10:00:00+01:00",
                "due_at": "2026-03-16T10:00:00+01:00",  # § 14 Abs. 1: two weeks
                "overdue": False,
            }
        ]
    }

    _play(hub, 2, start=3, stop=5)  # forwarded on day 9; the second forward is refused
    assert hub.queries.inbox("aa-trier", _at(S2, 10)) == {"items": []}
    drv_item = {
        "handover_id": _id(2, "reha-2"),
        "case_id": case,
        "kind": "rehab_application",
        "from_agency": "aa-trier",
        "offered_at": "2026-03-11T10:00:00+01:00",
        "due_at": "2026-03-25T10:00:00+01:00",
    }
    assert hub.queries.inbox("drv-rlp", _at(S2, 11)) == {"items": [{**drv_item, "overdue": False}]}
    # 2026-03-16 (the first agency's deadline) has passed; the DRV's own has not.
    assert hub.queries.inbox("drv-rlp", _at(S2, 15)) == {"items": [{**drv_item, "overdue": False}]}
    assert hub.queries.inbox("drv-rlp", _at(S2, 24)) == {"items": [{**drv_item, "overdue": True}]}
    assert [r["next_due_at"] for r in hub.queries.caseload("drv-rlp")["items"]] == [
        "2026-03-25T10:00:00+01:00"
    ]
    assert [r["next_due_at"] for r in hub.queries.caseload("aa-trier")["items"]] == [None]

    _play(hub, 2, start=5, stop=6)  # accepted on day 12: the decision is due next
    # New rule (docs/authority-and-time.md, § 14): an accepted application awaiting
    # its decision stays in the receiver's inbox, due at the decision's date, and is
    # overdue after it. (It used to leave the inbox on acceptance.)
    decision_item = {**drv_item, "due_at": "2026-04-01T10:00:00+01:00"}
    assert hub.queries.inbox("drv-rlp", _at(S2, 13)) == {
        "items": [{**decision_item, "overdue": False}]
    }
    assert hub.queries.inbox("drv-rlp", _at(S2, 31)) == {
        "items": [{**decision_item, "overdue": True}]
    }
    assert [r["next_due_at"] for r in hub.queries.caseload("drv-rlp")["items"]] == [
        "2026-04-01T10:00:00+01:00"  # § 14 Abs. 2: three weeks from day 9
    ]
    assert hub.queries.dashboard(_at(S2, 31))["open_offers"] == [
        {"agency": "drv-rlp", "open": 1, "overdue": 1}
    ]

    _play(hub, 2, start=6)  # decided (rehab.decided) on day 25: it leaves the inbox
    assert hub.queries.inbox("drv-rlp", _at(S2, 31)) == {"items": []}
    assert hub.queries.dashboard(_at(S2, 31))["open_offers"] == []
    for agency in ("jc-trier", "aa-trier", "drv-rlp"):
        assert hub.queries.caseload(agency) == {
            "items": [
                {
                    "case_id": case,
                    "programme": "Inklusionsinitiative Trier",
                    "site": "Trier-Nord",
                    "stage": "opened",
                    "lead_agency": "jc-trier",
                    "coach": None,
                    "next_due_at": None,
                    "last_activity_at": "2026-03-27T10:00:00+01:00",  # the decision
                }
            ],
            "next": None,
        }
    handovers = _view(hub, case, "drv-rlp", _at(S2, 30))["handovers"]
    assert [(h["handover_id"], h["state"]) for h in handovers] == [
        (_id(2, "reha-1"), "forwarded"),
        (_id(2, "reha-2"), "completed"),
    ]
    assert _id(2, "reha-3") not in {h["handover_id"] for h in handovers}


def test_scenario_3_caseload_shows_stage_coach_and_places(hub: Hub) -> None:
    case = _case(3)
    _play(hub, 3, stop=3)
    assert hub.queries.inbox("coach-trier", _at(S3, 1)) == {
        "items": [
            {
                "handover_id": _id(3, "assignment"),
                "case_id": case,
                "kind": "assignment",
                "from_agency": "jc-trier",
                "offered_at": "2025-10-06T08:00:00+01:00",
                "due_at": "2025-10-13T08:00:00+01:00",
                "overdue": False,
            }
        ]
    }

    _play(hub, 3, start=3, stop=8)  # accepted, coach assigned, information meeting, agreement
    expected = {
        "case_id": case,
        "programme": "Inklusionsinitiative Trier",
        "site": "Trier-Ehrang",
        "stage": "active",
        "lead_agency": "jc-trier",
        "coach": "coach-mueller",
        "next_due_at": None,
        "last_activity_at": "2025-10-14T08:00:00+01:00",
    }
    assert hub.queries.caseload("coach-trier") == {"items": [expected], "next": None}
    assert hub.queries.caseload("jc-trier") == {"items": [expected], "next": None}
    queries = ViewQueries(hub.view_store, {"Inklusionsinitiative Trier": {"Trier-Ehrang": 150}})
    dashboard = queries.dashboard(_at(S3, 9))
    assert dashboard["places"] == [
        {
            "programme": "Inklusionsinitiative Trier",
            "site": "Trier-Ehrang",
            "used": 1,
            "capacity": 150,
        }
    ]
    assert dashboard["cases_by_stage"] == [
        {
            "programme": "Inklusionsinitiative Trier",
            "site": "Trier-Ehrang",
            "stage": "active",
            "count": 1,
        }
    ]

    _play(hub, 3, start=8)
    final = {
        **expected,
        "stage": "closed",
        "last_activity_at": "2026-10-31T08:00:00+01:00",
    }
    assert hub.queries.caseload("coach-trier") == {"items": [final], "next": None}
    assert queries.dashboard(_at(S3, 400))["places"][0]["used"] == 0  # moved away
    view = _view(hub, case, "coach-trier", _at(S3, 100))
    assert view["participant"] == {
        "pseudonym": "TR-0107",
        "name": "Lena Probst",
        "contact": "lena.probst@example.org",
    }
    assert view["plan"]["modules"] == ["Bewerbungstraining", "Praktikum"]
    assert [a["state"] for a in view["appointments"]] == ["held", "held"]
    # The consent ends on day 5 * 365: afterwards the provider sees the pseudonym only.
    assert _view(hub, case, "coach-trier", _at(S3, 5 * 365 - 1))["participant"]["name"] == (
        "Lena Probst"
    )
    assert _view(hub, case, "coach-trier", _at(S3, 5 * 365 + 1))["participant"] == {
        "pseudonym": "TR-0107"
    }


def test_scenarios_4_and_5_inbox_and_caseload(hub: Hub) -> None:
    case4, case5 = _case(4), _case(5)
    _play(hub, 4, stop=6)  # the Jobcenter assigns to the coordination point on day 5
    assert hub.queries.inbox("kopra-erzgebirge", _at(S4, 6)) == {
        "items": [
            {
                "handover_id": _id(4, "assignment"),
                "case_id": case4,
                "kind": "assignment",
                "from_agency": "jc-erzgebirge",
                "offered_at": "2026-04-11T09:00:00+01:00",
                "due_at": "2026-04-18T09:00:00+01:00",
                "overdue": False,
            }
        ]
    }
    # Accepted on day 7; the clinic's report offered on day 8, as a ``discharge`` (a
    # clinic may not send placement_support): due in 7 days, overdue a day later.
    _play(hub, 4, start=6, stop=9)
    assert [
        (i["handover_id"], i["kind"], i["from_agency"], i["due_at"], i["overdue"])
        for i in hub.queries.inbox("kopra-erzgebirge", _at(S4, 16))["items"]
    ] == [
        (
            _id(4, "report-1"),
            "discharge",
            "klinik-erzgebirge",
            "2026-04-21T09:00:00+01:00",
            True,
        )
    ]
    _play(hub, 4, start=9)
    expected4 = {
        "case_id": case4,
        "programme": "KoPrA",
        "site": "Annaberg-Buchholz",
        "stage": "opened",  # accepted, but no participation agreement yet
        "lead_agency": "jc-erzgebirge",  # since the discharge was accepted
        "coach": None,
        "next_due_at": None,
        "last_activity_at": "2026-05-06T09:00:00+01:00",  # the revocation
    }
    for agency in ("klinik-erzgebirge", "jc-erzgebirge", "kopra-erzgebirge"):
        assert hub.queries.caseload(agency) == {"items": [expected4], "next": None}
        assert hub.queries.inbox(agency, _at(S4, 40)) == {"items": []}

    _play(hub, 5, stop=3)
    assert [i["due_at"] for i in hub.queries.inbox("ifd-aachen", _at(S5, 1))["items"]] == [
        "2025-01-20T09:00:00+01:00"
    ]
    _play(hub, 5, start=3)
    expected5 = {
        "case_id": case5,
        "programme": "MIAR",
        "site": "Aachen",
        "stage": "closed",
        "lead_agency": "jc-aachen",
        "coach": None,
        "next_due_at": None,
        "last_activity_at": "2026-10-15T09:00:00+01:00",  # the erasure
    }
    assert hub.queries.caseload("jc-aachen") == {"items": [expected5], "next": None}
    assert hub.queries.caseload("ifd-aachen") == {"items": [expected5], "next": None}
    assert hub.queries.inbox("ifd-aachen", _at(S5, 700)) == {"items": []}


def test_oldest_offer_comes_first_whatever_its_id(hub: Hub) -> None:
    register_test_agencies(hub)
    case = stable_id("ordering")
    hub.messages.record_raw(opened(JOBCENTER, case))
    # Three offers on days 2, 0 and 1, with ids sorting opposite to their age.
    # placement_support goes to a chamber (or integration office), not a coach (rule 6).
    ids = {day: UUID(f"{9 - day:08d}-0000-4000-8000-000000000000") for day in (0, 1, 2)}
    for day in (2, 0, 1):
        hub.messages.record_raw(
            offer(JOBCENTER, case, ids[day], kind="placement_support", to=CHAMBER, day=day)
        )
    hub.views.catch_up()

    items = hub.queries.inbox(CHAMBER, T0 + timedelta(days=14, hours=12))["items"]

    assert [i["handover_id"] for i in items] == [str(ids[0]), str(ids[1]), str(ids[2])]
    assert [i["offered_at"] for i in items] == [iso(0), iso(1), iso(2)]
    assert [i["due_at"] for i in items] == [iso(14), iso(15), iso(16)]
    assert [i["overdue"] for i in items] == [True, False, False]
    assert hub.queries.inbox(JOBCENTER, T0)["items"] == []


# ---- case view per agency ----------------------------------------------------------------


def test_scenario_1_case_view_per_agency_follows_the_consents(hub: Hub) -> None:
    _load_all(hub)
    case = _case(1)
    at = _at(S1, 100)

    clinic = _view(hub, case, "klinik-oder-spree", at)
    jobcenter = _view(hub, case, "jc-oder-spree", at)
    chamber = _view(hub, case, "hwk-ffo", at)

    assert clinic["participant"] == {
        "pseudonym": "GAL-0001",
        "name": "Erika Musterfrau",
        "birth_date": "1989-04-12",
        "contact": "Beeskow, Tel. 03366 000000",
    }
    # The lead Jobcenter holds its participant's identity and contact by its task.
    assert jobcenter["participant"] == clinic["participant"]
    # The chamber received identity (not contact) with the lead's completed placement
    # handover, under the lead's consent gal-0001-jc-hwk.
    assert chamber["participant"] == {
        "pseudonym": "GAL-0001",
        "name": "Erika Musterfrau",
        "birth_date": "1989-04-12",
    }
    # The stored views hold the personal fields only as ciphertext.
    stored = json.dumps(snapshot(hub.view_store), ensure_ascii=False)
    for personal in ("Erika", "1989-04-12", "03366", "Tischlerei Beispiel"):
        assert personal not in stored
    # The Jobcenter's employment data reaches the chamber under gal-0001-jc-hwk only.
    assert jobcenter["employment"]["employer"] == "Tischlerei Beispiel GmbH"
    assert chamber["employment"]["employer"] == "Tischlerei Beispiel GmbH"
    assert clinic["employment"] is None
    assert {c["consent_id"] for c in chamber["consents"]} == {"gal-0001-jc-hwk"}
    assert {c["consent_id"] for c in clinic["consents"]} == {"gal-0001-klinik-jc"}
    assert jobcenter["agencies"] == ["hwk-ffo", "jc-oder-spree", "klinik-oder-spree"]
    assert (jobcenter["stage"], jobcenter["outcome"]) == ("closed", "employed")

    # After the consents end (both on day 5 * 365) the chamber loses what they allowed;
    # the lead keeps its participant by its task, but not the clinic's health data.
    late = _at(S1, 5 * 365 + 1)
    assert _view(hub, case, "jc-oder-spree", late)["participant"] == clinic["participant"]
    assert "health" not in _view(hub, case, "jc-oder-spree", late)["categories_shown"]
    assert _view(hub, case, "hwk-ffo", late)["participant"] == {"pseudonym": "GAL-0001"}
    assert _view(hub, case, "hwk-ffo", late)["employment"] is None


def test_scenario_4_health_note_visible_to_the_coach_before_revocation(hub: Hub) -> None:
    _load_all(hub)
    case = _case(4)

    before = _view(hub, case, "kopra-erzgebirge", _at(S4, 10))

    assert [(n["category"], n["agency"]) for n in before["notes"]] == [
        ("health", "kopra-erzgebirge")
    ]
    # Only the handovers it sent or received: that the clinic discharged the
    # participant to the Jobcenter is not the coach's to know (DOMAIN "Views").
    assert [h["handover_id"] for h in before["handovers"]] == [
        _id(4, "assignment"),
        _id(4, "report-1"),
    ]
    lead = _view(hub, case, "jc-erzgebirge", _at(S4, 10))
    assert [h["handover_id"] for h in lead["handovers"]] == [
        _id(4, "discharge"),
        _id(4, "assignment"),
        _id(4, "report-1"),
    ]
    revoked = next(c for c in before["consents"] if c["consent_id"] == "erz-0815-health-kopra")
    assert revoked["revoked_at"] == "2026-05-06T09:00:00+01:00"
    # The refused second report left no trace in any view.
    assert hub.queries.inbox("kopra-erzgebirge", _at(S4, 36)) == {"items": []}
    assert _id(4, "report-2") not in json.dumps(snapshot(hub.view_store))


def test_scenario_4_coach_view_shows_no_health_data_after_revocation(hub: Hub) -> None:
    _load_all(hub)

    after = _view(hub, _case(4), "kopra-erzgebirge", _at(S4, 31))

    assert [n for n in after["notes"] if n["category"] == "health"] == []


def test_scenario_5_every_view_shows_the_personal_fields_as_erased(hub: Hub) -> None:
    _load_all(hub)
    case = _case(5)

    view = _view(hub, case, "jc-aachen", _at(S5, 700))
    provider = _view(hub, case, "ifd-aachen", _at(S5, 700))

    assert view["participant"] == {
        "pseudonym": "AC-0300",
        "name": "[erased]",
        "birth_date": "[erased]",
        "contact": "[erased]",
        "erased": True,
    }
    assert view["employment"]["employer"] == "[erased]"
    assert [n["text"] for n in provider["notes"]] == ["[erased]"]
    assert [h["state"] for h in view["handovers"]] == ["completed"]  # none open at closure
    stored = json.dumps(hub.queries.case_doc(case), ensure_ascii=False)
    for personal in ("Sabine", "Platzhalter", "1984-02-29", "0241", "Grünwerk", "Bewerbung"):
        assert personal not in stored
    assert verify_chain(hub.app.recorder, hub.view_store).ok


# ---- audit trail ---------------------------------------------------------------------------

AUDIT = {
    1: [
        ("CaseOpened", "klinik-oder-spree", "sozialdienst-1", ST),
        ("ConsentGranted", "klinik-oder-spree", "sozialdienst-1", "consent:gal-0001-klinik-jc"),
        ("HandoverOffered", "klinik-oder-spree", "sozialdienst-1", "consent:gal-0001-klinik-jc"),
        ("HandoverAccepted", "jc-oder-spree", "eingliederung-7", ST),
        ("HandoverCompleted", "jc-oder-spree", "eingliederung-7", ST),
        ("ConsentGranted", "jc-oder-spree", "eingliederung-7", "consent:gal-0001-jc-hwk"),
        ("HandoverOffered", "jc-oder-spree", "eingliederung-7", "consent:gal-0001-jc-hwk"),
        ("HandoverAccepted", "hwk-ffo", "akquise-2", ST),
        ("MeasureStarted", "hwk-ffo", "akquise-2", ST),
        ("MeasureEnded", "hwk-ffo", "akquise-2", ST),
        ("HandoverCompleted", "hwk-ffo", "akquise-2", ST),
        ("EmploymentStarted", "jc-oder-spree", "eingliederung-7", ST),
        ("AftercareStarted", "jc-oder-spree", "eingliederung-7", ST),
        ("AftercareEnded", "jc-oder-spree", "eingliederung-7", ST),
        ("CaseClosed", "jc-oder-spree", "eingliederung-7", ST),
    ],
    2: [
        ("CaseOpened", "jc-trier", "fallmanager-3", ST),
        ("ConsentGranted", "jc-trier", "fallmanager-3", "consent:tr-0042-reha"),
        ("HandoverOffered", "jc-trier", "fallmanager-3", "consent:tr-0042-reha"),
        ("HandoverForwarded", "aa-trier", "reha-team-1", "consent:tr-0042-reha"),
        ("HandoverAccepted", "drv-rlp", "sachbearbeitung-5", ST),
        ("RehabDecided", "drv-rlp", "sachbearbeitung-5", ST),  # § 14: completed by its decision
    ],
    3: [
        ("CaseOpened", "jc-trier", "fallmanager-3", ST),
        ("ConsentGranted", "jc-trier", "fallmanager-3", "consent:tr-0107-coach"),
        ("HandoverOffered", "jc-trier", "fallmanager-3", "consent:tr-0107-coach"),
        ("HandoverAccepted", "coach-trier", "leitung-1", ST),
        ("CoachAssigned", "coach-trier", "leitung-1", ST),
        ("AppointmentScheduled", "coach-trier", "coach-mueller", ST),
        ("AppointmentHeld", "coach-trier", "coach-mueller", ST),
        ("AgreementSigned", "coach-trier", "coach-mueller", ST),
        ("AppointmentScheduled", "coach-trier", "coach-mueller", ST),
        ("AppointmentHeld", "coach-trier", "coach-mueller", ST),
        ("PlanAgreed", "coach-trier", "coach-mueller", ST),
        ("MeasureStarted", "coach-trier", "coach-mueller", ST),
        ("MeasureEnded", "coach-trier", "coach-mueller", ST),
        ("AssignmentExtended", "jc-trier", "fallmanager-3", ST),
        ("NoteAdded", "coach-trier", "coach-mueller", ST),
        ("HandoverCompleted", "coach-trier", "coach-mueller", ST),
        ("CaseClosed", "jc-trier", "fallmanager-3", ST),
    ],
    4: [
        ("CaseOpened", "klinik-erzgebirge", "sozialdienst-2", ST),
        ("ConsentGranted", "klinik-erzgebirge", "sozialdienst-2", "consent:erz-0815-jc"),
        ("HandoverOffered", "klinik-erzgebirge", "sozialdienst-2", "consent:erz-0815-jc"),
        ("HandoverAccepted", "jc-erzgebirge", "integration-4", ST),
        ("ConsentGranted", "jc-erzgebirge", "integration-4", "consent:erz-0815-kopra"),
        ("HandoverOffered", "jc-erzgebirge", "integration-4", "consent:erz-0815-kopra"),
        ("HandoverAccepted", "kopra-erzgebirge", "coach-schmidt", ST),
        (
            "ConsentGranted",
            "klinik-erzgebirge",
            "sozialdienst-2",
            "consent:erz-0815-health-kopra",
        ),
        (
            "HandoverOffered",
            "klinik-erzgebirge",
            "sozialdienst-2",
            "consent:erz-0815-health-kopra",
        ),
        ("HandoverAccepted", "kopra-erzgebirge", "coach-schmidt", ST),
        ("NoteAdded", "kopra-erzgebirge", "coach-schmidt", ST),
        # Revoked through the lead Jobcenter: the coach (a recipient) may not revoke the
        # clinic's consent, only its source or the lead may.
        ("ConsentRevoked", "jc-erzgebirge", "integration-4", "consent:erz-0815-health-kopra"),
    ],
    5: [
        ("CaseOpened", "jc-aachen", "fallmanager-9", ST),
        ("ConsentGranted", "jc-aachen", "fallmanager-9", "consent:ac-0300-ifd"),
        ("HandoverOffered", "jc-aachen", "fallmanager-9", "consent:ac-0300-ifd"),
        ("HandoverAccepted", "ifd-aachen", "coach-klein", ST),
        ("AgreementSigned", "ifd-aachen", "coach-klein", ST),
        ("NoteAdded", "ifd-aachen", "coach-klein", ST),
        ("EmploymentStarted", "jc-aachen", "fallmanager-9", ST),
        ("AftercareStarted", "jc-aachen", "fallmanager-9", ST),
        ("AftercareEnded", "jc-aachen", "fallmanager-9", ST),
        # The coach completes the assignment first: closure with open handovers is refused.
        ("HandoverCompleted", "ifd-aachen", "coach-klein", ST),
        ("CaseClosed", "jc-aachen", "fallmanager-9", ST),
        ("ParticipantErased", "jc-aachen", "datenschutz-1", ST),
    ],
}


def test_audit_trail_of_every_scenario_case(hub: Hub) -> None:
    _load_all(hub)
    chain = expected_chain(hub)
    scenario_steps = {s.number: s for s in scenarios()}

    for number, expected in AUDIT.items():
        trail = hub.queries.audit_trail(_case(number))
        assert [(r["type"], r["agency"], r["actor"], r["legal_basis"]) for r in trail] == expected
        assert all(r["hash"] == chain[r["position"]] for r in trail), number
        positions = [r["position"] for r in trail]
        assert positions == list(range(positions[0], positions[0] + len(positions)))
        recorded = [
            s.message["occurred_at"]
            for s in scenario_steps[number].steps
            if s.expect_refusal is None
        ]
        assert [datetime.fromisoformat(r["occurred_at"]) for r in trail] == [
            datetime.fromisoformat(t) for t in recorded
        ]
        assert all(datetime.fromisoformat(r["recorded_at"]).tzinfo for r in trail)

    # The agencies' registrations are chained too, without a case.
    everything = hub.view_store.query("SELECT position, case_id, hash FROM view_audit")
    assert len(everything) == len(chain) == 74  # 62 case events, 12 registrations
    assert {r["position"]: r["hash"] for r in everything} == chain
    assert sum(1 for r in everything if r["case_id"] is None) == 12


# ---- dashboard ---------------------------------------------------------------------------


def test_dashboard_after_all_five_scenarios(hub: Hub) -> None:
    _load_all(hub)
    now = datetime(2027, 6, 1, tzinfo=CET)
    capacity = {
        "Inklusionsinitiative Trier": dict.fromkeys(("Trier-Ehrang", "Trier-Nord"), 150 // 4)
    }

    figures = ViewQueries(hub.view_store, capacity).dashboard(now)

    assert figures["generated_at"] == now.isoformat()

    def stage(programme: str, site: str, stage: str) -> dict[str, Any]:
        return {"programme": programme, "site": site, "stage": stage, "count": 1}

    assert figures["cases_by_stage"] == [
        stage("G-A-L", "Beeskow", "closed"),
        stage("Inklusionsinitiative Trier", "Trier-Ehrang", "closed"),
        stage("Inklusionsinitiative Trier", "Trier-Nord", "opened"),
        stage("KoPrA", "Annaberg-Buchholz", "opened"),
        stage("MIAR", "Aachen", "closed"),
    ]

    def handovers(programme: str, frm: str, to: str, kind: str, state: str) -> dict[str, Any]:
        return {
            "programme": programme,
            "from_agency": frm,
            "to_agency": to,
            "kind": kind,
            "state": state,
            "count": 1,
        }

    trier = "Inklusionsinitiative Trier"
    assert figures["handovers_by_state"] == [
        handovers("G-A-L", "jc-oder-spree", "hwk-ffo", "placement_support", "completed"),
        handovers("G-A-L", "klinik-oder-spree", "jc-oder-spree", "discharge", "completed"),
        handovers(trier, "aa-trier", "drv-rlp", "rehab_application", "completed"),
        handovers(trier, "jc-trier", "aa-trier", "rehab_application", "forwarded"),
        handovers(trier, "jc-trier", "coach-trier", "assignment", "completed"),
        handovers("KoPrA", "jc-erzgebirge", "kopra-erzgebirge", "assignment", "accepted"),
        handovers("KoPrA", "klinik-erzgebirge", "jc-erzgebirge", "discharge", "accepted"),
        # The clinic's report to the coordination point is a discharge (rule 6).
        handovers("KoPrA", "klinik-erzgebirge", "kopra-erzgebirge", "discharge", "accepted"),
        # Completed before the closure (closing with open handovers is refused).
        handovers("MIAR", "jc-aachen", "ifd-aachen", "assignment", "completed"),
    ]

    def pair(frm: str, to: str, hours: float) -> dict[str, Any]:
        return {
            "from_agency": frm,
            "to_agency": to,
            "count": 1,
            "median_hours": hours,
            "p90_hours": hours,
        }

    assert figures["offer_to_accept"] == [
        pair("aa-trier", "drv-rlp", 72.0),  # from the DRV's own receipt on day 9
        pair("jc-aachen", "ifd-aachen", 72.0),
        pair("jc-erzgebirge", "kopra-erzgebirge", 48.0),
        pair("jc-oder-spree", "hwk-ffo", 96.0),
        pair("jc-trier", "coach-trier", 48.0),
        pair("klinik-erzgebirge", "jc-erzgebirge", 96.0),
        pair("klinik-erzgebirge", "kopra-erzgebirge", 24.0),
        pair("klinik-oder-spree", "jc-oder-spree", 72.0),
    ]
    # Scenario 2: the DRV decided on day 25, within three weeks of its receipt on day 9
    # (late, had the window run from the first receipt on day 0).
    assert figures["rehab_decisions"] == [{"agency": "drv-rlp", "met": 1, "missed": 0}]
    # Scenario 5: accepted 2025-01-16, employed from 2025-04-14.
    assert figures["assignment_to_employment"] == [
        {"programme": "MIAR", "site": "Aachen", "count": 1, "median_days": 88}
    ]
    assert figures["employed_within_12_months"] == [
        {
            "programme": trier,
            "site": "Trier-Ehrang",
            "assigned": 1,
            "employed": 0,
            "share": 0.0,
        },
        {
            "programme": "KoPrA",
            "site": "Annaberg-Buchholz",
            "assigned": 1,
            "employed": 0,
            "share": 0.0,
        },
        {"programme": "MIAR", "site": "Aachen", "assigned": 1, "employed": 1, "share": 1.0},
    ]
    assert figures["places"] == [
        {"programme": trier, "site": "Trier-Ehrang", "used": 0, "capacity": 37},
        {"programme": trier, "site": "Trier-Nord", "used": 0, "capacity": 37},
        {"programme": "KoPrA", "site": "Annaberg-Buchholz", "used": 0, "capacity": None},
        {"programme": "MIAR", "site": "Aachen", "used": 0, "capacity": None},
    ]
    assert figures["open_offers"] == []


def test_dashboard_offer_to_accept_median_and_p90_per_agency_pair(hub: Hub) -> None:
    register_test_agencies(hub)
    for i in range(10):  # accepted after 1, 2, ... 10 days: 24 ... 240 hours
        case, handover = stable_id(f"pair-{i}"), stable_id(f"pair-{i}/h")
        hub.messages.record_raw(opened(JOBCENTER, case))
        hub.messages.record_raw(offer(JOBCENTER, case, handover, kind="assignment", to=COACH))
        hub.messages.record_raw(decide("handover.accepted", COACH, case, handover, day=i + 1))
    hub.views.catch_up()

    figures = hub.queries.dashboard(T0 + timedelta(days=30))

    assert figures["offer_to_accept"] == [
        {
            "from_agency": JOBCENTER,
            "to_agency": COACH,
            "count": 10,
            "median_hours": 132.0,
            "p90_hours": 218.4,
        }
    ]
    assert figures["places"] == [
        {"programme": "test-programme", "site": "-", "used": 0, "capacity": None}
    ]
    assert figures["employed_within_12_months"] == [
        {"programme": "test-programme", "site": "-", "assigned": 10, "employed": 0, "share": 0.0}
    ]


# ---- consent revoked -------------------------------------------------------------------------


def _clinic_case_with_health_data(hub: Hub) -> str:
    """A clinic's case: consent for health, contact and identity to the Jobcenter,
    a discharge carrying health and contact, and the clinic's own health note."""
    register_test_agencies(hub)
    case = stable_id("revocation")
    hub.messages.record_raw(
        opened(
            CLINIC,
            case,
            participant={"pseudonym": "R-1", "name": "Rita Muster", "contact": "Tel. 0000"},
        )
    )
    hub.messages.record_raw(
        consent(
            CLINIC,
            case,
            consent_id="r-1-health",
            categories=["health", "contact", "identity"],
            source=CLINIC,
            recipients=[JOBCENTER],
            valid_days=None,
        )
    )
    hub.messages.record_raw(
        offer(
            CLINIC,
            case,
            stable_id("revocation/discharge"),
            kind="discharge",
            to=JOBCENTER,
            categories=["health", "contact"],
        )
    )
    hub.messages.record_raw(
        message("note.added", CLINIC, case, {"text": "Diagnose F32.1", "category": "health"}, day=1)
    )
    hub.messages.record_raw(
        decide("handover.accepted", JOBCENTER, case, stable_id("revocation/discharge"), day=2)
    )
    hub.messages.record_raw(
        message("consent.revoked", CLINIC, case, {"consent_id": "r-1-health"}, day=10)
    )
    hub.views.catch_up()
    return str(case)


def _personal(view: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    return view["participant"], [n["text"] for n in view["notes"]]


def test_revoked_consent_removes_the_data_from_the_recipients_view(hub: Hub) -> None:
    case = _clinic_case_with_health_data(hub)
    after = T0 + timedelta(days=11)

    # The Jobcenter accepted the discharge and leads: it keeps its participant's identity
    # and contact by its task; the health note only the consent allowed is gone.
    lead = _view(hub, case, JOBCENTER, after)
    assert _personal(lead) == (
        {"pseudonym": "R-1", "name": "Rita Muster", "contact": "Tel. 0000"},
        [],
    )
    assert "health" not in lead["categories_shown"]
    # The clinic is the source: its view is unchanged.
    assert _personal(_view(hub, case, CLINIC, after)) == (
        {"pseudonym": "R-1", "name": "Rita Muster", "contact": "Tel. 0000"},
        ["Diagnose F32.1"],
    )
    # What was handed over stays in the audit trail.
    trail = hub.queries.audit_trail(case)
    assert [r["legal_basis"] for r in trail if r["type"] == "HandoverOffered"] == [
        "consent:r-1-health"
    ]

    # The same after a rebuild from the events.
    hub.views.rebuild()
    assert _personal(_view(hub, case, JOBCENTER, after)) == _personal(lead)
    assert hub.queries.case_doc(case)["consents"]["r-1-health"]["revoked_at"] == iso(10)

    # The next handover carrying health is refused and leaves the views as they were.
    # (A discharge: a clinic may not send placement_support, which would be refused
    # for its kind before the consent is looked at.)
    before = snapshot(hub.view_store)
    with pytest.raises(ConsentMissing):
        hub.messages.record_raw(
            offer(
                CLINIC,
                stable_id("revocation"),
                stable_id("revocation/second"),
                kind="discharge",
                to=JOBCENTER,
                categories=["health"],
                day=12,
            )
        )
    hub.views.catch_up()
    assert snapshot(hub.view_store) == before


def test_recipient_sees_the_data_while_the_consent_held(hub: Hub) -> None:
    """Before the revocation is recorded, the recipient's view has the data."""
    register_test_agencies(hub)
    case_id = stable_id("before-revocation")
    hub.messages.record_raw(
        opened(CLINIC, case_id, participant={"pseudonym": "R-1", "name": "Rita Muster"})
    )
    hub.messages.record_raw(
        consent(
            CLINIC,
            case_id,
            consent_id="r-1-health",
            categories=["health", "identity"],
            source=CLINIC,
            recipients=[JOBCENTER],
            valid_days=None,
        )
    )
    hub.messages.record_raw(
        offer(
            CLINIC, case_id, stable_id("h"), kind="discharge", to=JOBCENTER, categories=["health"]
        )
    )
    hub.messages.record_raw(
        message("note.added", CLINIC, case_id, {"text": "Diagnose F32.1", "category": "health"})
    )
    hub.views.catch_up()

    view = _view(hub, str(case_id), JOBCENTER, T0 + timedelta(days=1))

    # The offered discharge carries health under the consent; the consent covers identity
    # too, but no handover carried it (and identity goes only with an accepted one).
    assert _personal(view) == ({"pseudonym": "R-1"}, ["Diagnose F32.1"])
    assert view["categories_shown"] == ["health"]
    # Before the consent's valid_from nothing is shown.
    assert _personal(_view(hub, str(case_id), JOBCENTER, T0 - timedelta(hours=1))) == (
        {"pseudonym": "R-1"},
        [],
    )


def test_read_as_of_before_the_revocation_still_shows_the_data(hub: Hub) -> None:
    case = _clinic_case_with_health_data(hub)

    view = _view(hub, case, JOBCENTER, T0 + timedelta(days=5))

    assert _personal(view) == (
        {"pseudonym": "R-1", "name": "Rita Muster", "contact": "Tel. 0000"},
        ["Diagnose F32.1"],
    )


# ---- overdue --------------------------------------------------------------------------------


def test_advancing_the_clock_past_the_due_date_flags_the_offer(hub: Hub) -> None:
    register_test_agencies(hub)
    case, handover = stable_id("overdue"), stable_id("overdue/h")
    hub.messages.record_raw(opened(JOBCENTER, case))
    hub.messages.record_raw(offer(JOBCENTER, case, handover, kind="assignment", to=COACH))
    hub.views.catch_up()
    due = T0 + timedelta(days=7)

    def read(now: datetime) -> tuple[list[bool], list[dict[str, Any]]]:
        items = hub.queries.inbox(COACH, now)["items"]
        return [i["overdue"] for i in items], hub.queries.dashboard(now)["open_offers"]

    assert read(due - timedelta(days=1)) == ([False], [{"agency": COACH, "open": 1, "overdue": 0}])
    assert read(due) == ([False], [{"agency": COACH, "open": 1, "overdue": 0}])
    assert read(due + timedelta(seconds=1)) == (
        [True],
        [{"agency": COACH, "open": 1, "overdue": 1}],
    )
    # The same instant written in another time zone.
    assert read(due.astimezone(CET) + timedelta(minutes=1))[0] == [True]
    assert hub.queries.inbox(COACH, due + timedelta(days=1))["items"][0]["due_at"] == iso(7)

    # Once accepted, the offer leaves the inbox and the overdue count.
    hub.messages.record_raw(decide("handover.accepted", COACH, case, handover, day=8))
    hub.views.catch_up()
    assert read(due + timedelta(days=2)) == ([], [])


def test_due_dates_come_from_the_programmes_deadline_policy(
    database_url: str, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(
        json.dumps(
            {
                "default": {"handovers": {"assignment": {"accept_days": 5}}},
                "programmes": {
                    "KoPrA": {"handovers": {"assignment": {"accept_days": 3}}},
                },
            }
        )
    )
    hub = build_hub(
        Settings(database_url=database_url, var_dir=tmp_path / "var", deadline_policy_file=policy)
    )
    try:
        register_test_agencies(hub)
        for name, programme in (("kopra", "KoPrA"), ("other", "MIAR")):
            case = stable_id(f"policy-{name}")
            hub.messages.record_raw(opened(JOBCENTER, case, programme=programme))
            hub.messages.record_raw(
                offer(JOBCENTER, case, stable_id(f"policy-{name}/h"), kind="assignment", to=COACH)
            )
        hub.views.catch_up()

        items = hub.queries.inbox(COACH, T0 + timedelta(days=4))["items"]

        due = {i["handover_id"]: (i["due_at"], i["overdue"]) for i in items}
        assert due == {
            str(stable_id("policy-kopra/h")): (iso(3), True),
            str(stable_id("policy-other/h")): (iso(5), False),
        }
        assert hub.queries.dashboard(T0 + timedelta(days=4))["open_offers"] == [
            {"agency": COACH, "open": 2, "overdue": 1}
        ]
    finally:
        hub.close()


def test_caseload_is_paged_in_case_id_order(hub: Hub) -> None:
    list(load_demo(hub.registry, hub.messages))
    hub.views.catch_up()
    everything = hub.queries.caseload("jc-trier")["items"]
    assert len(everything) == 2
    first = hub.queries.caseload("jc-trier", limit=1)
    assert first["items"] == everything[:1]
    assert first["next"] == everything[0]["case_id"]
    second = hub.queries.caseload("jc-trier", limit=1, after=first["next"])
    assert second == {"items": everything[1:], "next": None}
