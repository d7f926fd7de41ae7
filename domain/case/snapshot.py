"""Snapshots of a case: its state at one version, so a load replays only the events
after it (the library's snapshotting; the application sets the interval).

The library's ``Snapshot`` stores ``vars(aggregate)`` through the JSON transcoder,
which cannot carry this state faithfully: tuples would come back as lists, StrEnum
members as plain strings (``stage is Stage.CLOSED`` would be false), frozensets
are no JSON at all, and UUIDs cannot be JSON object keys. ``CaseSnapshot`` stores
the state as plain JSON values, typed by ``CaseState``'s annotations, and rebuilds
it by them; a value of another type than its annotation stops the snapshot (a
snapshot that loads differently from the events would decide writes differently).

Personal fields are in the state exactly as the events hold them: ciphertext
(``enc:v1:…``), never plaintext; erasure destroys the key they need.

Class version: the library stores ``Case.class_version`` (1 while unset) in the
snapshot, and on load calls ``Case.upcast_v<n>_v<n+1>(state)`` on the stored (plain)
state until it reaches the current version, before it is decoded here. Changing the
shape of the state (an attribute, a record's field, a type) means: raise
``Case.class_version`` and write that upcaster; ``tests/unit/test_case_snapshots.py``
pins the shape of the current version and fails first. Version 2 (``Case.upcast_v1_v2``)
dropped the notes and keeps of each appointment its state only, so that what a
snapshot holds no longer grows with the casework recorded; snapshots stored at
version 1 are in ``tests/fixtures/case-snapshots-v1.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, is_dataclass, replace
from datetime import datetime
from enum import Enum
from functools import cache
from types import NoneType, UnionType
from typing import Any, Self, Union, get_args, get_origin, get_type_hints
from uuid import UUID

from eventsourcing.domain import Snapshot

from domain.case.state import CaseState

Encode = Callable[[Any], Any]
Decode = Callable[[Any], Any]

# What the library keeps in ``vars(aggregate)`` beside the state ``CaseState`` names
# (``_id``, ``_version`` and ``_pending_events`` it sets itself on load).
_LIBRARY_ATTRIBUTES: dict[str, Any] = {"_created_on": datetime, "_modified_on": datetime}


class SnapshotUnusable(Exception):
    """A stored snapshot that cannot be turned into the current state (a newer class
    version, a shape no upcaster covers): load from the events instead."""


class CaseSnapshot(Snapshot):
    """A ``Case`` at one version, as plain JSON values (see the module docstring)."""

    @classmethod
    def take(cls, aggregate: Any) -> Self:
        snapshot = super().take(aggregate)
        state = dict(snapshot.state)
        class_version = state.pop("class_version", None)
        encoded = encode_state(state)
        if class_version is not None:
            encoded["class_version"] = class_version
        return replace(snapshot, state=encoded)

    def mutate(self, _: None) -> Any:
        try:
            aggregate = super().mutate(_)  # upcasts the stored state to the current version
        except Exception as error:  # e.g. an upcaster missing: the events still tell it all
            raise SnapshotUnusable(
                f"cannot upcast the stored state: {type(error).__name__}"
            ) from None
        if self.state.get("class_version", 1) > getattr(type(aggregate), "class_version", 1):
            raise SnapshotUnusable("the snapshot was taken by a newer version of the case")
        state = vars(aggregate)
        library = {k: state.pop(k) for k in ("_id", "_version", "_pending_events")}
        try:
            decoded = decode_state(state)
        except SnapshotUnusable:
            raise
        except Exception as error:  # any other mismatch of shape
            raise SnapshotUnusable(f"stored state does not fit: {type(error).__name__}") from None
        state.clear()
        state.update(decoded, **library)
        return aggregate


def state_hints() -> dict[str, Any]:
    """Every attribute a case's snapshot holds, with its type."""
    return {**_LIBRARY_ATTRIBUTES, **get_type_hints(CaseState)}


def encode_state(state: dict[str, Any]) -> dict[str, Any]:
    codecs = _state_codecs()
    if set(state) != set(codecs):
        unknown = sorted(set(state) ^ set(codecs))
        raise TypeError(f"case state attributes differ from CaseState's: {unknown}")
    return {name: codecs[name][0](value) for name, value in state.items()}


def decode_state(state: dict[str, Any]) -> dict[str, Any]:
    codecs = _state_codecs()
    if state.keys() != codecs.keys():
        differing = sorted(set(state) ^ set(codecs))
        raise SnapshotUnusable(f"stored attributes differ from CaseState's: {differing}")
    decoded = dict(state)
    for name, (_, decode) in codecs.items():
        if decode is not None:
            decoded[name] = decode(decoded[name])
    return decoded


@cache
def _state_codecs() -> dict[str, tuple[Encode, Decode | None]]:
    return {name: _codec(hint) for name, hint in state_hints().items()}


def _same(value: Any) -> Any:
    return value


def _hex(value: UUID) -> str:
    return value.hex


# A decoder of None: the stored value is the value (str, int, bool, Any). A case of
# thousands of records is decoded on every write, so those are not even called.
def _codec(hint: Any) -> tuple[Encode, Decode | None]:  # noqa: PLR0911 - one per kind
    """(encode, decode) between a value of type ``hint`` and plain JSON values."""
    if hint is Any:  # e.g. the participant's fields: as the events carry them
        return _same, None
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, UnionType):
        return _optional(hint, args)
    if origin is dict:
        return _dict(args)
    if origin in (list, tuple, frozenset):
        return _sequence(origin, args)
    if isinstance(hint, type) and is_dataclass(hint):
        return _record(hint)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return _checked(hint, lambda v: v.value), hint._value2member_map_.__getitem__
    if hint is UUID:  # 32 hex digits, as the library's transcoder writes them
        return _checked(UUID, _hex), UUID
    if hint is datetime:
        return _checked(datetime, datetime.isoformat), datetime.fromisoformat
    if hint in (str, int, bool):
        return _checked(hint, _same), None
    raise TypeError(f"no snapshot encoding for {hint!r}")


def _checked(kind: type, convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``convert``, after checking the exact type: a subclass (a StrEnum where ``str``
    is declared, a bool for an int) would come back as another type."""

    def run(value: Any) -> Any:
        if type(value) is not kind:
            raise TypeError(f"expected {kind.__name__}, found {type(value).__name__}")
        return convert(value)

    return run


def _optional(hint: Any, args: tuple[Any, ...]) -> tuple[Encode, Decode | None]:
    inner = [a for a in args if a is not NoneType]
    if len(inner) != 1 or len(args) != 2:
        raise TypeError(f"only X | None unions are stored, not {hint!r}")
    encode, decode = _codec(inner[0])
    return (
        lambda v: None if v is None else encode(v),
        None if decode is None else (lambda v: None if v is None else decode(v)),
    )


def _dict(args: tuple[Any, ...]) -> tuple[Encode, Decode]:
    key_hint, value_hint = args
    decode_key: Decode
    if key_hint is UUID:
        encode_key, decode_key = _checked(UUID, _hex), UUID
    elif key_hint is str:
        encode_key, decode_key = _checked(str, _same), _same
    else:
        raise TypeError(f"no snapshot encoding for keys of {key_hint!r}")
    encode, decode = _codec(value_hint)

    def encode_dict(value: Any) -> Any:
        if type(value) is not dict:
            raise TypeError(f"expected dict, found {type(value).__name__}")
        return {encode_key(k): encode(v) for k, v in value.items()}

    if key_hint is str:  # keys as stored; values by a C-level map where possible
        if decode is None:
            return encode_dict, dict
        return encode_dict, lambda v: dict(zip(v, map(decode, v.values()), strict=True))
    if decode is None:
        return encode_dict, lambda v: {decode_key(k): x for k, x in v.items()}
    return encode_dict, lambda v: {decode_key(k): decode(x) for k, x in v.items()}


def _sequence(origin: Any, args: tuple[Any, ...]) -> tuple[Encode, Decode]:
    if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
        raise TypeError(f"only tuple[X, ...] is stored, not tuple{list(args)}")
    encode, decode = _codec(args[0])

    def encode_items(value: Any) -> Any:
        if type(value) is not origin:
            raise TypeError(f"expected {origin.__name__}, found {type(value).__name__}")
        items = [encode(v) for v in value]
        return sorted(items) if origin is frozenset else items  # a stable order

    if decode is None:
        return encode_items, origin
    build: Callable[[Any], Any] = origin
    return encode_items, lambda v: build(map(decode, v))


def _record(cls: type) -> tuple[Encode, Decode]:
    hints = get_type_hints(cls)
    codecs = {f.name: _codec(hints[f.name]) for f in fields(cls)}
    converted = [(name, decode) for name, (_, decode) in codecs.items() if decode is not None]

    def encode(value: Any) -> Any:
        if type(value) is not cls:
            raise TypeError(f"expected {cls.__name__}, found {type(value).__name__}")
        return {name: enc(getattr(value, name)) for name, (enc, _) in codecs.items()}

    def decode(value: Any) -> Any:
        if value.keys() != codecs.keys():
            raise SnapshotUnusable(f"stored {cls.__name__} has other fields")
        kwargs = dict(value)
        for name, dec in converted:
            kwargs[name] = dec(kwargs[name])
        return cls(**kwargs)

    return encode, decode
