"""The ports the hub's entrypoints (HTTP API, CLI) use beyond concrete services."""

from __future__ import annotations

from typing import Any, Protocol


class ViewStore(Protocol):
    """The view tables as the API and CLI read them, through ``ViewQueries`` and
    ``verify_chain``; ``SQLiteViewStore`` and ``PostgresViewStore`` are both one.
    Writing them is the view runner's business, not part of this port."""

    P: str  # the dialect's query placeholder (``?`` or ``%s``)

    def query(self, statement: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Rows as dicts; every value goes through ``params``."""
        ...

    def max_tracking_id(self, application_name: str) -> int | None:
        """The position a view group (``view:<group>``) has applied, None for none."""
        ...
