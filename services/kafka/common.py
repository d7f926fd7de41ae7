"""Pieces the relay and the inbox share: client options, topics, backoff."""

from __future__ import annotations

import logging
import random
import threading
import time
from pathlib import Path
from typing import Any

import structlog
from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from services.settings import Settings

log = structlog.get_logger("hub.kafka")
# kafka-python 3 warns whenever its I/O loop waited >100 ms for the interpreter
# (routine while this process records or encodes); the hub logs its own retries.
logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)

INBOX_PREFIX = "hub.inbox."
# Error code 36: the topic exists already (another process created it first).
_TOPIC_ALREADY_EXISTS = 36


class KafkaNotConfigured(Exception):
    code = "kafka_not_configured"


def bootstrap(settings: Settings) -> str:
    if not settings.kafka_bootstrap:
        raise KafkaNotConfigured("set HUB_KAFKA_BOOTSTRAP=host:port to use Kafka")
    return settings.kafka_bootstrap


def client_options(settings: Settings, role: str) -> dict[str, Any]:
    """Options every client of the hub gets (timeouts bounded so failures surface)."""
    timeout = settings.kafka_timeout_ms
    return {
        "bootstrap_servers": bootstrap(settings).split(","),
        "client_id": f"{settings.kafka_client_id}-{role}",
        "bootstrap_timeout_ms": timeout,
        "request_timeout_ms": max(timeout, 5000),
        "reconnect_backoff_max_ms": 2000,
        **security_options(settings),
    }


def security_options(settings: Settings) -> dict[str, Any]:
    """TLS and SASL, in kafka-python's names (``HUB_KAFKA_SECURITY_PROTOCOL`` and the
    settings beside it; the settings refuse an incomplete combination)."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_check_hostname"] = settings.kafka_ssl_check_hostname
        for name in ("cafile", "certfile", "keyfile"):
            path = getattr(settings, f"kafka_ssl_{name}")
            if path is not None:
                options[f"ssl_{name}"] = str(path)
    if protocol.startswith("SASL_"):
        password = settings.kafka_sasl_password
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        # kafka-python names them "plain" for SCRAM as well.
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = password.get_secret_value() if password else None
    return options


def producer_options(settings: Settings, role: str) -> dict[str, Any]:
    timeout = settings.kafka_timeout_ms
    return {
        **client_options(settings, role),
        "acks": "all",
        "enable_idempotence": True,
        # Records wait for company while a backlog streams out; a caught-up relay
        # and the dead-letter path flush explicitly, so no event waits this long.
        "linger_ms": 50,
        "batch_size": 256 * 1024,
        "max_block_ms": timeout,
        "delivery_timeout_ms": max(timeout * 3, 15000),
    }


def inbox_topic(agency_id: str) -> str:
    return f"{INBOX_PREFIX}{agency_id}"


def ensure_topics(settings: Settings, topics: dict[str, int]) -> None:
    """Create the missing ones of ``topics`` (name -> partitions); existing ones stay."""
    admin = KafkaAdminClient(**client_options(settings, "admin"))
    try:
        existing = set(admin.list_topics())
        missing = {name: n for name, n in topics.items() if name not in existing}
        if not missing:
            return
        response = admin.create_topics(
            {
                name: {
                    "num_partitions": partitions,
                    "replication_factor": settings.kafka_replication_factor,
                }
                for name, partitions in missing.items()
            },
            raise_errors=False,
        )
        for topic in response.get("topics", []):
            code = topic.get("error_code", 0)
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                raise KafkaError(f"cannot create topic {topic.get('name')}: error code {code}")
        admin.wait_for_topics(list(missing), timeout_ms=settings.kafka_timeout_ms)
        log.info("kafka_topics_created", topics=sorted(missing))
    finally:
        admin.close()


class Backoff:
    """Capped exponential backoff with jitter; ``reset`` after a success."""

    def __init__(self, initial: float = 0.2, maximum: float = 30.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self.failures = 0

    def next_delay(self) -> float:
        delay = min(self.maximum, self.initial * 2**self.failures)
        self.failures += 1
        return delay * random.uniform(0.8, 1.0)  # noqa: S311 - jitter, not security

    def reset(self) -> None:
        self.failures = 0


class Heartbeat:
    """Touches ``path`` (at most every few seconds) while a loop runs: a liveness probe
    checks the file's age. Broker or database trouble does not stop the beat, since
    the loop goes on retrying; a stuck loop does."""

    def __init__(self, path: Path | None, every: float = 5.0) -> None:
        self.path = path
        self.every = every
        self._last = float("-inf")

    def beat(self) -> None:
        now = time.monotonic()
        if self.path is None or now - self._last < self.every:
            return
        self._last = now
        try:
            self.path.touch()
        except OSError as error:
            log.warning("heartbeat_failed", error=error_name(error))


def wait(stop: threading.Event | None, seconds: float) -> bool:
    """Sleep, or return early (True) when ``stop`` is set."""
    if stop is None:
        threading.Event().wait(seconds)
        return False
    return stop.wait(seconds)


def error_name(error: BaseException) -> str:
    """A log-safe description of a client error: its type, never its arguments."""
    return type(error).__name__


def close_producer(producer: Any, timeout_s: float, what: str) -> None:
    """Close a producer, and never leave it half closed. kafka-python's ``close`` flushes
    first and raises when records are still pending (the broker is gone) before it
    stops the producer's I/O thread: that thread would then go on retrying the
    broker, and the object's ``__del__`` would raise the same error later in some
    other thread. So on a failed close the I/O thread is stopped without sending
    (its pending records are aborted, as a forced close does) and the producer closed
    again; a record not sent is not lost: the relay sends from its tracked position,
    the inbox's offsets were not committed."""
    try:
        producer.close(timeout=timeout_s)
        return
    except Exception as error:  # closing a broken client may fail any way
        log.debug(f"{what}_producer_close_failed", error=error_name(error))
    sender = getattr(producer, "_sender", None)  # kafka-python's I/O thread
    if sender is not None:
        sender.force_close()
        sender.join(max(timeout_s, 1.0))
    try:
        producer.close(timeout=0)
    except Exception as error:
        log.warning(f"{what}_producer_not_closed", error=error_name(error))


class BrokerProbe:
    """Readiness: can this process reach the brokers? One metadata request over a
    client kept between probes, one probe at a time (a probe that hangs does not
    pile up threads), answered with a reason that names no secret."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._admin: Any = None
        self._lock = threading.Lock()

    def check(self) -> tuple[bool, str]:
        if not self._lock.acquire(blocking=False):
            return False, "the previous broker probe has not answered yet"
        try:
            if self._admin is None:
                self._admin = KafkaAdminClient(**client_options(self.settings, "probe"))
            topics = self._admin.list_topics()
        except Exception as error:  # kafka-python raises many kinds for "unreachable"
            self._close()
            return False, f"brokers unreachable ({error_name(error)})"
        finally:
            self._lock.release()
        return True, f"reachable ({len(topics)} topics)"

    def _close(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            try:
                admin.close()
            except Exception as error:  # closing a broken client may fail any way
                log.debug("probe_close_failed", error=error_name(error))

    def close(self) -> None:
        with self._lock:
            self._close()
