"""``rebuild``: events/s rebuilding every view, against the library's ProjectionRunner.

A seeded history (``bench.history``: 1,000,000 events in about 86,000 cases,
``--quick`` 20,000) is written straight into a fresh store, then every view is
rebuilt as ``hub projections rebuild`` does it (``rebuild_views``): the case
documents, inboxes, caseloads and dashboard totals in the rebuilding process,
written once per case at the end with their tracked positions, and the
hash-chained audit trail in a second process, committed page by page (from
``PARALLEL_FROM`` events on and with more than one core; ``--quick`` stays in one
process). It is measured a second time the other way round, for comparison. Every
step (generating and writing, each read, each rebuild) runs in a fresh process of
its own, as the hub's commands do.

The anchor, in the same run and on the same store, is what a user would pick
instead: the ``eventsourcing`` library's own ``ProjectionRunner`` (its
``ApplicationSubscription``: notifications in pages of 500, each made a domain
event by the application's mapper) with a projection of the kind its documentation
shows (``LibraryCaseViews``): each case event folded by the hub's own reducers into
the case document, inbox and caseload rows in tables of the same store, committed
with its ``Tracking`` in one transaction per event. It keeps no dashboard totals and
no audit trail, which the hub's rebuild also writes. The library's SQLite recorder
has no subscriptions, so on SQLite the same projection is driven page by page as the
subscription would drive it. It commits every event, so it runs ``LIBRARY_SECONDS``
over the log's first events (their cases the shortest, which favours it) and its
rate is events over seconds. Target: the hub's rebuild at least as fast.

Printed beside it, without a target: the raw rate, reading the notification log in
pages of the same size the way the view runner reads it
(``select_notification_rows``: plain tuples, ids as text) and decoding each event's
JSON, before and after the rebuilds (the higher of the two is used); and the same
read through the library's ``select_notifications``. The rebuild's ratio to the raw
rate is printed too (it was once targeted at 0.4: a floor no consumer could reach on
two cores, see docs/rebuild-performance.md).

Floor: at least 50,000 events/s on SQLite. Last, the same history with encryption
off is rebuilt the default way: the encrypted rate must be at least 0.8 of it.

Memory: each rebuild's peak RSS (the rebuilding process, and the audit trail's
process beside it), with the view cache at its default bound (``HUB_VIEW_CACHE_MB``)
and once unbounded for comparison (the rate it costs).

Reads beside a rebuild: ``hub serve`` on the rebuilt store, ``READERS`` keep-alive
clients reading one agency's inbox, caseload page and dashboard, first for
``read_seconds`` with nothing else running (the baseline), then throughout a
rebuild in another process, as ``hub projections rebuild`` runs beside a server:
read p99 (target < 100 ms), of all reads and of each path alone, and every answer
must hold as many items as before (a partial view would hold fewer).
"""

from __future__ import annotations

import gc
import http.client
import json
import os
import resource
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from multiprocessing import get_context
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote
from uuid import UUID

from eventsourcing.persistence import InfrastructureFactory, Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.projection import Projection, ProjectionRunner
from eventsourcing.sqlite import SQLiteTrackingRecorder
from eventsourcing.utils import Environment

from bench.common import Row, report, store_url, stores
from bench.history import generate, write
from bench.http import _free_port, _start_server, _stop_server
from projections.case_doc import reduce_case
from projections.caseload import caseload_rows
from projections.events import EventRecord
from projections.inbox import inbox_rows
from services.application import HubApplication
from services.bootstrap import Hub, build_hub
from services.logging import configure_logging
from services.settings import Settings
from services.store import eventsourcing_env
from services.views.groups.cases import DEFAULT_CACHE_MB
from services.views.rebuild import PARALLEL_FROM, rebuild_views
from services.views.sql.schema import caseload_values, dump_json

FULL_EVENTS = 1_000_000
QUICK_EVENTS = 20_000
TARGET_RATE = {"sqlite": 50_000.0}
TARGET_LIBRARY_RATIO = 1.0  # the hub's rebuild / the library's ProjectionRunner
CRYPTO_TARGET = 0.8
TARGET_READ_P99_MS = 100.0
READERS = 2
UNBOUNDED_CACHE_MB = 1_000_000
T = TypeVar("T")


def raw_read_rate(recorder: Any, page: int) -> float:
    """Events/s reading the whole notification log in pages, as the view runner reads
    it (``select_notification_rows``), and decoding each state, with the cyclic
    collector paused as the rebuild pauses it (a like-for-like batch)."""
    return _read_rate(recorder.select_notification_rows, page, itemgetter(0), itemgetter(4))


def library_read_rate(recorder: Any, page: int) -> float:
    """``raw_read_rate`` through the library's ``select_notifications`` (Notification
    objects with UUIDs), for comparison."""
    return _read_rate(recorder.select_notifications, page, attrgetter("id"), attrgetter("state"))


def _read_rate(
    read: Callable[[int, int], Any],
    page: int,
    position: Callable[[Any], int],
    state: Callable[[Any], bytes],
) -> float:
    loads = json.loads
    start, count = 1, 0
    collecting = gc.isenabled()
    gc.disable()
    try:
        began = time.perf_counter()
        while True:
            notifications = read(start, page)
            if not notifications:
                break
            for n in notifications:
                loads(state(n))
            count += len(notifications)
            start = position(notifications[-1]) + 1
        return count / (time.perf_counter() - began)
    finally:
        if collecting:
            gc.enable()


# ---- the anchor: the eventsourcing library's own ProjectionRunner -----------------------

LIBRARY_TABLES = ("lib_case_docs", "lib_inbox", "lib_caseload")
# The library's projection commits every event on its own, so the million would take
# hours; it runs this long (``--quick``: a sixth), over the log's first events, whose
# cases are the shortest (if anything, that favours it): its rate is events / seconds.
LIBRARY_SECONDS = 60.0


def _plain(value: Any) -> Any:
    """A domain event's value as the stored JSON holds it, decoded (ISO strings, UUID
    strings): what the projections' reducers read."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def event_record(domain_event: Any, position: int) -> EventRecord | None:
    """A case's domain event (as the library's mapper decoded it) to the record the
    reducers fold; None for any other aggregate's event."""
    name = type(domain_event).__qualname__
    if not name.startswith("Case."):
        return None
    data = {k: _plain(v) for k, v in vars(domain_event).items()}
    case_id = data.pop("originator_id")
    version = data.pop("originator_version")
    recorded_at = data.pop("timestamp")
    data.pop("originator_topic", None)
    return EventRecord(
        position,
        case_id,
        version,
        name[len("Case.") :],
        data.pop("agency", None),
        data.pop("actor", None),
        data.pop("occurred_at", None),
        recorded_at,
        data,
    )


def _inbox_row(row: dict[str, Any]) -> tuple[Any, ...]:
    keys = ("handover_id", "agency", "case_id", "programme", "site", "kind", "from_agency")
    return (*(row[k] for k in keys), row["offered_at"], row["due_at"])


class _LibraryViews:
    """What a user of the library writes for the case views: a tracking recorder with
    one method the projection calls per event, which reads the case's document, folds
    the event by the hub's reducers, writes the document with its inbox and caseload
    rows, and records the tracking position, in one transaction."""

    P = "?"
    datastore: Any

    def _table(self, name: str) -> str:
        return name

    def _ddl(self) -> list[str]:
        t = self._table
        return [
            f"CREATE TABLE IF NOT EXISTS {t('lib_case_docs')} (case_id TEXT PRIMARY KEY, "
            "doc TEXT NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {t('lib_inbox')} (handover_id TEXT PRIMARY KEY, "
            "agency TEXT NOT NULL, case_id TEXT NOT NULL, programme TEXT, site TEXT, "
            "kind TEXT NOT NULL, from_agency TEXT NOT NULL, offered_at TEXT NOT NULL, "
            "due_at TEXT NOT NULL)",
            f"CREATE INDEX IF NOT EXISTS lib_inbox_case ON {t('lib_inbox')} (case_id)",
            f"CREATE TABLE IF NOT EXISTS {t('lib_caseload')} (agency TEXT NOT NULL, "
            "case_id TEXT NOT NULL, programme TEXT, site TEXT, stage TEXT NOT NULL, "
            "lead_agency TEXT, coach TEXT, next_due_at TEXT, last_activity_at TEXT, "
            "PRIMARY KEY (agency, case_id))",
            f"CREATE INDEX IF NOT EXISTS lib_caseload_case ON {t('lib_caseload')} (case_id)",
        ]

    def create_table(self) -> None:
        super().create_table()  # type: ignore[misc]
        with self.datastore.transaction(commit=True) as c:
            for statement in self._ddl():
                c.execute(statement)

    def fold(self, record: EventRecord, tracking: Any) -> None:
        # Fixed table names and the placeholder only; every value is a parameter.
        t, p, case_id = self._table, self.P, record.case_id
        marks = ", ".join([p] * 9)
        with self.datastore.transaction(commit=True) as c:
            c.execute(f"SELECT doc FROM {t('lib_case_docs')} WHERE case_id = {p}", (case_id,))  # noqa: S608
            found = c.fetchone()
            if found is not None:  # a dict row on PostgreSQL, a tuple on SQLite
                found = json.loads(found["doc"] if isinstance(found, dict) else found[0])
            doc = reduce_case(found, record)
            c.execute(
                f"INSERT INTO {t('lib_case_docs')} VALUES ({p}, {p}) ON CONFLICT (case_id) DO UPDATE SET doc = excluded.doc",  # noqa: S608, E501
                (case_id, dump_json(doc)),
            )
            c.execute(f"DELETE FROM {t('lib_inbox')} WHERE case_id = {p}", (case_id,))  # noqa: S608
            for row in inbox_rows(doc):
                c.execute(f"INSERT INTO {t('lib_inbox')} VALUES ({marks})", _inbox_row(row))  # noqa: S608
            c.execute(f"DELETE FROM {t('lib_caseload')} WHERE case_id = {p}", (case_id,))  # noqa: S608
            for row in caseload_rows(doc):
                c.execute(
                    f"INSERT INTO {t('lib_caseload')} VALUES ({marks})",  # noqa: S608
                    caseload_values(row),
                )
            self._insert_tracking(c, tracking)  # type: ignore[attr-defined]

    def skip(self, tracking: Any) -> None:
        self.insert_tracking(tracking)  # type: ignore[attr-defined]

    def drop(self) -> None:
        with self.datastore.transaction(commit=True) as c:
            for name in LIBRARY_TABLES:
                c.execute(f"DROP TABLE IF EXISTS {self._table(name)}")


class SQLiteLibraryViews(_LibraryViews, SQLiteTrackingRecorder):
    pass


class PostgresLibraryViews(_LibraryViews, PostgresTrackingRecorder):
    P = "%s"

    def _table(self, name: str) -> str:
        return f'"{self.datastore.schema}".{name}'


class LibraryCaseViews(Projection[Any]):
    """The projection: each case event folded and committed with its tracking."""

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        record = event_record(domain_event, tracking.notification_id)
        if record is None:
            self.view.skip(tracking)  # other aggregates' events: tracked all the same
        else:
            self.view.fold(record, tracking)


def library_projection_rate(url: str, var: str, events: int, seconds: float) -> tuple[float, int]:
    """A child's part: the library's ``ProjectionRunner`` with ``LibraryCaseViews`` over
    the stored events (all of them, or as many as ``seconds`` allow); (events/s, events).
    The library's SQLite recorder has no subscriptions (``subscribe`` raises), so on
    SQLite the projection is driven as the runner's ``ApplicationSubscription`` drives
    it: notifications in the library's pages of 500, each made a domain event by the
    application's mapper and passed with its ``Tracking`` to ``process_event``. Its
    tables and tracking row are dropped afterwards."""
    env = eventsourcing_env(url)
    began = time.perf_counter()
    if url.startswith("sqlite"):
        done, view = _drive_on_sqlite(env, events, began + seconds)
    else:
        done, view = _run_on_postgres(env, events, began + seconds)
    took = time.perf_counter() - began
    view.drop()
    return done / took, done


def _run_on_postgres(env: dict[str, str], events: int, deadline: float) -> tuple[int, Any]:
    runner = ProjectionRunner(
        application_class=HubApplication,
        projection_class=LibraryCaseViews,
        view_class=PostgresLibraryViews,
        env=env,
    )
    with runner:
        while True:
            runner.run_forever(timeout=0.2)  # raises what the projection raised
            done = runner.view.max_tracking_id(runner.app_name) or 0
            if done >= events or time.perf_counter() >= deadline:
                return done, runner.view


def _drive_on_sqlite(env: dict[str, str], events: int, deadline: float) -> tuple[int, Any]:
    app = HubApplication(env)
    try:
        factory = InfrastructureFactory.construct(
            env=Environment(LibraryCaseViews.name, {**os.environ, **env})
        )
        view = factory.tracking_recorder(SQLiteLibraryViews)
        projection = LibraryCaseViews(view=view)
        start, done = (view.max_tracking_id(app.name) or 0) + 1, 0
        while done < events and time.perf_counter() < deadline:
            notifications = app.recorder.select_notifications(start, limit=500)
            if not notifications:
                break
            for notification in notifications:
                tracking = Tracking(app.name, notification.id)
                projection.process_event(app.mapper.to_domain_event(notification), tracking)
            done = notifications[-1].id
            start = done + 1
        with view.datastore.transaction(commit=True) as c:
            c.execute("DELETE FROM tracking WHERE application_name = ?", (app.name,))
        return done, view
    finally:
        app.close()


@dataclass
class Rebuilt:
    rate: float  # events/s
    rss_mb: float  # peak RSS of the rebuilding process
    child_rss_mb: float  # of the audit trail's process beside it (0: none)


@dataclass
class Reads:
    """What the readers of ``read_beside`` saw."""

    latencies: list[float] = field(default_factory=list)
    by_path: dict[str, list[float]] = field(default_factory=dict)  # inbox, cases, dashboard
    statuses: Counter[int] = field(default_factory=Counter)
    partial: int = 0  # answers with fewer (or more) items than before the rebuild
    errors: int = 0

    def p(self, q: float, path: str | None = None) -> float:
        ordered = sorted(self.latencies if path is None else self.by_path.get(path, []))
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


@dataclass
class Measured:
    events: int
    cases: int
    raw: float
    library_raw: float  # the same through select_notifications
    library: float  # events/s of the library's ProjectionRunner (``LibraryCaseViews``)
    library_events: int  # how many it folded (all, or what LIBRARY_SECONDS allowed)
    rebuild: Rebuilt  # as ``hub projections rebuild`` does it on this machine
    other_way: Rebuilt  # with the audit trail in the same process, or in its own
    unbounded: Rebuilt  # as ``rebuild``, the view cache unbounded
    parallel: bool  # what ``rebuild`` was
    idle_reads: Reads
    rebuild_reads: Reads
    beside: Rebuilt  # the rebuild the reads ran beside
    dashboards: dict[str, list[float]]  # ms of single dashboard reads, by kind


def measure(url: str, var: str, size: int, say: Any) -> Measured:
    """Every step in a fresh process of its own, as the hub's commands run: none of
    them beside a million generated events held in memory (rebuilds measured beside
    them averaged 47,100 events/s here, without them 54,500)."""
    written = fresh(write_history, url, var, size, True)
    say(
        f"  generated {written.events:,} events in {written.cases:,} cases "
        f"({written.generated_s:.1f} s), wrote them ({written.rate:,.0f}/s)"
    )
    cases, events = written.cases, written.events
    raw_before = fresh(read_in_process, url, var, "raw")
    say(f"  raw read and decode: {raw_before:,.0f} events/s")
    rates = {}
    # What ``hub projections rebuild`` chooses on this machine first, then the other way.
    default = events >= PARALLEL_FROM and (os.cpu_count() or 1) > 1
    for parallel in (default, not default):
        rates[parallel] = fresh(rebuild_in_process, url, var, parallel, cases, events)
        how = "audit trail in a second process" if parallel else "one process"
        say(
            f"  rebuild ({how}): {events:,} events in {events / rates[parallel].rate:.1f} s, "
            f"{_rss(rates[parallel])}"
        )
    unbounded = fresh(rebuild_in_process, url, var, default, cases, events, UNBOUNDED_CACHE_MB)
    say(f"  rebuild, view cache unbounded: {events / unbounded.rate:.1f} s, {_rss(unbounded)}")
    raw_after = fresh(read_in_process, url, var, "raw")
    say(f"  raw read and decode again: {raw_after:,.0f} events/s")
    raw = max(raw_before, raw_after)
    library = fresh(read_in_process, url, var, "library")
    say(f"  read through select_notifications and decode: {library:,.0f} events/s")
    seconds = LIBRARY_SECONDS / 6 if events <= QUICK_EVENTS else LIBRARY_SECONDS
    runner, runner_events = fresh(library_projection_rate, url, var, events, seconds)
    say(
        f"  the library's ProjectionRunner (case documents, inbox, caseload): "
        f"{runner:,.0f} events/s over the first {runner_events:,} events"
    )
    idle, during, beside, dashboards = read_beside(url, var, cases, events, written.agency, say)
    return Measured(
        events,
        cases,
        raw,
        library,
        runner,
        runner_events,
        rates[default],
        rates[not default],
        unbounded,
        default,
        idle,
        during,
        beside,
        dashboards,
    )


def _rss(rebuilt: Rebuilt) -> str:
    beside = f" (+ {rebuilt.child_rss_mb:,.0f} MB audit process)" if rebuilt.child_rss_mb else ""
    return f"peak RSS {rebuilt.rss_mb:,.0f} MB{beside}"


def fresh(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` in a new process (spawn)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def _settings(url: str, var: str, cache_mb: int = DEFAULT_CACHE_MB) -> Settings:
    # WARNING: the second process of a rebuild would log its audit checkpoints.
    return Settings(database_url=url, var_dir=var, log_level="WARNING", view_cache_mb=cache_mb)


def _in_process(url: str, var: str, cache_mb: int = DEFAULT_CACHE_MB) -> Hub:
    # As ``python -m bench`` logs: production JSON, to nowhere.
    configure_logging("INFO", "json", stream=open(os.devnull, "w"))  # noqa: SIM115 - process-long
    return build_hub(_settings(url, var, cache_mb))


@dataclass
class Written:
    events: int
    cases: int
    rate: float  # events/s into the store
    generated_s: float
    agency: str  # the first region's Jobcenter, for the readers


def write_history(url: str, var: str, size: int, encrypt: bool) -> Written:
    """A child's part: generate the seeded history and write it into the store."""
    hub = _in_process(url, var)
    try:
        started = time.perf_counter()
        history = generate(hub.app.mapper, size, encrypt=encrypt)
        generated = time.perf_counter() - started
        started = time.perf_counter()
        write(hub.app.recorder, history.events)
        rate = len(history) / (time.perf_counter() - started)
        return Written(len(history), history.cases, rate, generated, history.regions[0].jobcenter)
    finally:
        hub.close()


def read_in_process(url: str, var: str, how: str) -> float:
    """A child's part: ``raw_read_rate`` (``how="raw"``) or ``library_read_rate``."""
    hub = _in_process(url, var)
    try:
        read = raw_read_rate if how == "raw" else library_read_rate
        return read(hub.app.recorder, hub.views._rebuild_page_size)
    finally:
        hub.close()


def rebuild_in_process(
    url: str,
    var: str,
    parallel: bool | None,
    cases: int,
    events: int,
    cache_mb: int = DEFAULT_CACHE_MB,
    niceness: int = 0,
) -> Rebuilt:
    """A child's part: rebuild every view (``parallel``: as ``rebuild_views``), check
    the result; events/s and peak RSS. ``niceness``: as ``nice -n`` would start it
    (the audit trail's process inherits it)."""
    if niceness:
        os.nice(niceness)
    hub = _in_process(url, var, cache_mb)
    try:
        started = time.perf_counter()
        applied = rebuild_views(hub, parallel=parallel)
        seconds = time.perf_counter() - started
        if applied != events:
            raise RuntimeError(f"rebuild applied {applied} events, expected {events}")
        check(hub, cases, events)
        # ru_maxrss is in KiB on Linux; the children's: the largest waited-for child.
        return Rebuilt(
            applied / seconds,
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        )
    finally:
        hub.close()


def issue_token(url: str, var: str, agency: str | None) -> str:
    """A child's part: a bearer token for ``agency`` (registered by the history), or
    an auditor's (None)."""
    hub = _in_process(url, var)
    try:
        if agency is None:
            return hub.tokens.issue_auditor_token("bench-auditor")
        return hub.tokens.issue_agency_token(agency)
    finally:
        hub.close()


DASHBOARD_READS = 5  # of each kind in ``dashboard_reads``


def dashboard_reads(port: int, token: str, auditor: str) -> dict[str, list[float]]:
    """Single reads of the dashboards the readers do not take, with nothing else
    running: an auditor's (every overdue handover listed; each read is recorded, so
    they come after the rebuilds), and the agency's filtered by one of its programmes
    and by one site (summed from that part's case documents at each read)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        _, whole = _get(conn, "/v1/dashboard", token)
        programme = whole["programmes"][0]
        site = next(s["site"] for s in whole["sites"] if s["programme"] == programme)
        kinds = {
            "dashboard, auditor": ("/v1/dashboard", auditor),
            f"dashboard?programme={programme}, agency": (
                f"/v1/dashboard?programme={quote(programme)}",
                token,
            ),
            f"dashboard?site={site}, agency": (f"/v1/dashboard?site={quote(site)}", token),
        }
        took: dict[str, list[float]] = {}
        for name, (path, bearer) in kinds.items():
            for _ in range(DASHBOARD_READS):
                began = time.perf_counter()
                status, _ = _get(conn, path, bearer)
                if status != 200:
                    raise RuntimeError(f"GET {path}: {status}")
                took.setdefault(name, []).append((time.perf_counter() - began) * 1000)
        return took
    finally:
        conn.close()


def read_beside(
    url: str, var: str, cases: int, events: int, agency: str, say: Any, niceness: int = 0
) -> tuple[Reads, Reads, Rebuilt, dict[str, list[float]]]:
    """``hub serve`` on the store; readers alone for ``seconds``, then throughout a
    rebuild in another process; then ``dashboard_reads``. (idle reads, reads during
    the rebuild, the rebuild, the dashboard reads)."""
    seconds = 3.0 if events <= QUICK_EVENTS else 10.0
    token = fresh(issue_token, url, var, agency)
    auditor = fresh(issue_token, url, var, None)
    port = _free_port()
    server = _start_server(url, Path(var), port)
    try:
        expected = _counts(port, token, agency)
        idle = _read_while(port, token, agency, expected, lambda: time.sleep(seconds))
        say(
            f"  reads beside hub serve, nothing else running: {len(idle.latencies):,} reads, "
            f"p50 {idle.p(0.5):.1f} ms, p99 {idle.p(0.99):.1f} ms ({_per_path(idle)})"
        )
        result: list[Rebuilt] = []
        during = _read_while(
            port,
            token,
            agency,
            expected,
            lambda: result.append(
                fresh(rebuild_in_process, url, var, None, cases, events, DEFAULT_CACHE_MB, niceness)
            ),
        )
        say(
            f"  reads during a rebuild ({events / result[0].rate:.1f} s): "
            f"{len(during.latencies):,} reads, p50 {during.p(0.5):.1f} ms, "
            f"p99 {during.p(0.99):.1f} ms ({_per_path(during)}), "
            f"{during.partial} partial answers"
        )
        dashboards = dashboard_reads(port, token, auditor)
        for name, took in dashboards.items():
            say(f"  {name}: median {statistics.median(took):.1f} ms, max {max(took):.1f} ms")
    finally:
        _stop_server(server)
    return idle, during, result[0], dashboards


def _per_path(reads: Reads) -> str:
    return ", ".join(f"{path} p99 {reads.p(0.99, path):.1f} ms" for path in _paths(""))


def _get(conn: http.client.HTTPConnection, path: str, token: str) -> tuple[int, Any]:
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    response = conn.getresponse()
    body = response.read()
    return response.status, json.loads(body) if response.status == 200 else None


def _paths(agency: str) -> dict[str, str]:
    return {
        "inbox": f"/v1/agencies/{agency}/inbox",
        "cases": f"/v1/agencies/{agency}/cases",
        "dashboard": "/v1/dashboard",
    }


def _counts(port: int, token: str, agency: str) -> dict[str, int]:
    """Items in the inbox and on the first caseload page, before anything runs."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        counts = {}
        for name, path in _paths(agency).items():
            status, body = _get(conn, path, token)
            if status != 200:
                raise RuntimeError(f"GET {path}: {status}")
            if name != "dashboard":
                counts[name] = len(body["items"])
        return counts
    finally:
        conn.close()


def _read_while(
    port: int, token: str, agency: str, expected: dict[str, int], work: Callable[[], None]
) -> Reads:
    """``READERS`` clients reading in turn until ``work()`` returns."""
    reads = Reads()
    stop = threading.Event()
    lock = threading.Lock()

    def reader() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        paths = _paths(agency)
        try:
            while not stop.is_set():
                for name, path in paths.items():
                    began = time.perf_counter()
                    try:
                        status, body = _get(conn, path, token)
                    except (OSError, http.client.HTTPException):
                        with lock:
                            reads.errors += 1
                        conn.close()
                        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                        continue
                    took = time.perf_counter() - began
                    short = name in expected and (
                        status != 200 or len(body["items"]) != expected[name]
                    )
                    with lock:
                        reads.latencies.append(took)
                        reads.by_path.setdefault(name, []).append(took)
                        reads.statuses[status] += 1
                        reads.partial += short
        finally:
            conn.close()

    threads = [threading.Thread(target=reader, daemon=True) for _ in range(READERS)]
    for thread in threads:
        thread.start()
    try:
        work()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    return reads


def check(hub: Hub, cases: int, events: int) -> None:
    """The rebuilt views hold what the history says (cheap sanity, not the tests)."""
    q = hub.view_store.query
    docs = q("SELECT COUNT(*) AS n FROM view_case_docs")[0]["n"]
    audit = q("SELECT COUNT(*) AS n, MAX(position) AS top FROM view_audit")[0]
    if docs != cases or audit["n"] != events or audit["top"] != events:
        raise RuntimeError(f"views incomplete: {docs} docs, {audit} audit rows")


def run(*, quick: bool) -> None:
    size = QUICK_EVENTS if quick else FULL_EVENTS

    def say(text: str) -> None:
        print(text, flush=True)

    rows: list[Row] = []
    default_rates: dict[str, float] = {}  # store -> the rebuild as the CLI does it
    for store in stores():
        say(f"rebuild on {store}:")
        with store_url(store) as url, tempfile.TemporaryDirectory(prefix="hub-bench-") as var:
            m = measure(url, var, size, say)
        label = f"{m.events:,} events, {m.cases:,} cases"
        default_rates[store] = m.rebuild.rate
        rows.append(
            Row(
                case=f"raw read + JSON decode ({label})",
                store=store,
                value=m.raw,
                unit="events/s",
                baseline=None,
                ratio=None,
                target="baseline",
                meets=None,
            )
        )
        rows.append(
            Row(
                case=f"read through select_notifications + JSON decode ({label})",
                store=store,
                value=m.library_raw,
                unit="events/s",
                baseline=None,
                ratio=None,
                target="for comparison",
                meets=None,
            )
        )
        rows.append(
            Row(
                case="the library's ProjectionRunner: case documents, inbox, caseload, "
                f"committed per event (first {m.library_events:,} events)",
                store=store,
                value=m.library,
                unit="events/s",
                baseline=None,
                ratio=None,
                target="baseline",
                meets=None,
            )
        )
        ratio = m.rebuild.rate / m.library
        floor = TARGET_RATE.get(store)
        target = f">= {TARGET_LIBRARY_RATIO:g} x ProjectionRunner"
        meets = ratio >= TARGET_LIBRARY_RATIO
        if floor is not None:
            target = f">= {floor:,.0f}/s and {target}"
            meets = meets and m.rebuild.rate >= floor
        how = "two processes" if m.parallel else "one process"
        rows.append(
            Row(
                case=f"rebuild all views, {how} ({label})",
                store=store,
                value=m.rebuild.rate,
                unit="events/s",
                baseline=m.library,
                ratio=ratio,
                target=target,
                meets=meets,
            )
        )
        rows.append(
            Row(
                case=f"rebuild all views, {how}, against the raw read",
                store=store,
                value=m.rebuild.rate,
                unit="events/s",
                baseline=m.raw,
                ratio=m.rebuild.rate / m.raw,
                target="for comparison",
                meets=None,
            )
        )
        rows.append(
            Row(
                case=f"rebuild all views, {'one process' if m.parallel else 'two processes'} "
                f"({label})",
                store=store,
                value=m.other_way.rate,
                unit="events/s",
                baseline=m.raw,
                ratio=m.other_way.rate / m.raw,
                target="for comparison",
                meets=None,
            )
        )
        rows += memory_rows(store, m)
        rows += read_rows(store, m)
    rows += crypto_rows(size, rates=default_rates, say=say)
    report("rebuild", rows, quick=quick)


def crypto_rows(size: int, rates: dict[str, float], say: Any) -> list[Row]:
    """The same history with personal fields in plaintext, rebuilt as above: what the
    rebuild pays for encryption (it never decrypts; ciphertext is longer to read,
    hash and store)."""
    rows: list[Row] = []
    for store in stores():
        say(f"rebuild on {store}, encryption off:")
        with store_url(store) as url, tempfile.TemporaryDirectory(prefix="hub-bench-") as var:
            plain = fresh(write_history, url, var, size, False)
            rate = fresh(rebuild_in_process, url, var, None, plain.cases, plain.events).rate
            say(f"  rebuild: {plain.events:,} events ({rate:,.0f}/s)")
        rows.append(
            Row(
                case="rebuild, encryption on vs off",
                store=store,
                value=rates[store],
                unit="events/s",
                baseline=rate,
                ratio=rates[store] / rate,
                target=f">= {CRYPTO_TARGET} x unencrypted",
                meets=rates[store] / rate >= CRYPTO_TARGET,
            )
        )
    return rows


def memory_rows(store: str, m: Measured) -> list[Row]:
    """Peak RSS of the rebuilds, the view cache at its default bound and unbounded."""
    how = "two processes" if m.parallel else "one process"
    rows = [
        Row(
            case=f"peak RSS, rebuilding process ({how}, HUB_VIEW_CACHE_MB={DEFAULT_CACHE_MB})",
            store=store,
            value=m.rebuild.rss_mb,
            unit="MB",
            baseline=m.unbounded.rss_mb,
            ratio=m.rebuild.rss_mb / m.unbounded.rss_mb,
            target="baseline: the cache unbounded",
            meets=None,
        ),
        Row(
            case="rebuild all views, view cache unbounded",
            store=store,
            value=m.unbounded.rate,
            unit="events/s",
            baseline=m.rebuild.rate,
            ratio=m.unbounded.rate / m.rebuild.rate,
            target="for comparison",
            meets=None,
        ),
    ]
    if m.rebuild.child_rss_mb:
        rows.append(
            Row(
                case="peak RSS, the audit trail's process beside it",
                store=store,
                value=m.rebuild.child_rss_mb,
                unit="MB",
                baseline=None,
                ratio=None,
                target="for comparison",
                meets=None,
            )
        )
    return rows


def read_rows(store: str, m: Measured) -> list[Row]:
    """Read latency beside ``hub serve`` during a rebuild, against reads alone."""
    idle, during = m.idle_reads, m.rebuild_reads
    p99 = during.p(0.99)
    return [
        Row(
            case=f"read p99 beside hub serve during a rebuild ({len(during.latencies):,} reads "
            f"by {READERS} clients: inbox, caseload page, dashboard)",
            store=store,
            value=p99,
            unit="ms",
            baseline=idle.p(0.99),
            ratio=p99 / idle.p(0.99),
            target=f"< {TARGET_READ_P99_MS:g} ms",
            meets=p99 < TARGET_READ_P99_MS,
        ),
        *(
            Row(
                case=f"read p99 of {path} during the rebuild (baseline: {path} alone)",
                store=store,
                value=during.p(0.99, path),
                unit="ms",
                baseline=idle.p(0.99, path),
                ratio=during.p(0.99, path) / idle.p(0.99, path),
                target=f"< {TARGET_READ_P99_MS:g} ms",
                meets=during.p(0.99, path) < TARGET_READ_P99_MS,
            )
            for path in _paths("")
        ),
        Row(
            case="read p50 during the rebuild (baseline: reads alone)",
            store=store,
            value=during.p(0.5),
            unit="ms",
            baseline=idle.p(0.5),
            ratio=during.p(0.5) / idle.p(0.5),
            target="for comparison",
            meets=None,
        ),
        Row(
            case="partial or failed answers during the rebuild",
            store=store,
            value=float(
                during.partial
                + during.errors
                + sum(n for status, n in during.statuses.items() if status != 200)
            ),
            unit="answers",
            baseline=None,
            ratio=None,
            target="0",
            meets=during.partial + during.errors == 0 and set(during.statuses) == {200},
        ),
        *(
            Row(
                case=f"{name}: median of {len(took)} single reads (nothing else running)",
                store=store,
                value=statistics.median(took),
                unit="ms",
                baseline=None,
                ratio=None,
                target="for comparison",
                meets=None,
            )
            for name, took in m.dashboards.items()
        ),
        Row(
            case="the rebuild beside the reads",
            store=store,
            value=m.beside.rate,
            unit="events/s",
            baseline=m.rebuild.rate,
            ratio=m.beside.rate / m.rebuild.rate,
            target="for comparison",
            meets=None,
        ),
    ]
