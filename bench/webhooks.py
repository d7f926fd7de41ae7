"""``webhooks``: deliveries per second to a loopback receiver, and the time from
recording to delivery at 200 messages per second (target p99 < 500 ms).

1. Throughput: a backlog of events of one agency, delivered to one endpoint from
   the start (signed, one POST per event, the position stored after each), beside
   the same number of plain ``http.client`` POSTs of the same size to the same
   receiver (the HTTP alone), measured in the same run.
2. Latency: the views runner and the dispatcher live, as in ``hub serve``; a writer
   records 200 messages a second; each event's delay from the end of its recording
   to the receiver's arrival. The relay's rate (bench kafka, its own results file)
   is shown beside, for scale.
"""

from __future__ import annotations

import http.client
import json
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import uuid4

from bench.common import RESULTS, Row, report, store_url, stores
from services.bootstrap import Hub, build_hub
from services.settings import Settings
from services.webhooks.dispatcher import dispatcher_for
from services.webhooks.endpoints import endpoints_for

AGENCY = "bench-jc"


class _Receiver:
    def __init__(self) -> None:
        self.arrived: dict[int, float] = {}  # position -> monotonic time
        self.count = 0
        self.lock = threading.Lock()


@contextmanager
def receiver() -> Iterator[tuple[_Receiver, int]]:
    state = _Receiver()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            now = time.monotonic()
            try:
                position = int(json.loads(body)["data"]["position"])
            except (KeyError, ValueError, TypeError):
                position = -1
            with state.lock:
                state.count += 1
                state.arrived.setdefault(position, now)
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield state, int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def _settings(url: str, folder: str) -> Settings:
    return Settings(
        database_url=url,
        var_dir=Path(folder),
        webhooks_allow_private=True,
        webhooks_poll_interval_s=0.02,
    )


def _message(case_id: str, kind: str, n: int) -> dict[str, Any]:
    at = (datetime(2026, 1, 5, 9, tzinfo=UTC) + timedelta(seconds=n)).isoformat()
    payload: dict[str, Any] = (
        {"programme": "bench", "participant": {"pseudonym": "B-1"}}
        if kind == "case.opened"
        else {"text": f"note {n}", "category": "notes"}
    )
    return {
        "message_id": str(uuid4()),
        "type": kind,
        "agency": AGENCY,
        "case_id": case_id,
        "occurred_at": at,
        "actor": "bench-user",
        "payload": payload,
    }


def _until(condition: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def throughput(hub: Hub, events: int) -> tuple[float, float]:
    cases = max(1, events // 5)
    for _ in range(cases):
        case_id = str(uuid4())
        hub.messages.record_raw(_message(case_id, "case.opened", 0))
        for n in range(1, 5):
            hub.messages.record_raw(_message(case_id, "note.added", n))
    hub.views.catch_up()
    total = cases * 5
    with receiver() as (state, port):
        # The HTTP alone: the same count of POSTs of a delivery's size, one connection each.
        body = b"x" * 900
        started = time.perf_counter()
        for _ in range(total):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("POST", "/raw", body=body, headers={"Content-Type": "application/json"})
            conn.getresponse().read()
            conn.close()
        raw_rate = total / (time.perf_counter() - started)
        state.count = 0
        endpoints_for(hub).add(AGENCY, f"http://127.0.0.1:{port}/hook", from_start=True)
        thread, stop = dispatcher_for(hub).start()
        try:
            started = time.perf_counter()
            if not _until(lambda: state.count >= total, 600):
                raise RuntimeError(f"delivered {state.count} of {total}")
            rate = total / (time.perf_counter() - started)
        finally:
            stop.set()
            thread.join(timeout=30)
    return rate, raw_rate


def latency(hub: Hub, rate: int, seconds: float) -> list[float]:
    cases = [str(uuid4()) for _ in range(20)]
    for case_id in cases:
        hub.messages.record_raw(_message(case_id, "case.opened", 0))
    hub.views.catch_up()
    recorded: dict[int, float] = {}
    with receiver() as (state, port):
        endpoints_for(hub).add(AGENCY, f"http://127.0.0.1:{port}/hook")
        hub.views.start(poll_interval=0.25)
        thread, stop = dispatcher_for(hub).start()
        try:
            count = int(rate * seconds)
            started = time.monotonic()
            for n in range(count):
                due = started + n / rate
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                result = hub.messages.record_raw(
                    _message(cases[n % len(cases)], "note.added", n + 1)
                )
                recorded[int(result["position"])] = time.monotonic()
            if not _until(lambda: all(p in state.arrived for p in recorded), 120):
                missing = sum(1 for p in recorded if p not in state.arrived)
                raise RuntimeError(f"{missing} of {len(recorded)} events not delivered")
        finally:
            stop.set()
            thread.join(timeout=30)
            hub.views.stop()
    return [(state.arrived[p] - t) * 1000 for p, t in recorded.items()]


def _relay_rate() -> float | None:
    try:
        rows = json.loads((RESULTS / "kafka.json").read_text())["rows"]
    except (OSError, ValueError, KeyError):
        return None
    for row in rows:
        if str(row["case"]).startswith("relay throughput"):
            return float(row["value"])
    return None


def run(*, quick: bool = False) -> None:
    import tempfile

    events = 200 if quick else 2000
    seconds = 3.0 if quick else 20.0
    rows: list[Row] = []
    relay = _relay_rate()
    for store in stores():
        with store_url(store) as url, tempfile.TemporaryDirectory() as folder:
            hub = build_hub(_settings(url, folder))
            try:
                hub.registry.register(AGENCY, "jobcenter", "Bench Jobcenter")
                rate, raw_rate = throughput(hub, events)
                rows.append(
                    Row(
                        f"webhook deliveries ({events} events, 1 endpoint)",
                        store,
                        rate,
                        "deliveries/s",
                        raw_rate,
                        rate / raw_rate,
                        "baseline: plain POSTs to the same receiver",
                        None,
                    )
                )
                if relay is not None:
                    rows.append(
                        Row(
                            "relay throughput (bench kafka's results, for scale)",
                            store,
                            relay,
                            "events/s",
                            None,
                            None,
                            "-",
                            None,
                        )
                    )
                delays = sorted(latency(hub, 200, seconds))
            finally:
                hub.close()
        p50 = statistics.median(delays)
        p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
        label = f"record->delivery @200/s, {seconds:.0f} s"
        rows.append(Row(f"{label} p50", store, p50, "ms", None, None, "-", None))
        rows.append(Row(f"{label} p99", store, p99, "ms", None, None, "< 500 ms", p99 < 500))
    report("webhooks", rows, quick=quick)
