"""The personal values of a message, found through the marks on its payload model.

``services.messages.privacy`` lists, per message type, the paths marked ``Personal``.
The tests here also treat as personal every text field that is marked neither
``Personal`` nor ``NotPersonal`` (``tests/unit/test_personal_marks.py`` forbids those):
a field whose mark was dropped by mistake is then still looked for, and a test that
greps for personal values fails on it instead of silently losing it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from services.messages import PAYLOAD_TYPES, PERSONAL_PATHS
from services.messages.personal import unclassified_text_fields

UNMARKED = "notes"  # the category assumed for an unmarked text field: its author's note


def personal_paths(message_type: str) -> dict[str, str]:
    """Dotted payload path -> category of every field of ``message_type`` to treat as
    personal: the marked ones, and any unmarked text field."""
    model = PAYLOAD_TYPES[message_type]
    paths = {path: category.value for path, category in PERSONAL_PATHS[message_type].items()}
    for path in unclassified_text_fields(model):
        paths.setdefault(path, UNMARKED)
    return dict(sorted(paths.items()))


def values_at(payload: Any, path: str) -> Iterator[str]:
    """The values at the dotted ``path`` of ``payload`` as text (list items one by one)."""
    head, _, rest = path.partition(".")
    value = payload.get(head) if isinstance(payload, dict) else None
    if value is None:
        return
    if rest:
        yield from values_at(value, rest)
    elif isinstance(value, list):
        yield from (str(item) for item in value)
    else:
        yield str(value)


def personal_values(message: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(path, value) of every personal value ``message`` carries."""
    for path in personal_paths(message["type"]):
        for value in values_at(message["payload"], path):
            yield path, value
