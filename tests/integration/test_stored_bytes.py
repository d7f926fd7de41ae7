"""No stored byte holds a personal value in clear, after the five demo scenarios.

Issue 12, "Tests that must exist": every field marked personal is looked for, as the
demo sent it, in everything the hub leaves behind when it runs as in production:

* ``hub serve --demo`` in its own process, JSON logs at DEBUG, with Kafka on (the
  relay and the inbox consumer run inside it, against the real test broker); then
  every agency and an auditor read every case, history, inbox, caseload and the
  dashboard over HTTP, and two refused messages repeat demo values (a 409 and a 422);
* ``hub projections rebuild`` afterwards, so rebuilt views are stored too;
* then: every file under the test's directory (the SQLite file with its -wal and
  -shm, the var dir with the master key), every row of every table of the test's
  PostgreSQL schemas (events, keys, receipts, tokens, the view tables) with byte
  columns as bytes, every log line of both processes, and every key and value the
  relay published to the events topic.

The values come from the demo's messages through the marks (``tests.personal_values``:
every ``Personal`` field, and any text field left unmarked, so a dropped mark is still
looked for). Each is looked for as UTF-8 and as JSON writes it with ``\\u`` escapes.
A value is ignored when it is shorter than four characters or occurs in the demo's
non-personal text too (its presence would prove nothing); with today's demo none is
(``test_no_demo_value_is_too_short_or_too_common_to_look_for``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx2 as httpx
import pytest

from services.bootstrap import build_hub
from services.demo import AGENCIES, demo_id, register_demo_agencies, scenarios
from services.settings import Settings
from tests import kafka_broker
from tests.http_helpers import bearer, free_port, wait_until_up
from tests.integration.test_kafka_relay import recorded_case_events
from tests.kafka_broker import KafkaNames, read_topic
from tests.personal_values import personal_paths, personal_values

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

kafka_bootstrap = kafka_broker.kafka_bootstrap
kafka_names = kafka_broker.kafka_names

ROOT = Path(__file__).resolve().parents[2]
MIN_LENGTH = 4
CASES = [demo_id(f"s{n}/case") for n in range(1, 6)]
AUDITOR = "Prüferin Bytes"


@dataclass(frozen=True)
class Secrets:
    values: dict[str, str]  # value -> where the demo sent it
    ignored: dict[str, str]  # value -> why it is not looked for


def _leaves(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    elif value is not None:
        yield str(value)


def _without(payload: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """``payload`` without the dotted ``paths`` (copied on the way)."""
    result = dict(payload)
    for path in paths:
        head, _, rest = path.partition(".")
        if rest and isinstance(result.get(head), dict):
            result[head] = _without(result[head], [rest])
        elif not rest:
            result.pop(head, None)
    return result


def demo_secrets() -> Secrets:
    """Every personal value of the demo's messages, refused ones included."""
    steps = [(s.number, step.message) for s in scenarios() for step in s.steps]
    plain = {name for _, _, name in AGENCIES}  # display names are stored, not personal
    for _, message in steps:
        rest = {
            **message,
            "payload": _without(message["payload"], [*personal_paths(message["type"])]),
        }
        plain |= set(_leaves(rest))
    values: dict[str, str] = {}
    ignored: dict[str, str] = {}
    for number, message in steps:
        for path, value in personal_values(message):
            if len(value) < MIN_LENGTH:
                ignored[value] = f"shorter than {MIN_LENGTH} characters"
            elif any(value in text for text in plain):
                ignored[value] = "also in the demo's non-personal text"
            else:
                values[value] = f"scenario {number} {message['type']} {path}"
    return Secrets(values, ignored)


def forms(value: str) -> list[bytes]:
    """How a value could be written: UTF-8, and JSON with ``\\u`` escapes."""
    return sorted({value.encode(), json.dumps(value)[1:-1].encode()})


def _env(database_url: str, tmp_path: Path, **more: str) -> dict[str, str]:
    return {
        **os.environ,
        "HUB_DATABASE_URL": database_url,
        "HUB_VAR_DIR": str(tmp_path / "var"),
        "HUB_LOG_FORMAT": "json",
        "HUB_LOG_LEVEL": "DEBUG",
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        **more,
    }


@contextmanager
def serving(env: dict[str, str], log: Path) -> Iterator[str]:
    """``hub serve --demo`` in its own process, stdout and stderr into ``log``."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "serve", "--demo", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(base_url, timeout=90, process=process)
            yield base_url
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def read_everything(base_url: str, tokens: dict[str, str], auditor: str) -> int:
    """Every agency and the auditor read what they may (and are refused the rest)."""
    reads = 0
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for who, token in [*tokens.items(), ("auditor", auditor)]:
            headers = bearer(token)
            paths = ["/v1/dashboard"]
            if who != "auditor":
                paths += [f"/v1/agencies/{who}/inbox", f"/v1/agencies/{who}/cases"]
            for case_id in CASES:
                paths += [f"/v1/cases/{case_id}", f"/v1/cases/{case_id}/history"]
                if who == "auditor":
                    paths += [
                        f"/v1/cases/{case_id}/history?as_of=2026-04-01T00:00:00Z",
                        f"/v1/cases/{case_id}/subject-report",
                        f"/audit/cases/{case_id}",
                    ]
            for path in paths:
                response = client.get(path, headers=headers)
                assert response.status_code < 500, (path, response.text)
                reads += 1
    return reads


def refused_with_demo_values(base_url: str, token: str, secrets: Secrets) -> None:
    """Demo values in messages the hub refuses: a note on a closed case (409) and the
    same note with a category that does not exist (422)."""
    text = next(v for v, where in secrets.values.items() if "note.added" in where)
    note = {
        "message_id": str(uuid4()),
        "type": "note.added",
        "agency": "jc-trier",
        "case_id": str(demo_id("s3/case")),  # closed: moved away
        "occurred_at": "2026-11-30T10:00:00+01:00",
        "actor": "fallmanager-3",
        "payload": {"text": text, "category": "notes"},
    }
    with httpx.Client(base_url=base_url, timeout=30) as client:
        closed = client.post("/v1/messages", json=note, headers=bearer(token))
        assert closed.status_code == 409, closed.text
        malformed = {**note, "message_id": str(uuid4())}
        malformed["payload"] = {"text": text, "category": f"no such category {text}"}
        invalid = client.post("/v1/messages", json=malformed, headers=bearer(token))
        assert invalid.status_code == 422, invalid.text


def files_under(root: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def postgres_rows(database_url: str) -> bytes:
    """Every row of every table (and view) in the test's schemas, as text; byte
    columns as their bytes (``::text`` would show them hex-encoded)."""
    import psycopg
    from psycopg import sql

    base, _, schema = database_url.partition("?schema=")
    dump: list[bytes] = []
    with psycopg.connect(base) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema = %s OR table_schema = %s ORDER BY 1, 2",
            (schema, f"{schema}_keys"),
        ).fetchall()
        assert any(name.startswith("view_") for _, name in tables), tables
        for table_schema, table in tables:
            query = sql.SQL("SELECT * FROM {}.{}").format(
                sql.Identifier(table_schema), sql.Identifier(table)
            )
            for row in conn.execute(query):
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        dump.append(bytes(value))
                    elif isinstance(value, dict | list):  # json and jsonb columns
                        dump.append(json.dumps(value, ensure_ascii=False).encode())
                    else:
                        dump.append(str(value).encode())
    return b"\n".join(dump)


def test_no_demo_value_is_too_short_or_too_common_to_look_for() -> None:
    secrets = demo_secrets()
    assert secrets.ignored == {}
    assert len(secrets.values) >= 30  # names, dates, contacts, plans, notes, reasons


def test_no_stored_byte_holds_a_personal_value_in_clear(
    database_url: str,
    tmp_path: Path,
    kafka_bootstrap: str,
    kafka_names: KafkaNames,
) -> None:
    secrets = demo_secrets()
    data = tmp_path / "data"  # what the hub stores; the logs go beside it
    data.mkdir()
    if database_url.startswith("sqlite"):
        database_url = f"sqlite:///{data / 'hub.db'}"
    settings = Settings(database_url=database_url, var_dir=data / "var")
    hub = build_hub(settings)  # tokens for every demo agency before the server starts
    try:
        register_demo_agencies(hub.registry)
        tokens = {a: hub.tokens.issue_agency_token(a) for a, _, _ in AGENCIES}
        auditor = hub.tokens.issue_auditor_token(AUDITOR)
    finally:
        hub.close()

    env = _env(
        database_url,
        data,
        HUB_KAFKA_BOOTSTRAP=kafka_bootstrap,
        HUB_KAFKA_EVENTS_TOPIC=kafka_names.events_topic,
        HUB_KAFKA_DLQ_TOPIC=kafka_names.dlq_topic,
        HUB_KAFKA_INBOX_GROUP=kafka_names.inbox_group,
        HUB_KAFKA_EVENTS_PARTITIONS="3",
        HUB_KAFKA_SESSION_TIMEOUT_MS="6000",
    )
    serve_log, rebuild_log = tmp_path / "serve.log", tmp_path / "rebuild.log"
    with serving(env, serve_log) as base_url:
        assert read_everything(base_url, tokens, auditor) > 100
        refused_with_demo_values(base_url, tokens["jc-trier"], secrets)
        hub = build_hub(settings)
        try:
            expected = len(recorded_case_events(hub))
        finally:
            hub.close()
        records = read_topic(
            kafka_bootstrap, kafka_names.events_topic, expect=expected, timeout=60, settle=1.0
        )
        assert len(records) == expected, "the relay did not publish every case event"
    with rebuild_log.open("wb") as out:
        rebuilt = subprocess.run(
            [sys.executable, "-m", "services.cli", "projections", "rebuild"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=180,
            check=False,
        )
    assert rebuilt.returncode == 0, rebuild_log.read_text()

    media = {
        "files": files_under(data),
        "logs": serve_log.read_bytes() + rebuild_log.read_bytes(),
        "kafka": b"\n".join((r.key or b"") + b"\t" + (r.value or b"") for r in records),
    }
    if not database_url.startswith("sqlite"):
        media["postgres"] = postgres_rows(database_url)
    # The search can find what is there: ciphertexts, pseudonyms and ids in clear.
    stored = media.get("postgres", media["files"])
    assert b"enc:v1:" in stored
    assert b"GAL-0001" in stored
    assert b"GAL-0001" in media["kafka"]
    assert b'"message_recorded"' in media["logs"]
    assert str(CASES[0]).encode() in media["logs"]
    leaks = [
        f"{medium}: {value!r} ({where})"
        for value, where in secrets.values.items()
        for medium, content in media.items()
        if any(form in content for form in forms(value))
    ]
    assert not leaks, "\n".join(leaks)
