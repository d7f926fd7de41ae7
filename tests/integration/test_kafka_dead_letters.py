"""Dead letters in the Kafka Connect form, against a real broker (Tansu): the original
key and value unchanged, the error and source in headers; re-produced from the topic
as they came, they are recorded once; records of the earlier JSON form still list and
replay with ``hub dlq``."""

from __future__ import annotations

import base64
import json
from typing import Any
from uuid import UUID

import pytest

from services.bootstrap import Hub
from services.demo import register_demo_agencies
from services.settings import Settings
from tests import factories, kafka_broker
from tests.kafka_broker import KafkaNames, kafka_settings, read_topic, wait_until
from tests.kafka_helpers import agency_producer, hub_cli, hub_env, running_inbox

pytestmark = [pytest.mark.kafka]

kafka_bootstrap = kafka_broker.kafka_bootstrap
kafka_names = kafka_broker.kafka_names

SECRET = "Erika Geheimname"  # stands for personal content in a refused message
CONNECT_HEADERS = {
    "__connect.errors.topic",
    "__connect.errors.partition",
    "__connect.errors.offset",
    "__connect.errors.exception.class.name",
    "__connect.errors.exception.message",
    "hub.error.code",
    "hub.error.timestamp",
}


def headers(record: Any) -> dict[str, str]:
    return {name: value.decode() for name, value in record.headers}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_refused_message_lands_as_it_came_with_the_error_in_headers(
    hub: Hub, settings: Settings, kafka_bootstrap: str, kafka_names: KafkaNames
) -> None:
    register_demo_agencies(hub.registry)
    ks = kafka_settings(settings, kafka_bootstrap, kafka_names)
    case_id = factories.new_id()
    key = str(case_id).encode()  # the case id, as API.md asks agencies to key by
    early = factories.message(
        "note.added", "jc-trier", case_id, {"text": f"Anruf {SECRET}", "category": "notes"}
    )
    value = json.dumps(early).encode()
    broken = b'{"name": "' + SECRET.encode() + b'", '
    with running_inbox(hub, ks) as inbox, agency_producer(kafka_bootstrap) as producer:
        producer.send("hub.inbox.jc-trier", key=key, value=value).get(timeout=10)
        # A key the hub cannot vouch for (here: a name) is not copied.
        producer.send("hub.inbox.jc-trier", key=SECRET.encode(), value=broken).get(timeout=10)
        wait_until(lambda: inbox.stats.dead_lettered == 2, 40, "two dead letters")

    dead = read_topic(kafka_bootstrap, ks.kafka_dlq_topic, expect=2, settle=0.5)
    by_code = {headers(record)["hub.error.code"]: record for record in dead}
    assert set(by_code) == {"case_not_found", "malformed_json"}

    refused = by_code["case_not_found"]
    assert (refused.key, refused.value) == (key, value)  # byte for byte as sent
    found = headers(refused)
    assert set(found) >= CONNECT_HEADERS
    assert found["__connect.errors.topic"] == "hub.inbox.jc-trier"
    assert int(found["__connect.errors.partition"]) >= 0
    assert int(found["__connect.errors.offset"]) >= 0
    assert found["__connect.errors.exception.class.name"] == "case_not_found"
    assert found["__connect.errors.exception.message"]
    assert found["hub.error.timestamp"].endswith("Z")
    assert "hub.key.withheld" not in found

    unparsed = by_code["malformed_json"]
    assert unparsed.value == broken
    assert unparsed.key is None
    assert headers(unparsed)["hub.key.withheld"] == "true"
    assert json.loads(headers(unparsed)["hub.error.details"])  # where the JSON broke
    for record in dead:
        for name, text in headers(record).items():
            assert "Geheimname" not in text, name  # no personal data in any header


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_dlq_records_re_produced_from_the_topic_are_recorded_once(
    hub: Hub, settings: Settings, kafka_bootstrap: str, kafka_names: KafkaNames
) -> None:
    """A handover to an agency not yet registered is refused; once it is registered,
    the dead letter's key and value re-produced to the source topic (as Kafka tooling
    does with a Connect dead letter) are recorded once, and a second re-produce and a
    ``hub dlq replay`` of the same letter are duplicates."""
    register_demo_agencies(hub.registry)
    ks = kafka_settings(settings, kafka_bootstrap, kafka_names)
    env = hub_env(settings, kafka_bootstrap, kafka_names)
    case_id, handover_id = factories.new_id(), factories.new_id()
    hub.messages.record_raw(json.dumps(factories.opened("jc-trier", case_id)).encode())
    offer = factories.offer("jc-trier", case_id, handover_id, kind="assignment", to="coach-neu")
    with running_inbox(hub, ks) as inbox, agency_producer(kafka_bootstrap) as producer:
        producer.send(
            "hub.inbox.jc-trier", key=str(case_id).encode(), value=json.dumps(offer).encode()
        ).get(timeout=10)
        wait_until(lambda: inbox.stats.dead_lettered == 1, 40, "the refused offer")
        [letter] = read_topic(kafka_bootstrap, ks.kafka_dlq_topic, expect=1)
        assert headers(letter)["hub.error.code"] == "agency_unknown"
        assert hub.app.store.find_receipt(UUID(offer["message_id"])) is None

        hub.registry.register("coach-neu", "coaching_provider", "Coaching Neu")
        events = hub.app.recorder.max_notification_id()
        source = headers(letter)["__connect.errors.topic"]
        producer.send(source, key=letter.key, value=letter.value).get(timeout=10)
        wait_until(lambda: inbox.stats.recorded == 1, 40, "the re-produced offer")
        producer.send(source, key=letter.key, value=letter.value).get(timeout=10)
        wait_until(lambda: inbox.stats.duplicates == 1, 40, "the second as a duplicate")
        assert (inbox.stats.recorded, inbox.stats.dead_lettered) == (1, 1)

    assert hub.app.recorder.max_notification_id() == events + 1
    assert hub.app.store.find_receipt(UUID(offer["message_id"])) is not None
    replayed = hub_cli("dlq", "replay", f"{letter.partition}:{letter.offset}", env=env)
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.startswith(f"{letter.partition}:{letter.offset}\tduplicate\t")
    assert hub.app.recorder.max_notification_id() == events + 1


def _old_form(value: bytes, topic: str, partition: int, offset: int, code: str) -> bytes:
    """A dead letter as the inbox wrote it before the Connect form."""
    return json.dumps(
        {
            "original": base64.b64encode(value).decode("ascii"),
            "source": {"topic": topic, "partition": partition, "offset": offset},
            "error": {"code": code, "message": "the case is not known to the hub"},
        },
        separators=(",", ":"),
    ).encode()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_old_form_records_on_the_topic_still_list_and_replay(
    hub: Hub, settings: Settings, kafka_bootstrap: str, kafka_names: KafkaNames
) -> None:
    register_demo_agencies(hub.registry)
    ks = kafka_settings(settings, kafka_bootstrap, kafka_names)
    env = hub_env(settings, kafka_bootstrap, kafka_names)
    case_id = factories.new_id()
    old_note = factories.message(
        "note.added", "jc-trier", case_id, {"text": "alt", "category": "notes"}
    )
    new_note = factories.message(
        "note.added", "jc-trier", case_id, {"text": "neu", "category": "notes"}
    )
    with running_inbox(hub, ks) as inbox, agency_producer(kafka_bootstrap) as producer:
        # The topic exists once the inbox connected; the old record goes in first.
        wait_until(lambda: inbox._producer is not None, 40, "the inbox to connect")
        old = _old_form(json.dumps(old_note).encode(), "hub.inbox.jc-trier", 0, 3, "case_not_found")
        producer.send(ks.kafka_dlq_topic, key=b"hub.inbox.jc-trier", value=old).get(timeout=10)
        producer.send(
            "hub.inbox.jc-trier", key=str(case_id).encode(), value=json.dumps(new_note).encode()
        ).get(timeout=10)
        wait_until(lambda: inbox.stats.dead_lettered == 1, 40, "the new-form dead letter")

    listed = hub_cli("dlq", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert [row[2] for row in rows] == ["case_not_found", "case_not_found"], listed.stdout
    assert rows[0][4] == "hub.inbox.jc-trier[0]@3"  # the old one, first
    assert rows[1][4].startswith("hub.inbox.jc-trier[")
    assert "2 dead letters" in listed.stderr
    shown = hub_cli("dlq", "list", "--show", env=env)
    assert '"text": "alt"' in shown.stdout
    assert '"text": "neu"' in shown.stdout

    hub.messages.record_raw(json.dumps(factories.opened("jc-trier", case_id)).encode())
    replayed = hub_cli("dlq", "replay", rows[0][0], rows[1][0], env=env)
    assert replayed.returncode == 0, replayed.stderr
    outcomes = [line.split("\t")[1] for line in replayed.stdout.splitlines()]
    assert outcomes == ["recorded", "recorded"]
    for message in (old_note, new_note):
        assert hub.app.store.find_receipt(UUID(message["message_id"])) is not None
