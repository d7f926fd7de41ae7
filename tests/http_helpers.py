"""Shared pieces of the HTTP tests: tokens, error-shape checks, a real server.

``served(app)`` runs uvicorn in a thread on a free loopback port (for tools that
need a socket: schemathesis, a browser); ``hub_serve(...)`` starts ``hub serve``
as its own process, as a user would.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx

from services.bootstrap import Hub
from services.demo import AGENCIES, register_demo_agencies

ROOT = Path(__file__).resolve().parents[1]
AUDITOR = "Prüferin Test"
# Anything a client must never see: Python's traceback header, frames, exception names.
LEAK_MARKERS = ("Traceback", 'File "', "psycopg", "sqlite3.", "Exception:", "Error:")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Tokens:
    agencies: dict[str, str] = field(default_factory=dict)
    auditor: str = ""

    def of(self, agency: str) -> dict[str, str]:
        return bearer(self.agencies[agency])

    def audit(self) -> dict[str, str]:
        return bearer(self.auditor)


def demo_tokens(hub: Hub) -> Tokens:
    """Register DOMAIN.md's agencies (no messages) and issue a token for each."""
    register_demo_agencies(hub.registry)
    return Tokens(
        agencies={a: hub.tokens.issue_agency_token(a) for a, _, _ in AGENCIES},
        auditor=hub.tokens.issue_auditor_token(AUDITOR),
    )


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The answer is ``status`` with exactly ``{"error": {"code", "message", "details"}}``."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["error"], body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert isinstance(error["code"], str)
    assert error["code"]
    assert isinstance(error["message"], str)
    assert error["message"]
    if code is not None:
        assert error["code"] == code, error
    assert_no_leak(response)
    return error


def assert_no_leak(response: Any) -> None:
    text = response.text
    for marker in LEAK_MARKERS:
        assert marker not in text, f"{marker!r} in a response body: {text[:300]}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(
    base_url: str, timeout: float = 30.0, process: Any = None, stderr: Any = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            said = ""
            if stderr is not None:
                stderr.seek(0)
                said = stderr.read().decode("utf-8", "replace")[-2000:]
            raise RuntimeError(f"the server exited with {process.returncode}: {said}")
        with suppress(httpx.HTTPError):
            if httpx.get(f"{base_url}/healthz", timeout=1.0).status_code == 200:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{base_url} did not come up within {timeout} s")


@contextmanager
def served(app: Any) -> Iterator[str]:
    """Run ``app`` under uvicorn in a thread, with the options ``hub serve`` gives it
    (the hub's protocol and limits); yields its base URL; stops it afterwards."""
    import uvicorn

    from services.api.server import uvicorn_options

    port = free_port()
    options = {**uvicorn_options(app), "timeout_graceful_shutdown": 2}
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base_url)
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@dataclass
class ServedProcess:
    base_url: str
    process: subprocess.Popen
    tokens: dict[str, str]
    output: list[str]
    stderr: Any = None  # the process's stderr so far (its log), as a temporary file

    def logs(self) -> str:
        """What the server wrote on stderr so far (JSON log lines)."""
        self.stderr.seek(0)
        return self.stderr.read().decode("utf-8", "replace")


TOKEN_LINE = re.compile(r"^\s+(?P<who>\S+)\s+(?P<token>\S{20,})\s*$")


@contextmanager
def hub_serve(
    database_url: str,
    var_dir: Path,
    *,
    demo: bool = True,
    log_level: str = "WARNING",
    extra_args: list[str] | None = None,
) -> Iterator[ServedProcess]:
    """``hub serve [--demo] [extra_args]`` in its own process on a free port; demo tokens
    parsed from what it prints. Stopped with SIGTERM (then SIGKILL) afterwards."""
    port = free_port()
    env = {
        **os.environ,
        "HUB_DATABASE_URL": database_url,
        "HUB_VAR_DIR": str(var_dir),
        "HUB_LOG_FORMAT": "json",
        "HUB_LOG_LEVEL": log_level,
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
    }
    args = [sys.executable, "-m", "services.cli", "serve", "--port", str(port)]
    if demo:
        args.append("--demo")
    args.extend(extra_args or [])
    errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
    process = subprocess.Popen(
        args,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
    )
    output: list[str] = []
    tokens: dict[str, str] = {}

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line.rstrip("\n"))
            match = TOKEN_LINE.match(line)
            if match:
                tokens[match["who"]] = match["token"]

    reader = threading.Thread(target=pump, name="hub-serve-stdout", daemon=True)
    reader.start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base_url, timeout=60, process=process, stderr=errors)
        yield ServedProcess(base_url, process, tokens, output, errors)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        reader.join(timeout=5)
        errors.close()
