"""Tamper evidence: change or remove stored history behind the hub's back, directly
in the SQLite file or the PostgreSQL table, and ``hub audit verify`` (a real
process) exits 1 naming the first broken position; untouched history exits 0."""

from __future__ import annotations

import re
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from services.bootstrap import Hub, build_hub
from services.demo import demo_id, load_demo
from services.settings import Settings
from tests.cli_helpers import hub_cli
from tests.view_helpers import expected_chain, process_env

EVENTS_IN_DEMO = 74  # 12 agencies registered + 62 case events


def verify(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return hub_cli("audit", "verify", env=env)


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> dict[str, str]:
    return process_env(database_url, tmp_path)


@pytest.fixture
def loaded(hub: Hub) -> Hub:
    list(load_demo(hub.registry, hub.messages))
    hub.views.catch_up()
    return hub


# ---- direct access to the stored rows, as an attacker with database access has ----------


def _run_sql(database_url: str, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """Run one statement written with ``?`` placeholders against the raw database."""
    if database_url.startswith("sqlite:"):
        connection = sqlite3.connect(urlparse(database_url).path[1:])
        try:
            rows = connection.execute(statement, params).fetchall()
            connection.commit()
            return rows
        finally:
            connection.close()
    import psycopg
    from psycopg import sql

    schema = parse_qs(urlparse(database_url).query)["schema"][0]
    with psycopg.connect(database_url.split("?", 1)[0]) as connection:
        connection.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        cursor = connection.execute(statement.replace("?", "%s"), params)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []


def _events_table(database_url: str) -> tuple[str, str]:
    """(table, position column) of the stored events."""
    if database_url.startswith("sqlite:"):
        return "stored_events", "rowid"
    return "hub_events", "notification_id"


def rewrite_event(database_url: str, position: int, change: Callable[[bytes], bytes]) -> None:
    table, column = _events_table(database_url)
    [(state,)] = _run_sql(
        database_url, f"SELECT state FROM {table} WHERE {column} = ?", (position,)
    )
    changed = change(bytes(state))
    assert changed != bytes(state)
    _run_sql(database_url, f"UPDATE {table} SET state = ? WHERE {column} = ?", (changed, position))


def delete_event(database_url: str, position: int) -> None:
    table, column = _events_table(database_url)
    _run_sql(database_url, f"DELETE FROM {table} WHERE {column} = ?", (position,))
    left = _run_sql(database_url, f"SELECT COUNT(*) FROM {table} WHERE {column} = ?", (position,))
    assert left == [(0,)]


def _position(hub: Hub, number: int, event_type: str) -> int:
    trail = hub.queries.audit_trail(str(demo_id(f"s{number}/case")))
    return next(row["position"] for row in trail if row["type"] == event_type)


def _broken(result: subprocess.CompletedProcess[str]) -> tuple[int, str, int]:
    match = re.search(
        r"audit trail BROKEN at position (\d+): (.+) \((\d+) events verified before it\)",
        result.stderr,
    )
    assert match, result.stderr
    return int(match[1]), match[2], int(match[3])


# ---- the tests ---------------------------------------------------------------------------


def test_untouched_history_verifies_with_a_summary_line(loaded: Hub, env: dict[str, str]) -> None:
    head = expected_chain(loaded)[EVENTS_IN_DEMO]

    result = verify(env)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == (
        f"audit trail intact: {EVENTS_IN_DEMO} events checked, head {head}"
    )


def test_changed_bytes_of_one_stored_event_are_detected_at_its_position(
    loaded: Hub, env: dict[str, str], database_url: str
) -> None:
    # Scenario 2's forward: who the application was passed on to.
    position = _position(loaded, 2, "HandoverForwarded")
    rewrite_event(
        database_url,
        position,
        lambda state: state.replace(b'"to_agency":"drv-rlp"', b'"to_agency":"drv-rlX"'),
    )

    result = verify(env)

    assert result.returncode == 1
    assert _broken(result) == (
        position,
        "stored event does not match its audit hash",
        position - 1,
    )
    assert "intact" not in result.stdout


def test_a_changed_actor_in_the_first_case_event_is_detected(
    loaded: Hub, env: dict[str, str], database_url: str
) -> None:
    position = _position(loaded, 1, "CaseOpened")
    rewrite_event(
        database_url,
        position,
        lambda state: state.replace(b'"actor":"sozialdienst-1"', b'"actor":"sozialdienst-9"'),
    )

    result = verify(env)

    assert result.returncode == 1
    assert _broken(result)[0] == position


def test_a_deleted_event_is_detected_at_its_position(
    loaded: Hub, env: dict[str, str], database_url: str
) -> None:
    position = _position(loaded, 3, "AgreementSigned")
    delete_event(database_url, position)

    result = verify(env)

    assert result.returncode == 1
    assert _broken(result) == (position, "audit entry without stored event", position - 1)


def test_deleting_the_newest_event_is_detected(
    loaded: Hub, env: dict[str, str], database_url: str
) -> None:
    delete_event(database_url, EVENTS_IN_DEMO)  # scenario 5's erasure

    result = verify(env)

    assert result.returncode == 1
    assert _broken(result)[0] == EVENTS_IN_DEMO


def test_deleting_the_first_event_names_its_position(
    loaded: Hub, env: dict[str, str], database_url: str
) -> None:
    delete_event(database_url, 1)  # the first agency's registration

    result = verify(env)

    assert result.returncode == 1
    assert _broken(result) == (1, "audit entry without stored event", 0)


def test_a_changed_audit_hash_is_detected(
    loaded: Hub, env: dict[str, str], database_url: str
) -> None:
    position = _position(loaded, 4, "ConsentRevoked")
    _run_sql(
        database_url, "UPDATE view_audit SET hash = ? WHERE position = ?", ("0" * 64, position)
    )

    result = verify(env)

    assert result.returncode == 1
    assert _broken(result) == (
        position,
        "stored event does not match its audit hash",
        position - 1,
    )


def test_checkpoints_are_stored_every_n_events_and_a_changed_one_is_detected(
    database_url: str, tmp_path: Path, env: dict[str, str]
) -> None:
    hub = build_hub(
        Settings(database_url=database_url, var_dir=tmp_path / "var", audit_checkpoint_every=10)
    )
    try:
        list(load_demo(hub.registry, hub.messages))
        hub.views.catch_up()
        chain = expected_chain(hub)
        stored = hub.view_store.query(
            "SELECT position, head_hash FROM view_audit_checkpoints ORDER BY position"
        )
    finally:
        hub.close()
    assert [(r["position"], r["head_hash"]) for r in stored] == [
        (p, chain[p]) for p in range(10, EVENTS_IN_DEMO + 1, 10)
    ]
    assert verify(env).returncode == 0

    _run_sql(
        database_url,
        "UPDATE view_audit_checkpoints SET head_hash = ? WHERE position = ?",
        ("f" * 64, 40),
    )
    result = verify(env)

    assert result.returncode == 1
    assert _broken(result) == (40, "checkpoint differs", 39)
