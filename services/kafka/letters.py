"""The form of a dead letter on ``hub.inbox.dlq``: written in the Kafka Connect form,
read in that form and in the hub's earlier JSON form.

The Connect form (what a Kafka Connect sink writes with
``errors.deadletterqueue.context.headers.enable=true``): the record's key and value
are the original's, byte for byte, and the error and the source are headers, so
Kafka tooling can re-produce the record to its source topic as it came::

    __connect.errors.topic / .partition / .offset   where it came from
    __connect.errors.connector.name                 hub-inbox
    __connect.errors.exception.class.name           the hub's stable error code
    __connect.errors.exception.message              the hub's words (never an input value)
    hub.error.code                                  the same code, under the hub's name
    hub.error.details                               JSON, when the refusal has details
    hub.error.timestamp                             when the hub refused it (ISO 8601, UTC)
    hub.key.withheld                                "true" when the key was not copied

Keys carry no personal data: the key is copied only when it is a UUID (the case id
API.md asks agencies to key by); any other key is withheld (the DLQ record has none),
since the hub cannot know what an agency put there. The inbox reads neither keys nor
headers, so a withheld key changes nothing a re-produced record does. The original's
headers are not copied, for the same reason.

The earlier form (records written before, still read)::

    {"original": "<base64>", "source": {"topic", "partition", "offset"},
     "error": {"code", "message", "details"?}}   keyed by the source topic
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

CONNECT = "__connect.errors."
TOPIC = CONNECT + "topic"
PARTITION = CONNECT + "partition"
OFFSET = CONNECT + "offset"
CONNECTOR = CONNECT + "connector.name"
EXCEPTION_CLASS = CONNECT + "exception.class.name"
EXCEPTION_MESSAGE = CONNECT + "exception.message"
CODE = "hub.error.code"
DETAILS = "hub.error.details"
TIMESTAMP = "hub.error.timestamp"
KEY_WITHHELD = "hub.key.withheld"

CONNECTOR_NAME = "hub-inbox"
_MAX_UUID_TEXT = 45  # "urn:uuid:" and 36 characters: the longest text UUID() reads


class NotALetter(Exception):
    """The record is in neither form (the caller names it)."""


@dataclass(frozen=True)
class Written:
    """A dead letter as the producer sends it."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def safe_key(key: bytes | None) -> bytes | None:
    """The original key if it is a UUID (no personal data can hide in one), else None."""
    if not key or len(key) > _MAX_UUID_TEXT:
        return None
    try:
        UUID(key.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    return key


def connect_form(
    record: Any, code: str, message: str, details: Any = None, *, now: datetime | None = None
) -> Written:
    """The dead letter of ``record`` (a consumer record) refused with ``code``."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    text = {
        TOPIC: record.topic,
        PARTITION: str(record.partition),
        OFFSET: str(record.offset),
        CONNECTOR: CONNECTOR_NAME,
        EXCEPTION_CLASS: code,
        EXCEPTION_MESSAGE: message,
        CODE: code,
        TIMESTAMP: moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    if details:
        text[DETAILS] = json.dumps(details, ensure_ascii=False, separators=(",", ":"))
    key = safe_key(record.key)
    if record.key and key is None:
        text[KEY_WITHHELD] = "true"
    headers = [(name, value.encode()) for name, value in text.items()]
    # A tombstone (no value) stays one: re-produced, it is what the agency sent.
    return Written(key, record.value, headers)


@dataclass(frozen=True)
class Read:
    """What either form holds."""

    form: str  # "connect" or "json"
    code: str
    message: str
    details: Any
    source: dict[str, Any]  # topic, partition, offset of the original record
    key: bytes | None  # the DLQ record's key (connect: the original's, when copied)
    original: bytes


def read(record: Any) -> Read:
    """Either form from a consumer record; ``NotALetter`` for anything else."""
    headers = _headers(record)
    if any(name.startswith(CONNECT) or name.startswith("hub.error.") for name in headers):
        return _read_connect(record, headers)
    return _read_json(record)


def _headers(record: Any) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in getattr(record, "headers", None) or []:
        try:
            found[name] = (value or b"").decode("utf-8")
        except UnicodeDecodeError:
            raise NotALetter(name) from None
    return found


def _read_connect(record: Any, headers: dict[str, str]) -> Read:
    try:
        source = {
            "topic": headers[TOPIC],
            "partition": int(headers[PARTITION]),
            "offset": int(headers[OFFSET]),
        }
        # A record a Connect sink wrote names its exception's class; the hub's own
        # code, when there, is what the hub refused it with.
        code = headers.get(CODE) or headers[EXCEPTION_CLASS]
        details = json.loads(headers[DETAILS]) if DETAILS in headers else None
    except (KeyError, ValueError):
        raise NotALetter("connect") from None
    return Read(
        form="connect",
        code=code,
        message=headers.get(EXCEPTION_MESSAGE, ""),
        details=details,
        source=source,
        key=record.key,
        original=record.value or b"",
    )


def _read_json(record: Any) -> Read:
    try:
        value = json.loads(record.value)
        original = base64.b64decode(value["original"], validate=True)
        error = value["error"]
        source = dict(value["source"])
        code, message = str(error["code"]), str(error["message"])
        details = error.get("details")
    except (ValueError, TypeError, KeyError, AttributeError, binascii.Error):
        raise NotALetter("json") from None
    return Read("json", code, message, details, source, record.key, original)
