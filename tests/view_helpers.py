"""Helpers for the view tests: table snapshots, an independent audit chain, histories.

``snapshot`` reads every view table in a stable order (JSON documents parsed, the
checkpoints' wall-clock ``created_at`` left out), so two builds of the views can be
compared with ``==``. ``expected_chain`` recomputes the audit hash chain from the
stored events with ``hashlib`` alone, following the format ``projections.audit``
documents, so the tests do not check the code with itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid5

from services.bootstrap import Hub
from tests.factories import T0

ROOT = Path(__file__).resolve().parents[1]
GENESIS = "0" * 64
VIEW_TABLES = (
    "view_case_docs",
    "view_inbox",
    "view_caseload",
    "view_audit",
    "view_audit_checkpoints",
    "view_dashboard",
)

# Agencies of the synthetic histories (ids chosen so they sort in a known order).
JOBCENTER = "jc-test"
COACH = "coach-test"
CLINIC = "clinic-test"
EMPLOYMENT_AGENCY = "aa-test"
DRV = "drv-test"
CHAMBER = "hwk-test"
TEST_AGENCIES: tuple[tuple[str, str], ...] = (
    (JOBCENTER, "jobcenter"),
    (COACH, "coaching_provider"),
    (CLINIC, "psychiatric_clinic"),
    (EMPLOYMENT_AGENCY, "employment_agency"),
    (DRV, "rehabilitation_agency"),
    (CHAMBER, "chamber"),
)


def process_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a ``hub`` process on the test's store: the same URL and the
    same var dir (so the same master key) as the ``settings`` fixture."""
    return {
        **os.environ,
        "HUB_DATABASE_URL": database_url,
        "HUB_VAR_DIR": str(tmp_path / "var"),
        "HUB_LOG_FORMAT": "json",
        "PYTHONPATH": str(ROOT),
    }


def register_test_agencies(hub: Hub) -> None:
    for agency_id, kind in TEST_AGENCIES:
        hub.registry.register(agency_id, kind, f"Agency {agency_id}")  # type: ignore[arg-type]


def snapshot(view_store: Any) -> dict[str, Any]:
    """Every view table's rows, in a stable order, JSON documents parsed."""
    q = view_store.query
    return {
        "view_case_docs": {
            row["case_id"]: json.loads(row["doc"])
            for row in q("SELECT case_id, doc FROM view_case_docs ORDER BY case_id")
        },
        "view_inbox": q("SELECT * FROM view_inbox ORDER BY handover_id"),
        "view_caseload": q("SELECT * FROM view_caseload ORDER BY agency, case_id"),
        "view_audit": q("SELECT * FROM view_audit ORDER BY position"),
        "view_audit_checkpoints": q(
            "SELECT position, head_hash FROM view_audit_checkpoints ORDER BY position"
        ),
        "view_dashboard": {
            row["name"]: json.loads(row["doc"])
            for row in q("SELECT name, doc FROM view_dashboard ORDER BY name")
        },
    }


def row_counts(view_store: Any, suffix: str = "") -> dict[str, int]:
    """Rows per view table (``suffix``: of a rebuild's shadow tables, e.g. ``__next``)."""
    return {
        table: view_store.query(f"SELECT COUNT(*) AS n FROM {table}{suffix}")[0]["n"]
        for table in VIEW_TABLES
    }


def table_names(view_store: Any) -> set[str]:
    """Every table in the views' database (PostgreSQL: in the hub's schema)."""
    if view_store.P == "?":
        rows = view_store.query("SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        rows = view_store.query(
            "SELECT table_name AS name FROM information_schema.tables "
            "WHERE table_schema = current_schema()"
        )
    return {row["name"] for row in rows}


def stored_events(hub: Hub) -> list[Any]:
    """Every stored event (notification) in global order."""
    events: list[Any] = []
    start = 1
    while True:
        page = hub.app.recorder.select_notifications(start, 1000)
        if not page:
            return events
        events.extend(page)
        start = page[-1].id + 1


def expected_chain(hub: Hub) -> dict[int, str]:
    """Position -> hash, recomputed from the stored bytes with hashlib only."""
    head, chain = GENESIS, {}
    for n in stored_events(hub):
        header = (
            f"hub-audit-v1\n{n.id}\n{UUID(str(n.originator_id))}\n{n.originator_version}\n"
            f"{n.topic}\n"
        )
        head = hashlib.sha256(bytes.fromhex(head) + header.encode() + bytes(n.state)).hexdigest()
        chain[n.id] = head
    return chain


def iso(days: float = 0, hours: float = 0) -> str:
    return (T0 + timedelta(days=days, hours=hours)).isoformat()


# ---- synthetic histories ---------------------------------------------------------

_NS = uuid5(UUID(int=0), "urn:hub:test-views")


def stable_id(name: str) -> UUID:
    return uuid5(_NS, name)


def _msg(
    name: str, type_: str, agency: str, case_id: UUID, day: float, payload: dict[str, Any]
) -> dict[str, Any]:
    return {
        "message_id": str(stable_id(f"{name}/{type_}/{day}")),
        "type": type_,
        "agency": agency,
        "case_id": str(case_id),
        "occurred_at": iso(day),
        "actor": f"user@{agency}",
        "payload": payload,
    }


def case_history(index: int) -> list[dict[str, Any]]:
    """One case in the shape of scenario 3, ten messages; every fourth case keeps its
    assignment open (an inbox row), every third ends in employment."""
    name = f"case-{index}"
    case_id = stable_id(name)
    handover = str(stable_id(f"{name}/assignment"))
    day = index % 50
    messages = [
        _msg(
            name,
            "case.opened",
            JOBCENTER,
            case_id,
            day,
            {
                "programme": "Inklusionsinitiative Trier",
                "site": f"Site-{index % 4}",
                "participant": {"pseudonym": f"P-{index:05d}", "name": f"Person {index}"},
            },
        ),
        _msg(
            name,
            "consent.granted",
            JOBCENTER,
            case_id,
            day,
            {
                "consent_id": f"{name}-coach",
                "categories": ["identity", "contact"],
                "source_agency": JOBCENTER,
                "recipients": [COACH],
                "valid_from": iso(day),
            },
        ),
        _msg(
            name,
            "handover.offered",
            JOBCENTER,
            case_id,
            day,
            {
                "handover_id": handover,
                "kind": "assignment",
                "to_agency": COACH,
                "data_categories": ["identity"],
            },
        ),
    ]
    if index % 4 == 3:
        return messages
    accepted = day + 1 + index % 6
    messages += [
        _msg(name, "handover.accepted", COACH, case_id, accepted, {"handover_id": handover}),
        _msg(name, "coach.assigned", COACH, case_id, accepted, {"coach": f"coach-{index % 7}"}),
        _msg(name, "agreement.signed", COACH, case_id, accepted + 2, {}),
        _msg(
            name,
            "note.added",
            COACH,
            case_id,
            accepted + 3,
            {"text": f"Gespräch {index}", "category": "notes"},
        ),
        _msg(
            name,
            "plan.agreed",
            COACH,
            case_id,
            accepted + 5,
            {"goals": ["Arbeit"], "modules": ["Bewerbungstraining"]},
        ),
    ]
    if index % 3 == 0:
        messages += [
            _msg(
                name,
                "employment.started",
                JOBCENTER,
                case_id,
                accepted + 60,
                {
                    "employer": "Beispiel GmbH",
                    "kind": "employment",
                    "start_date": (T0 + timedelta(days=accepted + 60)).date().isoformat(),
                },
            ),
            _msg(name, "aftercare.started", JOBCENTER, case_id, accepted + 60, {}),
        ]
    return messages


def history(cases: int) -> Iterator[dict[str, Any]]:
    for index in range(cases):
        yield from case_history(index)


def record_all(hub: Hub, messages: Iterable[dict[str, Any]]) -> int:
    """Record every message; returns the last position. Every one must be accepted."""
    position = 0
    for message in messages:
        result = hub.messages.record_raw(message)
        assert not result["duplicate"], message
        position = result["position"]
    return position


def kill_when(
    script: Path, env: dict[str, str], reached: int, *, grace: float = 0.0
) -> tuple[int | None, int | None, str]:
    """Run ``script`` (it prints the events applied after each page) and SIGKILL it
    once it has printed at least ``reached`` (``grace`` seconds later: most likely
    inside the next page's transaction). Returns (the count it was killed after, or
    None; its return code; its stderr). Bounded: killed anyway after 120 s."""
    child = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    killed_after = None
    watchdog = threading.Timer(120, child.kill)  # the read below never blocks for ever
    watchdog.start()
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if line.strip().isdigit() and int(line) >= reached:
                killed_after = int(line)
                time.sleep(grace)
                child.send_signal(signal.SIGKILL)
                break
        child.wait(timeout=60)
    finally:
        watchdog.cancel()
        if child.poll() is None:
            child.kill()
            child.wait()
    stderr = child.stderr.read() if child.stderr else ""
    return killed_after, child.returncode, stderr
