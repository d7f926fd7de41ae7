"""The view tables in the embedded SQLite store, beside the events (one file, one
connection shared with the event recorder)."""

from __future__ import annotations

from typing import Any

from eventsourcing.sqlite import SQLiteTrackingRecorder

from services.views.sql.batch import BatchWriter, ViewWrites, require_single_row_tracking


class SQLiteViewStore(BatchWriter, SQLiteTrackingRecorder):
    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        require_single_row_tracking(datastore)
        super().__init__(datastore, **kwargs)

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), *self.view_create_statements()]

    def max_tracking_ids(self, names: list[str]) -> dict[str, int]:
        """``max_tracking_id`` of each name (0 for none), in one read transaction."""
        with self.datastore.transaction(commit=False) as c:
            return {name: self._max_tracking_id(name, c) or 0 for name in names}

    def commit(self, writes: ViewWrites) -> None:
        # Views are derived data, so their commits need not wait for the disk: in WAL
        # mode, synchronous=NORMAL keeps the database consistent after a crash or a
        # power cut, only the last view pages may be gone, with their tracked
        # positions, and are applied again. The connection is shared with the event
        # recorder, whose commits stay as they were (restored right after).
        with self.datastore.get_connection(commit=True) as conn:
            raw = conn._sqlite_conn
            level = raw.execute("PRAGMA synchronous").fetchone()[0]
            relax = level > 1 and self.datastore.pool.is_journal_mode_wal
            raw.execute("PRAGMA cache_size=-65536")
            if relax:
                raw.execute("PRAGMA synchronous=NORMAL")
            try:
                with conn.transaction(commit=True) as c:
                    self.write_batch(c, writes)
            finally:
                if relax:
                    raw.execute(f"PRAGMA synchronous={int(level)}")

    def reset(self, groups: tuple[str, ...], *, drop_indexes: bool = False) -> None:
        with self.datastore.transaction(commit=True) as c:
            for group in groups:
                for statement, params in self.reset_statements(group):
                    c.execute(statement, params)
                for statement in self.drop_index_statements(group) if drop_indexes else ():
                    c.execute(statement)

    def create_indexes(self, groups: tuple[str, ...]) -> None:
        with self.datastore.transaction(commit=True) as c:
            for group in groups:
                for statement in self.create_index_statements(group):
                    c.execute(statement)

    def query(self, statement: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self.datastore.transaction(commit=False) as c:
            cursor = c.sqlite_cursor
            cursor.row_factory = None  # plain tuples, zipped with the names: quicker
            cursor.execute(statement, params)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
