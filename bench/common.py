"""Shared pieces of the benchmarks: stores, result rows, the printed table."""

from __future__ import annotations

import json
import os
import platform
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

RESULTS = Path(__file__).parent / "results"
POSTGRES_URL = os.environ.get("HUB_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass
class Row:
    case: str
    store: str
    value: float
    unit: str
    baseline: float | None
    ratio: float | None
    target: str
    meets: bool | None


def postgres_available() -> bool:
    import psycopg

    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


@contextmanager
def store_url(store: str) -> Iterator[str]:
    """A fresh, empty store of the given kind, removed afterwards."""
    if store == "sqlite":
        with tempfile.TemporaryDirectory(prefix="hub-bench-") as folder:
            yield f"sqlite:///{folder}/bench.db"
        return
    import psycopg
    from psycopg import sql

    schema = f"bench_{uuid4().hex[:12]}"
    try:
        yield f"{POSTGRES_URL}?schema={schema}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            for name in (schema, f"{schema}_keys"):  # events' schema and the keys' own
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
                )


def stores() -> list[str]:
    if postgres_available():
        return ["sqlite", "postgres"]
    if os.environ.get("CI") == "true":
        raise SystemExit("PostgreSQL is required for benchmarks in CI and is unreachable")
    print("note: PostgreSQL unreachable, benchmarking SQLite only")
    return ["sqlite"]


def report(name: str, rows: list[Row], *, quick: bool) -> None:
    headers = ["case", "store", "value", "unit", "baseline", "ratio", "target", "meets"]
    table = [
        [
            r.case,
            r.store,
            f"{r.value:,.1f}",
            r.unit,
            "-" if r.baseline is None else f"{r.baseline:,.1f}",
            "-" if r.ratio is None else f"{r.ratio:.2f}",
            r.target,
            "-" if r.meets is None else ("yes" if r.meets else "NO"),
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in table)) for i, h in enumerate(headers)]
    print()
    print(f"bench {name}{' (quick)' if quick else ''}")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for line in table:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / (f"{name}.quick.json" if quick else f"{name}.json")
    out.write_text(
        json.dumps(
            {
                "benchmark": name,
                "quick": quick,
                "machine": {
                    "cores": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                    "date": datetime.now(UTC).isoformat(timespec="seconds"),
                },
                "rows": [asdict(r) for r in rows],
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")
