"""``/readyz``: is this process fit to take requests? Each check answers ok and a
reason; the reasons name positions, counts and error types, never a value, a
person or a secret.

- ``database``: the notification log's head, one cheap query;
- ``views``: every view at most ``HUB_READY_MAX_VIEW_LAG`` events behind the log;
- ``master_key``: the key in memory still opens the store's check value;
- ``kafka``: the brokers answer a metadata request, when this process talks to
  Kafka (``hub serve`` running the relay and inbox); an API that leaves Kafka to
  its own processes stays ready while the broker is away, since it does not need it.

Checks run at once, each bounded by ``HUB_READY_TIMEOUT_S``: a store that hangs
makes the probe fail in time rather than hang with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import BaseModel

from services.api.read_your_writes import ReadYourWrites
from services.api.threads import BlockingCalls
from services.bootstrap import Hub


class Check(BaseModel):
    ok: bool
    reason: str


class ReadyBody(BaseModel):
    """``status``: ready (200) or not_ready (503); one entry per check."""

    status: str
    checks: dict[str, Check]


class Probe(Protocol):
    def check(self) -> tuple[bool, str]: ...

    def close(self) -> None: ...


@dataclass
class Readiness:
    head: Callable[[], int | None]  # the notification log's newest position
    views: ReadYourWrites
    verify_master_key: Callable[[], None]
    blocking: BlockingCalls
    max_view_lag: int
    timeout: float
    broker: Probe | None = None  # None: this process does not use Kafka
    _running: dict[str, asyncio.Future[Check]] = field(default_factory=dict)

    def close(self) -> None:
        if self.broker is not None:
            self.broker.close()

    async def report(self) -> ReadyBody:
        checks = dict(
            zip(
                ("database", "views", "master_key", "kafka"),
                await asyncio.gather(
                    self._bounded("database", self._database),
                    self._bounded("views", self._views),
                    self._bounded("master_key", self._master_key),
                    self._bounded("kafka", self._kafka),
                ),
                strict=True,
            )
        )
        ready = all(check.ok for check in checks.values())
        return ReadyBody(status="ready" if ready else "not_ready", checks=checks)

    async def _bounded(self, name: str, check: Callable[[], Awaitable[Check]]) -> Check:
        """``check`` within the bound. One run per check at a time: while a store hangs,
        later probes wait on the run under way instead of taking another thread each."""
        loop = asyncio.get_running_loop()
        running = self._running.get(name)
        if running is None or running.done() or running.get_loop() is not loop:
            running = self._running[name] = asyncio.ensure_future(check())
        try:
            return await asyncio.wait_for(asyncio.shield(running), self.timeout)
        except TimeoutError:
            return Check(ok=False, reason=f"no answer within {self.timeout:g} s")
        except Exception as error:  # a failed check is an answer, not a 500
            code = getattr(error, "code", None) or type(error).__name__  # never its text
            return Check(ok=False, reason=f"failed ({code})")

    async def _database(self) -> Check:
        head = await self.blocking.run(self.head)
        return Check(ok=True, reason=f"reachable (head position {head or 0})")

    async def _views(self) -> Check:
        lags = await self.views.lag()
        behind = {view: lag for view, lag in lags.items() if lag > self.max_view_lag}
        figures = ", ".join(f"{view} {lag}" for view, lag in sorted(lags.items()))
        text = f"events behind: {figures} (bound {self.max_view_lag})"
        return Check(ok=not behind, reason=text)

    async def _master_key(self) -> Check:
        await self.blocking.run(self.verify_master_key)
        return Check(ok=True, reason="loaded; it opens the store's key check")

    async def _kafka(self) -> Check:
        if self.broker is None:
            return Check(ok=True, reason="not used by this process")
        ok, reason = await self.blocking.run(self.broker.check)
        return Check(ok=ok, reason=reason)


def readiness_for(hub: Hub, views: ReadYourWrites, blocking: BlockingCalls) -> Readiness:
    """The checks of an API over ``hub``; the brokers' only when ``hub serve`` runs the
    relay and inbox in this process (Kafka configured and HUB_SERVE_KAFKA on)."""
    settings = hub.settings
    broker: Probe | None = None
    if settings.kafka_bootstrap and settings.serve_kafka:
        from services.kafka.common import BrokerProbe

        broker = BrokerProbe(settings)
    return Readiness(
        head=hub.app.recorder.max_notification_id,
        views=views,
        verify_master_key=hub.cipher.verify_master_key,
        blocking=blocking,
        max_view_lag=settings.ready_max_view_lag,
        timeout=settings.ready_timeout_s,
        broker=broker,
    )
