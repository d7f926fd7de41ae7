"""Marks that say which payload fields are the participant's personal data.

A field is marked where it is declared, ``Annotated[Text500, Personal(NOTES)]``;
everything that must treat personal data differently (encryption before the
store, the Kafka envelope, log scrubbing, the JSON Schema) reads these marks
instead of keeping its own list. Text that is not personal data says so with
``NotPersonal("why")``, so every text field is a decision someone made.
"""

from __future__ import annotations

import datetime as dt
import functools
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, GetJsonSchemaHandler
from pydantic.fields import FieldInfo
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from domain.values import DataCategory

M = TypeVar("M", bound=BaseModel)

PERSONAL_SCHEMA_KEY = "x-personal-data"  # JSON Schema keyword naming the category


@dataclass(frozen=True)
class Personal:
    """The participant's personal data of ``category``: encrypted per participant,
    withheld from Kafka and logs, shown as erased after erasure."""

    category: DataCategory

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema[PERSONAL_SCHEMA_KEY] = self.category.value
        return schema


@dataclass(frozen=True)
class NotPersonal:
    """Text that is no personal data of the participant; ``why`` is the reason."""

    why: str


def _marks_in(annotation: Any) -> Iterator[Personal | NotPersonal]:
    """Marks anywhere inside a type: ``list[AgencyId]`` carries ``AgencyId``'s mark."""
    if get_origin(annotation) is Annotated:
        base, *metadata = get_args(annotation)
        yield from (m for m in metadata if isinstance(m, Personal | NotPersonal))
        yield from _marks_in(base)
        return
    for arg in get_args(annotation):
        yield from _marks_in(arg)


def marks(field: FieldInfo) -> list[Personal | NotPersonal]:
    found = [m for m in field.metadata if isinstance(m, Personal | NotPersonal)]
    return found + list(_marks_in(field.annotation))


def personal_mark(field: FieldInfo) -> Personal | None:
    return next((m for m in marks(field) if isinstance(m, Personal)), None)


def _types_in(annotation: Any) -> Iterator[Any]:
    origin = get_origin(annotation)
    if origin is Annotated:
        yield from _types_in(get_args(annotation)[0])
    elif origin is Literal:
        return  # fixed words of the contract, not text someone types
    elif origin in (Union, types.UnionType) or origin in (list, tuple, set, frozenset):
        for arg in get_args(annotation):
            yield from _types_in(arg)
    else:
        yield annotation


def carries_text(field: FieldInfo) -> bool:
    """Free strings (not enums or literals: their values are fixed by the contract)."""
    return any(
        isinstance(t, type) and issubclass(t, str) and not issubclass(t, Enum)
        for t in _types_in(field.annotation)
    )


def nested_model(field: FieldInfo) -> type[BaseModel] | None:
    for t in _types_in(field.annotation):
        if isinstance(t, type) and issubclass(t, BaseModel):
            return t
    return None


@functools.cache
def personal_paths(model: type[BaseModel]) -> dict[str, DataCategory]:
    """Dotted paths of the marked fields of ``model`` (nested models included)."""
    paths: dict[str, DataCategory] = {}
    for name, field in model.model_fields.items():
        mark = personal_mark(field)
        if mark is not None:
            paths[name] = mark.category
        elif (inner := nested_model(field)) is not None:
            paths.update({f"{name}.{path}": c for path, c in personal_paths(inner).items()})
    return paths


def unclassified_text_fields(model: type[BaseModel]) -> list[str]:
    """Text fields that are neither ``Personal`` nor ``NotPersonal`` (must be none)."""
    found: list[str] = []
    for name, field in model.model_fields.items():
        if (inner := nested_model(field)) is not None:
            found += [f"{name}.{path}" for path in unclassified_text_fields(inner)]
        elif carries_text(field) and not marks(field):
            found.append(name)
    return found


def _as_text(value: Any) -> str:
    return value.isoformat() if isinstance(value, dt.date) else str(value)


def seal_personal(model: M, seal: Callable[[str], str]) -> M:
    """A copy of ``model`` with every marked value replaced by ``seal(value)``.

    Lists stay lists (one ciphertext per item); dates are sealed as ISO 8601. The
    copy is not validated again: sealed values are strings in place of dates, and
    ciphertexts are longer than the limits the plaintext was checked against.
    """
    update: dict[str, Any] = {}
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if value is None:
            continue
        if personal_mark(field) is not None:
            if isinstance(value, list | tuple):
                update[name] = [seal(_as_text(item)) for item in value]
            else:
                update[name] = seal(_as_text(value))
        elif isinstance(value, BaseModel):
            sealed = seal_personal(value, seal)
            if sealed is not value:
                update[name] = sealed
    return model.model_copy(update=update) if update else model
