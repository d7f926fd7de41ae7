"""Operator safety through the ``hub`` entry point: a wrong setting or input is one
line and an exit code (never a traceback), erasure asks first, production refuses
unsafe key and password set-ups, and the hub's files are private to its user."""

from __future__ import annotations

import json
import os
import pty
import select
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.demo import demo_id
from tests.cli_helpers import hub_cli
from tests.http_helpers import hub_serve

ROOT = Path(__file__).resolve().parents[2]
CASE = str(demo_id("s3/case"))  # closed weeks ago: erasable with an Art. 17 ground
ERASE = ["participant", "erase", CASE, "--reason", "Antrag", "--ground", "Art. 17 (1) b DSGVO"]


def hub(*args: str, env: dict[str, str], stdin: bytes | None = b"") -> subprocess.CompletedProcess:
    return hub_cli(*args, env=env, stdin=stdin, text=False)


def base_env(var_dir: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    return {
        **env,
        "HUB_VAR_DIR": str(var_dir),
        "HUB_LOG_FORMAT": "json",
        "PYTHONPATH": str(ROOT),
        **settings,
    }


def assert_one_line_refusal(result: subprocess.CompletedProcess, exit_code: int, start: str) -> str:
    err = result.stderr.decode()
    assert "Traceback" not in err, err
    assert result.returncode == exit_code, err
    lines = [line for line in err.splitlines() if not line.startswith("{")]  # JSON log lines
    assert len(lines) == 1, err
    assert lines[0].startswith(start), err
    return lines[0]


@pytest.fixture
def var_dir(tmp_path: Path) -> Path:
    return tmp_path / "var"


# ---- configuration errors ---------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("HUB_LOG_FORMAT", "xml", "HUB_LOG_FORMAT: must be one of auto, json, console"),
        ("HUB_DATABASE_URL", "mysql://hub:s3cr3t-pw@db/hub", "HUB_DATABASE_URL: must be sqlite"),
        ("HUB_DATABASE_URL", "sqlite://", "HUB_DATABASE_URL: a sqlite URL needs a file path"),
        ("HUB_LOG_LEVEL", "loud", "HUB_LOG_LEVEL: must be one of debug, info"),
        ("HUB_ENV", "staging", "HUB_ENV: must be one of development, production"),
        ("HUB_KAFKA_TIMEOUT_MS", "soon", "HUB_KAFKA_TIMEOUT_MS: must be a valid integer"),
        ("HUB_SERVE_KAFKA", "maybe", "HUB_SERVE_KAFKA: must be a valid boolean"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(
    var_dir: Path, setting: str, value: str, expected: str
) -> None:
    result = hub("agency", "list", env=base_env(var_dir, **{setting: value}))
    line = assert_one_line_refusal(result, 2, f"configuration error: {expected}")
    assert "s3cr3t-pw" not in line  # a URL's password is never repeated
    assert not var_dir.exists()  # refused before anything was made


@pytest.mark.parametrize(
    "command",
    [
        ["schema"],
        ["record", "-"],
        ["demo"],
        ["serve", "--port", "1"],
        ["replay", CASE],
        ["participant", "erase", CASE, "--reason", "x", "--yes"],
        ["projections", "status"],
        ["audit", "verify"],
        ["relay"],
        ["inbox"],
        ["worker"],
    ],
)
def test_every_command_names_a_bad_setting_before_it_starts(
    var_dir: Path, command: list[str]
) -> None:
    result = hub(*command, env=base_env(var_dir, HUB_LOG_FORMAT="xml"))
    assert_one_line_refusal(result, 2, "configuration error: HUB_LOG_FORMAT: must be one of")


def test_several_bad_settings_are_named_on_one_line(var_dir: Path) -> None:
    env = base_env(var_dir, HUB_LOG_FORMAT="xml", HUB_DATABASE_URL="mysql://x")
    line = assert_one_line_refusal(hub("agency", "list", env=env), 2, "configuration error:")
    assert "HUB_LOG_FORMAT" in line
    assert "HUB_DATABASE_URL" in line


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot read"),
        ("{not json", "is not JSON"),
        ('{"default": 3}', "is not a deadline policy"),
    ],
)
def test_a_bad_policy_file_is_a_configuration_error(
    var_dir: Path, tmp_path: Path, content: str | None, expected: str
) -> None:
    policy = tmp_path / "policy.json"
    if content is not None:
        policy.write_text(content)
    result = hub("agency", "list", env=base_env(var_dir, HUB_DEADLINE_POLICY_FILE=str(policy)))
    line = assert_one_line_refusal(result, 2, "configuration error: HUB_DEADLINE_POLICY_FILE:")
    assert expected in line


def test_an_unwritable_data_directory_is_a_configuration_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = hub("agency", "list", env=base_env(blocker / "var"))
    assert_one_line_refusal(result, 2, "configuration error: HUB_VAR_DIR: cannot create")


# ---- user errors on input ---------------------------------------------------------


def test_record_of_a_missing_or_unreadable_file_is_one_line(var_dir: Path, tmp_path: Path) -> None:
    env = base_env(var_dir)
    missing = hub("record", str(tmp_path / "missing.json"), env=env)
    line = assert_one_line_refusal(missing, 1, "error [unreadable_file]: cannot read")
    assert "No such file" in line
    directory = hub("record", str(tmp_path), env=env)
    assert_one_line_refusal(directory, 1, "error [unreadable_file]: cannot read")


def test_schema_to_an_unwritable_place_is_one_line(var_dir: Path, tmp_path: Path) -> None:
    result = hub("schema", "--output", str(tmp_path / "missing" / "s.json"), env=base_env(var_dir))
    assert_one_line_refusal(result, 1, "error [unwritable_file]: cannot write")


def test_record_of_bad_json_or_schema_is_one_line_with_its_problems(
    var_dir: Path, tmp_path: Path
) -> None:
    env = base_env(var_dir)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    line = assert_one_line_refusal(hub("record", str(bad), env=env), 1, "error [malformed_json]")
    assert "line 1 column 2" in line
    partial = hub("record", "-", env=env, stdin=b'{"type": "note.added"}')
    line = assert_one_line_refusal(partial, 1, "error [schema_invalid]")
    assert "message_id: Field required" in line


# ---- erasure asks first -----------------------------------------------------------


def _last_event_type(env: dict[str, str]) -> str:
    shown = hub("replay", CASE, "--json", env=env)
    assert shown.returncode == 0, shown.stderr.decode()
    return json.loads(shown.stdout)["events"][-1]["type"]


@pytest.fixture
def demo_env(database_url: str, var_dir: Path) -> dict[str, str]:
    env = base_env(var_dir, HUB_DATABASE_URL=database_url)
    loaded = hub("demo", env=env)
    assert loaded.returncode == 0, loaded.stderr.decode()
    return env


def test_erase_without_a_terminal_and_without_yes_is_refused(demo_env: dict[str, str]) -> None:
    refused = hub(*ERASE, env=demo_env, stdin=b"y\n")  # stdin is a pipe: no one to ask
    assert_one_line_refusal(refused, 1, "error [confirmation_required]")
    assert _last_event_type(demo_env) != "ParticipantErased"

    erased = hub(*ERASE, "--yes", env=demo_env)
    assert erased.returncode == 0, erased.stderr.decode()
    assert "erased the personal data" in erased.stdout.decode()
    assert _last_event_type(demo_env) == "ParticipantErased"


def _at_a_terminal(args: list[str], env: dict[str, str], answer: bytes) -> tuple[int, str]:
    """Run ``hub`` with a pseudo-terminal as stdin and stdout; type ``answer`` at the prompt."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", *args],
        cwd=ROOT,
        env=env,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    seen = b""
    answered = False
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(controller, 4096)
                except OSError:  # the process closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            if not answered and b"[y/N]" in seen:
                os.write(controller, answer)
                answered = True
            if process.poll() is not None and not ready:
                break
        return process.wait(timeout=30), seen.decode(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
        os.close(controller)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_erase_at_a_terminal_asks_and_a_no_erases_nothing(demo_env: dict[str, str]) -> None:
    code, shown = _at_a_terminal(ERASE, demo_env, b"n\n")
    assert "Destroy the key of case" in shown
    assert code == 1, shown
    assert "error [not_confirmed]: nothing erased" in shown
    assert _last_event_type(demo_env) != "ParticipantErased"

    code, shown = _at_a_terminal(ERASE, demo_env, b"y\n")
    assert code == 0, shown
    assert _last_event_type(demo_env) == "ParticipantErased"


# ---- production mode --------------------------------------------------------------


def production_env(var_dir: Path, **settings: str) -> dict[str, str]:
    return base_env(var_dir, HUB_ENV="production", **settings)


def test_production_without_a_master_key_refuses_to_start_and_makes_none(var_dir: Path) -> None:
    result = hub("agency", "list", env=production_env(var_dir))
    line = assert_one_line_refusal(result, 2, "configuration error: HUB_MASTER_KEY_FILE:")
    assert "none is made in production" in line
    assert not (var_dir / "master.key").exists()
    assert not (var_dir / "hub.db").exists()


def test_production_refuses_a_master_key_inside_the_data_directory(
    var_dir: Path, tmp_path: Path
) -> None:
    var_dir.mkdir()
    inside = var_dir / "keys" / "master.key"
    inside.parent.mkdir()
    inside.write_text(_a_key())
    for key_file in (str(inside), "var/keys/master.key"):  # relative to the working dir too
        env = production_env(var_dir, HUB_MASTER_KEY_FILE=key_file)
        result = subprocess.run(
            [sys.executable, "-m", "services.cli", "agency", "list"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        line = assert_one_line_refusal(result, 2, "configuration error: HUB_MASTER_KEY_FILE:")
        assert "must not lie inside HUB_VAR_DIR" in line
    assert not (var_dir / "hub.db").exists()


def test_production_with_a_key_outside_the_data_directory_starts(
    var_dir: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secrets" / "master.key"
    secret.parent.mkdir()
    secret.write_text(_a_key())
    result = hub("agency", "list", env=production_env(var_dir, HUB_MASTER_KEY_FILE=str(secret)))
    assert result.returncode == 0, result.stderr.decode()
    inline = hub("agency", "list", env=production_env(tmp_path / "other", HUB_MASTER_KEY=_a_key()))
    assert inline.returncode == 0, inline.stderr.decode()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://hub:hub@127.0.0.1:1/hub",
        "postgresql://app:CHANGE-ME@127.0.0.1:1/hub",
        "postgresql://hubuser:hubuser@127.0.0.1:1/hub",
    ],
)
def test_production_refuses_a_default_database_password(
    var_dir: Path, tmp_path: Path, url: str
) -> None:
    secret = tmp_path / "master.key"
    secret.write_text(_a_key())
    env = production_env(var_dir, HUB_MASTER_KEY_FILE=str(secret), HUB_DATABASE_URL=url)
    line = assert_one_line_refusal(hub("agency", "list", env=env), 2, "configuration error:")
    assert "HUB_DATABASE_URL: the database password is a known default" in line
    assert "CHANGE-ME" not in line


def test_development_still_makes_a_master_key_on_first_run(var_dir: Path) -> None:
    result = hub("agency", "list", env=base_env(var_dir))
    assert result.returncode == 0, result.stderr.decode()
    assert (var_dir / "master.key").exists()


def _a_key() -> str:
    import base64
    import secrets

    return base64.b64encode(secrets.token_bytes(32)).decode()


# ---- file modes ---------------------------------------------------------------------


@pytest.fixture
def usual_umask() -> Iterator[None]:
    previous = os.umask(0o022)  # the common default: files 0644, directories 0755
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("usual_umask")
def test_the_hubs_files_are_private_to_its_user(var_dir: Path) -> None:
    database = var_dir / "hub.db"
    with hub_serve(f"sqlite:///{database}", var_dir, demo=True):
        # While the hub runs, SQLite's write-ahead log and shared memory exist too.
        members = [database, var_dir / "hub.db-wal", var_dir / "hub.db-shm"]
        assert all(m.exists() for m in members), sorted(p.name for p in var_dir.iterdir())
        assert {m.name: mode(m) for m in members} == {m.name: 0o600 for m in members}
        assert mode(var_dir / "master.key") == 0o600
        assert mode(var_dir) == 0o700


@pytest.mark.usefixtures("usual_umask")
def test_files_an_older_hub_left_readable_are_tightened(var_dir: Path) -> None:
    assert hub("agency", "list", env=base_env(var_dir)).returncode == 0
    for path, loose in ((var_dir, 0o755), (var_dir / "hub.db", 0o644)):
        path.chmod(loose)
    (var_dir / "master.key").chmod(0o644)
    result = hub("agency", "list", env=base_env(var_dir))
    assert result.returncode == 0, result.stderr.decode()
    assert mode(var_dir) == 0o700
    assert mode(var_dir / "hub.db") == 0o600
    assert mode(var_dir / "master.key") == 0o600
