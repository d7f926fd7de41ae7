"""The dead-letter topic (``hub.inbox.dlq``): read it, and send its records back
through the inbox (``hub dlq list`` / ``hub dlq replay``).

Both forms are read: the Kafka Connect form the inbox writes (original key and value,
the error and source in headers) and the JSON form it wrote before (the original as
base64), for records already on the topic (``services/kafka/letters.py``).

A dead letter is identified as ``PARTITION:OFFSET`` on the dead-letter topic.
Reading assigns the partitions directly (no consumer group: listing moves no
committed offset and never competes with the inbox). A list shows what the hub
wrote beside the original bytes (code, message, source, size), which holds no
input value; the original bytes themselves (the agency's message, personal data
included) only on request.

Replaying hands the original bytes to ``Inbox.submit``, the very path a consumed
record takes (parse, the source topic's agency, record). It is idempotent: a
message recorded since (or by an earlier replay) is answered as a duplicate by
its ``message_id``. A message refused again stays where it is and is not written
to the topic a second time; the answer names the refusal.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from kafka import KafkaConsumer, TopicPartition

from services.kafka import letters
from services.kafka.common import INBOX_PREFIX, client_options
from services.kafka.inbox import Inbox, Outcome, RetryLater
from services.settings import Settings

log = structlog.get_logger("hub.kafka")

ConsumerFactory = Callable[[Settings], Any]


class DeadLetterError(Exception):
    code = "dlq_error"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, order=True)
class LetterId:
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.partition}:{self.offset}"

    @classmethod
    def parse(cls, text: str, partitions: int) -> LetterId:
        """``PARTITION:OFFSET``, or a bare ``OFFSET`` when the topic has one partition."""
        partition, sep, offset = text.partition(":")
        if not sep:
            partition, offset = "0", text
            if partitions > 1:
                raise DeadLetterError(
                    "invalid_value",
                    f"{text}: the dead-letter topic has {partitions} partitions; "
                    "name a record as PARTITION:OFFSET, as `hub dlq list` prints it",
                )
        if not (partition.isdigit() and offset.isdigit()):
            raise DeadLetterError(
                "invalid_value", f"{text[:40]}: a dead letter is PARTITION:OFFSET, e.g. 0:17"
            )
        return cls(int(partition), int(offset))


@dataclass(frozen=True)
class DeadLetter:
    id: LetterId
    time: datetime | None  # when the inbox wrote it (the record's timestamp)
    code: str
    message: str
    details: Any
    source: dict[str, Any]  # topic, partition, offset of the original record
    original: bytes
    key: bytes | None = None  # the dead letter's key (Connect form: the original's)
    form: str = "json"  # "connect" (headers) or "json" (written before the Connect form)

    @property
    def source_text(self) -> str:
        source = self.source
        return f"{source.get('topic')}[{source.get('partition')}]@{source.get('offset')}"


def parse_letter(record: Any) -> DeadLetter:
    """A dead letter from its record, in either form (``services/kafka/letters.py``);
    ``dlq_record_invalid`` for what the inbox did not write."""
    letter_id = LetterId(record.partition, record.offset)
    try:
        found = letters.read(record)
    except letters.NotALetter:
        raise DeadLetterError(
            "dlq_record_invalid", f"{letter_id} is not a dead letter the inbox wrote"
        ) from None
    moment = None
    if isinstance(record.timestamp, int) and record.timestamp >= 0:
        moment = datetime.fromtimestamp(record.timestamp / 1000, UTC)
    return DeadLetter(
        letter_id,
        moment,
        found.code,
        found.message,
        found.details,
        found.source,
        found.original,
        key=found.key,
        form=found.form,
    )


def _default_consumer(settings: Settings) -> KafkaConsumer:
    return KafkaConsumer(
        **client_options(settings, "dlq"),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )


class DeadLetterTopic:
    """Reads ``HUB_KAFKA_DLQ_TOPIC`` from its beginning, or single records by id."""

    def __init__(
        self,
        settings: Settings,
        *,
        consumer_factory: ConsumerFactory = _default_consumer,
        idle_s: float = 0.5,
    ) -> None:
        self.settings = settings
        self.topic = settings.kafka_dlq_topic
        self._consumer_factory = consumer_factory
        self._idle_ms = int(idle_s * 1000)
        # With no new record for this long while records still seem due, give up.
        self._stall_s = settings.kafka_timeout_ms / 1000 * 3

    def partitions(self, consumer: Any) -> list[TopicPartition]:
        found = consumer.partitions_for_topic(self.topic) or set()
        return [TopicPartition(self.topic, p) for p in sorted(found)]

    def read(self, since: datetime | None = None) -> list[DeadLetter]:
        """Every dead letter (written at or after ``since``), oldest first."""
        consumer = self._consumer_factory(self.settings)
        try:
            tps = self.partitions(consumer)
            if not tps:
                return []
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            records = self._drain(consumer, tps)
        finally:
            consumer.close()
        letters = []
        for record in records:
            try:
                letter = parse_letter(record)
            except DeadLetterError:
                log.warning("dlq_record_skipped", partition=record.partition, offset=record.offset)
                continue
            if since is None or (letter.time is not None and letter.time >= since):
                letters.append(letter)
        never = datetime.min.replace(tzinfo=UTC)
        return sorted(letters, key=lambda letter: (letter.time or never, letter.id))

    def fetch(self, texts: Iterable[str]) -> list[DeadLetter]:
        """The dead letters named ``PARTITION:OFFSET`` (each once, in the order given);
        ``dlq_offset_not_found`` for one that is not there."""
        consumer = self._consumer_factory(self.settings)
        try:
            known = {tp.partition: tp for tp in self.partitions(consumer)}
            order = list(dict.fromkeys(LetterId.parse(t, len(known)) for t in texts))
            wanted = set(order)
            for letter_id in sorted(wanted):
                if letter_id.partition not in known:
                    raise DeadLetterError("dlq_offset_not_found", f"no dead letter {letter_id}")
            tps = [known[p] for p in sorted({i.partition for i in wanted})]
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, min(i.offset for i in wanted if i.partition == tp.partition))
            last = {tp: max(i.offset for i in wanted if i.partition == tp.partition) for tp in tps}
            records = self._drain(consumer, tps, stop_after=last)
        finally:
            consumer.close()
        found = {}
        for record in records:
            letter_id = LetterId(record.partition, record.offset)
            if letter_id in wanted:
                found[letter_id] = parse_letter(record)
        for letter_id in sorted(wanted - set(found)):
            raise DeadLetterError("dlq_offset_not_found", f"no dead letter {letter_id}")
        return [found[letter_id] for letter_id in order]

    def _drain(
        self,
        consumer: Any,
        tps: list[TopicPartition],
        stop_after: dict[TopicPartition, int] | None = None,
    ) -> list[Any]:
        """Poll until every partition passed ``stop_after``'s offset, or reached its end
        and a poll came back empty. Ends are asked once and trusted only with an idle
        poll: some brokers report an end inside the last batch, whose records the next
        fetch still returns."""
        ends = consumer.end_offsets(tps)
        records: list[Any] = []
        stalled_at = time.monotonic() + self._stall_s
        while True:
            batch = consumer.poll(timeout_ms=self._idle_ms)
            for partition_records in batch.values():
                records.extend(partition_records)
            if batch:
                stalled_at = time.monotonic() + self._stall_s
            if stop_after is not None and all(consumer.position(tp) > stop_after[tp] for tp in tps):
                return records
            if not batch and all(consumer.position(tp) >= ends[tp] for tp in tps):
                return records
            if time.monotonic() > stalled_at:
                raise DeadLetterError(
                    "kafka_unavailable", f"reading {self.topic} stalled for {self._stall_s:g} s"
                )


@dataclass(frozen=True)
class Replayed:
    letter: DeadLetter
    outcome: Outcome


def replay(letters: Iterable[DeadLetter], inbox: Inbox) -> list[Replayed]:
    """Each dead letter's original bytes through the inbox path, as if consumed again."""
    results = []
    for letter in letters:
        topic = str(letter.source.get("topic") or "")
        if not topic.startswith(INBOX_PREFIX):
            outcome = Outcome(
                "refused", "dlq_record_invalid", f"{letter.id} names no inbox topic as its source"
            )
        else:
            try:
                outcome = inbox.submit(letter.original, topic)
            except RetryLater as error:
                outcome = Outcome(
                    "failed", RetryLater.code, f"try again later ({error_type(error)})"
                )
            except Exception as error:  # as the consumer does: named by type, not text
                outcome = Outcome(
                    "failed", "internal_error", f"the hub failed on it ({type(error).__name__})"
                )
        log.info(
            "dlq_replayed",
            partition=letter.id.partition,
            offset=letter.id.offset,
            outcome=outcome.kind,
            code=outcome.code or None,
        )
        results.append(Replayed(letter, outcome))
    return results


def error_type(error: RetryLater) -> str:
    return type(error.cause).__name__
