"""The Kafka inbox records through the same MessageService, so message ids are keyed
by (agency, message_id) there too. No broker needed: records are handed to
``Inbox.handle`` directly and the dead-letter producer is a stand-in."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from services.bootstrap import Hub
from services.kafka.inbox import Inbox
from tests import factories as f

JC, CLINIC = "jc-test", "clinic-test"


class _Producer:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(
        self, topic: str, *, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> None:
        self.sent.append({"topic": topic, "key": key, "value": value, **dict(headers)})


def _record(message: dict[str, Any], offset: int) -> Any:
    return SimpleNamespace(
        topic=f"hub.inbox.{message['agency']}",
        partition=0,
        offset=offset,
        key=message["case_id"].encode(),
        value=json.dumps(message).encode(),
        headers=[],
    )


def test_the_inbox_keys_message_ids_by_agency(hub: Hub) -> None:
    hub.registry.register(JC, "jobcenter", "Jobcenter Test")
    hub.registry.register(CLINIC, "psychiatric_clinic", "Klinik Test")
    inbox = Inbox(hub)
    producer = _Producer()
    inbox._producer = producer  # the stand-in for the dead-letter producer
    jc_opened = f.opened(JC, f.new_id())
    clinic_opened = {**f.opened(CLINIC, f.new_id()), "message_id": jc_opened["message_id"]}
    changed = {**jc_opened, "payload": {**jc_opened["payload"], "site": "Elsewhere"}}

    outcomes = [
        inbox.handle(_record(m, n))[0]
        for n, m in enumerate([jc_opened, clinic_opened, jc_opened, changed])
    ]

    assert outcomes == ["recorded", "recorded", "duplicate", "dead_lettered"]
    assert [s["hub.error.code"] for s in producer.sent] == [b"message_id_reused"]
    assert "Elsewhere" not in producer.sent[0]["__connect.errors.exception.message"].decode()
    # The dead letter is the original record (Kafka Connect form), keyed by its case id.
    assert producer.sent[0]["key"] == changed["case_id"].encode()
    assert producer.sent[0]["value"] == json.dumps(changed).encode()
