"""The view runner: exactly once across crashes, rebuildable, read-your-writes, live.

Every test runs on SQLite and PostgreSQL. "Equal to a clean rebuild" compares every
view table row by row (``tests.view_helpers.snapshot``).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from services.bootstrap import Hub, build_hub
from services.demo import load_demo
from services.settings import Settings
from services.views.runner import ViewRunner
from services.views.store import GROUPS
from services.views.verify import verify_chain
from tests.cli_helpers import hub_cli
from tests.factories import T0, decide, offer, opened
from tests.view_helpers import (
    CHAMBER,
    COACH,
    JOBCENTER,
    case_history,
    expected_chain,
    history,
    iso,
    kill_when,
    process_env,
    record_all,
    register_test_agencies,
    row_counts,
    snapshot,
    stable_id,
)

CRASH_CASES = 420  # 3,045 messages
PAGE = 50
CHECKPOINT_EVERY = 100

CHILD = """
import sys, time
from services.bootstrap import build_hub
from services.logging import configure_logging
from services.settings import Settings
from services.views.runner import ViewRunner

configure_logging("INFO", "json")  # JSON lines on stderr: the checkpoints are logged
hub = build_hub(Settings())
runner = ViewRunner(
    hub.app.recorder, hub.view_store, page_size={page}, checkpoint_every={checkpoint}
)


def progress(done, total):
    print(done, flush=True)  # after each committed page
    time.sleep(0.01)


runner.catch_up(progress)
print("finished", flush=True)
"""


def _open_offers(cases: int) -> int:
    return sum(1 for i in range(cases) if i % 4 == 3)


def test_a_killed_runner_resumes_with_nothing_doubled_or_skipped(
    hub: Hub, database_url: str, tmp_path: Path
) -> None:
    register_test_agencies(hub)
    head = record_all(hub, history(CRASH_CASES))
    assert head == 6 + sum(len(case_history(i)) for i in range(CRASH_CASES)) >= 3000
    script = tmp_path / "runner.py"
    script.write_text(CHILD.format(page=PAGE, checkpoint=CHECKPOINT_EVERY))

    killed_after, returncode, stderr = kill_when(
        script, process_env(database_url, tmp_path), 1000, grace=0.012
    )
    assert killed_after is not None, stderr
    assert returncode == -signal.SIGKILL

    # Mid-stream: every group stopped at the same committed page boundary.
    positions = hub.views.positions()
    stopped = positions["cases"]
    assert positions == dict.fromkeys(GROUPS, stopped)
    assert killed_after <= stopped < head
    assert stopped % PAGE == 0
    audit = hub.view_store.query("SELECT position FROM view_audit ORDER BY position")
    assert [r["position"] for r in audit] == list(range(1, stopped + 1))
    chain = expected_chain(hub)
    logged = [json.loads(line) for line in stderr.splitlines() if '"audit_checkpoint"' in line]
    assert [(e["position"], e["head_hash"]) for e in logged] == [
        (p, chain[p]) for p in range(CHECKPOINT_EVERY, stopped + 1, CHECKPOINT_EVERY)
    ]

    # Restart in this process: exactly the rest is applied.
    runner = ViewRunner(
        hub.app.recorder, hub.view_store, page_size=PAGE, checkpoint_every=CHECKPOINT_EVERY
    )
    assert runner.catch_up() == head - stopped
    resumed = snapshot(hub.view_store)

    assert [r["position"] for r in resumed["view_audit"]] == list(range(1, head + 1))
    assert {r["position"]: r["hash"] for r in resumed["view_audit"]} == chain
    assert len(resumed["view_case_docs"]) == CRASH_CASES
    assert len(resumed["view_inbox"]) == _open_offers(CRASH_CASES)
    totals = resumed["view_dashboard"]["totals"]
    assert sum(totals["cases_by_stage"].values()) == CRASH_CASES
    assert sum(len(h) for h in totals["offer_to_accept_hours"].values()) == (
        CRASH_CASES - _open_offers(CRASH_CASES)
    )
    assert verify_chain(hub.app.recorder, hub.view_store).ok

    runner.rebuild()
    assert snapshot(hub.view_store) == resumed


def test_a_failure_inside_a_page_rolls_the_whole_page_back(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_test_agencies(hub)
    head = record_all(hub, history(40))
    runner = ViewRunner(hub.app.recorder, hub.view_store, page_size=PAGE)
    original = hub.view_store.write_batch
    calls = 0

    def fail_on_the_third_page(cursor: Any, writes: Any) -> None:
        nonlocal calls
        calls += 1
        original(cursor, writes)  # every row of the page is written ...
        if calls == 3:
            raise RuntimeError("connection lost")  # ... and then the commit fails

    monkeypatch.setattr(hub.view_store, "write_batch", fail_on_the_third_page)
    with pytest.raises(RuntimeError, match="connection lost"):
        runner.catch_up()

    assert runner.positions() == dict.fromkeys(GROUPS, 2 * PAGE)
    assert row_counts(hub.view_store)["view_audit"] == 2 * PAGE
    monkeypatch.undo()

    assert runner.catch_up() == head - 2 * PAGE
    resumed = snapshot(hub.view_store)
    runner.rebuild()
    assert snapshot(hub.view_store) == resumed
    assert len(resumed["view_audit"]) == head


def test_rebuilding_any_view_group_restores_the_same_rows(hub: Hub) -> None:
    list(load_demo(hub.registry, hub.messages))
    assert hub.views.catch_up() == 74
    incremental = snapshot(hub.view_store)

    for groups in (("audit",), ("dashboard",), ("cases",), GROUPS):
        assert hub.views.rebuild(groups) == 74
        assert hub.views.positions() == dict.fromkeys(GROUPS, 74)
        assert snapshot(hub.view_store) == incremental, groups
    # A small page size gives the same rows.
    ViewRunner(hub.app.recorder, hub.view_store, page_size=7).rebuild()
    assert snapshot(hub.view_store) == incremental
    assert hub.views.catch_up() == 0  # nothing left to apply


def test_hub_projections_rebuild_prints_the_rate_and_keeps_the_rows(
    hub: Hub, database_url: str, tmp_path: Path
) -> None:
    list(load_demo(hub.registry, hub.messages))
    hub.views.catch_up()
    before = snapshot(hub.view_store)
    env = process_env(database_url, tmp_path)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return hub_cli("projections", "rebuild", *args, env=env)

    everything = run()
    assert everything.returncode == 0, everything.stderr
    assert re.search(
        r"^rebuilt cases, dashboard, audit: 74 events in [\d.]+ s \([\d,]+ events/s\)$",
        everything.stdout,
        re.MULTILINE,
    ), everything.stdout
    assert snapshot(hub.view_store) == before

    audit_only = run("audit")
    assert audit_only.returncode == 0, audit_only.stderr
    assert "rebuilt audit: 74 events" in audit_only.stdout
    assert snapshot(hub.view_store) == before

    unknown = run("inboxes")
    assert unknown.returncode == 1
    assert "error [invalid_value]" in unknown.stderr


def test_a_duplicate_message_changes_no_view(hub: Hub) -> None:
    register_test_agencies(hub)
    case, handover = stable_id("dup"), stable_id("dup/h")
    hub.messages.record_raw(opened(JOBCENTER, case))
    sent = offer(JOBCENTER, case, handover, kind="assignment", to=COACH)
    first = hub.messages.record_raw(sent)
    hub.views.catch_up()
    before = snapshot(hub.view_store)

    again = hub.messages.record_raw(sent)
    hub.views.catch_up()

    assert again["duplicate"] is True
    assert again["position"] == first["position"]
    assert snapshot(hub.view_store) == before
    assert len(before["view_inbox"]) == 1


# ---- read-your-writes and the live runner ------------------------------------------------


def test_wait_for_a_position_gives_read_your_writes(hub: Hub) -> None:
    register_test_agencies(hub)
    case, handover = stable_id("ryw"), stable_id("ryw/h")
    hub.messages.record_raw(opened(JOBCENTER, case))
    result = hub.messages.record_raw(offer(JOBCENTER, case, handover, kind="assignment", to=COACH))
    assert hub.views.position() == 0  # nothing applied until asked

    assert hub.views.wait_for(result["position"]) is True

    assert hub.views.position() == result["position"] == 8  # 6 agencies, 2 case events
    assert hub.queries.inbox(COACH, T0) == {
        "items": [
            {
                "handover_id": str(handover),
                "case_id": str(case),
                "kind": "assignment",
                "from_agency": JOBCENTER,
                "offered_at": iso(0),
                "due_at": iso(7),
                "overdue": False,
            }
        ]
    }
    started = time.monotonic()
    assert hub.views.wait_for(result["position"] + 1, timeout=0.2) is False
    assert time.monotonic() - started < 5


def _poll(read: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.01)


def test_the_live_runner_follows_this_and_other_processes(hub: Hub, settings: Settings) -> None:
    register_test_agencies(hub)
    hub.views.start(poll_interval=0.05)
    other = build_hub(settings)  # another process writing to the same store
    try:
        case, handover = stable_id("live"), stable_id("live/h")
        hub.messages.record_raw(opened(JOBCENTER, case))
        hub.messages.record_raw(offer(JOBCENTER, case, handover, kind="assignment", to=COACH))

        items = _poll(lambda: hub.queries.inbox(COACH, T0)["items"])
        assert [i["handover_id"] for i in items] == [str(handover)]

        accepted = other.messages.record_raw(
            decide("handover.accepted", COACH, case, handover, day=1)
        )
        assert _poll(lambda: hub.views.position() >= accepted["position"])
        assert hub.queries.inbox(COACH, T0 + timedelta(days=1)) == {"items": []}
        assert hub.queries.caseload(COACH)["items"][0]["last_activity_at"] == iso(1)

        # With the live runner on, wait_for only waits. (placement_support goes to a
        # chamber, not to a coach: rule 6.)
        second = hub.messages.record_raw(
            offer(
                JOBCENTER, case, stable_id("live/h2"), kind="placement_support", to=CHAMBER, day=2
            )
        )
        assert hub.views.wait_for(second["position"], timeout=10) is True
        assert [i["handover_id"] for i in hub.queries.inbox(CHAMBER, T0)["items"]] == [
            str(stable_id("live/h2"))
        ]
    finally:
        other.close()
        hub.views.stop()
    assert verify_chain(hub.app.recorder, hub.view_store).ok


def test_a_runner_continues_correctly_after_another_process_advanced_the_views(
    hub: Hub, settings: Settings
) -> None:
    register_test_agencies(hub)
    other = build_hub(settings)
    try:
        case, handover = stable_id("two"), stable_id("two/h")
        hub.messages.record_raw(opened(JOBCENTER, case))
        hub.messages.record_raw(offer(JOBCENTER, case, handover, kind="assignment", to=COACH))
        hub.views.catch_up()
        hub.messages.record_raw(decide("handover.accepted", COACH, case, handover, day=1))
        other.views.catch_up()  # e.g. `hub audit verify` catching up in another process
        hub.messages.record_raw(decide("handover.completed", COACH, case, handover, day=3))
        hub.views.catch_up()
    finally:
        other.close()
    incremental = snapshot(hub.view_store)

    assert verify_chain(hub.app.recorder, hub.view_store).ok
    hub.views.rebuild()
    assert snapshot(hub.view_store) == incremental
