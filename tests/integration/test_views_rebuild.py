"""Rebuilds: the audit trail in a second process, case views written once at the end
(or whenever the cache is full), all of it into shadow tables beside the live views,
a rebuild killed half-way leaving the live views serving and the next one starting
clean, and a rebuild beside a live runner in another process.

Every test runs on SQLite and PostgreSQL; "the same rows" compares every view table
row by row (``tests.view_helpers.snapshot``) with what the live runner built.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.bootstrap import Hub
from services.views.groups import cases as case_views
from services.views.rebuild import rebuild_views
from services.views.runner import ViewRunner, view_groups
from services.views.sql.schema import SHADOW, SHADOWS
from services.views.store import GROUPS
from services.views.verify import verify_chain
from tests.view_helpers import (
    ROOT,
    case_history,
    history,
    kill_when,
    process_env,
    record_all,
    register_test_agencies,
    row_counts,
    snapshot,
    table_names,
)

CASES = 120
PAGE = 40


@pytest.fixture
def recorded(hub: Hub) -> tuple[int, dict[str, object]]:
    """A history applied by the live runner page by page: (head, every view's rows)."""
    register_test_agencies(hub)
    head = record_all(hub, history(CASES))
    ViewRunner(hub.app.recorder, hub.view_store, page_size=PAGE).catch_up()
    return head, snapshot(hub.view_store)


def test_a_parallel_rebuild_restores_the_same_rows(
    hub: Hub, recorded: tuple[int, dict[str, object]]
) -> None:
    head, incremental = recorded

    assert rebuild_views(hub, parallel=True) == head

    assert hub.views.positions() == dict.fromkeys(GROUPS, head)
    assert snapshot(hub.view_store) == incremental
    assert verify_chain(hub.app.recorder, hub.view_store).ok
    assert hub.views.catch_up() == 0  # the live runner sees the rebuilt positions


def test_a_rebuild_of_more_cases_than_its_cache_holds_writes_them_in_several_flushes(
    hub: Hub, recorded: tuple[int, dict[str, object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    head, incremental = recorded
    monkeypatch.setattr(case_views, "MAX_CACHED_DOCS", 25)
    runner = ViewRunner(hub.app.recorder, hub.view_store, page_size=PAGE, rebuild_page_size=PAGE)
    commits: list[dict[str, int]] = []
    original = hub.view_store.commit

    def counting_commit(writes: object) -> None:
        commits.append(dict(writes.positions))  # type: ignore[attr-defined]
        original(writes)

    monkeypatch.setattr(hub.view_store, "commit", counting_commit)
    assert runner.rebuild() == head

    assert snapshot(hub.view_store) == incremental
    case_flushes = [c["cases"] for c in commits if "cases" in c]
    # Flushed when the cache overflowed, not on every page, and once at the end.
    assert 1 < len(case_flushes) < len([c for c in commits if "audit" in c])
    assert case_flushes[-1] == head


def test_a_rebuild_defers_case_rows_but_not_the_audit_trail(
    hub: Hub, recorded: tuple[int, dict[str, object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the shadow tables; the live views stay whole and at the head meanwhile."""
    head, incremental = recorded
    seen: list[tuple[int, dict[str, int], dict[str, int], dict[str, int], object]] = []
    runner = ViewRunner(hub.app.recorder, hub.view_store, page_size=PAGE, rebuild_page_size=PAGE)
    shadow = runner.sibling(runner.groups, tables=SHADOWS)

    def progress(done: int, _total: int) -> None:
        seen.append(
            (
                done,
                shadow.positions(),
                row_counts(hub.view_store, SHADOW),
                runner.positions(),
                snapshot(hub.view_store),
            )
        )

    runner.rebuild(progress=progress)

    done, positions, rows, _, _ = seen[0]  # after the first page
    assert done == PAGE
    assert positions == {"cases": 0, "dashboard": 0, "audit": PAGE}
    assert rows["view_case_docs"] == 0
    assert rows["view_audit"] == PAGE
    assert seen[-1][1] == dict.fromkeys(GROUPS, head)
    for *_, live_positions, live in seen:
        assert live_positions == dict.fromkeys(GROUPS, head)
        assert live == incremental
    assert snapshot(hub.view_store) == incremental


KILLED_REBUILD = """
import time
from services.bootstrap import build_hub
from services.settings import Settings
from services.views.groups import cases as case_views
from services.views.runner import ViewRunner

case_views.MAX_CACHED_DOCS = 30  # flushes before the end
hub = build_hub(Settings())
runner = ViewRunner(hub.app.recorder, hub.view_store, page_size={page}, rebuild_page_size={page})


def progress(done, total):
    print(done, flush=True)
    time.sleep(0.01)


runner.rebuild(progress=progress)
print("finished", flush=True)
"""


def test_a_rebuild_killed_half_way_leaves_the_live_views_serving_and_the_next_starts_clean(
    hub: Hub,
    recorded: tuple[int, dict[str, object]],
    database_url: str,
    tmp_path: Path,
) -> None:
    head, incremental = recorded
    script = tmp_path / "rebuild.py"
    script.write_text(KILLED_REBUILD.format(page=PAGE))
    killed_after, returncode, stderr = kill_when(
        script, process_env(database_url, tmp_path), head // 2, grace=0.005
    )
    assert killed_after is not None, stderr
    assert returncode == -signal.SIGKILL
    # The live views: untouched, whole, at the head.
    assert hub.views.positions() == dict.fromkeys(GROUPS, head)
    assert snapshot(hub.view_store) == incremental
    assert hub.views.catch_up() == 0
    # What it left: shadow tables half-way, the case views at their last flush.
    shadow = hub.views.sibling(GROUPS, tables=SHADOWS).positions()
    assert 0 < shadow["cases"] == shadow["dashboard"] <= shadow["audit"] < head

    # The next rebuild drops them and applies every event from the first, once.
    record_all(hub, case_history(CASES))
    hub.views.catch_up()
    newest = hub.app.recorder.max_notification_id()
    live = snapshot(hub.view_store)
    assert ViewRunner(hub.app.recorder, hub.view_store, page_size=PAGE).rebuild() == newest

    assert hub.views.positions() == dict.fromkeys(GROUPS, newest)
    assert snapshot(hub.view_store) == live
    assert not {name for name in table_names(hub.view_store) if name.endswith(SHADOW)}
    assert verify_chain(hub.app.recorder, hub.view_store).ok


def test_view_groups_keep_cases_and_dashboard_together() -> None:
    assert view_groups(["dashboard"]) == ("cases", "dashboard")
    assert view_groups(["audit", "cases"]) == GROUPS
    assert view_groups(["audit"]) == ("audit",)
    with pytest.raises(ValueError, match="unknown view groups"):
        view_groups(["inbox"])


def test_the_runner_reads_the_log_as_the_library_does(
    hub: Hub, recorded: tuple[int, dict[str, object]]
) -> None:
    head, _ = recorded
    recorder = hub.app.recorder
    for start, limit in ((1, head), (head // 2, 17), (head, 5), (head + 1, 5)):
        rows = recorder.select_notification_rows(start, limit)
        assert rows == [
            (n.id, str(n.originator_id), n.originator_version, n.topic, bytes(n.state))
            for n in recorder.select_notifications(start, limit)
        ]
    assert len(recorder.select_notification_rows(1, head)) == head


def test_a_page_computed_before_a_reset_is_refused_whole(
    hub: Hub, recorded: tuple[int, dict[str, object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process resets the views (a rebuild starting) between this runner's
    read of the positions and its commit: the page must not land in the emptied
    tables with its positions, as if the events before it were applied."""
    head, _ = recorded
    runner = hub.views
    assert runner.position() == head
    record_all(hub, case_history(CASES))  # one more case to apply
    original = hub.view_store.commit
    resets = []

    def reset_first(writes: object) -> None:
        if not resets:
            resets.append(True)
            hub.view_store.reset(GROUPS)  # as ``rebuild`` in another process does
        original(writes)

    monkeypatch.setattr(hub.view_store, "commit", reset_first)
    applied = runner.catch_up()

    assert resets
    newest = hub.app.recorder.max_notification_id()
    assert applied == newest  # refused once, then everything again from the start
    assert runner.positions() == dict.fromkeys(GROUPS, newest)
    built = snapshot(hub.view_store)
    ViewRunner(hub.app.recorder, hub.view_store).rebuild()
    assert built == snapshot(hub.view_store)
    assert verify_chain(hub.app.recorder, hub.view_store).ok


def test_a_rebuild_in_another_process_beside_a_live_runner_leaves_exact_views(
    hub: Hub, recorded: tuple[int, dict[str, object]], database_url: str, tmp_path: Path
) -> None:
    """``hub projections rebuild`` while ``hub serve``'s runner applies new messages:
    whichever applies a page first, the views end exactly as a clean rebuild."""
    runner = hub.views
    runner.start(poll_interval=0.02)
    child = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "projections", "rebuild"],
        cwd=ROOT,
        env=process_env(database_url, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    case, deadline = CASES, time.monotonic() + 60
    try:
        while child.poll() is None and time.monotonic() < deadline and case < CASES + 400:
            record_all(hub, case_history(case))
            runner.notify()
            case += 1
        out, err = child.communicate(timeout=60)
    finally:
        runner.stop()
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    assert "rebuilt cases, dashboard, audit" in out
    record_all(hub, case_history(case))  # and one more after it
    runner.catch_up()

    newest = hub.app.recorder.max_notification_id()
    assert runner.positions() == dict.fromkeys(GROUPS, newest)
    live = snapshot(hub.view_store)
    ViewRunner(hub.app.recorder, hub.view_store).rebuild()
    assert live == snapshot(hub.view_store)
    assert verify_chain(hub.app.recorder, hub.view_store).ok
