"""The view tables in the embedded SQLite store, beside the events (one file, one
connection shared with the event recorder)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator
from typing import Any

from eventsourcing.persistence import IntegrityError, OperationalError, PersistenceError
from eventsourcing.sqlite import SQLiteTrackingRecorder

from services.views.sql.batch import ViewWrites, require_single_row_tracking
from services.views.sql.shadow import RebuildRunning, ShadowTables


class SQLiteViewStore(ShadowTables, SQLiteTrackingRecorder):
    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        require_single_row_tracking(datastore)
        super().__init__(datastore, **kwargs)

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), *self.view_create_statements()]

    def _create_table(self, c: Any) -> None:
        super()._create_table(c)
        self.ensure_indexes(c)

    def read_state(self, names: list[str]) -> tuple[int, dict[str, int]]:
        with self.datastore.transaction(commit=False) as c:
            return self.generation_in(c), self.positions_in(c, names)

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

    def reset(self, groups: tuple[str, ...]) -> None:
        with self.datastore.transaction(commit=True) as c:
            for group in groups:
                for statement, params in self.reset_statements(group):
                    c.execute(statement, params)

    def _ddl(self) -> contextlib.AbstractContextManager[Any]:
        return self._immediate()

    @contextlib.contextmanager
    def _immediate(self) -> Iterator[Any]:
        """A transaction holding the database's write lock from its start (waiting for
        it up to the lock timeout): a deferred one that reads first cannot take the
        lock later once another connection has written meanwhile."""
        with self.datastore.get_connection(commit=True) as conn:
            c = conn.cursor()
            try:
                c.execute("BEGIN IMMEDIATE")
                try:
                    yield c
                except BaseException:
                    conn.rollback()
                    raise
                conn.commit()
            except sqlite3.OperationalError as error:
                raise OperationalError(error) from error
            except sqlite3.IntegrityError as error:
                raise IntegrityError(error) from error
            except sqlite3.Error as error:
                raise PersistenceError(error) from error

    def _indexes_in(self, c: Any) -> dict[str, str]:
        c.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'")
        return {row[0]: row[1] for row in c.fetchall()}

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[Any]:
        with self._immediate() as c:
            c.execute(self.bump_generation_statement())
            yield c

    @contextlib.contextmanager
    def rebuild_lock(self) -> Iterator[None]:
        # A lock on a file beside the database: the kernel releases it when the
        # process ends, however it ends.
        if self.datastore.pool.is_sqlite_memory_mode:
            yield
            return
        fd = os.open(f"{self.datastore.pool.db_name}.rebuild-lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RebuildRunning(
                    "another rebuild of these views is running; the live views keep serving"
                ) from None
            yield
        finally:
            os.close(fd)

    def query(self, statement: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self.datastore.transaction(commit=False) as c:
            cursor = c.sqlite_cursor
            cursor.row_factory = None  # plain tuples, zipped with the names: quicker
            cursor.execute(statement, params)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
