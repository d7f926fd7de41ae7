"""``crash``: ``kill -9`` of ``hub serve`` during write bursts, then a restart.

``CLIENTS`` clients each send a fixed list of coaching cases (``bench.append``'s
13-message mix) to ``hub serve`` in its own process. A client sends each message
until it is acknowledged (200, 201 or 202), always the same bytes, so the same
``message_id``: a dropped connection, a refused connection or a 5xx is retried after
a short pause. While they write, the server is killed with SIGKILL and started again
on the same store and port, ``KILLS`` times.

Found and reported: every message acknowledged; each acknowledged message has its
receipt and the store holds exactly one event per message (none lost, none doubled);
the views a restarted server built equal the views ``hub projections rebuild`` builds
from the events; ``hub audit verify`` passes. Full: 3 kills on PostgreSQL, 1 on
SQLite; quick: 1 kill on SQLite. Bounded: a fixed number of messages and a deadline.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from bench.append import case_messages
from bench.common import Row, postgres_available, report, store_url
from bench.http import _free_port, _prepare, _recorded_events, _start_server, _stop_server
from bench.soak import count_events, hub_command, hub_env
from services.bootstrap import build_hub
from services.settings import Settings

CLIENTS = 8
DEADLINE_S = 240.0  # per store: the whole run, kills and restarts included
RETRY_PAUSE_S = 0.1
# store -> (kills, cases per client)
FULL = {"postgres": (3, 20), "sqlite": (1, 10)}
QUICK = {"sqlite": (1, 6)}
VIEW_TABLES = (
    ("view_case_docs", "case_id"),
    ("view_inbox", "handover_id"),
    ("view_caseload", "agency, case_id"),
    ("view_audit", "position"),
    ("view_dashboard", "name"),
)


@dataclass
class CrashClient:
    acknowledged: dict[UUID, tuple[str, int]] = field(default_factory=dict)  # id -> agency, status
    attempts: Counter = field(default_factory=Counter)  # what each try ended in
    unacknowledged: int = 0


def _crash_client(
    port: int, tokens: dict[str, str], cases: list[list[bytes]], stop_at: float, result: CrashClient
) -> None:
    headers = {
        agency: {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        for agency, token in tokens.items()
    }
    conn: http.client.HTTPConnection | None = None
    for raw in (raw for case in cases for raw in case):
        message = json.loads(raw)
        while True:
            if time.perf_counter() > stop_at:
                result.unacknowledged += 1
                break
            try:
                conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=15)
                conn.request("POST", "/v1/messages", body=raw, headers=headers[message["agency"]])
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as error:
                result.attempts[type(error).__name__] += 1
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(RETRY_PAUSE_S)
                continue
            result.attempts[response.status] += 1
            if response.status in (200, 201, 202):
                result.acknowledged[UUID(message["message_id"])] = (
                    message["agency"],
                    response.status,
                )
                break
            if response.status < 500:
                # A valid message refused: nothing a retry would change; reported.
                result.unacknowledged += 1
                break
            time.sleep(RETRY_PAUSE_S)
    if conn is not None:
        conn.close()


def views_snapshot(view_store: Any) -> dict[str, list[dict[str, Any]]]:
    """Every view table's rows in a stable order (the checkpoints' clock left out). A
    JSON document is compared as what it says, not as its text: the dashboard totals'
    counters keep their keys in the order they were last added, which differs between
    folding page by page live and in one pass while rebuilding (a count that fell to
    0 and rose again moves its key to the end)."""
    tables = {}
    for table, key in VIEW_TABLES:
        query = f"SELECT * FROM {table} ORDER BY {key}"  # noqa: S608 - fixed names
        tables[table] = [_parsed(dict(row)) for row in view_store.query(query)]
    tables["view_audit_checkpoints"] = [
        dict(row)
        for row in view_store.query(
            "SELECT position, head_hash FROM view_audit_checkpoints ORDER BY position"
        )
    ]
    return tables


def _parsed(row: dict[str, Any]) -> dict[str, Any]:
    doc = row.get("doc")
    return {**row, "doc": json.loads(doc)} if isinstance(doc, str) else row


def _hub_check(url: str, var_dir: Path, acknowledged: dict[UUID, tuple[str, int]]) -> dict:
    """Receipts of the acknowledged messages and the views as the servers left them."""
    hub = build_hub(Settings(database_url=url, var_dir=var_dir))
    try:
        missing = sum(
            1
            for message_id, (agency, _status) in acknowledged.items()
            if hub.app.recorder.find_receipt(message_id, agency) is None
        )
        hub.views.catch_up()  # events the last server recorded but had not yet applied
        return {"missing_receipts": missing, "views": views_snapshot(hub.view_store)}
    finally:
        hub.close()


def _rebuilt_views(url: str, var_dir: Path) -> dict[str, list[dict[str, Any]]]:
    hub = build_hub(Settings(database_url=url, var_dir=var_dir))
    try:
        return views_snapshot(hub.view_store)
    finally:
        hub.close()


def run_crash(store: str, kills: int, cases_per_client: int) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="hub-bench-crash-") as folder,
        store_url(store) as url,
    ):
        var_dir = Path(folder) / "var"
        env = hub_env(url, var_dir)
        tokens = _prepare(url, var_dir)
        before = count_events(url, var_dir)
        first_id = _recorded_events(url, var_dir)
        port = _free_port()
        server = _start_server(url, var_dir, port)
        plan = [[case_messages(uuid4()) for _ in range(cases_per_client)] for _ in range(CLIENTS)]
        sent = sum(len(case) for cases in plan for case in cases)
        results = [CrashClient() for _ in range(CLIENTS)]
        started = time.perf_counter()
        stop_at = started + DEADLINE_S
        threads = [
            threading.Thread(
                target=_crash_client, args=(port, tokens, cases, stop_at, r), daemon=True
            )
            for cases, r in zip(plan, results, strict=True)
        ]
        downtimes: list[float] = []
        killed_after: list[int] = []  # acknowledgements so far at each kill
        try:
            for thread in threads:
                thread.start()
            for k in range(1, kills + 1):
                # Killed while writing: once the k-th share of the messages is acknowledged.
                while sum(len(r.acknowledged) for r in results) < k * sent // (kills + 1):
                    if time.perf_counter() > stop_at:
                        break
                    time.sleep(0.01)
                killed_after.append(sum(len(r.acknowledged) for r in results))
                os.kill(server.pid, signal.SIGKILL)
                server.wait(timeout=30)
                down = time.perf_counter()
                server = _start_server(url, var_dir, port)
                downtimes.append(time.perf_counter() - down)
            for thread in threads:
                thread.join(timeout=max(1.0, stop_at - time.perf_counter() + 30))
            elapsed = time.perf_counter() - started
        finally:
            _stop_server(server)
        acknowledged: dict[UUID, tuple[str, int]] = {}
        attempts: Counter = Counter()
        for r in results:
            acknowledged.update(r.acknowledged)
            attempts.update(r.attempts)
        recorded = count_events(url, var_dir) - before
        id_span = _recorded_events(url, var_dir) - first_id
        checked = _hub_check(url, var_dir, acknowledged)
        rebuild = hub_command(env, "projections", "rebuild")
        rebuilt = _rebuilt_views(url, var_dir) if rebuild.returncode == 0 else None
        verify = hub_command(env, "audit", "verify")
    return {
        "store": store,
        "kills": kills,
        "killed_after_acks": killed_after,
        "restart_s": downtimes,
        "seconds": elapsed,
        "sent": sent,
        "acknowledged": len(acknowledged),
        "acknowledged_as_repeat": sum(1 for _a, s in acknowledged.values() if s == 200),
        "unacknowledged": sum(r.unacknowledged for r in results),
        "retries": sum(n for what, n in attempts.items() if what not in (200, 201, 202)),
        "server_errors": sum(
            n for what, n in attempts.items() if isinstance(what, int) and what >= 500
        ),
        "recorded": recorded,
        "notification_id_gaps": id_span - recorded,
        "missing_receipts": checked["missing_receipts"],
        "views_equal_rebuild": rebuilt is not None and rebuilt == checked["views"],
        "rebuild_ok": rebuild.returncode == 0,
        "audit_verify_ok": verify.returncode == 0,
        "audit_verify": (verify.stdout or verify.stderr).strip().splitlines()[-1:],
    }


def _rows(f: dict[str, Any]) -> list[Row]:
    store = f["store"]
    label = f"crash {f['kills']} x kill -9, {CLIENTS} clients"

    def row(
        case: str,
        value: float,
        unit: str,
        target: str = "-",
        meets: bool | None = None,
        baseline: float | None = None,
    ) -> Row:
        return Row(f"{label}: {case}", store, value, unit, baseline, None, target, meets)

    return [
        row("run time", f["seconds"], "s"),
        row("messages sent (distinct message_id)", f["sent"], "count"),
        row("acknowledged", f["acknowledged"], "count", "= sent", f["acknowledged"] == f["sent"]),
        row("acknowledged as a repeat (200) after a kill", f["acknowledged_as_repeat"], "count"),
        row("retries (dropped, refused or 5xx tries)", f["retries"], "count"),
        row("5xx answers", f["server_errors"], "count", "= 0", f["server_errors"] == 0),
        row(
            "events recorded",
            f["recorded"],
            "events",
            "= acknowledged",
            f["recorded"] == f["acknowledged"],
            baseline=f["acknowledged"],
        ),
        row(
            "acknowledged without a receipt",
            f["missing_receipts"],
            "count",
            "= 0",
            f["missing_receipts"] == 0,
        ),
        row(
            "views equal a rebuild",
            float(f["views_equal_rebuild"]),
            "bool",
            "= 1",
            f["views_equal_rebuild"],
        ),
        row(
            "hub audit verify passes",
            float(f["audit_verify_ok"]),
            "bool",
            "= 1",
            f["audit_verify_ok"],
        ),
        row("notification ids skipped (rolled-back inserts)", f["notification_id_gaps"], "count"),
        row("slowest restart", max(f["restart_s"], default=0.0), "s"),
        row(
            "kills while writing (acknowledged < sent at the kill)",
            sum(1 for acks in f["killed_after_acks"] if acks < f["sent"]),
            "count",
            f"= {f['kills']}",
            all(acks < f["sent"] for acks in f["killed_after_acks"]),
        ),
    ]


def _broken(f: dict[str, Any]) -> list[str]:
    store, problems = f["store"], []
    if f["acknowledged"] != f["sent"] or f["unacknowledged"]:
        problems.append(f"{f['sent'] - f['acknowledged']} messages never acknowledged")
    if f["recorded"] != f["acknowledged"]:
        problems.append(f"{f['recorded']} events for {f['acknowledged']} acknowledged messages")
    if f["missing_receipts"]:
        problems.append(f"{f['missing_receipts']} acknowledged messages without a receipt")
    if not f["rebuild_ok"]:
        problems.append("hub projections rebuild failed")
    elif not f["views_equal_rebuild"]:
        problems.append("the views differ from a rebuild")
    if f["server_errors"]:
        problems.append(f"{f['server_errors']} answers were 5xx")
    if not f["audit_verify_ok"]:
        problems.append(f"hub audit verify failed: {f['audit_verify']}")
    return [f"{store}: {p}" for p in problems]


def run(*, quick: bool) -> None:
    plan = dict(QUICK if quick else FULL)
    if "postgres" in plan and not postgres_available():
        if os.environ.get("CI") == "true":
            raise SystemExit("PostgreSQL is required for benchmarks in CI and is unreachable")
        print("note: PostgreSQL unreachable, crashing SQLite only")
        plan.pop("postgres")
    rows: list[Row] = []
    broken: list[str] = []
    for store, (kills, cases) in plan.items():
        figures = run_crash(store, kills, cases)
        rows += _rows(figures)
        broken += _broken(figures)
    report("crash", rows, quick=quick)
    if broken:
        raise SystemExit("bench crash: " + "; ".join(broken))
