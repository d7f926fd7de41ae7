"""The live runner: a thread that applies what is recorded, woken at once when this
process records (``notify``) and polling for other writers (SQLite's recorder has
no subscription), and read-your-writes waits on the position it announces."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

import structlog

log = structlog.get_logger("hub.views")


class Applies(Protocol):
    def catch_up(self) -> int:
        """Apply everything recorded so far."""
        ...

    def position(self) -> int:
        """The lowest committed view position, read from the tables."""
        ...


class LiveViews:
    def __init__(self, runner: Applies) -> None:
        # The runner's methods are looked up at each call, not bound here: the thread
        # and the waits run whatever ``catch_up`` and ``position`` it has then (an
        # override on the instance included).
        self._runner = runner
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._applied = threading.Condition()
        self._applied_position = 0  # the lowest view position known applied
        self._listeners: list[Callable[[int], None]] = []

    # ---- the applied position ------------------------------------------------------

    @property
    def applied_position(self) -> int:
        return self._applied_position

    def on_announce(self, listener: Callable[[int], None]) -> None:
        """Call ``listener`` with each new applied position, on the committing thread
        (it must be quick and must not block)."""
        self._listeners.append(listener)

    def announce(self, position: int) -> None:
        """The runner committed up to ``position``: wake whoever waits for it."""
        with self._applied:
            if position <= self._applied_position:
                return
            self._applied_position = position
            self._applied.notify_all()
        for listener in self._listeners:
            try:
                listener(position)
            except Exception:
                log.exception("announce_listener_failed")

    def wait_for(self, position: int, timeout: float = 5.0) -> bool:
        """True once every view has applied ``position``.

        With the thread started, waiters sleep until its next commit wakes them
        (another process's runner may also advance the views: the tables are read
        again at least every 50 ms). Without it, the waiter applies the events itself."""
        deadline = time.monotonic() + timeout
        if self._applied_position >= position:
            return True
        self.notify()
        while True:
            if self._applied_position >= position or self._runner.position() >= position:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._thread is None:
                self._runner.catch_up()
                continue
            with self._applied:
                self._applied.wait_for(
                    lambda: self._applied_position >= position, timeout=min(remaining, 0.05)
                )

    # ---- the thread ------------------------------------------------------------------

    def notify(self) -> None:
        """This process just recorded: wake the thread now rather than at the poll."""
        self._wake.set()

    def start(self, poll_interval: float = 0.25) -> None:
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self._runner.catch_up()
                except Exception:
                    log.exception("view_runner_failed")
                    self._stop.wait(1.0)
                self._wake.wait(poll_interval)
                self._wake.clear()

        self._thread = threading.Thread(target=loop, name="hub-views", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
