"""The view stores and their batch, under the names the rest of the hub imports.

The code lives in ``services.views.sql``: ``schema`` (tables, DDL, row values),
``batch`` (``ViewWrites`` and the compare-and-set commit), ``sqlite``, ``postgres``.
"""

from __future__ import annotations

from services.views.sql.batch import ViewsMoved, ViewWrites
from services.views.sql.postgres import PostgresViewStore
from services.views.sql.schema import (
    AUDIT_COLUMNS,
    CASELOAD_COLUMNS,
    DOC_COLUMNS,
    GROUPS,
    INBOX_COLUMNS,
    Columns,
    caseload_values,
    dump_json,
    epoch,
    inbox_values,
    tracking_name,
)
from services.views.sql.sqlite import SQLiteViewStore

__all__ = [
    "AUDIT_COLUMNS",
    "CASELOAD_COLUMNS",
    "DOC_COLUMNS",
    "GROUPS",
    "INBOX_COLUMNS",
    "Columns",
    "PostgresViewStore",
    "SQLiteViewStore",
    "ViewWrites",
    "ViewsMoved",
    "caseload_values",
    "dump_json",
    "epoch",
    "inbox_values",
    "tracking_name",
]
