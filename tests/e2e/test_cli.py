"""The ``hub`` command as a user runs it: a real process on a real store."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from services.demo import demo_id
from tests.cli_helpers import hub_cli
from tests.http_helpers import hub_serve

ROOT = Path(__file__).resolve().parents[2]


def hub(*args: str, env: dict[str, str], stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return hub_cli(*args, env=env, stdin=stdin, text=False)


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "HUB_DATABASE_URL": database_url,
        "HUB_VAR_DIR": str(tmp_path / "var"),
        "HUB_LOG_FORMAT": "json",
        "PYTHONPATH": str(ROOT),
    }


def test_demo_twice_then_replay(env: dict[str, str]) -> None:
    first = hub("demo", env=env)
    assert first.returncode == 0, first.stderr.decode()
    out = first.stdout.decode()
    assert "forward_limit_reached" in out
    assert "consent_missing" in out
    assert "hub replay" in out

    second = hub("demo", env=env)
    assert second.returncode == 0, second.stderr.decode()
    assert " 0 recorded" in second.stdout.decode()
    assert all(
        " 0 recorded" in line for line in second.stdout.decode().splitlines() if "recorded" in line
    )

    case_id = str(demo_id("s2/case"))
    shown = hub("replay", case_id, "--json", env=env)
    assert shown.returncode == 0, shown.stderr.decode()
    history = json.loads(shown.stdout)
    assert history["state"]["handovers"][1]["state"] == "completed"

    past = hub(
        "replay",
        case_id,
        "--json",
        "--axis",
        "occurred",
        "--as-of",
        "2026-03-12T00:00:00+01:00",
        env=env,
    )
    assert past.returncode == 0, past.stderr.decode()
    states = [h["state"] for h in json.loads(past.stdout)["state"]["handovers"]]
    assert states == ["forwarded", "offered"]

    text = hub("replay", case_id, env=env)
    assert text.returncode == 0
    assert "HandoverForwarded" in text.stdout.decode()


def test_agency_add_prints_a_token_and_stores_only_its_hash(
    env: dict[str, str], database_url: str
) -> None:
    added = hub(
        "agency", "add", "jc-cli", "--kind", "jobcenter", "--name", "Jobcenter CLI", env=env
    )
    assert added.returncode == 0, added.stderr.decode()
    token = added.stdout.decode().strip().splitlines()[-1]
    assert token.startswith("hub_")
    assert len(token) > 30

    again = hub("agency", "add", "jc-cli", "--kind", "jobcenter", "--name", "X", env=env)
    assert again.returncode == 1
    assert "agency_exists" in again.stderr.decode()

    auditor = hub("token", "auditor", "--name", "Prüferin", env=env)
    assert auditor.returncode == 0
    auditor_token = auditor.stdout.decode().strip().splitlines()[-1]
    assert auditor_token != token

    if database_url.startswith("sqlite"):
        raw = Path(database_url.removeprefix("sqlite:///")).read_bytes()
        assert token.encode() not in raw
        assert hashlib.sha256(token.encode()).hexdigest().encode() in raw


def test_record_refusals_name_their_codes(env: dict[str, str], tmp_path: Path) -> None:
    assert (
        hub("agency", "add", "jc-cli", "--kind", "jobcenter", "--name", "J", env=env).returncode
        == 0
    )
    malformed = hub("record", "-", env=env, stdin=b"{not json")
    assert malformed.returncode == 1
    assert "malformed_json" in malformed.stderr.decode()
    assert "Traceback" not in malformed.stderr.decode()

    message = {
        "message_id": "6f1c1f7e-4b8a-4a57-9a39-3f1d3c1e8a01",
        "type": "note.added",
        "agency": "jc-cli",
        "case_id": "0d7c7a2e-8e43-4a7b-9b8c-0c1d2e3f4a5b",
        "occurred_at": "2026-03-02T09:00:00+01:00",
        "actor": "u1",
        "payload": {"text": "Erika Mustermann ist krank", "category": "health"},
    }
    missing = hub("record", "-", env=env, stdin=json.dumps(message).encode())
    assert missing.returncode == 1
    assert "case_not_found" in missing.stderr.decode()
    assert "Erika" not in missing.stderr.decode()  # no personal data in errors or logs


def test_schema_command_matches_the_exported_file(env: dict[str, str]) -> None:
    printed = hub("schema", env=env)
    assert printed.returncode == 0
    exported = (ROOT / "docs" / "messages.schema.json").read_text()
    assert json.loads(printed.stdout) == json.loads(exported)


def test_unreachable_postgres_is_a_clear_error(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "HUB_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none?schema=x",
        "PYTHONPATH": str(ROOT),
    }
    result = hub("agency", "list", env=env)
    assert result.returncode == 1
    assert "store_unavailable" in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()


def test_serve_without_kafka_stops_cleanly_on_sigterm(database_url: str, tmp_path: Path) -> None:
    """A service manager stops ``hub serve`` with SIGTERM: it shuts down, closes the
    store and exits 0 (not killed by the signal after the graceful shutdown)."""
    with hub_serve(database_url, tmp_path / "var", demo=False) as served:
        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(timeout=30) == 0
