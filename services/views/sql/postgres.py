"""The view tables in PostgreSQL, in the hub's schema: rows by COPY and array
parameters, commits, resets and swaps serialised by an advisory lock per schema."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from zlib import crc32

from eventsourcing.postgres import PostgresTrackingRecorder

from services.views.sql.batch import ViewWrites, require_single_row_tracking
from services.views.sql.schema import Columns, Tables, on_conflict
from services.views.sql.shadow import RebuildRunning, ShadowTables

# How long a swap waits for the live tables (a reader mid-query) before it gives up
# and tries again; readers queue behind a waiting rename, so it stays short.
SWAP_LOCK_TIMEOUT = "2s"


class PostgresViewStore(ShadowTables, PostgresTrackingRecorder):
    P = "%s"
    REAL = "DOUBLE PRECISION"
    TEXT_KEY = "TEXT"
    POSITION_KEY = "BIGINT PRIMARY KEY"
    KEYED_TABLE = ""

    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        require_single_row_tracking(datastore)
        super().__init__(datastore, **kwargs)
        from psycopg.sql import SQL

        self._schema = self.datastore.schema
        self._lz4: bool | None = None
        self.tracking_table = self.tracking_table_name
        self.sql_create_statements.extend(SQL(s) for s in self.view_create_statements())  # type: ignore[misc]

    def _create_table(self, curs: Any) -> None:
        self._in_schema(curs)
        super()._create_table(curs)
        self.ensure_indexes(curs)

    def read_state(self, names: list[str]) -> tuple[int, dict[str, int]]:
        # The generation first: a swap landing between the two reads then shows as
        # positions of the new tables with the old generation, and the page computed
        # from them is refused at its commit (``write_positions``).
        with self.datastore.transaction(commit=False) as curs:
            self._in_schema(curs)
            return self.generation_in(curs), self.positions_in(curs, names)

    def _in_schema(self, curs: Any, *then: str) -> None:
        """This transaction in the hub's schema, then ``then`` (plain statements), in
        one round trip."""
        from psycopg.sql import SQL, Identifier

        statements = [SQL("SET LOCAL search_path TO {}").format(Identifier(self._schema))]
        statements.extend(SQL(statement) for statement in then)  # type: ignore[misc]
        curs.execute(SQL("; ").join(statements))

    def _lock_views(self, purpose: str = "hub-views") -> str:
        """Commits and resets of this schema's views, one at a time (until the
        transaction ends): a reset's deletes never miss rows of a commit that lands
        while it runs, and a commit's positions are set against settled rows."""
        return f"SELECT pg_advisory_xact_lock({self._lock_key(purpose)})"

    def _lock_key(self, purpose: str) -> int:
        return crc32(f"{purpose}:{self._schema}".encode())

    def commit(self, writes: ViewWrites) -> None:
        with self.datastore.transaction(commit=True) as curs:
            if self._lz4 is None:
                curs.execute(
                    "SELECT 'lz4' = ANY(enumvals) AS lz4 FROM pg_settings "
                    "WHERE name = 'default_toast_compression'"
                )
                found = curs.fetchone()
                self._lz4 = bool(found and found["lz4"])
            self._in_schema(
                curs,
                self._lock_views(),
                # Views are derived data: a crash may lose the last view commits (never
                # half of one), which are applied again from the tracked positions.
                "SET LOCAL synchronous_commit = off",
                # Documents (kilobytes each) compress several times quicker.
                *(["SET LOCAL default_toast_compression = 'lz4'"] if self._lz4 else []),
            )
            self.write_batch(curs, writes)

    def insert_rows(
        self, c: Any, tables: Tables, table: str, columns: Columns, rows: list[tuple[Any, ...]]
    ) -> None:
        names = ", ".join(name for name, _ in columns)
        with c.copy(f"COPY {tables[table]} ({names}) FROM STDIN") as copy:
            write = copy.write_row
            for row in rows:
                write(row)

    def upsert_rows(
        self, c: Any, tables: Tables, table: str, columns: Columns, rows: list[tuple[Any, ...]]
    ) -> None:
        if table == "view_case_docs" or len(rows) < 500:
            # Documents (kilobytes each) are quickest as a pipelined executemany; so
            # are a few rows, where a staging table would not pay its way.
            super().upsert_rows(c, tables, table, columns, rows)
            return
        # Many small rows: COPY into a session's staging table (emptied at commit),
        # then one INSERT ... SELECT ... ON CONFLICT. The columns are the same for
        # the live and the shadow table.
        staging = f"staging_{table}"
        c.execute(f"CREATE TEMP TABLE IF NOT EXISTS {staging} (LIKE {table}) ON COMMIT DELETE ROWS")
        names = ", ".join(name for name, _ in columns)
        with c.copy(f"COPY {staging} ({names}) FROM STDIN") as copy:
            write = copy.write_row
            for row in rows:
                write(row)
        c.execute(
            f"INSERT INTO {tables[table]} ({names}) SELECT {names} FROM {staging} "
            f"{on_conflict(table)}"
        )

    def delete_cases(self, c: Any, tables: Tables, table: str, case_ids: list[str]) -> None:
        c.execute(f"DELETE FROM {tables[table]} WHERE case_id = ANY(%s::text[])", (case_ids,))

    def delete_caseload_rows(self, c: Any, tables: Tables, keys: list[tuple[str, str]]) -> None:
        agencies, cases = (list(values) for values in zip(*keys, strict=True))
        c.execute(
            f"DELETE FROM {tables['view_caseload']} WHERE (agency, case_id) IN "
            "(SELECT * FROM unnest(%s::text[], %s::text[]))",
            (agencies, cases),
        )

    def reset(self, groups: tuple[str, ...]) -> None:
        with self.datastore.transaction(commit=True) as curs:
            self._in_schema(curs, self._lock_views())
            for group in groups:
                for statement, params in self.reset_statements(group):
                    curs.execute(statement, params)

    @contextlib.contextmanager
    def _ddl(self) -> Iterator[Any]:
        with self.datastore.transaction(commit=True) as curs:
            self._in_schema(curs)
            yield curs

    def _indexes_in(self, c: Any) -> dict[str, str]:
        c.execute("SELECT indexname, tablename FROM pg_indexes WHERE schemaname = current_schema()")
        return {row["indexname"]: row["tablename"] for row in c.fetchall()}

    def _analyze(self, c: Any, groups: tuple[str, ...], tables: Tables) -> None:
        # Fresh statistics for the planner after a bulk load (autovacuum may take its
        # time): e.g. an agency's caseload page walks the primary key rather than
        # sorting all of the agency's rows.
        names = [tables[table] for group in groups for table in self.GROUP_TABLES[group]]
        c.execute(f"ANALYZE {', '.join(names)}")

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[Any]:
        with self.datastore.transaction(commit=True) as curs:
            self._in_schema(
                curs,
                # Bounded waits, for the views' lock and for the renames' table locks.
                f"SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'",
                self._lock_views(),
                self.bump_generation_statement(),
            )
            yield curs

    @contextlib.contextmanager
    def rebuild_lock(self) -> Iterator[None]:
        # A session lock on a connection kept for the rebuild: the server releases it
        # when the connection ends, however the process ends.
        key = self._lock_key("hub-views-rebuild")
        with self.datastore.get_connection() as conn:
            row = conn.execute("SELECT pg_try_advisory_lock(%s) AS got", (key,)).fetchone()
            if not (row and row["got"]):
                raise RebuildRunning(
                    "another rebuild of these views is running; the live views keep serving"
                )
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    def query(self, statement: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self.datastore.transaction(commit=False) as curs:
            self._in_schema(curs)
            curs.execute(statement, params)
            return curs.fetchall()  # dict rows already, a new dict each
