"""``append``: messages/s through the application service vs. plain ``eventsourcing``.

The hub side records JSON messages one per call (parse, load the case, decide,
save with the idempotency receipt), in the mix of a coaching case. The baseline
does the same number of load-append-save cycles with a minimal aggregate on the
plain library, in the same run and on the same kind of store.
"""

from __future__ import annotations

import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from bench.common import Row, report, store_url, stores
from services.application import MessageService
from services.bootstrap import build_hub
from services.settings import Settings
from services.store import eventsourcing_env

TARGET_RATIO = 0.7
CRYPTO_TARGET = 0.8
JC, COACH = "jc-bench", "coach-bench"


def case_messages(case_id: UUID) -> list[bytes]:
    """One coaching case, as in scenario 3: 13 messages, 13 events."""
    t0 = datetime(2026, 1, 5, 9, tzinfo=UTC)
    counter = iter(range(100))

    def msg(agency: str, type_: str, payload: dict | None = None) -> bytes:
        return json.dumps(
            {
                "message_id": str(uuid4()),
                "type": type_,
                "agency": agency,
                "case_id": str(case_id),
                "occurred_at": (t0 + timedelta(hours=next(counter))).isoformat(),
                "actor": "bench-user",
                "payload": payload or {},
            }
        ).encode()

    handover, appointment, measure = uuid4(), uuid4(), uuid4()
    return [
        msg(
            JC,
            "case.opened",
            {
                "programme": "bench",
                "site": "A",
                "participant": {"pseudonym": "B-1", "name": "Bench Person"},
            },
        ),
        msg(
            JC,
            "consent.granted",
            {
                "consent_id": "c1",
                "categories": ["identity", "contact"],
                "source_agency": JC,
                "recipients": [COACH],
                "valid_from": t0.isoformat(),
            },
        ),
        msg(
            JC,
            "handover.offered",
            {
                "handover_id": str(handover),
                "kind": "assignment",
                "to_agency": COACH,
                "data_categories": ["identity", "contact"],
            },
        ),
        msg(COACH, "handover.accepted", {"handover_id": str(handover)}),
        msg(COACH, "coach.assigned", {"coach": "coach-1"}),
        msg(
            COACH,
            "appointment.scheduled",
            {
                "appointment_id": str(appointment),
                "kind": "information",
                "at": (t0 + timedelta(days=3)).isoformat(),
            },
        ),
        msg(COACH, "appointment.held", {"appointment_id": str(appointment)}),
        msg(COACH, "agreement.signed"),
        msg(COACH, "plan.agreed", {"goals": ["work"], "modules": ["training"]}),
        msg(COACH, "note.added", {"text": "first talk", "category": "notes"}),
        msg(
            COACH,
            "measure.started",
            {"measure_id": str(measure), "kind": "internship", "title": "Praktikum"},
        ),
        msg(COACH, "measure.ended", {"measure_id": str(measure)}),
        msg(COACH, "note.added", {"text": "went well", "category": "notes"}),
    ]


class Counter(Aggregate):
    """The baseline's minimal aggregate."""

    @event("Started")
    def __init__(self) -> None:
        self.count = 0

    @event("Incremented")
    def increment(self, note: str) -> None:
        self.count += 1


def run_hub(url: str, cases: list[list[bytes]], *, encrypt: bool = True) -> float:
    with tempfile.TemporaryDirectory(prefix="hub-bench-var-") as var:
        return _run_hub(url, cases, encrypt=encrypt, var=var)


def _run_hub(url: str, cases: list[list[bytes]], *, encrypt: bool, var: str) -> float:
    hub = build_hub(Settings(database_url=url, var_dir=var))
    if not encrypt:
        # Only for this comparison: the composition root always encrypts.
        hub.messages = MessageService(
            hub.app, hub.registry, hub.settings.policy_book, on_recorded=hub.views.notify
        )
    try:
        hub.registry.register(JC, "jobcenter", "Bench Jobcenter")
        hub.registry.register(COACH, "coaching_provider", "Bench Coaching")
        total = sum(len(c) for c in cases)
        started = time.perf_counter()
        for case in cases:
            for raw in case:
                hub.messages.record_raw(raw)
        return total / (time.perf_counter() - started)
    finally:
        hub.close()


def run_baseline(url: str, cases: int, events_per_case: int) -> float:
    env = eventsourcing_env(url)
    env.pop("APPLICATION_RECORDER_TOPIC")  # the plain library's own recorder
    if "POSTGRES_SCHEMA" in env:
        from services.bootstrap import prepare_postgres

        prepare_postgres(url)
    app = Application(env=env)
    try:
        started = time.perf_counter()
        for _ in range(cases):
            counter = Counter()
            app.save(counter)
            for i in range(events_per_case - 1):
                loaded = app.repository.get(counter.id)
                loaded.increment(note=f"n{i}")
                app.save(loaded)
        return cases * events_per_case / (time.perf_counter() - started)
    finally:
        app.close()


def run(*, quick: bool) -> None:
    n_cases = 20 if quick else 300
    rows = []
    for store in stores():
        cases = [case_messages(uuid4()) for _ in range(n_cases)]
        per_case = len(cases[0])
        with store_url(store) as url:
            baseline = run_baseline(url, n_cases, per_case)
        with store_url(store) as url:
            hub_rate = run_hub(url, cases)
        with store_url(store) as url:
            plain_rate = run_hub(
                url, [case_messages(uuid4()) for _ in range(n_cases)], encrypt=False
            )
        ratio = hub_rate / baseline
        rows.append(
            Row(
                case=f"append ({n_cases} cases x {per_case} msgs)",
                store=store,
                value=hub_rate,
                unit="msg/s",
                baseline=baseline,
                ratio=ratio,
                target=f">= {TARGET_RATIO} x baseline",
                meets=ratio >= TARGET_RATIO,
            )
        )
        crypto_ratio = hub_rate / plain_rate
        rows.append(
            Row(
                case="append, encryption on vs off",
                store=store,
                value=hub_rate,
                unit="msg/s",
                baseline=plain_rate,
                ratio=crypto_ratio,
                target=f">= {CRYPTO_TARGET} x unencrypted",
                meets=crypto_ratio >= CRYPTO_TARGET,
            )
        )
    report("append", rows, quick=quick)
