"""The relay: every recorded case event, in the global order, to ``hub.events.v1``.

It reads the notification log after its position, hands each batch to an
idempotent producer (``acks=all``; batches are pipelined, a few in flight), and
stores a batch's last position with the ``eventsourcing`` tracking recorder, in
the hub's own database, only once the broker acknowledged every record up to
it. A crash between publishing and storing republishes from the stored position
on restart; the repeats carry the same ``event_id`` (see ``envelope``), so
nothing recorded is ever missing from the topic and duplicates are
recognisable. Per-case order holds: one case, one key, one partition, and the
idempotent producer keeps a partition's records in send order across retries.

When the broker is unreachable (at start or mid-stream) the producer is
dropped, the relay waits with capped exponential backoff, and starts again from
the stored position. Non-case events (agency registrations) are not published,
but the position moves past them.

Run exactly one relay per events topic: a second one is harmless but publishes
everything twice.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol
from uuid import UUID

import structlog
from eventsourcing.persistence import (
    ApplicationRecorder,
    InfrastructureFactory,
    Mapper,
    Notification,
    PersistenceError,
    Tracking,
    TrackingRecorder,
)
from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.partitioner.default import murmur2
from prometheus_client import Counter

from services.kafka.common import (
    Backoff,
    Heartbeat,
    close_producer,
    ensure_topics,
    error_name,
    producer_options,
    wait,
)
from services.kafka.envelope import build_envelope, encode, is_case_notification
from services.metrics import HubMetrics
from services.settings import Settings

log = structlog.get_logger("hub.kafka")

ProducerFactory = Callable[[Settings], Any]
MAX_BATCHES_IN_FLIGHT = 3


class EventLog(Protocol):
    """What the relay reads from the hub's application: the notification log, the
    mapper that turns a notification back into its event, and the factory of the
    tracking recorder that keeps its position in the same database."""

    @property
    def recorder(self) -> ApplicationRecorder: ...

    @property
    def mapper(self) -> Mapper[UUID]: ...

    @property
    def factory(self) -> InfrastructureFactory[TrackingRecorder]: ...


class RelayPorts(Protocol):
    """All the relay takes from the hub (a ``Hub`` is one): the event log, and the
    settings used when none are given."""

    @property
    def app(self) -> EventLog: ...

    @property
    def settings(self) -> Settings: ...


def _default_producer(settings: Settings) -> KafkaProducer:
    return KafkaProducer(**producer_options(settings, "relay"))


class Relay:
    def __init__(
        self,
        hub: RelayPorts,
        settings: Settings | None = None,
        *,
        producer_factory: ProducerFactory = _default_producer,
        create_topics: bool = True,
        metrics: HubMetrics | None = None,
    ) -> None:
        self.hub = hub
        self.settings = settings or hub.settings
        self.topic = self.settings.kafka_events_topic
        self.tracking_name = f"kafka-relay:{self.topic}"
        self._tracking = hub.app.factory.tracking_recorder()
        self._producer_factory = producer_factory
        self._create_topics = create_topics
        self._producer: Any = None
        self._position: int | None = None  # acknowledged and stored
        self._sent: int | None = None  # handed to the producer
        self._inflight: deque[tuple[int, int, list[Any]]] = deque()
        self._partitions: tuple[int, ...] = ()
        self._partition_of: dict[bytes, int] = {}
        self._backoff = Backoff(maximum=self.settings.kafka_retry_max_s)
        self.published = 0  # case events acknowledged by the broker, this process
        self._published_total: Any = None
        if metrics is not None:
            self._published_total = Counter(
                "hub_relay_published_total",
                "Case events the broker acknowledged from this relay",
                registry=metrics.registry,
            )
            metrics.watch(
                "hub_relay_lag_events",
                "Notifications recorded after the relay's acknowledged position",
                self.lag,
            )

    # --- position ------------------------------------------------------------

    @property
    def position(self) -> int:
        """The last notification id whose event the broker acknowledged (0: none)."""
        if self._position is None:
            self._position = self._tracking.max_tracking_id(self.tracking_name) or 0
        return self._position

    def lag(self) -> int:
        """Notifications recorded but not yet published (one query: the log's head)."""
        return (self.hub.app.recorder.max_notification_id() or 0) - self.position

    def _advance(self, notification_id: int) -> None:
        self._tracking.insert_tracking(Tracking(self.tracking_name, notification_id))
        self._position = notification_id

    # --- the producer --------------------------------------------------------

    def _connect(self) -> Any:
        if self._producer is None:
            if self._create_topics:
                ensure_topics(self.settings, {self.topic: self.settings.kafka_events_partitions})
            self._producer = self._producer_factory(self.settings)
            log.info("relay_connected", topic=self.topic, position=self.position)
        return self._producer

    def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        self._inflight.clear()
        self._sent = None
        if producer is not None:
            close_producer(producer, 0, "relay")

    # --- one step ------------------------------------------------------------

    def step(self) -> int:
        """Hand the next batch to the producer; returns the notifications it covered.

        Batches are pipelined: while the broker acknowledges one, the next is read
        and encoded. The position advances to the end of a batch once every batch
        up to it is acknowledged; with nothing new to read, everything in flight
        is flushed first (so 0 means: caught up, all acknowledged). Raises
        ``KafkaError`` when the broker did not acknowledge; what was in flight is
        then sent again from the stored position.
        """
        try:
            return self._step()
        except KafkaError:
            self._drop_producer()  # a fresh producer for the retry, not a wedged one
            raise

    def _step(self) -> int:
        start = (self._sent if self._sent is not None else self.position) + 1
        batch = self.hub.app.recorder.select_notifications(
            start, self.settings.kafka_relay_batch_size
        )
        if not batch:
            self._settle(flush=True)
            return 0
        cases = [n for n in batch if is_case_notification(n)]
        futures = self._send(cases) if cases else []
        self._inflight.append((batch[-1].id, len(cases), futures))
        self._sent = batch[-1].id
        log.debug("relay_sent", first=batch[0].id, last=batch[-1].id, events=len(cases))
        if len(self._inflight) > MAX_BATCHES_IN_FLIGHT:
            for future in self._inflight[0][2]:
                future.get(timeout=self._ack_timeout_s)
        self._settle(flush=False)
        return len(batch)

    @property
    def _ack_timeout_s(self) -> float:
        return self.settings.kafka_timeout_ms / 1000 * 3

    def _send(self, notifications: list[Notification]) -> list[Any]:
        producer = self._connect()
        mapper = self.hub.app.mapper
        # Encode the whole batch first, then send in a tight loop: interleaving the
        # two lets the producer's I/O thread wake every few records, which costs
        # more than the encoding itself.
        records = []
        for notification in notifications:
            envelope = build_envelope(mapper.to_domain_event(notification), notification.id)
            records.append((envelope["case_id"].encode(), encode(envelope)))
        partition = self._partitioner(producer)
        return [
            producer.send(self.topic, key=key, value=value, partition=partition(key))
            for key, value in records
        ]

    def _partitioner(self, producer: Any) -> Callable[[bytes], int]:
        """Kafka's default keyed partitioning (murmur2), remembered per case id.

        The same mapping kafka-python (and the Java client) computes for every
        record; cases repeat from batch to batch, so most records skip the hash.
        """
        partitions = tuple(sorted(producer.partitions_for(self.topic)))
        if partitions != self._partitions or len(self._partition_of) > 100_000:
            self._partitions = partitions
            self._partition_of = {}
        known = self._partition_of

        def partition(key: bytes) -> int:
            found = known.get(key)
            if found is None:
                found = known[key] = partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]
            return found

        return partition

    def _settle(self, *, flush: bool) -> None:
        """Store the position after the longest fully acknowledged run of batches."""
        if flush and self._inflight and self._producer is not None:
            self._producer.flush(timeout=self._ack_timeout_s)
        acknowledged = None
        while self._inflight:
            last, events, futures = self._inflight[0]
            if not flush and not all(f.is_done for f in futures):
                break
            for future in futures:
                future.get(timeout=0)  # raises the delivery error, if any
            self._inflight.popleft()
            acknowledged = last
            self.published += events
            if self._published_total is not None:
                self._published_total.inc(events)
        if acknowledged is not None:
            self._advance(acknowledged)

    def _failed(self, error: BaseException, stop: threading.Event | None) -> None:
        self._drop_producer()
        self._position = None  # re-read: another relay may have moved on meanwhile
        delay = self._backoff.next_delay()
        log.warning(
            "relay_retrying",
            error=error_name(error),
            position=self._position_or_none(),
            attempt=self._backoff.failures,
            retry_in_s=round(delay, 2),
        )
        wait(stop, delay)

    def _position_or_none(self) -> int | None:
        try:
            return self.position
        except PersistenceError:
            return None

    # --- loops ---------------------------------------------------------------

    def run_until_caught_up(
        self, timeout: float = 60.0, stop: threading.Event | None = None
    ) -> int:
        """Publish until the log is exhausted; returns the events published.

        Retries broker and database failures until ``timeout`` (then ``TimeoutError``).
        """
        deadline = time.monotonic() + timeout
        published_before = self.published
        while stop is None or not stop.is_set():
            if time.monotonic() > deadline:
                raise TimeoutError(f"relay not caught up after {timeout} s")
            try:
                if self.step() == 0:
                    break
                self._backoff.reset()
            except (KafkaError, PersistenceError) as error:
                self._failed(error, stop)
        return self.published - published_before

    def run(self, stop: threading.Event) -> None:
        """Follow the log until ``stop`` is set, then close the producer."""
        log.info("relay_started", topic=self.topic, position=self._position_or_none())
        caught_up = False
        heartbeat = Heartbeat(self.settings.health_file)
        try:
            while not stop.is_set():
                heartbeat.beat()
                try:
                    covered = self.step()
                except (KafkaError, PersistenceError) as error:
                    caught_up = False
                    self._failed(error, stop)
                    continue
                self._backoff.reset()
                if covered == 0:
                    if not caught_up:
                        log.debug("relay_caught_up", position=self.position)
                        caught_up = True
                    stop.wait(self.settings.kafka_relay_poll_interval_s)
                else:
                    caught_up = False
        finally:
            self.close()
            log.info("relay_stopped", position=self._position_or_none())

    def close(self) -> None:
        """Flush what is in flight, store the position it reached, close the producer."""
        if self._producer is not None and self._inflight:
            try:
                self._settle(flush=True)
            except (KafkaError, PersistenceError) as error:
                log.warning("relay_settle_on_close_failed", error=error_name(error))
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.flush(timeout=5)
            except KafkaError as error:
                log.warning("relay_flush_on_close_failed", error=error_name(error))
            close_producer(producer, 5, "relay")
