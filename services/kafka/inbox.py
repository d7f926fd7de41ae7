"""The inbox: agency messages from ``hub.inbox.<agency_id>`` into the hub.

One consumer group (``hub-inbox``) over the inbox topic of every registered
agency; the list is re-read from the registry periodically, and missing topics
are created. Each record's value is one API.md message, recorded through the
same application service as HTTP. A record that cannot be recorded for a reason
that will not go away (unparseable bytes, a schema error, a message whose
``agency`` is not the topic's agency, a rule refusal) is written to
``hub.inbox.dlq`` in the Kafka Connect form (``services/kafka/letters.py``): the
original key and value unchanged, where it came from and why in headers, so it can
be re-produced as it came (a key that is not a UUID is withheld: keys carry no
personal data). Offsets are committed
only after every record before them was recorded or dead-lettered, so a crash
redelivers; a redelivered message is answered as a duplicate by ``message_id``.

Failures that may go away (database down, broker down, persistent write
conflicts) are retried with backoff from the failed record on; an unexpected
error on one record is retried a few times, then dead-lettered as
``internal_error`` so one poisonous record cannot stop an agency's inbox.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from eventsourcing.persistence import PersistenceError
from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.errors import CommitFailedError, KafkaError

from domain.errors import DomainError
from services.errors import ConcurrencyConflict, ServiceError
from services.kafka import letters
from services.kafka.common import (
    INBOX_PREFIX,
    Backoff,
    Heartbeat,
    client_options,
    close_producer,
    ensure_topics,
    error_name,
    inbox_topic,
    producer_options,
    wait,
)
from services.messages import Message, MessageInvalid, parse_message
from services.metrics import KAFKA, HubMetrics
from services.settings import Settings

log = structlog.get_logger("hub.kafka")

MAX_ATTEMPTS = 5  # unexpected errors on one record before it is dead-lettered

ConsumerFactory = Callable[[Settings], Any]
ProducerFactory = Callable[[Settings], Any]


class AgencyList(Protocol):
    def all(self) -> list[dict[str, str]]:
        """Every registered agency (``agency_id``, ``kind``, ``name``)."""
        ...


class MessageRecorder(Protocol):
    def record(self, message: Message) -> dict[str, Any]:
        """Record one message (as HTTP does); its result says ``duplicate``."""
        ...


class InboxPorts(Protocol):
    """All the inbox takes from the hub (a ``Hub`` is one): the registered agencies
    (whose inbox topics it follows), the service that records messages, and the
    settings used when none are given."""

    @property
    def registry(self) -> AgencyList: ...

    @property
    def messages(self) -> MessageRecorder: ...

    @property
    def settings(self) -> Settings: ...


def _default_consumer(settings: Settings) -> KafkaConsumer:
    session = settings.kafka_session_timeout_ms
    return KafkaConsumer(
        **client_options(settings, "inbox"),
        group_id=settings.kafka_inbox_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=session,
        heartbeat_interval_ms=max(session // 4, 500),
        fetch_max_wait_ms=100,
        max_poll_records=200,
    )


def _default_producer(settings: Settings) -> KafkaProducer:
    return KafkaProducer(**producer_options(settings, "inbox-dlq"))


class RetryLater(Exception):
    """The record could not be handled now; handle it again later."""

    code = "retry_later"

    def __init__(self, cause: BaseException) -> None:
        super().__init__(error_name(cause))
        self.cause = cause


@dataclass(frozen=True)
class Outcome:
    """What became of one inbox message: ``recorded``, ``duplicate`` or ``refused``
    (then ``code``, ``message`` and ``details`` say why, as a dead letter does)."""

    kind: str
    code: str = ""
    message: str = ""
    details: Any = None
    position: int | None = None


@dataclass
class InboxStats:
    recorded: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    by_code: dict[str, int] = field(default_factory=dict)


class Inbox:
    def __init__(
        self,
        hub: InboxPorts,
        settings: Settings | None = None,
        *,
        consumer_factory: ConsumerFactory = _default_consumer,
        producer_factory: ProducerFactory = _default_producer,
        metrics: HubMetrics | None = None,
    ) -> None:
        self.hub = hub
        self.settings = settings or hub.settings
        self.dlq_topic = self.settings.kafka_dlq_topic
        self._consumer_factory = consumer_factory
        self._producer_factory = producer_factory
        self._consumer: Any = None
        self._producer: Any = None
        self._topics: list[str] = []
        self._refreshed_at = float("-inf")
        self._attempts: dict[tuple[str, int, int], int] = {}
        self._backoff = Backoff(maximum=self.settings.kafka_retry_max_s)
        self.stats = InboxStats()
        self.metrics = metrics or HubMetrics(process=False)
        self._unconfirmed: list[str] = []  # codes of dead letters not yet acknowledged

    # --- topics --------------------------------------------------------------

    def wanted_topics(self) -> list[str]:
        topics = []
        for agency in self.hub.registry.all():
            topic = inbox_topic(agency["agency_id"])
            if topic == self.dlq_topic:
                log.warning("inbox_agency_skipped", agency=agency["agency_id"], reason="dlq_name")
                continue
            topics.append(topic)
        return sorted(topics)

    def refresh(self, *, force: bool = False) -> list[str]:
        """Subscribe to the inbox of every registered agency (re-read periodically)."""
        now = time.monotonic()
        if not force and now - self._refreshed_at < self.settings.kafka_inbox_refresh_s:
            return self._topics
        topics = self.wanted_topics()
        self._connect()
        if topics != self._topics:
            new = set(topics) - set(self._topics)
            ensure_topics(self.settings, dict.fromkeys(new, self.settings.kafka_inbox_partitions))
            # A new consumer rather than subscribe() on the running one: kafka-python
            # 3.0 can stall in the rebalance that follows a changed subscription.
            # Offsets are committed after every batch, so nothing is lost by leaving.
            self._close_consumer()
            self._topics = []
            if topics:
                self._consumer = self._consumer_factory(self.settings)
                self._consumer.subscribe(topics=topics)
            log.info("inbox_subscribed", topics=len(topics), added=sorted(new))
            self._topics = topics
        self._refreshed_at = now
        return topics

    # --- clients -------------------------------------------------------------

    def _connect(self) -> None:
        if self._producer is None:
            ensure_topics(self.settings, {self.dlq_topic: self.settings.kafka_inbox_partitions})
            self._producer = self._producer_factory(self.settings)
            log.info("inbox_connected", group=self.settings.kafka_inbox_group)

    def _close_consumer(self, timeout_ms: int = 5000) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                consumer.close(autocommit=False, timeout_ms=timeout_ms)
            except Exception as error:  # closing a broken client may fail any way
                log.debug("inbox_consumer_close_failed", error=error_name(error))

    def _drop_clients(self) -> None:
        self._close_consumer(timeout_ms=1000)
        producer, self._producer = self._producer, None
        self._topics = []
        self._refreshed_at = float("-inf")
        if producer is not None:
            close_producer(producer, 0, "inbox")

    # --- one record ----------------------------------------------------------

    def submit(self, raw: bytes, topic: str) -> Outcome:
        """One message as it arrived on ``topic``, through the hub: parsed, held to the
        topic's agency, recorded (``hub dlq replay`` sends dead letters back here).
        Raises ``RetryLater`` for what may go away (database, write conflicts)."""
        topic_agency = topic[len(INBOX_PREFIX) :]
        try:
            message = parse_message(raw)
        except MessageInvalid as error:
            return Outcome("refused", error.code, error.message, error.details)
        if message.agency != topic_agency:
            return Outcome(
                "refused",
                "agency_mismatch",
                f"the message names agency {message.agency} but arrived on {topic}",
            )
        try:
            result = self.hub.messages.record(message)
        except ConcurrencyConflict as error:
            raise RetryLater(error) from error
        except (DomainError, ServiceError) as refusal:
            return Outcome("refused", refusal.code, refusal.message)
        except PersistenceError as error:
            raise RetryLater(error) from error
        self.metrics.recorded(KAFKA, message.type, duplicate=result["duplicate"])
        if result["duplicate"]:
            return Outcome("duplicate", position=result.get("position"))
        return Outcome("recorded", position=result.get("position"))

    def handle(self, record: Any) -> tuple[str, Any]:
        """Record one consumer record; returns (outcome, DLQ future or None)."""
        raw: bytes = record.value if record.value is not None else b""
        outcome = self.submit(raw, record.topic)
        if outcome.kind == "refused":
            future = self._dead_letter(record, outcome.code, outcome.message, outcome.details)
            return "dead_lettered", future
        return outcome.kind, None

    def _dead_letter(
        self,
        record: Any,
        code: str,
        message: str,
        details: Any = None,
    ) -> Any:
        letter = letters.connect_form(record, code, message, details)
        log.info(
            "inbox_dead_lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            code=code,
        )
        self.stats.by_code[code] = self.stats.by_code.get(code, 0) + 1
        self._unconfirmed.append(code)
        return self._producer.send(
            self.dlq_topic, key=letter.key, value=letter.value, headers=letter.headers
        )

    def _handle_guarded(self, record: Any) -> tuple[str, Any]:
        key = (record.topic, record.partition, record.offset)
        try:
            outcome = self.handle(record)
        except (RetryLater, KafkaError):
            raise
        except Exception as error:
            attempts = self._attempts.get(key, 0) + 1
            self._attempts[key] = attempts
            log.error(  # the type only: a traceback's message may quote the input
                "inbox_record_failed",
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                attempt=attempts,
                error=error_name(error),
            )
            if attempts < MAX_ATTEMPTS:
                raise RetryLater(error) from error
            outcome = (
                "dead_lettered",
                self._dead_letter(
                    record,
                    "internal_error",
                    f"the hub failed on this message {attempts} times ({error_name(error)})",
                ),
            )
        self._attempts.pop(key, None)
        return outcome

    # --- one poll ------------------------------------------------------------

    def poll_once(self, timeout_ms: int = 500) -> int:
        """Poll once, handle every record, commit; returns the records handled."""
        self.refresh()
        consumer = self._consumer
        if consumer is None:
            time.sleep(timeout_ms / 1000)
            return 0
        batch = consumer.poll(timeout_ms=timeout_ms)
        if not batch:
            return 0
        self._unconfirmed.clear()
        done, futures, counts, retry = self._handle_batch(consumer, batch)
        try:
            if futures:
                self._producer.flush(timeout=self.settings.kafka_timeout_ms / 1000 * 3)
                for future in futures:
                    future.get(timeout=0)
        except KafkaError:
            # The dead letters are not safe: handle the whole batch again.
            self._unconfirmed.clear()
            for tp, records in batch.items():
                consumer.seek(tp, records[0].offset)
            raise
        self._count_dead_letters()
        if done:
            self._commit(done)
        self.stats.recorded += counts["recorded"]
        self.stats.duplicates += counts["duplicate"]
        self.stats.dead_lettered += counts["dead_lettered"]
        if retry is not None:
            raise retry
        return sum(counts.values())

    def _handle_batch(
        self, consumer: Any, batch: dict[TopicPartition, list[Any]]
    ) -> tuple[dict[TopicPartition, int], list[Any], dict[str, int], RetryLater | None]:
        """Handle records in order until one must be retried; rewind from there."""
        done: dict[TopicPartition, int] = {}
        futures = []
        counts = {"recorded": 0, "duplicate": 0, "dead_lettered": 0}
        retry: RetryLater | None = None
        for tp, records in batch.items():
            if retry is not None:
                consumer.seek(tp, records[0].offset)
                continue
            for record in records:
                try:
                    outcome, future = self._handle_guarded(record)
                except RetryLater as error:
                    retry = error
                    consumer.seek(tp, record.offset)
                    break
                counts[outcome] += 1
                if future is not None:
                    futures.append(future)
                done[tp] = record.offset + 1
        return done, futures, counts, retry

    def _count_dead_letters(self) -> None:
        """Dead letters the broker acknowledged, in the metrics (a refusal unless the
        hub itself failed on the record)."""
        for code in self._unconfirmed:
            self.metrics.dead_letters.labels(code).inc()
            if code != "internal_error":
                self.metrics.refusals.labels(KAFKA, code).inc()
        self._unconfirmed.clear()

    def _commit(self, done: dict[TopicPartition, int]) -> None:
        offsets = {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in done.items()}
        try:
            self._consumer.commit(offsets)
        except CommitFailedError:
            # The group rebalanced; whoever gets the partition sees these again,
            # and they are answered as duplicates.
            log.warning("inbox_commit_failed", partitions=len(offsets))

    # --- loops ---------------------------------------------------------------

    def _step(self, stop: threading.Event | None) -> int:
        try:
            handled = self.poll_once()
        except RetryLater as retry:
            self._retry_later(retry.cause, stop, drop=False)
            return 0
        except (KafkaError, PersistenceError) as error:
            self._retry_later(error, stop, drop=isinstance(error, KafkaError))
            return 0
        self._backoff.reset()
        return handled

    def _retry_later(
        self, error: BaseException, stop: threading.Event | None, *, drop: bool
    ) -> None:
        if drop:
            self._drop_clients()
        delay = self._backoff.next_delay()
        log.warning(
            "inbox_retrying",
            error=error_name(error),
            attempt=self._backoff.failures,
            retry_in_s=round(delay, 2),
        )
        wait(stop, delay)

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set, then leave the group cleanly."""
        log.info("inbox_started", group=self.settings.kafka_inbox_group)
        heartbeat = Heartbeat(self.settings.health_file)
        try:
            while not stop.is_set():
                heartbeat.beat()
                self._step(stop)
        finally:
            self.close()
            log.info(
                "inbox_stopped",
                recorded=self.stats.recorded,
                duplicates=self.stats.duplicates,
                dead_lettered=self.stats.dead_lettered,
            )

    def run_for(self, seconds: float, stop: threading.Event | None = None) -> InboxStats:
        """Consume for a bounded time (tests, benchmarks); the clients stay open."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and (stop is None or not stop.is_set()):
            self._step(stop)
        return self.stats

    def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        producer, self._producer = self._producer, None
        self._topics = []
        self._refreshed_at = float("-inf")
        if producer is not None:
            try:
                producer.flush(timeout=5)
            except KafkaError as error:
                log.warning("inbox_flush_on_close_failed", error=error_name(error))
            close_producer(producer, 5, "inbox")
        if consumer is not None:
            consumer.close(autocommit=False, timeout_ms=5000)
