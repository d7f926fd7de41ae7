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
``run_hub``, single-threaded, no HTTP, no view runner), measured in the same run on
the same kind of store, before and after the HTTP run (the mean of the two). Beside
the rate: the server's CPU per message (and its event-loop thread's), against the
service's own CPU per message, which a shared machine's load disturbs less; and the
load average at the start and end of each store's part.
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


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU time (user + system) of process ``pid``, and of its main thread alone (the
    event loop's: uvicorn runs it there). Linux ``/proc``; NaN elsewhere."""
    tick = os.sysconf("SC_CLK_TCK")

    def read(path: str) -> float:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick

    try:
        return read(f"/proc/{pid}/stat"), read(f"/proc/{pid}/task/{pid}/stat")
    except OSError:
        return float("nan"), float("nan")


def _load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


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
        cpu_before = _cpu_seconds(server.pid)
        started = time.perf_counter()
        deadline[0] = started + seconds
        barrier.wait()
        for thread in threads:
            thread.join(timeout=seconds + 60)
        elapsed = time.perf_counter() - started
        cpu_after = _cpu_seconds(server.pid)
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
    answered = sum(statuses.values()) or 1
    return {
        # Server CPU per answer (every answer here is a message posted): robust to the
        # other work on a shared machine in a way a rate is not.
        "cpu_us": (cpu_after[0] - cpu_before[0]) / answered * 1e6,
        "loop_cpu_us": (cpu_after[1] - cpu_before[1]) / answered * 1e6,
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


def _service_alone(store: str, n_cases: int) -> tuple[float, float]:
    """The baseline: the application service's rate on a fresh store in this process
    (no HTTP, one thread), and its CPU per message."""
    cases = [case_messages(uuid4()) for _ in range(n_cases)]
    with store_url(store) as url:
        cpu = time.process_time()
        rate = run_hub(url, cases)
        cpu = time.process_time() - cpu
    # ``run_hub`` also opens the hub; that CPU is counted against the messages too.
    return rate, cpu / sum(len(c) for c in cases) * 1e6


def run(*, quick: bool) -> None:
    seconds = 5.0 if quick else 30.0
    n_cases = 10 if quick else 40  # the baseline's size: enough for a stable rate
    rows: list[Row] = []
    broken: list[str] = []
    for store in stores():
        load_at_start = _load_average()
        # The baseline is taken before and after the HTTP run, and the two averaged: on
        # a shared machine the load drifts within a run, and either alone would favour
        # one side or the other.
        before = _service_alone(store, n_cases)
        with (
            tempfile.TemporaryDirectory(prefix="hub-bench-http-") as folder,
            store_url(store) as url,
        ):
            figures = run_http(url, Path(folder) / "var", seconds)
        after = _service_alone(store, n_cases)
        baseline = (before[0] + after[0]) / 2
        baseline_cpu = (before[1] + after[1]) / 2
        load_at_end = _load_average()
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
                case=f"{label}: server CPU per message",
                store=store,
                value=figures["cpu_us"],
                unit="µs",
                baseline=baseline_cpu,
                ratio=figures["cpu_us"] / baseline_cpu,
                target="-",
                meets=None,
            ),
            Row(
                f"{label}: of which the event-loop thread",
                store,
                figures["loop_cpu_us"],
                "µs",
                None,
                None,
                "-",
                None,
            ),
            Row(
                f"{label}: load average (1 min) start/end",
                store,
                load_at_start,
                "load",
                load_at_end,
                None,
                "-",
                None,
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
