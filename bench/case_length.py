"""``case-length``: one writer's latency per message as a case grows, snapshots off and on.

Cases grow through the application service (parse, load, decide, encrypt, save with
the receipt), one message at a time, by one of two mixes after the same opening
(opened, consent, assignment offered and accepted, plan agreed):

* ``casework``: note, appointment scheduled, appointment held. Its events grow, and
  so, a little, does what the case holds: no notes (no rule reads them), but each
  appointment's state by its id (``Case`` class version 2; about 43 bytes of snapshot
  each, 143 kB at 10,000 events against 1.3 MB when the case kept every note and
  appointment record);
* ``updates``: plan updated, coach assigned. What the case holds stays the same size.

Sizes: 10, 1,000 and 10,000 events (quick: 10 and 300). Per size and mode a case of
its own, built by the snapshotting hub as in service; at 10 events a case per timed
message, so each holds exactly 10. Modes: snapshots on (``HUB_SNAPSHOT_INTERVAL``,
default 100; ``INTERVAL`` timed messages make a whole cycle, the write that takes
the snapshot included) and off (interval 0, the same-run baseline: a hub on the same
database that neither reads nor takes snapshots). The timed messages go round-robin
over sizes and modes in a shuffled order, so the shared machine's changing load falls
on all alike.

Rows: p50 and p99 per mix, size and mode, p50 as a ratio of p50 at 10 events with
snapshots on (target: within 1.5x at the largest size), and, to say where the time
goes, at the largest size: the load alone (``HubApplication.load``), the stored
snapshot's size, and the two steps of reading it, decoding the stored row (the
mapper's JSON transcoder) and rebuilding the case's state from it
(``CaseSnapshot.mutate``).
"""

from __future__ import annotations

import json
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any
from uuid import UUID, uuid4

from bench.common import Row, report, store_url, stores
from services.bootstrap import Hub, build_hub
from services.settings import Settings

TARGET_RATIO = 1.5
CASEWORK, UPDATES = "casework", "updates"
MIXES = (CASEWORK, UPDATES)
INTERVAL = Settings.model_fields["snapshot_interval"].default
SIZES = {False: (10, 1_000, 10_000), True: (10, 300)}
SAMPLES = {False: INTERVAL, True: 15}  # timed messages per size and mode
JC, COACH = "jc-length", "coach-length"
T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)


class CaseScript:
    """The messages of one case, in order: the opening five, then one mix's cycle."""

    def __init__(self, case_id: UUID, mix: str) -> None:
        self.case_id = case_id
        self._clock = count()
        self._messages = self._generate(mix)

    def next(self) -> bytes:
        return next(self._messages)

    def _msg(self, agency: str, type_: str, payload: dict[str, Any]) -> bytes:
        # A minute apart: 10,000 events stay in the past of the hub's clock.
        occurred = T0 + timedelta(minutes=next(self._clock))
        return json.dumps(
            {
                "message_id": str(uuid4()),
                "type": type_,
                "agency": agency,
                "case_id": str(self.case_id),
                "occurred_at": occurred.isoformat(),
                "actor": "bench-user",
                "payload": payload,
            }
        ).encode()

    def _generate(self, mix: str) -> Iterator[bytes]:
        participant = {"pseudonym": "L-1", "name": "Length Person"}
        yield self._msg(JC, "case.opened", {"programme": "bench", "participant": participant})
        yield self._msg(
            JC,
            "consent.granted",
            {
                "consent_id": "c1",
                "categories": ["identity", "contact"],
                "source_agency": JC,
                "recipients": [COACH],
                "valid_from": T0.isoformat(),
            },
        )
        handover = str(uuid4())
        yield self._msg(
            JC,
            "handover.offered",
            {"handover_id": handover, "kind": "assignment", "to_agency": COACH},
        )
        yield self._msg(COACH, "handover.accepted", {"handover_id": handover})
        yield self._msg(COACH, "plan.agreed", {"goals": ["Arbeit"], "modules": ["Training"]})
        yield from (self._casework() if mix == CASEWORK else self._updates())

    def _casework(self) -> Iterator[bytes]:
        """Each cycle adds a note and a held appointment to what the case holds."""
        at = (T0 + timedelta(days=400)).isoformat()
        for n in count():
            appointment = str(uuid4())
            yield self._msg(COACH, "note.added", {"text": f"Gespräch {n}", "category": "notes"})
            yield self._msg(
                COACH,
                "appointment.scheduled",
                {"appointment_id": appointment, "kind": "information", "at": at},
            )
            yield self._msg(COACH, "appointment.held", {"appointment_id": appointment})

    def _updates(self) -> Iterator[bytes]:
        """Each message replaces what the case holds: the state stays the same size."""
        for n in count():
            goals = [f"Arbeit {n}", "Wohnen"]
            yield self._msg(COACH, "plan.updated", {"goals": goals, "modules": ["Training"]})
            yield self._msg(COACH, "coach.assigned", {"coach": f"coach-{n % 7}"})


def _hub(url: str, var: str, interval: int) -> Hub:
    return build_hub(Settings(database_url=url, var_dir=var, snapshot_interval=interval))


def _timed(hub: Hub, raw: bytes) -> float:
    started = time.perf_counter()
    result = hub.messages.record_raw(raw)
    elapsed = (time.perf_counter() - started) * 1000
    assert not result["duplicate"]
    return elapsed


def _grow(hub: Hub, script: CaseScript, events: int) -> None:
    for _ in range(events):
        hub.messages.record_raw(script.next())


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def _load_ms(hub: Hub, case_id: UUID, calls: int) -> float:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        hub.app.load(case_id)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _snapshot_ms(hub: Hub, case_id: UUID, calls: int) -> tuple[float, float]:
    """The latest snapshot of the case, read once: ms to decode the stored row into a
    snapshot (the mapper: JSON through the transcoder) and ms to rebuild the case's
    state from it (``CaseSnapshot.mutate``: upcast, then typed decode); medians."""
    assert hub.app.snapshots is not None
    (stored,) = hub.app.snapshots.recorder.select_events(case_id, desc=True, limit=1)
    decoded, rebuilt = [], []
    for _ in range(calls):
        started = time.perf_counter()
        snapshot = hub.app.mapper.to_domain_event(stored)
        between = time.perf_counter()
        snapshot.mutate(None)
        ended = time.perf_counter()
        decoded.append((between - started) * 1000)
        rebuilt.append((ended - between) * 1000)
    return statistics.median(decoded), statistics.median(rebuilt)


@dataclass
class Measured:
    writes: dict[tuple[int, str], list[float]]  # (size, "on"/"off") -> ms per write
    load_on: float  # ms, the load alone at the largest size
    load_off: float
    snapshot_kb: float  # the latest snapshot of the long case, as stored
    decode_ms: float  # that snapshot: stored row -> snapshot (mapper, transcoder)
    rebuild_ms: float  # snapshot -> the case's state (CaseSnapshot.mutate)


def measure(store: str, mix: str, quick: bool) -> Measured:
    sizes, samples = SIZES[quick], SAMPLES[quick]
    with store_url(store) as url, tempfile.TemporaryDirectory(prefix="hub-bench-var-") as var:
        hubs = {"on": _hub(url, var, INTERVAL), "off": _hub(url, var, 0)}
        try:
            on = hubs["on"]
            on.registry.register(JC, "jobcenter", "Length Jobcenter")
            on.registry.register(COACH, "coaching_provider", "Length Coaching")
            # A case of its own per size and mode, built by the snapshotting hub as in
            # service (the hub without snapshots reads none of them); at the smallest
            # size a case per timed message, so each holds exactly that many events.
            cases: dict[tuple[int, str], list[CaseScript]] = {}
            for size in sizes:
                for mode in hubs:
                    count_ = samples if size == sizes[0] else 1
                    cases[size, mode] = [CaseScript(uuid4(), mix) for _ in range(count_)]
                    for script in cases[size, mode]:
                        _grow(on, script, size)
            warm = [CaseScript(uuid4(), mix) for _ in range(2)]
            for script in warm:  # code paths and caches warm before anything is timed
                _grow(hubs["off"], script, sizes[0])
            # Round-robin over sizes and modes in a shuffled order, so a change in the
            # machine's load (it is shared) falls on all of them alike.
            writes: dict[tuple[int, str], list[float]] = {key: [] for key in cases}
            order = list(cases)
            shuffle = random.Random(14).shuffle  # noqa: S311 - an order, not a secret
            for i in range(samples):
                shuffle(order)
                for size, mode in order:
                    scripts = cases[size, mode]
                    script = scripts[i] if size == sizes[0] else scripts[0]
                    writes[size, mode].append(_timed(hubs[mode], script.next()))
            long_on, long_off = cases[sizes[-1], "on"][0], cases[sizes[-1], "off"][0]
            assert on.app.snapshots is not None
            latest = on.app.snapshots.recorder.select_events(long_on.case_id, desc=True, limit=1)
            decode_ms, rebuild_ms = _snapshot_ms(on, long_on.case_id, 20)
            return Measured(
                writes=writes,
                load_on=_load_ms(on, long_on.case_id, 20),
                load_off=_load_ms(hubs["off"], long_off.case_id, 3),
                snapshot_kb=len(latest[0].state) / 1000 if latest else 0.0,
                decode_ms=decode_ms,
                rebuild_ms=rebuild_ms,
            )
        finally:
            for hub in hubs.values():
                hub.close()


def _rows(store: str, mix: str, m: Measured, sizes: tuple[int, ...]) -> list[Row]:
    base = statistics.median(m.writes[sizes[0], "on"])
    rows = []
    for size in sizes:
        for mode in ("off", "on"):
            p50 = statistics.median(m.writes[size, mode])
            judged = mode == "on" and size == sizes[-1]
            rows += [
                Row(
                    case=f"{mix}: write p50 at {size:,} events, snapshots {mode}",
                    store=store,
                    value=p50,
                    unit="ms",
                    baseline=base,
                    ratio=p50 / base,
                    target=f"<= {TARGET_RATIO} x p50 at {sizes[0]}, on" if judged else "-",
                    meets=p50 / base <= TARGET_RATIO if judged else None,
                ),
                Row(
                    case=f"{mix}: write p99 at {size:,} events, snapshots {mode}",
                    store=store,
                    value=_p99(m.writes[size, mode]),
                    unit="ms",
                    baseline=None,
                    ratio=None,
                    target="-",
                    meets=None,
                ),
            ]
    largest = f"{sizes[-1]:,} events"
    rows += [
        Row(
            case=f"{mix}: load alone at {largest}, snapshots on (baseline off)",
            store=store,
            value=m.load_on,
            unit="ms",
            baseline=m.load_off,
            ratio=m.load_on / m.load_off,
            target="-",
            meets=None,
        ),
        Row(
            f"{mix}: snapshot as stored at {largest}",
            store,
            m.snapshot_kb,
            "kB",
            None,
            None,
            "-",
            None,
        ),
        Row(
            f"{mix}: snapshot decoded at {largest}", store, m.decode_ms, "ms", None, None, "-", None
        ),
        Row(
            f"{mix}: state rebuilt from the snapshot at {largest}",
            store,
            m.rebuild_ms,
            "ms",
            None,
            None,
            "-",
            None,
        ),
    ]
    return rows


def run(*, quick: bool) -> None:
    rows: list[Row] = []
    for store in stores():
        for mix in MIXES:
            rows += _rows(store, mix, measure(store, mix, quick), SIZES[quick])
    report("case-length", rows, quick=quick)
