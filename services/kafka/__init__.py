"""Kafka: the relay (event store -> ``hub.events.v1``) and the inbox consumer
(``hub.inbox.<agency>`` -> application service, refusals to ``hub.inbox.dlq``).

Both speak plain Kafka through kafka-python; nothing here depends on the broker
used in tests. ``hub relay`` and ``hub inbox`` run one each; ``hub serve`` runs
both in background threads (``start_background``) unless told otherwise.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import structlog

from services.bootstrap import Hub
from services.kafka.envelope import SCHEMA_VERSION, build_envelope, event_id
from services.kafka.inbox import Inbox
from services.kafka.relay import Relay
from services.metrics import HubMetrics

__all__ = [
    "SCHEMA_VERSION",
    "BackgroundKafka",
    "Inbox",
    "Relay",
    "build_envelope",
    "event_id",
    "start_background",
]

log = structlog.get_logger("hub.kafka")


@dataclass
class BackgroundKafka:
    """The relay and the inbox running in threads of this process."""

    stop_event: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=timeout)
            if thread.is_alive():
                log.warning("kafka_thread_did_not_stop", thread=thread.name)


def start_background(hub: Hub, metrics: HubMetrics | None = None) -> BackgroundKafka | None:
    """Start relay and inbox threads when Kafka is configured (else None); they count
    in ``metrics`` (the API's, so its ``/metrics`` shows them)."""
    if not hub.settings.kafka_bootstrap:
        return None
    background = BackgroundKafka()
    relay, inbox = Relay(hub, metrics=metrics), Inbox(hub, metrics=metrics)
    for name, runner in (("hub-relay", relay.run), ("hub-inbox", inbox.run)):
        thread = threading.Thread(
            target=runner, args=(background.stop_event,), name=name, daemon=True
        )
        thread.start()
        background.threads.append(thread)
    log.info("kafka_background_started", threads=[t.name for t in background.threads])
    return background
