"""``append``: messages/s through the application service vs. plain ``eventsourcing``.

The hub side records JSON messages one per call (parse, load the case, decide,
save with the idempotency receipt), in the mix of a coaching case. The baseline
does the same number of load-append-save cycles with a minimal aggregate on the
plain library, in the same run and on the same kind of store.

Concurrent writers (issue 14 item 3): N threads in one process, each walking its
own coaching cases through one ``MessageService``, group commit
(``HUB_GROUP_COMMIT_MS``) on vs off in the same run on fresh stores, alternating,
medians of three: msg/s, and the p50/p99 latency of one ``record``. Baseline: group
commit off. One writer alone, on vs off likewise: it must cost nothing.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
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
GROUP_TARGET = 1.25  # msg/s with group commit on, x off, at the same writers
GROUP_WINDOW_MS = 2.0  # the setting's default
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


def run_hub(
    url: str,
    cases: list[list[bytes]],
    *,
    encrypt: bool = True,
    group_commit_ms: float | None = None,
) -> float:
    with tempfile.TemporaryDirectory(prefix="hub-bench-var-") as var:
        return _run_hub(url, cases, encrypt=encrypt, var=var, group_commit_ms=group_commit_ms)


def _run_hub(
    url: str,
    cases: list[list[bytes]],
    *,
    encrypt: bool,
    var: str,
    group_commit_ms: float | None = None,
) -> float:
    chosen = {} if group_commit_ms is None else {"group_commit_ms": group_commit_ms}
    hub = build_hub(Settings(database_url=url, var_dir=var, **chosen))
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


@dataclass
class Concurrent:
    rate: float  # msg/s
    p50_ms: float
    p99_ms: float
    groups: int  # transactions the group committer made (0: off)
    members: int  # writes in them


def run_concurrent(url: str, writers: int, cases_each: int, group_commit_ms: float) -> Concurrent:
    """``writers`` threads, each recording its own ``cases_each`` coaching cases,
    released together; the latency of every ``record_raw`` call."""
    with tempfile.TemporaryDirectory(prefix="hub-bench-var-") as var:
        hub = build_hub(Settings(database_url=url, var_dir=var, group_commit_ms=group_commit_ms))
        try:
            hub.registry.register(JC, "jobcenter", "Bench Jobcenter")
            hub.registry.register(COACH, "coaching_provider", "Bench Coaching")
            work = [
                [raw for _ in range(cases_each) for raw in case_messages(uuid4())]
                for _ in range(writers)
            ]
            latencies: list[list[float]] = [[] for _ in range(writers)]
            errors: list[BaseException] = []
            barrier = threading.Barrier(writers + 1)

            def write(i: int) -> None:
                barrier.wait()
                clock = time.perf_counter
                try:
                    for raw in work[i]:
                        began = clock()
                        hub.messages.record_raw(raw)
                        latencies[i].append(clock() - began)
                except BaseException as error:
                    errors.append(error)

            threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
            for thread in threads:
                thread.start()
            committer = getattr(hub.app.recorder, "group_committer", None)
            before = (committer.groups, committer.members) if committer else (0, 0)
            barrier.wait()
            started = time.perf_counter()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - started
            if errors:
                raise errors[0]
            every = sorted(x for per in latencies for x in per)
            recorded = hub.app.recorder.max_notification_id() or 0
            if recorded < len(every):  # every message one event, none lost
                raise AssertionError(f"{recorded} events for {len(every)} messages")
            return Concurrent(
                rate=len(every) / elapsed,
                p50_ms=1000 * statistics.median(every),
                p99_ms=1000 * every[int(0.99 * (len(every) - 1))],
                groups=(committer.groups - before[0]) if committer else 0,
                members=(committer.members - before[1]) if committer else 0,
            )
        finally:
            hub.close()


def _median(runs: list[Concurrent]) -> Concurrent:
    return Concurrent(
        rate=statistics.median(r.rate for r in runs),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        groups=sum(r.groups for r in runs),
        members=sum(r.members for r in runs),
    )


def one_writer_row(store: str, n_cases: int, *, quick: bool) -> Row:
    """One writer, group commit on vs off: it must cost a lone writer nothing."""
    alone: dict[float, list[float]] = {GROUP_WINDOW_MS: [], 0.0: []}
    for _ in range(1 if quick else 3):  # alternating, medians: a shared machine
        for window, found in alone.items():
            with store_url(store) as url:
                messages = [case_messages(uuid4()) for _ in range(n_cases)]
                found.append(run_hub(url, messages, group_commit_ms=window))
    alone_on = statistics.median(alone[GROUP_WINDOW_MS])
    alone_off = statistics.median(alone[0.0])
    return Row(
        case="append, one writer, group commit on vs off",
        store=store,
        value=alone_on,
        unit="msg/s",
        baseline=alone_off,
        ratio=alone_on / alone_off,
        target=">= 0.95 x off",
        meets=alone_on / alone_off >= 0.95,
    )


def concurrent_rows(store: str, *, quick: bool) -> list[Row]:
    """Off and on alternate, each on a fresh store, ``rounds`` times; the medians (the
    machine is shared: one slow run must not decide)."""
    rows = []
    rounds = 1 if quick else 3
    for writers, cases_each in ((8, 2), (32, 1)) if quick else ((8, 8), (32, 2)):
        runs: dict[float, list[Concurrent]] = {0.0: [], GROUP_WINDOW_MS: []}
        for _ in range(rounds):
            for window, found in runs.items():
                with store_url(store) as url:
                    found.append(run_concurrent(url, writers, cases_each, window))
        off, on = _median(runs[0.0]), _median(runs[GROUP_WINDOW_MS])
        label = f"{writers} writers, group commit {GROUP_WINDOW_MS:g} ms vs off"
        per_group = on.members / on.groups if on.groups else 0.0
        rows.append(
            Row(
                case=f"{label} ({per_group:.1f} writes/commit)",
                store=store,
                value=on.rate,
                unit="msg/s",
                baseline=off.rate,
                ratio=on.rate / off.rate,
                target=f">= {GROUP_TARGET} x off",
                meets=on.rate / off.rate >= GROUP_TARGET,
            )
        )
        for name, on_ms, off_ms in (("p50", on.p50_ms, off.p50_ms), ("p99", on.p99_ms, off.p99_ms)):
            rows.append(
                Row(
                    case=f"{label}, {name} latency",
                    store=store,
                    value=on_ms,
                    unit="ms",
                    baseline=off_ms,
                    ratio=on_ms / off_ms,
                    target="<= 1.0 x off",
                    meets=on_ms <= off_ms,
                )
            )
    return rows


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
        rows.append(one_writer_row(store, max(10, n_cases // 3), quick=quick))
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
    for store in stores():
        rows.extend(concurrent_rows(store, quick=quick))
    report("append", rows, quick=quick)
