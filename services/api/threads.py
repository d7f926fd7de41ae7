"""Store calls block: they run on worker threads, off the event loop.

A plain executor rather than ``starlette.concurrency.run_in_threadpool``: anyio's
hop took about 10 µs more event-loop time per call. The pool belongs to one app
and lives as long as its lifespan, so importing the API starts no threads and a
stopped app leaves none behind.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
MAX_THREADS = 40


class BlockingCalls:
    """Runs blocking calls on this app's worker threads, with the caller's context
    (the request id in log lines)."""

    def __init__(self, max_workers: int = MAX_THREADS) -> None:
        self._max_workers = max_workers
        self._pool: ThreadPoolExecutor | None = None

    def open(self) -> None:
        # Threads start on demand, so an idle app holds none.
        self._pool = ThreadPoolExecutor(max_workers=self._max_workers, thread_name_prefix="hub-api")

    def close(self) -> None:
        """Wait for the calls under way (they may hold the store), then end the threads."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        pool = self._pool
        if pool is None:
            raise RuntimeError("the app's lifespan has not started its worker threads")
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        return await loop.run_in_executor(pool, context.run, function, *args)
