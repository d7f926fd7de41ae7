"""A rebuild beside the live views (blue/green): what holds for its whole length.

One rebuild at a time (``rebuild_lock``: a killed rebuild releases it too). It
starts clean: whatever an earlier one left (shadow tables of a rebuild killed
half-way, retired tables of a swap interrupted before their drop) is dropped, and
empty shadow tables are created. The live views serve throughout and the live
runner keeps them current; readers and read-your-writes waiters see them until the
swap (``ViewRunner.swap_in``) replaces them, whole, in one transaction. A rebuild
that fails drops its shadow tables; one that is killed leaves them for the next.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import structlog

log = structlog.get_logger("hub.views")


@contextlib.contextmanager
def shadow_build(views: Any, groups: tuple[str, ...]) -> Iterator[None]:
    """Around a rebuild of ``groups`` into the shadow tables of ``views`` (a view store)."""
    with views.rebuild_lock():
        views.prepare_shadow(groups)
        try:
            yield
        except BaseException:
            with contextlib.suppress(Exception):
                views.drop_shadow()
            raise
        # Swapped: the tables it replaced go, each in a transaction of its own.
        views.drop_retired()
