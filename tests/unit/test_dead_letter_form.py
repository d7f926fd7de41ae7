"""The two forms of a dead letter (services/kafka/letters.py), without a broker."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import pytest

from services.kafka import letters


def _record(key: bytes | None, value: bytes | None, headers: Any = ()) -> Any:
    return SimpleNamespace(
        topic="hub.inbox.jc-trier",
        partition=2,
        offset=41,
        key=key,
        value=value,
        headers=list(headers),
    )


@pytest.mark.parametrize(
    ("key", "kept"),
    [
        (str(uuid4()).encode(), True),
        (uuid4().hex.encode(), True),
        (b"Erika Geheimname", False),
        (b"\xff\xfe", False),
        (b"", False),
        (None, False),
    ],
)
def test_only_a_uuid_key_is_copied(key: bytes | None, kept: bool) -> None:
    written = letters.connect_form(_record(key, b"{}"), "malformed_json", "not JSON")
    assert written.key == (key if kept else None)
    withheld = dict(written.headers).get(letters.KEY_WITHHELD)
    assert withheld == (b"true" if key and not kept else None)


def test_the_connect_form_reads_back_as_written() -> None:
    key, value = str(uuid4()).encode(), b'{"type": "note.added"}'
    details = [{"path": "payload", "problem": "Field required", "kind": "missing"}]
    written = letters.connect_form(_record(key, value), "schema_invalid", "1 problem", details)
    read = letters.read(_record(written.key, written.value, written.headers))
    assert read.form == "connect"
    assert (read.code, read.message, read.details) == ("schema_invalid", "1 problem", details)
    assert read.source == {"topic": "hub.inbox.jc-trier", "partition": 2, "offset": 41}
    assert (read.key, read.original) == (key, value)


def test_the_earlier_json_form_is_still_read() -> None:
    value = json.dumps(
        {
            "original": base64.b64encode(b"raw").decode(),
            "source": {"topic": "hub.inbox.jc-trier", "partition": 0, "offset": 3},
            "error": {"code": "malformed_json", "message": "message is not valid JSON"},
        }
    ).encode()
    read = letters.read(_record(b"hub.inbox.jc-trier", value))
    assert (read.form, read.code, read.original) == ("json", "malformed_json", b"raw")


@pytest.mark.parametrize(
    "record",
    [
        _record(None, b"not a letter"),
        _record(None, b"{}", [("hub.error.code", b"x")]),  # no source
        _record(None, b"{}", [(letters.TOPIC, b"\xff")]),
    ],
)
def test_anything_else_is_no_letter(record: Any) -> None:
    with pytest.raises(letters.NotALetter):
        letters.read(record)
