"""The relay: every recorded case event, in the global order, to ``hub.events.v1``.

It reads the notification log after its tracked position, publishes one batch
with an idempotent producer (``acks=all``), waits until the broker acknowledged
every record of the batch, and only then stores the batch's last position with
the ``eventsourcing`` tracking recorder in the hub's own database. A crash
between publishing and storing the position republishes that batch on restart;
the repeats carry the same ``event_id`` (see ``envelope``), so nothing recorded
is ever missing from the topic and duplicates are recognisable.

When the broker is unreachable (at start or mid-stream) the producer is
dropped, the relay waits with capped exponential backoff, and starts again from
the tracked position. Non-case events (agency registrations) are not published,
but the position moves past them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import structlog
from eventsourcing.persistence import PersistenceError, Tracking
from kafka import KafkaProducer
from kafka.errors import KafkaError

from services.bootstrap import Hub
from services.kafka.common import (
    Backoff,
    ensure_topics,
    error_name,
    producer_options,
    wait,
)
from services.kafka.envelope import build_envelope, encode, is_case_notification
from services.settings import Settings

log = structlog.get_logger("hub.kafka")

ProducerFactory = Callable[[Settings], Any]


def _default_producer(settings: Settings) -> KafkaProducer:
    return KafkaProducer(**producer_options(settings, "relay"))


class Relay:
    def __init__(
        self,
        hub: Hub,
        settings: Settings | None = None,
        *,
        producer_factory: ProducerFactory = _default_producer,
        create_topics: bool = True,
    ) -> None:
        self.hub = hub
        self.settings = settings or hub.settings
        self.topic = self.settings.kafka_events_topic
        self.tracking_name = f"kafka-relay:{self.topic}"
        self._tracking = hub.app.factory.tracking_recorder()
        self._producer_factory = producer_factory
        self._create_topics = create_topics
        self._producer: Any = None
        self._position: int | None = None
        self._backoff = Backoff(maximum=self.settings.kafka_retry_max_s)
        self.published = 0  # case events acknowledged by the broker, this process

    # --- position ------------------------------------------------------------

    @property
    def position(self) -> int:
        """The last notification id whose event the broker acknowledged (0: none)."""
        if self._position is None:
            self._position = self._tracking.max_tracking_id(self.tracking_name) or 0
        return self._position

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
        if producer is not None:
            try:
                producer.close(timeout=0)
            except Exception as error:
                log.debug("relay_producer_close_failed", error=error_name(error))

    # --- one step ------------------------------------------------------------

    def step(self) -> int:
        """Publish the next batch; returns how many notifications it covered (0: none).

        Raises ``KafkaError`` when the broker did not acknowledge the whole batch;
        the position is then unchanged.
        """
        start = self.position + 1
        batch = self.hub.app.recorder.select_notifications(
            start, self.settings.kafka_relay_batch_size
        )
        if not batch:
            return 0
        cases = [n for n in batch if is_case_notification(n)]
        if cases:
            producer = self._connect()
            mapper = self.hub.app.mapper
            futures = []
            for notification in cases:
                event = mapper.to_domain_event(notification)
                envelope = build_envelope(event, notification.id)
                futures.append(
                    producer.send(
                        self.topic,
                        key=envelope["case_id"].encode(),
                        value=encode(envelope),
                    )
                )
            producer.flush(timeout=self.settings.kafka_timeout_ms / 1000 * 3)
            for future in futures:
                future.get(timeout=0)  # raises the delivery error, if any
        self._advance(batch[-1].id)
        self.published += len(cases)
        log.debug(
            "relay_published",
            first=batch[0].id,
            last=batch[-1].id,
            events=len(cases),
        )
        return len(batch)

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
        try:
            while not stop.is_set():
                try:
                    covered = self.step()
                except (KafkaError, PersistenceError) as error:
                    caught_up = False
                    self._failed(error, stop)
                    continue
                self._backoff.reset()
                if covered == 0:
                    if not caught_up:
                        log.info("relay_caught_up", position=self.position)
                        caught_up = True
                    stop.wait(self.settings.kafka_relay_poll_interval_s)
                else:
                    caught_up = False
        finally:
            self.close()
            log.info("relay_stopped", position=self._position_or_none())

    def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.flush(timeout=5)
            except KafkaError as error:
                log.warning("relay_flush_on_close_failed", error=error_name(error))
            producer.close(timeout=5)
