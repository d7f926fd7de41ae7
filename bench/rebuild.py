"""``rebuild``: events/s rebuilding every view, beside the raw read-and-decode rate.

A seeded history (``bench.history``: 1,000,000 events in about 86,000 cases,
``--quick`` 20,000) is written straight into a fresh store, then every view is
rebuilt as ``hub projections rebuild`` does it (``rebuild_views``): the case
documents, inboxes, caseloads and dashboard totals in this process, written once per
case at the end with their tracked positions, and the hash-chained audit trail in
a second process, committed page by page (from ``PARALLEL_FROM`` events on and with
more than one core; ``--quick`` stays in one process). It is measured a second time
the other way round, for comparison.

The baseline, in the same run and on the same store, is what any consumer of these
events pays at least: reading the notification log in pages of the same size, the
way the view runner reads it (``select_notification_rows``: plain tuples, ids as
text, quicker than the library's ``select_notifications``), and decoding each
event's JSON. It is measured before
and after the rebuilds and the higher of the two is used.

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
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from typing import Any

from bench.common import Row, report, store_url, stores
from bench.history import History, generate, write
from services.bootstrap import Hub, build_hub
from services.settings import Settings
from services.views.rebuild import PARALLEL_FROM, rebuild_views

FULL_EVENTS = 1_000_000
QUICK_EVENTS = 20_000
TARGET_RATE = {"sqlite": 50_000.0}
TARGET_RATIO = 0.4
CRYPTO_TARGET = 0.8


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
    written: float  # events/s into the store
    raw: float
    library_raw: float  # the same through select_notifications
    rebuild: float  # as ``hub projections rebuild`` does it on this machine
    other_way: float  # with the audit trail in the same process, or in its own
    parallel: bool  # what ``rebuild`` was


def measure(hub: Hub, history: History, say: Any) -> Measured:
    started = time.perf_counter()
    write(hub.app.recorder, history.events)
    written = len(history) / (time.perf_counter() - started)
    say(f"  wrote {len(history):,} events ({written:,.0f}/s)")
    page = hub.views._rebuild_page_size
    raw_before = raw_read_rate(hub.app.recorder, page)
    say(f"  raw read and decode: {raw_before:,.0f} events/s")
    rates = {}
    # What ``hub projections rebuild`` chooses on this machine first, then the other way.
    default = len(history) >= PARALLEL_FROM and (os.cpu_count() or 1) > 1
    for parallel in (default, not default):
        started = time.perf_counter()
        applied = rebuild_views(hub, parallel=parallel)
        seconds = time.perf_counter() - started
        if applied != len(history):
            raise RuntimeError(f"rebuild applied {applied} events, expected {len(history)}")
        check(hub, history)
        rates[parallel] = applied / seconds
        how = "audit trail in a second process" if parallel else "one process"
        say(f"  rebuild ({how}): {applied:,} events in {seconds:.1f} s ({rates[parallel]:,.0f}/s)")
    raw_after = raw_read_rate(hub.app.recorder, page)
    say(f"  raw read and decode again: {raw_after:,.0f} events/s")
    raw = max(raw_before, raw_after)
    library = library_read_rate(hub.app.recorder, page)
    say(f"  read through select_notifications and decode: {library:,.0f} events/s")
    return Measured(
        len(history), written, raw, library, rates[default], rates[not default], default
    )


def check(hub: Hub, history: History) -> None:
    """The rebuilt views hold what the history says (cheap sanity, not the tests)."""
    q = hub.view_store.query
    docs = q("SELECT COUNT(*) AS n FROM view_case_docs")[0]["n"]
    audit = q("SELECT COUNT(*) AS n, MAX(position) AS top FROM view_audit")[0]
    if docs != history.cases or audit["n"] != len(history) or audit["top"] != len(history):
        raise RuntimeError(f"views incomplete: {docs} docs, {audit} audit rows")


def run(*, quick: bool) -> None:
    size = QUICK_EVENTS if quick else FULL_EVENTS

    def say(text: str) -> None:
        print(text, flush=True)

    rows: list[Row] = []
    history: History | None = None
    default_rates: dict[str, float] = {}  # store -> the rebuild as the CLI does it
    for store in stores():
        say(f"rebuild on {store}:")
        with store_url(store) as url, tempfile.TemporaryDirectory(prefix="hub-bench-") as var:
            # WARNING: the second process of a rebuild would log its audit checkpoints.
            hub = build_hub(Settings(database_url=url, var_dir=var, log_level="WARNING"))
            try:
                if history is None:
                    started = time.perf_counter()
                    history = generate(hub.app.mapper, size)
                    say(
                        f"  generated {len(history):,} events in {history.cases:,} cases "
                        f"({time.perf_counter() - started:.1f} s)"
                    )
                    # The history stays in memory for the next store. Set its million
                    # objects aside from the collector, so that neither the baseline
                    # nor the rebuild pays for walking this harness's own data.
                    gc.collect()
                    gc.freeze()
                m = measure(hub, history, say)
            finally:
                hub.close()
        label = f"{m.events:,} events, {history.cases:,} cases"
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
    gc.unfreeze()
    report("rebuild", rows, quick=quick)


def crypto_rows(size: int, rates: dict[str, float], say: Any) -> list[Row]:
    """The same history with personal fields in plaintext, rebuilt as above: what the
    rebuild pays for encryption (it never decrypts; ciphertext is longer to read,
    hash and store)."""
    rows: list[Row] = []
    plain: History | None = None
    for store in stores():
        say(f"rebuild on {store}, encryption off:")
        with store_url(store) as url, tempfile.TemporaryDirectory(prefix="hub-bench-") as var:
            hub = build_hub(Settings(database_url=url, var_dir=var, log_level="WARNING"))
            try:
                if plain is None:
                    plain = generate(hub.app.mapper, size, encrypt=False)
                write(hub.app.recorder, plain.events)
                started = time.perf_counter()
                applied = rebuild_views(hub)
                rate = applied / (time.perf_counter() - started)
                check(hub, plain)
                say(f"  rebuild: {applied:,} events ({rate:,.0f}/s)")
            finally:
                hub.close()
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
