"""Events as the projections see them: plain, decoded records in global order.

Projections never import the aggregate: they read the stored JSON form, so a
view can be rebuilt from the events alone, by any process (the in-process
runner, the faust worker) and fast. Timestamps stay ISO 8601 strings, ids
canonical UUID strings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, NamedTuple
from uuid import UUID

CASE_TOPIC_PREFIX = "domain.case:Case."


class EventRecord(NamedTuple):
    """Immutable; a named tuple because a rebuild makes a million of them (a third of
    the cost of a frozen dataclass)."""

    position: int
    case_id: str
    version: int
    type: str
    agency: str | None
    actor: str | None
    occurred_at: str | None
    recorded_at: str
    data: dict[str, Any]


_HEX32 = re.compile("[0-9a-f]{32}")


def _unwrap(obj: dict[str, Any]) -> Any:
    kind = obj.get("_type_")
    if kind is None:
        return obj
    data = obj["_data_"]
    if kind == "uuid_hex":
        if type(data) is str and _HEX32.fullmatch(data):  # what the transcoder writes
            return f"{data[:8]}-{data[8:12]}-{data[12:16]}-{data[16:20]}-{data[20:]}"
        return str(UUID(hex=data))
    return data  # datetime_iso and decimal_str are kept as their strings


_decoder = json.JSONDecoder(object_hook=_unwrap)
# scan_once is set by JSONDecoder.__init__ and missing from typeshed's JSONDecoder.
_scan: Callable[[str, int], tuple[Any, int]] = _decoder.scan_once  # type: ignore[attr-defined]


def _decode(text: str) -> Any:
    """``_decoder.decode(text)``, without its whitespace handling for text that has
    none around it (as the transcoder writes it); anything else takes the full path."""
    try:
        data, end = _scan(text, 0)
    except StopIteration:
        return _decoder.decode(text)  # raises the same error
    if end != len(text):
        return _decoder.decode(text)
    return data


def is_case_event(topic: str) -> bool:
    return topic.startswith(CASE_TOPIC_PREFIX)


def decode(
    position: int, originator_id: UUID | str, version: int, topic: str, state: bytes
) -> EventRecord:
    """One stored case event to a record (the caller filters by ``is_case_event``)."""
    if type(state) is not bytes:
        state = bytes(state)
    data = _decode(state.decode())
    recorded_at = data.pop("timestamp")
    data.pop("originator_topic", None)  # the library's envelope, with the timestamp
    return EventRecord(  # positional: position, case_id, version, type, agency, actor,
        position,  # occurred_at, recorded_at, data (quicker than by name)
        str(originator_id),
        version,
        topic[len(CASE_TOPIC_PREFIX) :],
        data.pop("agency", None),
        data.pop("actor", None),
        data.pop("occurred_at", None),
        recorded_at,
        data,
    )


# Reads recorded in their own streams (``domain.reads``; a test checks the topic).
READ_TOPIC = "domain.reads:ReadRecorded"
CASE_READ = "CaseRead"  # the type a read of a case has in the audit trail and history


def decode_read(
    position: int, originator_id: UUID | str, version: int, topic: str, state: bytes
) -> EventRecord:
    """One stored read to a record of the case it read (``case_id`` "" for a read of
    an inbox, caseload or dashboard); its stream's id and version are not the case's."""
    if type(state) is not bytes:
        state = bytes(state)
    data = _decode(state.decode())
    recorded_at = data.pop("timestamp")
    case_id = data.pop("case_id", None)
    return EventRecord(
        position,
        case_id or "",
        version,
        CASE_READ if case_id else "Read",
        data.pop("agency", None),
        data.pop("actor", None),
        data.pop("occurred_at", None),
        recorded_at,
        data,
    )
