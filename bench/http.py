"""``http``: messages/s through ``hub serve``, 8 keep-alive clients posting at once.

The server is ``hub serve`` in its own process on a fresh store (127.0.0.1, a free
port, production JSON logging to /dev/null). Each client thread walks its own
coaching cases (the 13-message mix of ``bench.append``) with the two agencies'
tokens, one request at a time, for a fixed time. A request's latency ends when the
201 arrives, which the hub sends only once the sender's views show the message
(read-your-writes); a 202 (views still lagging) is counted apart. Afterwards the
store is opened again: the events recorded must equal the messages accepted, and no
answer may have been a 5xx.

Baseline: the application service's own rate in this process (``bench.append``'s
``run_hub``, single-threaded, no HTTP), measured in the same run on the same store.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from uuid import uuid4

from bench.append import COACH, JC, case_messages, run_hub
from bench.common import Row, report, store_url, stores
from services.bootstrap import build_hub
from services.settings import Settings

CLIENTS = 8
TARGET_RATE = 500.0  # messages/s on SQLite
TARGET_P99_MS = 100.0
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class ClientResult:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _prepare(url: str, var_dir: Path) -> dict[str, str]:
    """Register the two agencies and issue their tokens, as ``hub agency add`` would."""
    hub = build_hub(Settings(database_url=url, var_dir=var_dir))
    try:
        tokens = {}
        for agency, kind, name in (
            (JC, "jobcenter", "Bench Jobcenter"),
            (COACH, "coaching_provider", "Bench Coaching"),
        ):
            hub.registry.register(agency, kind, name)
            tokens[agency] = hub.tokens.issue_agency_token(agency)
        return tokens
    finally:
        hub.close()


def _recorded_events(url: str, var_dir: Path) -> int:
    hub = build_hub(Settings(database_url=url, var_dir=var_dir))
    try:
        return hub.app.recorder.max_notification_id() or 0
    finally:
        hub.close()


def _start_server(url: str, var_dir: Path, port: int, log: Path | None = None) -> subprocess.Popen:
    """``hub serve`` on ``url``; its log (JSON lines) to ``log`` when given, else dropped."""
    env = {
        **os.environ,
        "HUB_DATABASE_URL": url,
        "HUB_VAR_DIR": str(var_dir),
        "HUB_LOG_FORMAT": "json",
        "HUB_LOG_LEVEL": "INFO",
        "PYTHONPATH": str(ROOT),
    }
    process = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "services.cli", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log.open("ab") if log else subprocess.DEVNULL,
        stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"hub serve exited with {process.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("hub serve did not come up within 60 s")


def _stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def _client(
    port: int,
    tokens: dict[str, str],
    deadline: list[float],
    result: ClientResult,
    start: threading.Barrier,
) -> None:
    """One keep-alive connection, one request at a time, until ``deadline[0]``."""
    headers = {
        agency: {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        for agency, token in tokens.items()
    }
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    start.wait()
    stop_at = deadline[0]
    try:
        while time.perf_counter() < stop_at:
            for raw in case_messages(uuid4()):
                if time.perf_counter() >= stop_at:
                    break
                agency = json.loads(raw)["agency"]
                began = time.perf_counter()
                try:
                    conn.request("POST", "/v1/messages", body=raw, headers=headers[agency])
                    response = conn.getresponse()
                    response.read()
                except (OSError, http.client.HTTPException) as error:
                    result.errors.append(type(error).__name__)
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    break  # this case's order is lost; start a fresh case
                result.latencies.append(time.perf_counter() - began)
                result.statuses[response.status] += 1
                if response.status not in (200, 201, 202):
                    break  # a refused step makes the rest of this case meaningless
    finally:
        conn.close()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_http(url: str, var_dir: Path, seconds: float) -> dict[str, float]:
    """``hub serve`` on ``url`` and ``CLIENTS`` clients for ``seconds``; the figures."""
    tokens = _prepare(url, var_dir)
    before = _recorded_events(url, var_dir)
    port = _free_port()
    server = _start_server(url, var_dir, port)
    results = [ClientResult() for _ in range(CLIENTS)]
    barrier = threading.Barrier(CLIENTS + 1)
    deadline = [0.0]
    threads = [
        threading.Thread(target=_client, args=(port, tokens, deadline, r, barrier), daemon=True)
        for r in results
    ]
    try:
        for thread in threads:
            thread.start()
        started = time.perf_counter()
        deadline[0] = started + seconds
        barrier.wait()
        for thread in threads:
            thread.join(timeout=seconds + 60)
        elapsed = time.perf_counter() - started
    finally:
        _stop_server(server)
    statuses: Counter = Counter()
    latencies: list[float] = []
    errors = 0
    for result in results:
        statuses.update(result.statuses)
        latencies.extend(result.latencies)
        errors += len(result.errors)
    accepted = statuses[201] + statuses[202]
    return {
        "rate": accepted / elapsed,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else float("nan"),
        "p99_ms": _percentile(latencies, 0.99) * 1000,
        "requests": sum(statuses.values()),
        "accepted": accepted,
        "recorded": _recorded_events(url, var_dir) - before,
        "lagging_202": statuses[202],
        "server_errors": sum(n for s, n in statuses.items() if s >= 500),
        "refused_4xx": sum(n for s, n in statuses.items() if 400 <= s < 500),
        "transport_errors": errors,
    }


def run(*, quick: bool) -> None:
    seconds = 5.0 if quick else 30.0
    n_cases = 10 if quick else 40  # the baseline's size: enough for a stable rate
    rows: list[Row] = []
    broken: list[str] = []
    for store in stores():
        with tempfile.TemporaryDirectory(prefix="hub-bench-http-") as folder:
            with store_url(store) as url:
                figures = run_http(url, Path(folder) / "var", seconds)
            with store_url(store) as url:
                baseline = run_hub(url, [case_messages(uuid4()) for _ in range(n_cases)])
        on_sqlite = store == "sqlite"
        rate = figures["rate"]
        label = f"http {CLIENTS} clients {seconds:g} s"
        rows += [
            Row(
                case=f"{label}: accepted",
                store=store,
                value=rate,
                unit="msg/s",
                baseline=baseline,
                ratio=rate / baseline,
                target=f">= {TARGET_RATE:g} msg/s" if on_sqlite else "-",
                meets=rate >= TARGET_RATE if on_sqlite else None,
            ),
            Row(
                f"{label}: p50 incl. read-your-writes",
                store,
                figures["p50_ms"],
                "ms",
                None,
                None,
                "-",
                None,
            ),
            Row(
                case=f"{label}: p99 incl. read-your-writes",
                store=store,
                value=figures["p99_ms"],
                unit="ms",
                baseline=None,
                ratio=None,
                target=f"< {TARGET_P99_MS:g} ms" if on_sqlite else "-",
                meets=figures["p99_ms"] < TARGET_P99_MS if on_sqlite else None,
            ),
            Row(
                f"{label}: 5xx answers",
                store,
                figures["server_errors"],
                "count",
                None,
                None,
                "= 0",
                figures["server_errors"] == 0,
            ),
            Row(
                case=f"{label}: events recorded vs accepted",
                store=store,
                value=figures["recorded"],
                unit="events",
                baseline=figures["accepted"],
                ratio=figures["recorded"] / figures["accepted"] if figures["accepted"] else None,
                target="= accepted",
                meets=figures["recorded"] == figures["accepted"],
            ),
            Row(
                f"{label}: 202 (views lagged)",
                store,
                figures["lagging_202"],
                "count",
                None,
                None,
                "-",
                None,
            ),
        ]
        if figures["server_errors"]:
            broken.append(f"{store}: {figures['server_errors']} answers were 5xx")
        if figures["recorded"] != figures["accepted"]:
            broken.append(
                f"{store}: {figures['recorded']} events recorded, {figures['accepted']} accepted"
            )
        if figures["refused_4xx"] or figures["transport_errors"]:
            broken.append(
                f"{store}: {figures['refused_4xx']} valid messages refused (4xx), "
                f"{figures['transport_errors']} transport errors"
            )
    report("http", rows, quick=quick)
    if broken:
        # Speed is reported, not enforced; wrong answers are.
        raise SystemExit("bench http: " + "; ".join(broken))
