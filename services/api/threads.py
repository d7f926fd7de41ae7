"""Store calls block: they run on worker threads, off the event loop.

The app's own small pool rather than ``starlette.concurrency.run_in_threadpool``
(anyio's hop took about 10 µs more event-loop time per call) or
``loop.run_in_executor``: an executor's hop makes a ``concurrent.futures.Future``
(a condition and a lock), a work item, an idle-semaphore look on each side, and
chains that future to an asyncio one by callbacks both ways. Here a call is one
queue entry and its answer one ``call_soon_threadsafe`` that settles the asyncio
future the caller awaits (``docs/http-performance.md``).

The pool belongs to one app and lives as long as its lifespan, so importing the
API starts no threads and a stopped app leaves none behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
MAX_THREADS = 40

# One call: the future its caller awaits (and that future's loop), the caller's
# context (the request id in log lines), the function and its arguments.
_Call = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", contextvars.Context, Any, tuple]


class BlockingCalls:
    """Runs blocking calls on this app's worker threads, with the caller's context.

    Threads start on demand, up to ``max_workers``: one more whenever more calls are
    under way than there are threads (counted on the event loop, where calls are
    made and their answers arrive), so an idle app holds none."""

    def __init__(self, max_workers: int = MAX_THREADS) -> None:
        self._max_workers = max_workers
        self._queue: queue.SimpleQueue[_Call | None] | None = None
        self._threads: list[threading.Thread] = []
        self._under_way = 0

    def open(self) -> None:
        self._queue = queue.SimpleQueue()
        self._threads = []
        self._under_way = 0

    def close(self) -> None:
        """Wait for the calls under way and those queued (they may hold the store),
        then end the threads."""
        calls, self._queue = self._queue, None
        if calls is None:
            return
        for _ in self._threads:
            calls.put(None)
        for thread in self._threads:
            thread.join()
        self._threads = []

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        calls = self._queue
        if calls is None:
            raise RuntimeError("the app's lifespan has not started its worker threads")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._under_way += 1
        calls.put((loop, future, contextvars.copy_context(), function, args))
        threads = len(self._threads)
        if self._under_way > threads and threads < self._max_workers:
            self._start_thread(calls)
        try:
            return await future
        finally:
            self._under_way -= 1

    def _start_thread(self, calls: queue.SimpleQueue[_Call | None]) -> None:
        thread = threading.Thread(
            target=_work,
            args=(calls,),
            name=f"hub-api_{len(self._threads)}",
            daemon=True,  # never keeps the interpreter up; ``close`` joins them
        )
        thread.start()
        self._threads.append(thread)


def _work(calls: queue.SimpleQueue[_Call | None]) -> None:
    while (call := calls.get()) is not None:
        _run_one(*call)
        del call  # nothing of the last call kept while the thread waits


def _run_one(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    context: contextvars.Context,
    function: Any,
    args: tuple,
) -> None:
    if future.cancelled():  # its caller gave up before it started: not run
        return
    try:
        result = context.run(function, *args)
    except BaseException as error:  # the caller's to handle, as an executor hands it on
        _answer(loop, _set_exception, future, error)
    else:
        _answer(loop, _set_result, future, result)


def _answer(loop: asyncio.AbstractEventLoop, settle: Any, future: Any, value: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
        loop.call_soon_threadsafe(settle, future, value)


def _set_result(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _set_exception(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
