"""``ViewsWatch``: read-your-writes waits answered from the live runner's announced
position, with the view tables read only when that is behind (another process's
runner may have applied the events) and never more often than ``read_every``."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from services.api.app import ViewsWatch
from services.views.live import LiveViews


class FakeViews:
    """The parts of ``ViewRunner`` the watch uses; ``stored`` is what the tables say."""

    def __init__(self, announced: int | None = 0, stored: int = 0) -> None:
        if announced is not None:
            self.applied_position = announced
        self.stored = stored
        self.reads = 0
        self.notified = 0

    def position(self) -> int:
        self.reads += 1
        return self.stored

    def notify(self) -> None:
        self.notified += 1


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_a_position_the_runner_announced_is_answered_without_reading_the_tables() -> None:
    views = FakeViews(announced=10, stored=0)
    watch = ViewsWatch(views)
    assert _run(watch.wait_for(10, timeout=1.0)) is True
    assert _run(watch.wait_for(0, timeout=1.0)) is True
    assert views.reads == 0


def test_a_waiter_wakes_once_the_runner_announces_its_position() -> None:
    views = FakeViews(announced=3, stored=3)
    watch = ViewsWatch(views, read_every=60.0)

    async def scenario() -> tuple[bool, float]:
        async def commit_later() -> None:
            await asyncio.sleep(0.05)
            views.applied_position = 7  # the live runner committed a page

        started = time.monotonic()
        committer = asyncio.create_task(commit_later())
        reached = await watch.wait_for(5, timeout=2.0)
        await committer
        return reached, time.monotonic() - started

    reached, waited = _run(scenario())
    assert reached is True
    assert waited < 1.0
    assert views.notified == 1  # the runner is woken rather than left to its poll
    assert views.reads <= 1  # at most the first look at the tables, none per poll


def test_views_another_process_advanced_are_seen_in_the_tables() -> None:
    # This process's runner found nothing left to apply, so it announces nothing new.
    views = FakeViews(announced=3, stored=9)
    watch = ViewsWatch(views, read_every=0.01)
    assert _run(watch.wait_for(9, timeout=2.0)) is True
    assert views.reads >= 1


def test_tables_are_read_at_most_every_read_every_while_a_waiter_is_behind() -> None:
    views = FakeViews(announced=0, stored=0)
    watch = ViewsWatch(views, interval=0.001, read_every=0.05)
    assert _run(watch.wait_for(1, timeout=0.3)) is False  # never applied: 202
    assert 1 <= views.reads <= 8  # about 0.3 / 0.05, not one per 1 ms poll


def test_without_an_announced_position_every_other_poll_reads_the_tables() -> None:
    views = FakeViews(announced=None, stored=0)
    watch = ViewsWatch(views, interval=0.001)

    async def scenario() -> bool:
        async def apply_later() -> None:
            await asyncio.sleep(0.05)
            views.stored = 4

        applier = asyncio.create_task(apply_later())
        reached = await watch.wait_for(4, timeout=2.0)
        await applier
        return reached

    assert _run(scenario()) is True
    assert views.reads >= 2


def test_many_waiters_are_woken_together_and_a_timed_out_one_is_dropped() -> None:
    views = FakeViews(announced=0, stored=0)
    watch = ViewsWatch(views, read_every=60.0)

    async def scenario() -> tuple[list[bool], int]:
        async def commit_later() -> None:
            await asyncio.sleep(0.1)
            views.applied_position = 6

        committer = asyncio.create_task(commit_later())
        results = await asyncio.gather(
            watch.wait_for(2, timeout=2.0),
            watch.wait_for(6, timeout=2.0),
            watch.wait_for(9, timeout=0.2),  # beyond what is ever applied
        )
        await committer
        await asyncio.sleep(0.05)  # the poller's next round drops the timed-out waiter
        return list(results), len(watch._waiters)

    assert _run(scenario()) == ([True, True, False], 0)


class PushingViews(FakeViews):
    """A runner that calls back after each commit, as ``ViewRunner.on_applied`` does;
    counts how often the watch looks at its announced position."""

    def __init__(self, announced: int = 0, stored: int = 0) -> None:
        super().__init__(announced=None, stored=stored)
        self._announced = announced
        self.looks = 0
        self.listeners: list[Any] = []

    @property
    def applied_position(self) -> int:
        self.looks += 1
        return self._announced

    def on_applied(self, listener: Any) -> None:
        self.listeners.append(listener)

    def commit(self, position: int) -> None:
        """The runner's thread commits up to ``position`` and announces it."""
        self._announced = position
        for listener in self.listeners:
            listener(position)


def test_a_runner_that_calls_back_wakes_waiters_and_is_not_polled_meanwhile() -> None:
    views = PushingViews(announced=3, stored=3)
    watch = ViewsWatch(views, interval=0.001, read_every=60.0)

    async def scenario() -> tuple[bool, int, float]:
        def commit_later() -> None:
            time.sleep(0.3)
            views.commit(7)  # from the runner's own thread, as the live runner does

        started = time.monotonic()
        committer = threading.Thread(target=commit_later)
        committer.start()
        reached = await watch.wait_for(5, timeout=5.0)
        waited = time.monotonic() - started
        committer.join()
        return reached, views.looks, waited

    reached, looks, waited = _run(scenario())
    assert reached is True
    assert waited < 2.0  # woken by the commit, not by the 60 s look at the tables
    # Polled every 1 ms, 0.3 s of waiting looked about 300 times.
    assert looks <= 5
    assert views.reads <= 1


def test_a_pushing_runner_that_announces_nothing_new_leaves_the_tables_to_read_every() -> None:
    # Another process's runner applied the events; this one has nothing to announce.
    views = PushingViews(announced=3, stored=9)
    watch = ViewsWatch(views, interval=0.001, read_every=0.05)
    assert _run(watch.wait_for(9, timeout=2.0)) is True
    assert views.reads >= 1


def test_live_views_call_their_listeners_with_each_new_position_only() -> None:
    class Runner:
        def catch_up(self) -> int:
            return 0

        def position(self) -> int:
            return 0

    live = LiveViews(Runner())
    heard: list[int] = []
    live.on_announce(heard.append)
    live.announce(5)
    live.announce(5)  # nothing new
    live.announce(3)  # behind what is known
    live.announce(8)
    assert heard == [5, 8]
    assert live.applied_position == 8
