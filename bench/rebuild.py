"""``rebuild``: events/s rebuilding every view, beside the raw read-and-decode rate.

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

The baseline, in the same run and on the same store, is what any consumer of
these events pays at least: reading the notification log in pages of the same
size, the way the view runner reads it (``select_notification_rows``: plain
tuples, ids as text, quicker than the library's ``select_notifications``), and
decoding each event's JSON. It is measured before and after the rebuilds and the
higher of the two is used.

Targets: at least 50,000 events/s on SQLite, and at least 0.4 of the raw rate on
each store. Last, the same history with encryption off is rebuilt the default way:
the encrypted rate must be at least 0.8 of it.
"""

from __future__ import annotations

import gc
import json
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from operator import attrgetter, itemgetter
from typing import Any, TypeVar

from bench.common import Row, report, store_url, stores
from bench.history import generate, write
from services.bootstrap import Hub, build_hub
from services.logging import configure_logging
from services.settings import Settings
from services.views.rebuild import PARALLEL_FROM, rebuild_views

FULL_EVENTS = 1_000_000
QUICK_EVENTS = 20_000
TARGET_RATE = {"sqlite": 50_000.0}
TARGET_RATIO = 0.4
CRYPTO_TARGET = 0.8
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


@dataclass
class Measured:
    events: int
    cases: int
    raw: float
    library_raw: float  # the same through select_notifications
    rebuild: float  # as ``hub projections rebuild`` does it on this machine
    other_way: float  # with the audit trail in the same process, or in its own
    parallel: bool  # what ``rebuild`` was


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
        say(f"  rebuild ({how}): {events:,} events in {events / rates[parallel]:.1f} s")
    raw_after = fresh(read_in_process, url, var, "raw")
    say(f"  raw read and decode again: {raw_after:,.0f} events/s")
    raw = max(raw_before, raw_after)
    library = fresh(read_in_process, url, var, "library")
    say(f"  read through select_notifications and decode: {library:,.0f} events/s")
    return Measured(events, cases, raw, library, rates[default], rates[not default], default)


def fresh(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` in a new process (spawn)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def _settings(url: str, var: str) -> Settings:
    # WARNING: the second process of a rebuild would log its audit checkpoints.
    return Settings(database_url=url, var_dir=var, log_level="WARNING")


def _in_process(url: str, var: str) -> Hub:
    # As ``python -m bench`` logs: production JSON, to nowhere.
    configure_logging("INFO", "json", stream=open(os.devnull, "w"))  # noqa: SIM115 - process-long
    return build_hub(_settings(url, var))


@dataclass
class Written:
    events: int
    cases: int
    rate: float  # events/s into the store
    generated_s: float


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
        return Written(len(history), history.cases, rate, generated)
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


def rebuild_in_process(url: str, var: str, parallel: bool | None, cases: int, events: int) -> float:
    """A child's part: rebuild every view (``parallel``: as ``rebuild_views``), check
    the result, return events/s."""
    hub = _in_process(url, var)
    try:
        started = time.perf_counter()
        applied = rebuild_views(hub, parallel=parallel)
        seconds = time.perf_counter() - started
        if applied != events:
            raise RuntimeError(f"rebuild applied {applied} events, expected {events}")
        check(hub, cases, events)
        return applied / seconds
    finally:
        hub.close()


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
        default_rates[store] = m.rebuild
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
        ratio = m.rebuild / m.raw
        floor = TARGET_RATE.get(store)
        target = f">= {TARGET_RATIO} x raw"
        meets = ratio >= TARGET_RATIO
        if floor is not None:
            target = f">= {floor:,.0f}/s and {target}"
            meets = meets and m.rebuild >= floor
        rows.append(
            Row(
                case=f"rebuild all views, {'two processes' if m.parallel else 'one process'} "
                f"({label})",
                store=store,
                value=m.rebuild,
                unit="events/s",
                baseline=m.raw,
                ratio=ratio,
                target=target,
                meets=meets,
            )
        )
        rows.append(
            Row(
                case=f"rebuild all views, {'one process' if m.parallel else 'two processes'} "
                f"({label})",
                store=store,
                value=m.other_way,
                unit="events/s",
                baseline=m.raw,
                ratio=m.other_way / m.raw,
                target="for comparison",
                meets=None,
            )
        )
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
            rate = fresh(rebuild_in_process, url, var, None, plain.cases, plain.events)
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
