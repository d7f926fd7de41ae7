"""``query``: an agency's inbox and caseload when it is involved in 10,000 cases.

One region's seeded history (``bench.history``) in which the Jobcenter is involved
in every case: about 10,000 cases (``--quick``: 1,000), written straight into a
fresh store and rebuilt into the views. Then ``ViewQueries.inbox`` (with an
injected reading moment, which decides the overdue flags) and
``ViewQueries.caseload`` are timed one call at a time, as the API makes them.
Target: p99 under 10 ms for each.
"""

from __future__ import annotations

import gc
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from bench.common import Row, report, store_url, stores
from bench.history import HISTORY_END, generate, write
from services.bootstrap import build_hub
from services.settings import Settings

TARGET_P99_MS = 10.0
FULL_CASES = 10_000
QUICK_CASES = 1_000
EVENTS_PER_CASE = 12.0  # what the scenario mix averages, about (a few more than 10,000)
WARMUP, CALLS = 20, 300
NOW = HISTORY_END + timedelta(days=3)  # the injected clock: some offers are overdue


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(call: Callable[[], Any], calls: int) -> tuple[list[float], Any]:
    for _ in range(WARMUP):
        result = call()
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        result = call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples, result


def run(*, quick: bool) -> None:
    cases = QUICK_CASES if quick else FULL_CASES
    rows: list[Row] = []
    history = None
    for store in stores():
        with store_url(store) as url, tempfile.TemporaryDirectory(prefix="hub-bench-") as var:
            hub = build_hub(Settings(database_url=url, var_dir=var))
            try:
                if history is None:
                    history = generate(
                        hub.app.mapper, round(cases * EVENTS_PER_CASE), region_count=1
                    )
                write(hub.app.recorder, history.events)
                hub.views.rebuild()
                # The generated history stays in this process for the next store; an
                # API process holds nothing like it, so its objects are set aside from
                # the collector's scans (they would be walked on every full collection).
                gc.collect()
                gc.freeze()
                agency = history.regions[0].jobcenter
                queries = hub.queries
                involved = len(queries.caseload(agency, limit=1_000_000)["items"])
                measured = {
                    "inbox": timed(lambda q=queries, a=agency: q.inbox(a, NOW), CALLS),
                    "caseload": timed(lambda q=queries, a=agency: q.caseload(a), CALLS),
                }
            finally:
                hub.close()
                gc.unfreeze()
        for name, (samples, result) in measured.items():
            items = result["items"]
            detail = f"{len(items):,} items"
            if name == "caseload":
                detail += " on the first page, as the API pages it"
            if name == "inbox":
                overdue = sum(1 for i in items if i["overdue"])
                detail += f", {overdue:,} overdue at now={NOW.isoformat()}"
            p99 = percentile(samples, 0.99)
            print(
                f"{store} {name}: p50 {statistics.median(samples):.2f} ms, "
                f"p99 {p99:.2f} ms ({detail})"
            )
            rows.append(
                Row(
                    case=f"{name} p99, agency in {involved:,} cases ({detail})",
                    store=store,
                    value=p99,
                    unit="ms",
                    baseline=None,
                    ratio=None,
                    target=f"< {TARGET_P99_MS:g} ms",
                    meets=p99 < TARGET_P99_MS,
                )
            )
            rows.append(
                Row(
                    case=f"{name} p50",
                    store=store,
                    value=statistics.median(samples),
                    unit="ms",
                    baseline=None,
                    ratio=None,
                    target="-",
                    meets=None,
                )
            )
    report("query", rows, quick=quick)
