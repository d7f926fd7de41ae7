"""The dashboard's read-time figures (issue "Screens", build 2): a part of the cases
summed at read time equals the stored totals' part, the accept deadline each agency
pair is read against, days overdue, and the programme/site choices."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from projections.case_doc import reduce_case
from projections.dashboard import (
    accept_deadlines,
    dashboard_figures,
    days_overdue,
    empty_state,
    figures_at,
    figures_of_cases,
    named_agencies,
    programme_sites,
    programmes_of,
    totals_figures,
)
from tests.unit.test_projection_reducers import (
    AA,
    COACH,
    DRV,
    JC,
    _fold_dashboard,
    _two_cases,
    at,
    t,
)


def _docs() -> list[dict[str, Any]]:
    docs: dict[str, Any] = {}
    for event in _two_cases():
        docs[event.case_id] = reduce_case(docs.get(event.case_id), event)
    return list(docs.values())


def test_figures_of_the_cases_equal_the_figures_of_their_stored_totals() -> None:
    offers = [
        {"agency": COACH, "programme": "Prog", "site": "Nord", "due_at": t(10)},
        {"agency": AA, "programme": "Prog", "site": "Nord", "due_at": t(30)},
    ]
    capacity = {"Prog": {"Nord": 150}}
    stored = dashboard_figures(_fold_dashboard(_two_cases()), offers, at(20), capacity)
    assert figures_of_cases(_docs(), offers, at(20), capacity) == stored
    # One case alone is one case's part.
    one = figures_of_cases(_docs()[:1], [], at(20))
    assert one["rehab_decisions"] == [{"agency": DRV, "met": 1, "missed": 0}]
    assert sum(row["count"] for row in one["cases_by_stage"]) == 1


def test_each_pair_is_read_against_the_shortest_accept_deadline_of_its_kinds() -> None:
    figures = dashboard_figures(_fold_dashboard(_two_cases()), [], at(20))
    days = {("Prog", "assignment"): 7, ("Prog", "rehab_application"): 14}
    deadlines = accept_deadlines(figures, lambda programme, kind: days[programme, kind])
    assert deadlines == [
        {"from_agency": JC, "to_agency": COACH, "kinds": ["assignment"], "accept_days": 7},
        {"from_agency": JC, "to_agency": DRV, "kinds": ["rehab_application"], "accept_days": 14},
    ]
    # Two kinds between one pair: the shorter deadline is the line.
    figures["handovers_by_state"].append(
        {
            "programme": "Prog",
            "from_agency": JC,
            "to_agency": DRV,
            "kind": "assignment",
            "state": "accepted",
            "count": 1,
        }
    )
    [_, both] = accept_deadlines(figures, lambda programme, kind: days[programme, kind])
    assert both["kinds"] == ["assignment", "rehab_application"]
    assert both["accept_days"] == 7


def test_days_overdue_count_the_day_begun() -> None:
    due = t(1)
    assert days_overdue(due, at(1) + timedelta(minutes=1)) == 1
    assert days_overdue(due, at(2)) == 1
    assert days_overdue(due, at(2) + timedelta(seconds=1)) == 2
    offers = [{"agency": COACH, "programme": "Prog", "site": "Nord", "due_at": due}]
    [row] = dashboard_figures(_fold_dashboard(_two_cases()), offers, at(4))["overdue_handovers"]
    assert row["days_overdue"] == 3


def test_sites_to_choose_from_come_from_the_cases_and_the_capacity_plan() -> None:
    state = _fold_dashboard(_two_cases())
    assert programme_sites(state) == [{"programme": "Prog", "site": "Nord"}]
    assert programme_sites(state, {"Prog": {"Sued": 40}, "Other": {"A": 1}}) == [
        {"programme": "Other", "site": "A"},
        {"programme": "Prog", "site": "Nord"},
        {"programme": "Prog", "site": "Sued"},
    ]


def test_every_agency_the_figures_name_is_listed_once() -> None:
    offers = [{"agency": AA, "programme": "Prog", "site": "Nord", "due_at": t(1)}]
    figures = dashboard_figures(_fold_dashboard(_two_cases()), offers, at(20))
    assert named_agencies(figures) == sorted({AA, COACH, DRV, JC})


def test_totals_stored_before_a_counter_keep_it_absent_and_the_rest_moves() -> None:
    """Totals written before ``open_offers`` and ``agency_programmes`` existed: folding
    does not start those counters (they would hold only what changed since), so a
    reader sees them absent and counts from the rows; every other total still moves."""
    old = empty_state()
    del old["open_offers"], old["agency_programmes"]
    state = _fold_dashboard(_two_cases(), old)
    assert "open_offers" not in state
    assert "agency_programmes" not in state
    assert programmes_of(state, JC) is None
    whole = _fold_dashboard(_two_cases())
    assert whole["agency_programmes"]
    assert programmes_of(whole, JC) == ["Prog"]
    assert {k: v for k, v in whole.items() if k in state} == state


def test_figures_from_counted_open_offers_equal_those_counted_from_every_offer() -> None:
    offers = [
        {"agency": COACH, "handover_id": "h1", "case_id": "c1", "due_at": t(10)},
        {"agency": COACH, "handover_id": "h2", "case_id": "c2", "due_at": t(2)},
        {"agency": AA, "handover_id": "h3", "case_id": "c1", "due_at": t(3)},
    ]
    state = _fold_dashboard(_two_cases())
    now = at(4)
    overdue = [row for row in offers if row["due_at"] < t(4)]
    fast = figures_at(
        state, {COACH: 2, AA: 1}, {COACH: 1, AA: 1}, overdue, now, of_totals=totals_figures(state)
    )
    assert fast == dashboard_figures(state, offers, now)
    assert list(fast) == list(dashboard_figures(state, offers, now))  # the same order
