"""The event envelope the relay publishes to ``hub.events.v1`` (API.md, "Kafka").

One JSON object per recorded case event::

    {"schema_version": 1, "event_id": "...", "type": "HandoverOffered",
     "case_id": "...", "position": 15, "version": 3,
     "occurred_at": "...", "recorded_at": "...", "agency": "...", "actor": "...",
     "payload": {...}, "withheld": ["participant.name", ...]}

``event_id`` is derived from the case id and the event's version, so an event
published twice (after a crash of the relay) carries the same id both times and
consumers can drop the repeat. The record key is the case id, so all events of
one case land on one partition, in order.

Personal fields are dropped from the payload before it leaves the hub (API.md:
"payload with personal fields encrypted or erased"), all of them alike: the
fields marked ``Personal`` on the message payloads (``PERSONAL_PATHS_BY_EVENT``),
and any other value that is a ciphertext. No consumer holds the participant's
key, so ciphertext would only tell them a field's length and when it changed.
``withheld`` lists the dropped paths so a consumer can tell an erased field from
one that was never sent.
"""

from __future__ import annotations

import json
from hashlib import sha1
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.persistence import Notification

from services.crypto import PREFIX as CIPHERTEXT_PREFIX
from services.messages import PERSONAL_PATHS_BY_EVENT
from services.replay import event_to_dict

SCHEMA_VERSION = 1
CASE_TOPIC_PREFIX = "domain.case:"
EVENT_ID_NAMESPACE = uuid5(NAMESPACE_URL, "urn:hub:event")
_NAMESPACE_BYTES = EVENT_ID_NAMESPACE.bytes
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)


def is_case_notification(notification: Notification) -> bool:
    return notification.topic.startswith(CASE_TOPIC_PREFIX)


def event_id(case_id: UUID | str, version: int) -> UUID:
    """Stable id of one event: the same case and version give the same id."""
    return uuid5(EVENT_ID_NAMESPACE, f"{case_id}:{version}")


def _event_id_text(case_id: str, version: int) -> str:
    """``str(event_id(case_id, version))`` without building UUID objects (hot path)."""
    name = _NAMESPACE_BYTES + f"{case_id}:{version}".encode()
    digest = bytearray(sha1(name, usedforsecurity=False).digest()[:16])  # as uuid5 does
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _is_ciphertext(value: Any) -> bool:
    if isinstance(value, str):
        return value.startswith(CIPHERTEXT_PREFIX)
    return isinstance(value, list) and any(map(_is_ciphertext, value))


def _redact(value: Any, path: str, personal: frozenset[str], withheld: list[str]) -> Any:
    if isinstance(value, dict):
        kept: dict[str, Any] = {}
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            if item is not None and (where in personal or _is_ciphertext(item)):
                withheld.append(where)
                continue
            kept[key] = _redact(item, where, personal, withheld)
        return kept
    if isinstance(value, list):
        return [_redact(item, path, personal, withheld) for item in value]
    return value


def _plain_and_flat(payload: dict[str, Any]) -> bool:
    """No nested objects and no ciphertext: nothing to walk into."""
    for value in payload.values():
        if isinstance(value, dict) or _is_ciphertext(value):
            return False
        if isinstance(value, list) and any(isinstance(item, dict | list) for item in value):
            return False
    return True


def redact_payload(
    payload: dict[str, Any], event_type: str = ""
) -> tuple[dict[str, Any], list[str]]:
    """The payload without personal fields, and the paths that were dropped."""
    personal = PERSONAL_PATHS_BY_EVENT.get(event_type, frozenset())
    if not personal and _plain_and_flat(payload):
        return payload, []  # the common case: nothing personal to look for
    withheld: list[str] = []
    kept = _redact(payload, "", personal, withheld)
    return kept, sorted(set(withheld))


def build_envelope(event: Any, position: int) -> dict[str, Any]:
    """The envelope of one case event recorded at ``position``."""
    plain = event_to_dict(event, position)
    payload, withheld = redact_payload(plain["payload"], plain["type"])
    case_id = str(event.originator_id)
    return {
        "schema_version": SCHEMA_VERSION,
        "event_id": _event_id_text(case_id, plain["version"]),
        "type": plain["type"],
        "case_id": case_id,
        "position": position,
        "version": plain["version"],
        "occurred_at": plain["occurred_at"],
        "recorded_at": plain["recorded_at"],
        "agency": plain["agency"],
        "actor": plain["actor"],
        "payload": payload,
        "withheld": withheld,
    }


def encode(envelope: dict[str, Any]) -> bytes:
    return _ENCODER.encode(envelope).encode("utf-8")


def decode(value: bytes) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(value)
    return decoded
