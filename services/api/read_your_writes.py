"""Read-your-writes: a 201 only once the views show what was just recorded (a 202 when
they do not within the bound), and reads that first let the views reach the log."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog

from services.api.threads import BlockingCalls
from services.views.runner import ViewRunner

log = structlog.get_logger("hub.api")

InThread = Callable[[Callable[[], int]], Awaitable[int]]


class WatchedViews(Protocol):
    """What ``ViewsWatch`` asks of the views (``ViewRunner`` in the app). A runner may
    also offer ``applied_position``: what it last committed, known without a query;
    and ``on_applied(listener)``: the listener is called with each new one."""

    def position(self) -> int: ...

    def notify(self) -> None: ...


class ViewsWatch:
    """Read-your-writes for many requests at once.

    Each request that just recorded waits here, on the event loop, for the views to
    reach its position. One poller on the loop wakes every request the views now
    cover. It looks first at the position this process's live runner announced after
    its last commit (memory, no query). A runner that calls back after each commit
    (``on_applied``) wakes the poller then; it sleeps meanwhile, rather than looking
    again every ``interval`` (a thousand wake-ups of the event loop a second, each
    waiting for the interpreter lock behind the threads that record). The view tables
    are read, from a worker thread, only while the announced position is behind a
    waiter, and at most every ``read_every`` seconds: they answer for what another
    process's runner applied. Reading them on every poll, as before, cost about as
    many store transactions as recording the messages themselves did.
    """

    def __init__(
        self,
        views: WatchedViews,
        interval: float = 0.001,
        read_every: float = 0.02,
        *,
        in_thread: InThread = asyncio.to_thread,
    ) -> None:
        self._views = views
        self._interval = interval
        self._read_every = read_every
        self._in_thread = in_thread
        self._waiters: list[tuple[int, asyncio.Future[bool]]] = []
        self._poller: asyncio.Task[None] | None = None
        self._read_at = -math.inf  # when the view tables were last read
        # Set (on the loop) when the runner announces while requests wait.
        self._woken: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        subscribe = getattr(views, "on_applied", None)
        self._pushed = callable(subscribe)
        if subscribe is not None and self._pushed:
            subscribe(self._applied)

    def _announced(self) -> int | None:
        """What this process's runner last committed, or None when it does not say.

        ``ViewRunner`` keeps it for its own ``wait_for``; from a runner that does not,
        the tables are read at every other poll instead (the same answers, more
        queries)."""
        value = getattr(self._views, "applied_position", None)
        return value if isinstance(value, int) else None

    def _applied(self, _position: int) -> None:
        """The runner committed (on its own thread): wake the poller if anyone waits.
        One call into the loop per commit, none while nobody waits."""
        loop, woken = self._loop, self._woken
        if self._waiters and loop is not None and woken is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed meanwhile
                loop.call_soon_threadsafe(woken.set)

    async def wait_for(self, position: int, timeout: float) -> bool:
        if position <= 0:
            return True
        announced = self._announced()
        if announced is not None and announced >= position:
            return True
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._waiters.append((position, future))
        self._views.notify()  # wake the live runner now rather than at its poll
        if self._poller is None or self._poller.done() or self._poller.get_loop() is not loop:
            self._woken = asyncio.Event()
            self._loop = loop
            self._poller = loop.create_task(self._poll(self._woken))
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return False

    async def _poll(self, woken: asyncio.Event) -> None:
        while self._waiters:
            woken.clear()  # before the look: an announcement after it sets it again
            reached = self._announced()
            lowest = min(position for position, _ in self._waiters)
            read_every = self._read_every if reached is not None else 2 * self._interval
            now = time.monotonic()
            if (reached is None or reached < lowest) and now - self._read_at >= read_every:
                self._read_at = now
                try:
                    stored = await self._in_thread(self._views.position)
                except Exception:
                    log.exception("views_position_failed")
                    await asyncio.sleep(0.05)
                    continue
                reached = stored if reached is None else max(reached, stored)
            if reached is not None:
                self._release(reached)
            if self._waiters:
                await self._next_round(woken, pushed=self._pushed and reached is not None)

    def _release(self, reached: int) -> None:
        """Answer every waiter ``reached`` covers; drop those that timed out (requests
        may have come, and gone, while the tables were read)."""
        still = []
        for position, future in self._waiters:
            if future.done():
                continue
            if position <= reached:
                future.set_result(True)
            else:
                still.append((position, future))
        self._waiters = still

    async def _next_round(self, woken: asyncio.Event, *, pushed: bool) -> None:
        if not pushed:
            await asyncio.sleep(self._interval)
            return
        # Until the runner's next commit, or the next look at the tables.
        wait = self._read_every - (time.monotonic() - self._read_at)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(wait, self._interval)):
                await woken.wait()


class ReadYourWrites:
    """The views as the API waits on them: kept current by this process's live runner
    (``live``), or, without one, caught up on a worker thread by whoever waits."""

    def __init__(
        self,
        views: ViewRunner,
        recorded_head: Callable[[], int | None],
        blocking: BlockingCalls,
        *,
        timeout: float,
        live: bool,
    ) -> None:
        self._views = views
        self._recorded_head = recorded_head
        self._blocking = blocking
        self._timeout = timeout
        self._live = live
        self._watch = ViewsWatch(views, in_thread=blocking.run)

    def start(self) -> None:
        if self._live:
            self._views.start()

    def stop(self) -> None:
        self._views.stop()

    async def reach(self, position: int) -> bool:
        """True once every view shows ``position`` (bounded wait)."""
        if not self._live:  # no live runner: the runner catches up in this thread
            return await self._blocking.run(self._views.wait_for, position, self._timeout)
        return await self._watch.wait_for(position, self._timeout)

    async def reach_recorded(self) -> bool:
        """``reach`` what the log holds now (e.g. the caller's own read just before)."""
        head = await self._blocking.run(self._recorded_head)
        return await self.reach(head or 0)

    async def lag(self) -> dict[str, int]:
        """Per view group, the events recorded but not yet applied."""
        return await self._blocking.run(self._lag)

    def _lag(self) -> dict[str, int]:
        head = self._recorded_head() or 0
        return {view: head - position for view, position in self._views.positions().items()}
