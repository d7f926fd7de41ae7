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

Personal fields are erased from the payload before it leaves the hub (API.md:
"payload with personal fields encrypted or erased"): the participant keeps only
the pseudonym, and note texts, employers and the participant's name, birth date
and contact are dropped. ``withheld`` lists the dropped paths so a consumer can
tell an erased field from one that was never sent.
"""

from __future__ import annotations

import json
from hashlib import sha1
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.persistence import Notification

from services.replay import event_to_dict

SCHEMA_VERSION = 1
CASE_TOPIC_PREFIX = "domain.case:"
EVENT_ID_NAMESPACE = uuid5(NAMESPACE_URL, "urn:hub:event")
_NAMESPACE_BYTES = EVENT_ID_NAMESPACE.bytes
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)

# Keys whose values are personal data wherever they appear in a payload.
PERSONAL_KEYS = frozenset({"name", "birth_date", "contact", "text", "employer"})
# Keys kept inside the participant object; everything else in it is withheld.
PARTICIPANT_KEPT = frozenset({"pseudonym", "erased"})


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


def _redact(value: Any, path: str, withheld: list[str]) -> Any:
    if isinstance(value, dict):
        kept: dict[str, Any] = {}
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            if key in PERSONAL_KEYS or (path == "participant" and key not in PARTICIPANT_KEPT):
                withheld.append(where)
                continue
            kept[key] = _redact(item, where, withheld)
        return kept
    if isinstance(value, list):
        return [_redact(item, path, withheld) for item in value]
    return value


def _nested(value: Any) -> bool:
    return isinstance(value, dict) or (
        isinstance(value, list) and any(isinstance(item, dict | list) for item in value)
    )


def redact_payload(payload: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The payload without personal fields, and the paths that were dropped."""
    if PERSONAL_KEYS.isdisjoint(payload) and not any(map(_nested, payload.values())):
        return payload, []  # the common case: flat, no personal keys
    withheld: list[str] = []
    kept = _redact(payload, "", withheld)
    return kept, sorted(set(withheld))


def build_envelope(event: Any, position: int) -> dict[str, Any]:
    """The envelope of one case event recorded at ``position``."""
    plain = event_to_dict(event, position)
    payload, withheld = redact_payload(plain["payload"])
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
