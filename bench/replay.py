"""``replay``: one case of 1,000 events, replayed as of the middle of its history.

A coaching case (opened, consent, assignment offered and accepted) followed by
notes up to 1,000 events, recorded an hour apart, is driven through the real
``Case`` commands and written straight into a fresh store beside a background
history (``bench.history``). ``services.replay.replay_case`` then reads the
case's events from the store, rebuilds the case as of the recorded moment of its
500th event (the hub's clock) and lays out events and state, as ``hub replay
--as-of`` does. Target: p50 under 25 ms.
"""

from __future__ import annotations

import gc
import random
import statistics
import tempfile
import time
from datetime import UTC, timedelta
from typing import Any
from uuid import UUID

from bench.common import Row, report, store_url, stores
from bench.history import HISTORY_START, POLICY, _CaseWriter, generate, regions, write
from domain.values import DataCategory, HandoverKind
from services.bootstrap import build_hub
from services.replay import replay_case
from services.settings import Settings

TARGET_P50_MS = 25.0
CASE_EVENTS = 1_000
BACKGROUND = {False: 100_000, True: 5_000}
RUNS = {False: (5, 60), True: (2, 10)}  # warm-up calls, timed calls


def long_case(mapper: Any, events: int) -> tuple[UUID, list[Any], Any]:
    """A case with ``events`` events, one an hour; returns id, stored events and the
    recorded moment of its middle event."""
    rng = random.Random(7)  # noqa: S311 - test data, not secrets
    region = regions(1)[0]
    writer = _CaseWriter(rng, region, 9_999_999, HISTORY_START)
    jc, coach = region.jobcenter, region.coaches[0]
    case = writer.open(jc)
    writer.consent(jc, [DataCategory.IDENTITY, DataCategory.CONTACT], [coach], days=None)
    handover = writer.offer(jc, HandoverKind.ASSIGNMENT, coach, [DataCategory.IDENTITY])
    writer.t += timedelta(days=1)
    # ``writer.act`` carries the region's agency kinds, which roles follow.
    case.accept_handover(writer.act(coach, "coach-1"), POLICY, handover_id=handover)
    while len(case.pending_events) < events:
        writer.t += timedelta(hours=1)
        case.add_note(
            writer.act(coach, "coach-1"),
            text=writer.seal(f"Gespräch {len(case.pending_events)}") or "",
            category=DataCategory.NOTES,
        )
    domain_events = case.collect_events()
    for e in domain_events:  # recorded on the hub's clock a minute after it occurred
        object.__setattr__(e, "timestamp", (e.occurred_at + timedelta(minutes=1)).astimezone(UTC))
    middle = domain_events[len(domain_events) // 2 - 1].timestamp
    return case.id, [mapper.to_stored_event(e) for e in domain_events], middle


def run(*, quick: bool) -> None:
    warmup, calls = RUNS[quick]
    rows: list[Row] = []
    for store in stores():
        with store_url(store) as url, tempfile.TemporaryDirectory(prefix="hub-bench-") as var:
            hub = build_hub(Settings(database_url=url, var_dir=var))
            try:
                background = generate(hub.app.mapper, BACKGROUND[quick])
                case_id, stored, middle = long_case(hub.app.mapper, CASE_EVENTS)
                half = len(background) // 2
                write(hub.app.recorder, background.events[:half])
                write(hub.app.recorder, stored)
                write(hub.app.recorder, background.events[half:])
                del background
                gc.collect()
                result: dict[str, Any] = {}
                for _ in range(warmup):
                    result = replay_case(hub.app, case_id, middle)
                samples = []
                for _ in range(calls):
                    started = time.perf_counter()
                    result = replay_case(hub.app, case_id, middle)
                    samples.append((time.perf_counter() - started) * 1000)
            finally:
                hub.close()
        replayed = len(result["events"])
        if replayed != CASE_EVENTS // 2:
            raise RuntimeError(f"replayed {replayed} events, expected {CASE_EVENTS // 2}")
        p50 = statistics.median(samples)
        p99 = sorted(samples)[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))]
        print(f"{store}: p50 {p50:.1f} ms, p99 {p99:.1f} ms ({replayed} of {len(stored)} events)")
        label = f"{len(stored):,} events, as of event {replayed} (recorded {middle.isoformat()})"
        rows.append(
            Row(
                case=f"replay_case p50, one case of {label}",
                store=store,
                value=p50,
                unit="ms",
                baseline=None,
                ratio=None,
                target=f"< {TARGET_P50_MS:g} ms",
                meets=p50 < TARGET_P50_MS,
            )
        )
        rows.append(
            Row(
                case="replay_case p99",
                store=store,
                value=p99,
                unit="ms",
                baseline=None,
                ratio=None,
                target="-",
                meets=None,
            )
        )
    report("replay", rows, quick=quick)
