"""What the personal-data marks mean for each consumer, computed once at import.

- ``PERSONAL_PATHS``: per message type, the dotted payload paths that are
  personal, with their category (the table in the docs and tests).
- ``PERSONAL_PATHS_BY_EVENT``: the same per domain event type, for the Kafka
  envelope (events keep the payload's field names).
- ``PERSONAL_KEYS``: every field name that is personal somewhere, for log
  scrubbing (log lines are flat, so a name is enough).
"""

from __future__ import annotations

from domain.values import DataCategory
from services.messages.envelope import PAYLOAD_TYPES, event_type
from services.messages.personal import personal_paths

PERSONAL_PATHS: dict[str, dict[str, DataCategory]] = {
    type_: personal_paths(payload) for type_, payload in PAYLOAD_TYPES.items()
}
PERSONAL_PATHS_BY_EVENT: dict[str, frozenset[str]] = {
    event_type(type_): frozenset(paths) for type_, paths in PERSONAL_PATHS.items() if paths
}
PERSONAL_KEYS: frozenset[str] = frozenset(
    path.rsplit(".", 1)[-1] for paths in PERSONAL_PATHS.values() for path in paths
) | frozenset(path.split(".", 1)[0] for paths in PERSONAL_PATHS.values() for path in paths)
