"""Rebuilds beside the live views and swapped in (issue 14, build 5), and the view
runner's document cache bounded in bytes (build 6). Both stores.

Readers and writers during a rebuild over HTTP: ``tests/e2e/test_http_rebuild.py``;
a rebuild killed half-way: ``test_views_rebuild.py``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from services.bootstrap import Hub, build_hub
from services.demo import demo_id, load_demo
from services.settings import Settings
from services.views.runner import ViewRunner
from services.views.sql.schema import INDEX_ALT, SHADOW, ViewSchema
from services.views.store import GROUPS
from services.views.verify import verify_chain
from tests.factories import message
from tests.integration.test_audit_tamper import rewrite_event
from tests.view_helpers import (
    COACH,
    ROOT,
    case_history,
    history,
    process_env,
    record_all,
    register_test_agencies,
    snapshot,
    stable_id,
    table_names,
)

CASES = 120
PAGE = 40


@pytest.fixture
def recorded(hub: Hub) -> tuple[int, dict[str, object]]:
    register_test_agencies(hub)
    head = record_all(hub, history(CASES))
    hub.views.catch_up()
    return head, snapshot(hub.view_store)


def hub_command(
    database_url: str, tmp_path: Path, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=ROOT,
        env=process_env(database_url, tmp_path),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def no_shadow_tables(hub: Hub) -> bool:
    return not {name for name in table_names(hub.view_store) if name.endswith(SHADOW)}


# ---- the swap ------------------------------------------------------------------------


def test_a_live_runner_drops_its_caches_when_another_process_swaps_at_its_own_position(
    hub: Hub,
    recorded: tuple[int, dict[str, object]],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The swap lands exactly where this runner stands (it was idle at the head), so
    no position tells it the tables changed: the generation does."""
    head, _ = recorded
    assert hub.views.catch_up() == 0  # at the head, its caches warm
    other = build_hub(settings)  # as ``hub projections rebuild`` in another process
    try:
        assert other.views.rebuild() == head
    finally:
        other.close()
    loads: list[str] = []
    original = hub.view_store.query

    def counting(statement: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        if statement.startswith("SELECT case_id, doc FROM view_case_docs"):
            loads.extend(params)
        return original(statement, params)

    monkeypatch.setattr(hub.view_store, "query", counting)
    # A note in a case whose document the runner folded, and so holds.
    case = stable_id("case-0")
    record_all(hub, [message("note.added", COACH, case, {"text": "Termin", "category": "notes"})])
    hub.views.catch_up()

    newest = hub.app.recorder.max_notification_id()
    assert hub.views.positions() == dict.fromkeys(GROUPS, newest)
    live = snapshot(hub.view_store)
    ViewRunner(hub.app.recorder, hub.view_store).rebuild()
    assert snapshot(hub.view_store) == live
    assert str(case) in loads, "the runner kept a document cached from retired tables"


def test_every_live_table_keeps_one_of_each_index_across_swaps(
    hub: Hub, recorded: tuple[int, dict[str, object]], settings: Settings
) -> None:
    """Indexes keep their names through a rename: a shadow table's take the name its
    live table's does not hold, and a start adds none beside them."""
    for _ in range(3):
        hub.views.rebuild()
        build_hub(settings).close()  # a start: the live tables' indexes are ensured
        found = Counter(
            (table, name.removesuffix(INDEX_ALT))
            for name, table in hub.view_store.index_tables().items()
            if table.startswith("view_")
            and "pkey" not in name
            and not name.startswith("sqlite_autoindex")
        )
        expected = Counter((table, base) for base, (table, _, _) in ViewSchema.INDEXES.items())
        assert found == expected
    assert no_shadow_tables(hub)


def test_a_second_rebuild_is_refused_while_one_runs(
    hub: Hub, recorded: tuple[int, dict[str, object]], database_url: str, tmp_path: Path
) -> None:
    _, incremental = recorded
    script = tmp_path / "slow.py"
    script.write_text(
        "import time\n"
        "from services.bootstrap import build_hub\n"
        "from services.settings import Settings\n"
        "from services.views.runner import ViewRunner\n"
        "hub = build_hub(Settings())\n"
        f"runner = ViewRunner(hub.app.recorder, hub.view_store, page_size={PAGE}, "
        f"rebuild_page_size={PAGE})\n"
        "def progress(done, total):\n"
        "    print(done, flush=True)\n"
        "    time.sleep(0.2)\n"
        "runner.rebuild(progress=progress)\n"
    )
    first = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=ROOT,
        env=process_env(database_url, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stdout is not None
        assert first.stdout.readline().strip() == str(PAGE)  # under way
        second = hub_command(database_url, tmp_path, "projections", "rebuild")
        assert second.returncode == 1
        assert "error [rebuild_running]" in second.stderr
        assert "Traceback" not in second.stderr
        assert snapshot(hub.view_store) == incremental
    finally:
        first.kill()
        first.wait()
    # The killed one's lock went with it.
    again = hub_command(database_url, tmp_path, "projections", "rebuild")
    assert again.returncode == 0, again.stderr
    assert snapshot(hub.view_store) == incremental
    assert no_shadow_tables(hub)


def test_rebuilding_the_audit_trail_over_changed_stored_events_keeps_the_live_trail(
    hub: Hub, database_url: str, tmp_path: Path
) -> None:
    """A rebuild must not launder tampering: the rebuilt chain hashes the changed
    bytes and so differs from the live trail, which stays as the evidence."""
    list(load_demo(hub.registry, hub.messages))
    hub.views.catch_up()
    trail = hub.queries.audit_trail(str(demo_id("s2/case")))
    position = next(row["position"] for row in trail if row["type"] == "HandoverForwarded")
    rewrite_event(
        database_url,
        position,
        lambda state: state.replace(b'"to_agency":"drv-rlp"', b'"to_agency":"drv-rlX"'),
    )
    before = snapshot(hub.view_store)

    for args in (("audit",), ()):
        result = hub_command(database_url, tmp_path, "projections", "rebuild", *args)
        assert result.returncode == 1, result.stdout
        assert "error [audit_trail_differs]" in result.stderr
        assert f"position {hub.views.positions()['audit']}" in result.stderr
        assert "Traceback" not in result.stderr
        assert snapshot(hub.view_store) == before
        assert no_shadow_tables(hub)

    verify = hub_command(database_url, tmp_path, "audit", "verify")
    assert verify.returncode == 1
    assert f"audit trail BROKEN at position {position}" in verify.stderr


def test_hub_audit_verify_is_intact_across_a_swap(
    hub: Hub, recorded: tuple[int, dict[str, object]], database_url: str, tmp_path: Path
) -> None:
    head, _ = recorded
    rebuilt = hub_command(database_url, tmp_path, "projections", "rebuild", "audit")
    assert rebuilt.returncode == 0, rebuilt.stderr
    verify = hub_command(database_url, tmp_path, "audit", "verify")
    assert verify.returncode == 0, verify.stderr
    assert f"audit trail intact: {head} events checked" in verify.stdout
    assert verify_chain(hub.app.recorder, hub.view_store).ok


# ---- the cache, bounded in bytes ----------------------------------------------------------


def test_the_view_cache_bound_is_a_setting_in_megabytes(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUB_VIEW_CACHE_MB", "3")
    configured = Settings(database_url=settings.database_url, var_dir=settings.var_dir)
    assert configured.view_cache_mb == 3
    hub = build_hub(configured)
    try:
        assert hub.views.cache_bytes == 3 * 2**20
        assert hub.views.sibling(["cases"]).cache_bytes == 3 * 2**20
    finally:
        hub.close()


@pytest.mark.usefixtures("recorded")
def test_a_live_runner_keeps_its_documents_within_the_bound_in_bytes(hub: Hub) -> None:
    bound = 64 * 1024  # a few dozen of these cases' documents
    runner = ViewRunner(hub.app.recorder, hub.view_store, page_size=PAGE, cache_bytes=bound)
    assert runner.catch_up() == 0
    for index in range(CASES, CASES + 30):
        record_all(hub, case_history(index))
    seen: list[float] = []

    def progress(_done: int, _total: int) -> None:
        seen.append(runner.cached_bytes)

    runner.catch_up(progress)
    assert seen
    assert max(seen) <= bound
    assert seen[-1] > 0
    newest = hub.app.recorder.max_notification_id()
    assert runner.positions() == dict.fromkeys(GROUPS, newest)
    live = snapshot(hub.view_store)
    ViewRunner(hub.app.recorder, hub.view_store).rebuild()
    assert snapshot(hub.view_store) == live


def test_a_rebuild_beyond_its_cache_in_bytes_flushes_and_restores_the_same_rows(
    hub: Hub, recorded: tuple[int, dict[str, object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    head, incremental = recorded
    runner = ViewRunner(
        hub.app.recorder,
        hub.view_store,
        page_size=PAGE,
        rebuild_page_size=PAGE,
        cache_bytes=64 * 1024,
    )
    commits: list[dict[str, int]] = []
    refused: list[Exception] = []
    original = hub.view_store.commit

    def counting_commit(writes: Any) -> None:
        commits.append(dict(writes.positions))
        try:
            original(writes)
        except Exception as error:
            refused.append(error)
            raise

    monkeypatch.setattr(hub.view_store, "commit", counting_commit)
    started = time.monotonic()
    assert runner.rebuild() == head
    assert time.monotonic() - started < 60

    assert snapshot(hub.view_store) == incremental
    assert refused == []  # each flush wrote what the tables lacked, nothing twice
    case_flushes = [c["cases"] for c in commits if "cases" in c]
    assert 1 < len(case_flushes) < len([c for c in commits if "audit" in c])
    assert case_flushes == sorted(set(case_flushes))
    assert verify_chain(hub.app.recorder, hub.view_store).ok
