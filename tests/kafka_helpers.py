"""What the Kafka tests share beside the broker itself (``tests/kafka_broker.py``):
the inbox consumer run in a thread, an agency's producer, sending to an agency's
inbox topic, and ``hub`` commands with the broker's settings in their environment."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kafka import KafkaProducer

from services.bootstrap import Hub
from services.kafka.inbox import Inbox
from services.settings import Settings
from tests.cli_helpers import hub_cli
from tests.kafka_broker import KafkaNames

__all__ = ["ROOT", "agency_producer", "hub_cli", "hub_env", "running_inbox", "send"]

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def running_inbox(hub: Hub, settings: Settings) -> Iterator[Inbox]:
    """``hub``'s inbox consumer in a thread, stopped (and joined) afterwards."""
    inbox = Inbox(hub, settings)
    stop = threading.Event()
    thread = threading.Thread(target=inbox.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield inbox
    finally:
        stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the inbox did not stop"


@contextmanager
def agency_producer(bootstrap: str) -> Iterator[KafkaProducer]:
    """What an agency (or Kafka tooling re-producing a dead letter) runs: a plain
    kafka-python producer."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        yield producer
    finally:
        producer.close(timeout=10)


def send(producer: KafkaProducer, agency: str, value: bytes, key: str | None = None) -> None:
    """``value`` to ``agency``'s inbox topic, acknowledged."""
    producer.send(f"hub.inbox.{agency}", key=key.encode() if key else None, value=value).get(
        timeout=10
    )


def hub_env(settings: Settings, bootstrap: str, names: KafkaNames, **more: str) -> dict[str, str]:
    """The environment of a ``hub`` command on ``settings``' store and this broker."""
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HUB_DATABASE_URL": settings.effective_database_url,
        "HUB_VAR_DIR": str(settings.var_dir),
        "HUB_LOG_FORMAT": "json",
        "HUB_KAFKA_BOOTSTRAP": bootstrap,
        "HUB_KAFKA_EVENTS_TOPIC": names.events_topic,
        "HUB_KAFKA_DLQ_TOPIC": names.dlq_topic,
        "HUB_KAFKA_INBOX_GROUP": names.inbox_group,
        "HUB_KAFKA_EVENTS_PARTITIONS": "3",
        "HUB_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "HUB_KAFKA_TIMEOUT_MS": "5000",
        "HUB_KAFKA_RETRY_MAX_S": "1",
        "HUB_KAFKA_INBOX_REFRESH_S": "1",
        **more,
    }
