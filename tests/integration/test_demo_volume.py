"""``hub demo --volume N``: a seeded year of cases beside the five scenarios,
recorded through the same service and rules, idempotent (issue "Screens", item 4)."""

from __future__ import annotations

from datetime import UTC, datetime

from services.bootstrap import Hub
from services.demo import load_demo
from services.demo_volume import PROGRAMMES, load_volume


def test_a_year_of_generated_cases_loads_once_and_fills_every_programme(hub: Hub) -> None:
    list(load_demo(hub.registry, hub.messages))
    first = load_volume(hub.messages, 80)  # DemoFailed if any rule refused a message
    assert first.cases == 80
    assert first.recorded > 80 * 5
    again = load_volume(hub.messages, 80)
    assert (again.recorded, again.duplicates) == (0, first.recorded)

    hub.views.catch_up()
    figures = hub.queries.dashboard(datetime.now(UTC))
    cases = sum(row["count"] for row in figures["cases_by_stage"])
    assert cases == 85  # the five scenarios and the generated ones
    sites = {(row["programme"], row["site"]) for row in figures["cases_by_stage"]}
    for programme in PROGRAMMES:
        assert len({s for p, s in sites if p == programme.name}) >= 2, programme.name
    stages = {row["stage"] for row in figures["cases_by_stage"]}
    assert {"active", "closed"} <= stages
    assert any(row["employed"] for row in figures["employed_within_12_months"])
    assert sum(r["met"] + r["missed"] for r in figures["rehab_decisions"]) > 1


def test_generated_events_are_never_dated_after_now(hub: Hub) -> None:
    list(load_demo(hub.registry, hub.messages))
    early = datetime(2026, 3, 1, tzinfo=UTC)
    report = load_volume(hub.messages, 30, now=early)
    later = load_volume(hub.messages, 30)
    # What was dated after the first load's "now" is recorded by the later load.
    assert report.not_yet > later.not_yet
    assert later.recorded == report.not_yet - later.not_yet
