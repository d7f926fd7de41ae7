"""Field types shared by the payloads: ids, texts, timestamps, bounded lists.

Id and code types declare themselves ``NotPersonal``; free-text types do not,
so each field that uses one must say whether it is personal data.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from domain.values import DataCategory
from services.messages.personal import NotPersonal

MAX_LIST_ITEMS = 50


def _no_duplicates(values: list[Any]) -> list[Any]:
    if len(set(values)) != len(values):
        raise ValueError("must not list the same value twice")
    return values


def _not_a_number(value: Any) -> Any:
    # Pydantic would read numbers as Unix timestamps; the contract is ISO 8601.
    if isinstance(value, int | float):
        raise ValueError("must be an ISO 8601 string, not a number")
    return value


AgencyId = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{1,63}$"),
    NotPersonal("an agency's id"),
]
ConsentId = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"),
    NotPersonal("the id of a consent form, chosen by its agency"),
]
UserId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128),
    NotPersonal("a staff member's id inside an agency, not the participant's data"),
]
ShortId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Code = Annotated[ShortId, NotPersonal("a programme, site or measure-kind code")]
Pseudonym = Annotated[ShortId, NotPersonal("the pseudonym stands in for the person")]
Text500 = Annotated[str, StringConstraints(min_length=1, max_length=500)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
NoteText = Annotated[str, StringConstraints(min_length=1, max_length=10_000)]


def _in_range(value: Any) -> Any:
    # Outside these years a date is a typing error, and deadline sums would overflow.
    if not 1900 <= value.year < 2200:
        raise ValueError("must lie between the years 1900 and 2199")
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_not_a_number), AfterValidator(_in_range)]
Day = Annotated[dt.date, BeforeValidator(_not_a_number), AfterValidator(_in_range)]
DocumentRef = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128),
    NotPersonal("a reference to a signed form or notice held by its agency, never the form"),
]

_UNIQUE = {"uniqueItems": True}
Categories = Annotated[
    list[DataCategory],
    Field(max_length=MAX_LIST_ITEMS, json_schema_extra=_UNIQUE),
    AfterValidator(_no_duplicates),
]
Recipients = Annotated[
    list[AgencyId],
    Field(min_length=1, max_length=MAX_LIST_ITEMS, json_schema_extra=_UNIQUE),
    AfterValidator(_no_duplicates),
]
TextList = Annotated[list[Text500], Field(max_length=MAX_LIST_ITEMS)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)
