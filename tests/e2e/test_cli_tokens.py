"""Token commands as an operator runs them (``hub agency token add``, ``hub token
auditor``, ``hub token list``, ``hub token revoke``): real processes on both stores."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e.test_cli import hub as run_hub

TOKEN_KEYS = {
    "token_id",
    "role",
    "subject",
    "user",
    "created_at",
    "expires_at",
    "last_used_at",
    "revoked_at",
    "state",
}


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> dict[str, str]:
    root = Path(__file__).resolve().parents[2]
    return {
        **os.environ,
        "HUB_DATABASE_URL": database_url,
        "HUB_VAR_DIR": str(tmp_path / "var"),
        "HUB_LOG_FORMAT": "json",
        "PYTHONPATH": str(root),
    }


def _ok(*args: str, env: dict[str, str]) -> list[str]:
    done = run_hub(*args, env=env)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode().splitlines()


def _refused(*args: str, env: dict[str, str], code: str) -> str:
    done = run_hub(*args, env=env)
    said = done.stderr.decode()
    assert done.returncode == 1, (done.stdout, said)
    assert f"error [{code}]:" in said, said
    assert "Traceback" not in said
    return said


def _token_id(line: str) -> str:
    return next(word.strip("(),;:") for word in line.split() if word.startswith(("tok_", "(tok_")))


def test_tokens_per_user_are_issued_listed_and_revoked(env: dict[str, str]) -> None:
    added = _ok("agency", "add", "jc-trier", "--kind", "jobcenter", "--name", "JC Trier", env=env)
    agency_wide = added[-1]
    per_user = _ok(
        "agency", "token", "add", "jc-trier", "--user", "fm-1", "--expires", "90d", env=env
    )
    user_token, user_token_id = per_user[-1], _token_id(per_user[-2])
    assert "fm-1" in per_user[-2]
    legacy = _ok("agency", "token", "jc-trier", env=env)  # the first form still works
    auditor = _ok(
        "token",
        "auditor",
        "--name",
        "Prüferin",
        "--user",
        "pr-1",
        "--expires",
        "2030-01-01T00:00:00+00:00",
        env=env,
    )
    issued = [agency_wide, user_token, legacy[-1], auditor[-1]]
    assert all(token.startswith("hub_") for token in issued)
    assert len(set(issued)) == 4

    table = _ok("token", "list", env=env)
    rows = json.loads("\n".join(_ok("token", "list", "--json", env=env)))
    for text in ("\n".join(table), json.dumps(rows)):
        for token in issued:
            assert token not in text
            assert hashlib.sha256(token.encode()).hexdigest() not in text
    assert table[0].split()[:4] == ["ID", "ROLE", "AGENCY/AUDITOR", "USER"]
    assert len(table) == 5
    assert all(set(row) == TOKEN_KEYS for row in rows)
    assert [(r["role"], r["subject"], r["user"], r["state"]) for r in rows] == [
        ("agency", "jc-trier", None, "active"),
        ("agency", "jc-trier", "fm-1", "active"),
        ("agency", "jc-trier", None, "active"),
        ("auditor", "Prüferin", "pr-1", "active"),
    ]
    expires = datetime.fromisoformat(rows[1]["expires_at"])
    assert abs(expires - (datetime.now(UTC) + timedelta(days=90))) < timedelta(minutes=5)
    assert rows[3]["expires_at"] == "2030-01-01T00:00:00+00:00"
    assert rows[1]["token_id"] == user_token_id

    revoked = _ok("token", "revoke", user_token_id, env=env)
    assert revoked[-1].startswith(f"revoked {user_token_id}")
    again = _ok("token", "revoke", user_token_id, env=env)
    assert "already revoked" in again[-1]
    after = json.loads("\n".join(_ok("token", "list", "--json", env=env)))
    by_id = {row["token_id"]: row for row in after}
    assert by_id[user_token_id]["state"] == "revoked"
    assert by_id[user_token_id]["revoked_at"] is not None
    assert [row["state"] for row in after].count("active") == 3


def test_token_commands_refuse_bad_input_in_one_line(env: dict[str, str]) -> None:
    _ok("agency", "add", "jc-trier", "--kind", "jobcenter", "--name", "JC Trier", env=env)
    _refused("token", "revoke", "tok_000000000000", env=env, code="token_unknown")
    _refused("agency", "token", "add", "nope", "--user", "fm-1", env=env, code="agency_unknown")
    for user in ("fm 1", "x" * 65, "fm;1"):
        _refused(
            "agency", "token", "add", "jc-trier", "--user", user, env=env, code="invalid_value"
        )
    for expires in ("3x", "0d", "tomorrow", "2030-01-01T00:00:00", "2020-01-01T00:00:00+00:00"):
        _refused(
            "agency",
            "token",
            "add",
            "jc-trier",
            "--expires",
            expires,
            env=env,
            code="invalid_value",
        )
    _refused("token", "auditor", "--name", "P", "--user", "a b", env=env, code="invalid_value")
    assert json.loads("\n".join(_ok("token", "list", "--json", env=env)))[1:] == []
