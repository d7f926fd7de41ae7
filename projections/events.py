"""Events as the projections see them: plain, decoded records in global order.

Projections never import the aggregate: they read the stored JSON form, so a
view can be rebuilt from the events alone, by any process (the in-process
runner, the faust worker) and fast. Timestamps stay ISO 8601 strings, ids
canonical UUID strings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID

CASE_TOPIC_PREFIX = "domain.case:Case."
_ENVELOPE_KEYS = ("originator_topic", "timestamp")


@dataclass(frozen=True, slots=True)
class EventRecord:
    position: int
    case_id: str
    version: int
    type: str
    agency: str | None
    actor: str | None
    occurred_at: str | None
    recorded_at: str
    data: dict[str, Any]


def _unwrap(obj: dict[str, Any]) -> Any:
    kind = obj.get("_type_")
    if kind is None:
        return obj
    data = obj["_data_"]
    if kind == "uuid_hex":
        return str(UUID(hex=data))
    return data  # datetime_iso and decimal_str are kept as their strings


_decoder = json.JSONDecoder(object_hook=_unwrap)


def is_case_event(topic: str) -> bool:
    return topic.startswith(CASE_TOPIC_PREFIX)


def decode(
    position: int, originator_id: UUID | str, version: int, topic: str, state: bytes
) -> EventRecord:
    """One stored case event to a record (the caller filters by ``is_case_event``)."""
    data = _decoder.decode(
        state.decode() if isinstance(state, bytes | bytearray) else bytes(state).decode()
    )
    recorded_at = data.pop("timestamp")
    for key in _ENVELOPE_KEYS:
        data.pop(key, None)
    return EventRecord(
        position=position,
        case_id=str(originator_id),
        version=version,
        type=topic[len(CASE_TOPIC_PREFIX) :],
        agency=data.pop("agency", None),
        actor=data.pop("actor", None),
        occurred_at=data.pop("occurred_at", None),
        recorded_at=recorded_at,
        data=data,
    )
