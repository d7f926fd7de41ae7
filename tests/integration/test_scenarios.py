"""DOMAIN.md's five scenarios end to end through the application service, on both stores."""

from __future__ import annotations

from datetime import datetime, timedelta

from services.bootstrap import Hub
from services.demo import AGENCIES, demo_id, load_demo, scenarios
from services.replay import replay_case


def _state(hub: Hub, number: int) -> dict:
    return hub.cipher.reveal(replay_case(hub.app, demo_id(f"s{number}/case")))["state"]


def _handover(state: dict, number: int, name: str) -> dict:
    wanted = str(demo_id(f"s{number}/{name}"))
    return next(h for h in state["handovers"] if h["handover_id"] == wanted)


def test_all_five_scenarios_load_with_expected_outcomes(hub: Hub) -> None:
    reports = {r.number: r for r in load_demo(hub.registry, hub.messages)}

    assert len(hub.registry.all()) == len(AGENCIES)
    expected_steps = {s.number: len(s.steps) for s in scenarios()}
    for number, report in reports.items():
        assert report.duplicates == 0
        assert report.recorded + len(report.refused_as_expected) == expected_steps[number]

    # 1. Clinic to Jobcenter: lead passes to the Jobcenter, case closes employed.
    s1 = _state(hub, 1)
    assert (s1["stage"], s1["outcome"], s1["lead_agency"]) == (
        "closed",
        "employed",
        "jc-oder-spree",
    )
    assert _handover(s1, 1, "discharge")["state"] == "completed"
    assert _handover(s1, 1, "placement")["state"] == "completed"
    assert _handover(s1, 1, "discharge")["legal_basis"] == ["gal-0001-klinik-jc"]

    # 2. § 14: forwarded once on day 9, second forward refused, decided on day 25.
    assert reports[2].refused_as_expected == ["forward_limit_reached"]
    s2 = _state(hub, 2)
    first, second = _handover(s2, 2, "reha-1"), _handover(s2, 2, "reha-2")
    assert first["state"] == "forwarded"
    assert first["forwarded_to"] == second["handover_id"]
    assert second["forwarded_from"] == first["handover_id"]
    assert (second["from_agency"], second["to_agency"], second["state"]) == (
        "aa-trier",
        "drv-rlp",
        "completed",
    )
    received = datetime.fromisoformat(second["offered_at"])
    decided = datetime.fromisoformat(second["completed_at"])
    due = datetime.fromisoformat(second["decide_due_at"])
    assert due == received + timedelta(days=21)  # three weeks from the DRV's own receipt
    assert decided - received == timedelta(days=16)
    assert decided <= due  # the deadline was met, counted from the DRV's own receipt
    first_received = datetime.fromisoformat(first["offered_at"])
    assert decided > first_received + timedelta(days=21)  # from the first, it would be late
    assert second["decision"] == "granted"

    # 3. Trier: active after agreement, extended by three months once, moved away.
    s3 = _state(hub, 3)
    assert (s3["stage"], s3["outcome"]) == ("closed", "moved_away")
    assert s3["coach"] == "coach-mueller"
    assert s3["plan"]["modules"] == ["Bewerbungstraining", "Praktikum"]
    accepted = datetime.fromisoformat(_handover(s3, 3, "assignment")["decided_at"])
    ends = datetime.fromisoformat(s3["assignment_ends_at"])
    assert (ends.year - accepted.year) * 12 + ends.month - accepted.month == 15
    info = next(a for a in s3["appointments"] if a["kind"] == "information")
    assert info["state"] == "held"
    assert datetime.fromisoformat(info["at"]) - accepted <= timedelta(days=7)

    # 4. KoPrA: consent revoked, the next health handover refused.
    assert reports[4].refused_as_expected == ["consent_missing"]
    s4 = _state(hub, 4)
    revoked = next(c for c in s4["consents"] if c["consent_id"] == "erz-0815-health-kopra")
    assert revoked["revoked_at"] is not None
    assert str(demo_id("s4/report-2")) not in {h["handover_id"] for h in s4["handovers"]}
    assert s4["lead_agency"] == "jc-erzgebirge"

    # 5. Erasure: the sequence of handovers remains, personal fields are gone.
    s5 = _state(hub, 5)
    assert s5["erased_at"] is not None
    # Replay folds the views' reducer: every personal field shows as erased.
    assert s5["participant"] == {
        "pseudonym": "AC-0300",
        "name": "[erased]",
        "birth_date": "[erased]",
        "contact": "[erased]",
        "erased": True,
    }
    assert [h["state"] for h in s5["handovers"]] == ["completed"]  # closed with none open
    assert s5["notes"]
    assert all(note["text"] == "[erased]" for note in s5["notes"])


def test_loading_the_demo_twice_records_nothing_new(hub: Hub) -> None:
    list(load_demo(hub.registry, hub.messages))
    head = hub.app.recorder.max_notification_id()

    second = list(load_demo(hub.registry, hub.messages))

    assert hub.app.recorder.max_notification_id() == head
    assert all(r.recorded == 0 for r in second)
    assert sum(r.duplicates for r in second) > 0


def test_replay_as_of_a_past_moment_on_the_agency_clock(hub: Hub) -> None:
    list(load_demo(hub.registry, hub.messages))
    case_id = demo_id("s3/case")
    full = replay_case(hub.app, case_id)
    # Day 10 of scenario 3: the assignment is accepted and the agreement signed.
    moment = datetime.fromisoformat(full["events"][0]["occurred_at"]) + timedelta(days=10)

    past = replay_case(hub.app, case_id, moment, "occurred")

    assert 0 < len(past["events"]) < len(full["events"])
    assert all(datetime.fromisoformat(e["occurred_at"]) <= moment for e in past["events"])
    assert past["state"]["stage"] == "active"
    assert full["state"]["stage"] == "closed"
    assert [e["position"] for e in past["events"]] == sorted(e["position"] for e in past["events"])
