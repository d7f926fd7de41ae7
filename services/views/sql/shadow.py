"""A rebuild's shadow tables, in both databases: created beside the live ones, indexed,
swapped in by renames in one transaction, and the retired or stale ones dropped.

Each store supplies ``_ddl()`` (a transaction in its schema, holding the views'
lock) and ``_indexes_in(cursor)`` (index name -> table, as its catalogue lists them).
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from typing import Any

import structlog

from services.errors import ServiceError
from services.views.sql.batch import BatchWriter
from services.views.sql.schema import LIVE, RETIRED, SHADOW, SHADOWS, Tables

log = structlog.get_logger("hub.views")


class RebuildRunning(ServiceError):
    code = "rebuild_running"


class AuditTrailDiffers(ServiceError):
    """The rebuilt chain differs from the live one: the stored events changed since the
    live trail hashed them. The live trail is kept; it is the evidence."""

    code = "audit_trail_differs"


class ShadowTables(BatchWriter):
    def _ddl(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _indexes_in(self, c: Any) -> dict[str, str]:
        raise NotImplementedError

    def read_state(self, names: list[str]) -> tuple[int, dict[str, int]]:
        """The view generation and the tracked positions ``names``, in one read."""
        raise NotImplementedError

    def max_tracking_ids(self, names: list[str]) -> dict[str, int]:
        """``max_tracking_id`` of each name (0 for none), in one read."""
        return self.read_state(names)[1]

    def index_tables(self) -> dict[str, str]:
        """Every index in the views' database (PostgreSQL: schema), with its table."""
        with self._ddl() as c:
            return self._indexes_in(c)

    def ensure_indexes(self, c: Any) -> None:
        """The live tables' secondary indexes, under whichever name each holds (a swap
        leaves the alternate one); made at every start, so none stays missing."""
        for statement in self.index_statements(self._indexes_in(c)):
            c.execute(statement)

    def prepare_shadow(self, groups: tuple[str, ...]) -> None:
        """Drop whatever an earlier rebuild left (killed, or failed), then create empty
        shadow tables of ``groups`` with their non-bulk indexes, at no position."""
        with self._ddl() as c:
            self._drop_stale(c)
            statements = self.table_statements(SHADOWS)
            for group in groups:
                for table in self.GROUP_TABLES[group]:
                    c.execute(statements[table])
            existing = self._indexes_in(c)
            for statement in self.index_statements(existing, groups, SHADOWS, bulk=False):
                c.execute(statement)

    def drop_shadow(self) -> None:
        with self._ddl() as c:
            self._drop_stale(c)

    def _drop_stale(self, c: Any) -> None:
        for statement in (*self.drop_statements(SHADOW), *self.drop_statements(RETIRED)):
            c.execute(statement)
        names = self.shadow_tracking_names()
        c.execute(
            f"DELETE FROM {self.tracking_table} WHERE application_name IN "
            f"({','.join([self.P] * len(names))})",
            names,
        )

    def create_indexes(self, groups: tuple[str, ...], tables: Tables = LIVE) -> None:
        """Every secondary index ``groups``' tables lack (a rebuild's bulk ones)."""
        with self._ddl() as c:
            for statement in self.index_statements(self._indexes_in(c), groups, tables):
                c.execute(statement)
            self._analyze(c, groups, tables)

    def _analyze(self, c: Any, groups: tuple[str, ...], tables: Tables) -> None:
        pass

    def swap(self, c: Any, groups: tuple[str, ...]) -> None:
        """In the caller's ``exclusive`` transaction: the shadow tables of ``groups``
        become the live ones, with their positions, once the audit trail (when swapped)
        is the same chain. The live tables take retired names (``drop_retired``)."""
        if "audit" in groups:
            self._same_chain(c)
        for statement, params in self.swap_statements(groups):
            c.execute(statement, params)

    def _same_chain(self, c: Any) -> None:
        """A rebuilt chain equal to the live one at the live head is equal all through
        it (each hash covers every event before): else refuse, keeping the live trail."""
        head = self.positions_in(c, [LIVE.tracking("audit")])[LIVE.tracking("audit")]
        if head == 0:
            return
        hashes = []
        for tables in (LIVE, SHADOWS):
            c.execute(f"SELECT hash FROM {tables['view_audit']} WHERE position = {self.P}", (head,))
            row = c.fetchone()
            hashes.append(
                None if row is None else (row["hash"] if isinstance(row, dict) else row[0])
            )
        live, rebuilt = hashes
        if live is not None and live != rebuilt:
            raise AuditTrailDiffers(
                f"the rebuilt audit trail differs from the live one at position {head}: the "
                "stored events changed since they were chained; nothing was swapped, the live "
                "views and trail are kept (run hub audit verify; the case views and the "
                "dashboard can be rebuilt alone)",
                position=head,
            )

    def drop_retired(self) -> None:
        """The tables a swap retired, one transaction each (a large one takes a while
        to free on SQLite, and holds the write lock meanwhile)."""
        for statement in self.drop_statements(RETIRED):
            started = time.perf_counter()
            with self._ddl() as c:
                c.execute(statement)
            log.info(
                "views_retired_dropped",
                table=statement.split()[-1],
                seconds=round(time.perf_counter() - started, 3),
            )

    def exclusive(self) -> AbstractContextManager[Any]:
        """One transaction in which no view commit lands (SQLite: nothing is recorded
        either), with the generation already bumped: a swap's."""
        raise NotImplementedError

    def rebuild_lock(self) -> AbstractContextManager[None]:
        """Held for a whole rebuild: one at a time, and released by a crash too (a
        killed rebuild's shadow is dropped by the next one)."""
        raise NotImplementedError
