"""The application services: record a message, register agencies, issue tokens.

They take and return plain values (ids, dicts), never aggregates. Idempotency:
the first answer to an agency's ``message_id`` is stored as a receipt in the same
transaction as the events it caused, so a repeat, even after a restart, returns
that answer with ``duplicate: true``; the same id with another body is refused
(``message_id_reused``), and another agency's message with that id is its own.
Writers of one case take turns inside a process (``CaseLocks``), so a
concurrency conflict can only come from another process; those are retried with a
fresh load. To an agency, a case it is not involved in answers as an unknown one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, cast
from uuid import UUID

import structlog
from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    Repository,
    project_aggregate,
)
from eventsourcing.persistence import IntegrityError, PersistenceError
from eventsourcing.utils import TopicError

from domain.agency import Agency, agency_aggregate_id
from domain.case import Case
from domain.case.snapshot import SnapshotUnusable
from domain.errors import DomainError
from domain.policy import PolicyBook
from domain.reads import ReadRecorded, case_reads_id, daily_reads_id
from domain.values import AgencyKind
from services import commands
from services.crypto import FieldCipher, ParticipantErased, case_key_id
from services.errors import (
    AgencyExists,
    AgencyUnknown,
    CaseNotFound,
    ConcurrencyConflict,
    MessageIdReused,
    NotAllowed,
    ParticipantDataErased,
    ServiceError,
)
from services.messages import Message, parse_message, seal_personal
from services.store import HubStore, Receipt, TokenRecord, prune_snapshots

log = structlog.get_logger("hub.application")

AUDITOR = "auditor"  # the sender id of auditors' messages (only participant.erased)
RESERVED_AGENCY_IDS = frozenset({AUDITOR, "dlq"})  # "dlq": hub.inbox.dlq is no agency's inbox
AGENCY_REGISTERED_TOPIC = "domain.agency:Agency.AgencyRegistered"


def _project(aggregate: Any, events: Iterable[Any]) -> Any:
    """Replays stored events onto an aggregate, as the library's ``project_aggregate``
    does, without its ``isinstance`` check against a runtime protocol per event: on
    Python 3.11 that check costs about 9 µs each, so loading a five-event case took
    128 µs instead of 74. Every stored event here is a library domain event (and a
    snapshot, first, when there is one)."""
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


class HubApplication(Application[UUID]):
    """The ``eventsourcing`` application holding cases and agencies.

    Snapshots (the library's): with ``snapshot_interval`` N > 0, saving the N-th,
    2N-th … event of a case also stores the case's state at that version in the
    library's snapshot table (``stored_snapshots`` / ``hub_snapshots``, outside the
    notification log, so outside the views and the hash chain), and a load starts from
    the latest snapshot: a write replays fewer than N events however long the case's
    history (it still decodes all the case holds: handovers, consents, measures, the
    state of each appointment; no notes, which no rule reads).
    0 takes and reads none. A snapshot is only a shortcut: one that cannot be used
    (``SnapshotUnusable``) is passed over for the events, and one that cannot be taken
    leaves the write recorded as it was.
    """

    name = "Hub"
    snapshotting_projectors: ClassVar[dict[type[Any], Any]] = {Case: _project}

    def __init__(self, env: dict[str, str] | None = None, *, snapshot_interval: int = 0) -> None:
        if snapshot_interval < 0:
            raise ValueError("snapshot_interval is 0 (off) or a number of events")
        # The library reads intervals from a class variable; here the interval is a
        # setting, so the instance's own mapping shadows it.
        self.snapshotting_intervals = {Case: snapshot_interval} if snapshot_interval else {}  # type: ignore[misc]
        super().__init__(
            {**(env or {}), "IS_SNAPSHOTTING_ENABLED": "y" if snapshot_interval else "n"}
        )
        self.snapshot_interval = snapshot_interval
        # Loads that pass a snapshot over: the same event store, no snapshot store.
        self._events_only: Repository[UUID] = Repository(event_store=self.events)

    @property
    def store(self) -> HubStore:
        return cast(HubStore, self.recorder)

    def load(
        self, aggregate_id: UUID, version: int | None = None, projector_func: Any = _project
    ) -> Any:
        """The aggregate (at ``version``), from its latest usable snapshot and the
        events after it; ``AggregateNotFoundError`` when there is none."""
        try:
            return self.repository.get(aggregate_id, version=version, projector_func=projector_func)
        except (SnapshotUnusable, TopicError) as unusable:
            if self.snapshots is None:
                raise
            log.warning(
                "snapshot_unusable", aggregate_id=str(aggregate_id), error=type(unusable).__name__
            )
        return self._events_only.get(aggregate_id, version=version, projector_func=projector_func)

    def take_snapshot(
        self,
        aggregate_id: UUID,
        version: int | None = None,
        projector_func: Any = project_aggregate,
    ) -> None:
        """The library's, from ``load`` (so an unusable snapshot is replaced by a good
        one), keeping only the latest snapshot of the aggregate, and never failing a
        write that is already recorded: an error is logged and the next interval tries
        again."""
        if self.snapshots is None:
            raise AssertionError("snapshots are off (snapshot_interval 0)")
        try:
            aggregate = self.load(aggregate_id, version=version, projector_func=projector_func)
            self.snapshots.put([type(aggregate).Snapshot.take(aggregate)])
            prune_snapshots(self.snapshots.recorder, aggregate_id, aggregate.version)
        except IntegrityError:
            pass  # another process took this very snapshot
        except Exception as error:  # the events are recorded; a snapshot is a shortcut
            log.error(
                "snapshot_failed",
                aggregate_id=str(aggregate_id),
                version=version,
                error=type(error).__name__,
            )


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "hub_" + secrets.token_urlsafe(32)


class AgencyRegistry:
    """Registered agencies; ids and kinds are cached, since agencies are only ever
    added and never change kind."""

    def __init__(self, app: HubApplication) -> None:
        self._app = app
        self._kinds: dict[str, AgencyKind] = {}

    def exists(self, agency_id: str) -> bool:
        return self.kind_of(agency_id) is not None

    def kind_of(self, agency_id: str) -> AgencyKind | None:
        """The registered kind, or None for an unknown agency."""
        kind = self._kinds.get(agency_id)
        if kind is not None:
            return kind
        try:
            agency: Agency = self._app.repository.get(agency_aggregate_id(agency_id))
        except AggregateNotFoundError:
            return None
        self._kinds[agency_id] = agency.kind
        return agency.kind

    def register(self, agency_id: str, kind: AgencyKind, name: str) -> dict[str, str]:
        if agency_id in RESERVED_AGENCY_IDS:
            raise AgencyExists(f"{agency_id!r} is reserved (auditors, the dead-letter topic)")
        agency = Agency.register(agency_id, kind, name, registered_at=datetime.now(UTC))
        try:
            self._app.save(agency)
        except IntegrityError:
            raise AgencyExists(f"agency {agency_id} is already registered") from None
        self._kinds[agency_id] = agency.kind
        return {"agency_id": agency_id, "kind": agency.kind.value, "name": agency.name}

    def get(self, agency_id: str) -> dict[str, str]:
        try:
            agency = cast(Agency, self._app.repository.get(agency_aggregate_id(agency_id)))
        except AggregateNotFoundError:
            raise AgencyUnknown(f"agency {agency_id} is not registered") from None
        return {"agency_id": agency.agency_id, "kind": agency.kind.value, "name": agency.name}

    def all(self) -> list[dict[str, str]]:
        rows = []
        start = 1
        while True:
            batch = self._app.recorder.select_notifications(
                start, 500, topics=[AGENCY_REGISTERED_TOPIC]
            )
            for notification in batch:
                event = self._app.mapper.to_domain_event(notification)
                rows.append(self.get(event.agency_id))
            if len(batch) < 500:
                return sorted(rows, key=lambda r: r["agency_id"])
            start = batch[-1].id + 1


# A user id inside an agency (or an auditor's): what the token names and what an
# agency-wide token's caller may claim in ``X-Hub-User``; never free text.
USER_ID_PATTERN = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
# A stored last use is rewritten at most this often per token: a write per request
# would contend with the messages for the store.
TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class TokenHolder:
    """Who a valid token speaks for."""

    token_id: str
    role: str  # "agency" or "auditor"
    subject: str  # the agency id, or the auditor's name
    name: str
    user: str | None  # None: a token of the first schema, or one issued without --user
    expires_at: datetime | None


class InvalidValue(ServiceError):
    code = "invalid_value"


class TokenUnknown(ServiceError):
    code = "token_unknown"


class TokenRefused(Exception):
    """A presented token that does not authenticate: ``reason`` is ``unknown``,
    ``expired`` or ``revoked`` (the message says which, and nothing about the holder)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class IssuedToken:
    token_id: str
    token: str  # shown once; only its hash is stored
    expires_at: datetime | None


class TokenService:
    """Bearer tokens: only their SHA-256 is stored, with who holds them, when they
    were made, when they expire, when they were last used and whether they are
    revoked. Revoking (or changing a token row in any way but its last use) bumps
    ``HubStore.tokens_version``, which every API process polls."""

    def __init__(
        self,
        store: HubStore,
        registry: AgencyRegistry,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._registry = registry
        self._clock = clock

    def issue_agency_token(
        self, agency_id: str, *, user: str | None = None, expires_at: datetime | None = None
    ) -> str:
        return self.issue_for_agency(agency_id, user=user, expires_at=expires_at).token

    def issue_auditor_token(
        self, name: str, *, user: str | None = None, expires_at: datetime | None = None
    ) -> str:
        return self.issue_for_auditor(name, user=user, expires_at=expires_at).token

    def issue_for_agency(
        self, agency_id: str, *, user: str | None = None, expires_at: datetime | None = None
    ) -> IssuedToken:
        agency = self._registry.get(agency_id)
        return self._issue("agency", agency_id, agency["name"], user, expires_at)

    def issue_for_auditor(
        self, name: str, *, user: str | None = None, expires_at: datetime | None = None
    ) -> IssuedToken:
        return self._issue("auditor", name, name, user, expires_at)

    def _issue(
        self, role: str, subject: str, name: str, user: str | None, expires_at: datetime | None
    ) -> IssuedToken:
        if user is not None and not USER_ID_PATTERN.match(user):
            raise InvalidValue("a user id is 1-64 of A-Z, a-z, 0-9, '.', '_', '@', '-'")
        now = self._clock()
        if expires_at is not None and expires_at <= now:
            raise InvalidValue("the expiry must lie in the future")
        token = new_token()
        token_id = "tok_" + secrets.token_hex(6)
        self._store.insert_token(
            TokenRecord(
                token_id=token_id,
                role=role,
                subject=subject,
                name=name,
                token_hash=hash_token(token),
                user=user,
                created_at=now,
                expires_at=expires_at,
            )
        )
        return IssuedToken(token_id, token, expires_at)

    def authenticate(self, token: str) -> TokenHolder:
        """Who holds ``token``; ``TokenRefused`` when no one does, or no longer. A
        use is recorded at most once per ``TOUCH_EVERY``."""
        presented = hash_token(token)
        record = self._store.find_token(presented)
        # Only hashes are stored and looked up; the final comparison is constant-time.
        if record is None or not hmac.compare_digest(record.token_hash, presented):
            raise TokenRefused("unknown")
        now = self._clock()
        if record.revoked_at is not None:
            raise TokenRefused("revoked")
        if record.expires_at is not None and record.expires_at <= now:
            raise TokenRefused("expired")
        if record.last_used_at is None or now - record.last_used_at >= TOUCH_EVERY:
            self._touch(record.token_id, now)
        return TokenHolder(
            token_id=record.token_id,
            role=record.role,
            subject=record.subject,
            name=record.name,
            user=record.user,
            expires_at=record.expires_at,
        )

    def _touch(self, token_id: str, now: datetime) -> None:
        try:
            self._store.touch_token(token_id, now, unless_after=now - TOUCH_EVERY)
        except Exception as error:  # the last use is information; the caller is valid
            log.warning("token_use_not_recorded", token_id=token_id, error=type(error).__name__)

    def version(self) -> int:
        return self._store.tokens_version()

    def all(self) -> list[dict[str, Any]]:
        """Every token (oldest first), never the token or its hash."""
        records = sorted(
            self._store.list_tokens(),
            key=lambda r: (r.created_at or datetime.min.replace(tzinfo=UTC), r.token_id),
        )
        return [_token_row(record, self._clock()) for record in records]

    def revoke(self, token_id: str) -> tuple[dict[str, Any], bool]:
        """Revoke ``token_id``: its row as ``all`` shows it, and whether this call
        revoked it (False: it already was, and stays as it was)."""
        unknown = TokenUnknown(f"no token has the id {token_id!r} (see hub token list)")
        before = self._store.find_token_by_id(token_id)
        if before is None:
            raise unknown
        if before.revoked_at is not None:
            return _token_row(before, self._clock()), False
        self._store.revoke_token(token_id, self._clock())
        after = self._store.find_token_by_id(token_id)
        if after is None:  # deleted meanwhile, by hand
            raise unknown
        return _token_row(after, self._clock()), True


def _token_row(record: TokenRecord, now: datetime) -> dict[str, Any]:
    def moment(value: datetime | None) -> str | None:
        return None if value is None else value.isoformat(timespec="seconds")

    if record.revoked_at is not None:
        state = "revoked"
    elif record.expires_at is not None and record.expires_at <= now:
        state = "expired"
    else:
        state = "active"
    return {
        "token_id": record.token_id,
        "role": record.role,
        "subject": record.subject,
        "user": record.user,
        "created_at": moment(record.created_at),
        "expires_at": moment(record.expires_at),
        "last_used_at": moment(record.last_used_at),
        "revoked_at": moment(record.revoked_at),
        "state": state,
    }


class CaseLocks:
    """One lock per case inside this process, striped: a fixed number of locks (memory
    does not grow with the cases), two cases sharing a stripe merely wait for each
    other. Holding a case's lock from load to save means writers in this process
    never conflict; the optimistic retry remains for other processes. A writer
    that waits longer than ``wait_seconds`` goes ahead optimistically rather than
    hold a worker thread without bound."""

    def __init__(self, stripes: int = 1024, wait_seconds: float = 10.0) -> None:
        self._locks = [threading.Lock() for _ in range(stripes)]
        self._wait = wait_seconds

    @contextmanager
    def held(self, case_id: UUID) -> Iterator[None]:
        lock = self._locks[case_id.int % len(self._locks)]
        acquired = lock.acquire(timeout=self._wait)
        if not acquired:
            log.warning("case_lock_wait_exceeded", case_id=str(case_id), seconds=self._wait)
        try:
            yield
        finally:
            if acquired:
                lock.release()


class MessageService:
    """Records one handover message: validate, load the case, decide, save."""

    def __init__(
        self,
        app: HubApplication,
        registry: AgencyRegistry,
        policy_book: PolicyBook,
        *,
        retries: int = 20,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_recorded: Callable[[], None] = lambda: None,
        cipher: FieldCipher | None = None,
    ) -> None:
        self._on_recorded = on_recorded
        self._cipher = cipher
        self._app = app
        self._registry = registry
        self._policy_book = policy_book
        self._retries = retries
        self._sleep = sleep
        self._clock = clock  # the hub's clock decides (rule 4); tests may set it
        self._case_locks = CaseLocks()

    def record_raw(self, raw: bytes | str | dict[str, Any]) -> dict[str, Any]:
        """Parse (``MessageInvalid`` on bad input) and record."""
        return self.record(parse_message(raw))

    def record(self, message: Message, *, as_auditor: bool = False) -> dict[str, Any]:
        with self._case_locks.held(message.case_id):
            return self._record(message, as_auditor=as_auditor)

    def _record(self, message: Message, *, as_auditor: bool) -> dict[str, Any]:
        bound = log.bind(
            message_id=str(message.message_id),
            case_id=str(message.case_id),
            message_type=message.type,
            agency=message.agency,
        )
        if as_auditor and (message.type != "participant.erased" or message.agency != AUDITOR):
            raise NotAllowed(f"auditors send only participant.erased, with agency {AUDITOR!r}")
        erasing = message.type == "participant.erased"
        key_id = case_key_id(str(message.case_id))
        protected: Message | None = None
        body_hash = message_body_hash(message)  # before encryption, which is randomised
        if self._app.store.legacy_receipts:  # their NULL agency cannot stop a second insert
            duplicate = self._duplicate(message, body_hash)
            if duplicate is not None:
                return duplicate
        for attempt in range(self._retries + 1):
            case: Case | None = None
            try:
                case, received = self._load_for(message, as_auditor=as_auditor)
                # Encrypted once the case is known to exist, so unknown ids make no keys.
                protected = protected or self._protect(message)
                case = self._decide(case, protected, received, as_auditor=as_auditor)
            except (DomainError, AgencyUnknown, CaseNotFound, ParticipantErased) as refusal:
                return self._refused(refusal, case, message, body_hash, as_auditor=as_auditor)
            receipt = Receipt(
                message_id=message.message_id,
                case_id=message.case_id,
                message_type=message.type,
                handover_id=_handover_id(message),
                case_version=case.version,
                agency=message.agency,
                body_hash=body_hash,
            )
            try:
                recordings = self._save(case, receipt, destroy_key=key_id if erasing else None)
            except IntegrityError:
                # Either this message's receipt exists (a duplicate, perhaps sent at
                # the same moment through another process) or another process wrote
                # to the case first (a conflict: load again).
                duplicate = self._duplicate(message, body_hash)
                if duplicate is not None:
                    return duplicate
                bound.debug("concurrency_conflict", attempt=attempt)
                self._sleep(random.uniform(0, 0.002 * (attempt + 1)))  # noqa: S311 - jitter
                continue
            except PersistenceError:
                # Any other store failure, after the library's own retries: still a
                # duplicate if the receipt is there; else the store's failure (a 500).
                duplicate = self._duplicate_if_readable(message, body_hash)
                if duplicate is not None:
                    return duplicate
                raise
            position = recordings[-1].notification.id if recordings else None
            result = {**replace(receipt, position=position).to_result(), "duplicate": False}
            bound.info("message_recorded", position=position)
            if erasing and self._cipher is not None:
                self._cipher.forget(key_id)
                bound.info("participant_key_destroyed")
            self._on_recorded()
            return result
        bound.warning("concurrency_conflict_exhausted", attempts=self._retries + 1)
        raise ConcurrencyConflict(
            f"case {message.case_id} kept changing; gave up after "
            f"{self._retries + 1} attempts, send the message again"
        )

    def _refused(
        self,
        refusal: DomainError | AgencyUnknown | CaseNotFound | ParticipantErased,
        case: Case | None,
        message: Message,
        body_hash: str,
        *,
        as_auditor: bool,
    ) -> dict[str, Any]:
        """The answer to a refused message: the first answer if it is a repeat (a
        repeat is judged against the case as it is now), else the refusal raised."""
        duplicate = self._duplicate(message, body_hash)
        if duplicate is not None:
            return duplicate
        bound = log.bind(
            message_id=str(message.message_id),
            case_id=str(message.case_id),
            message_type=message.type,
            agency=message.agency,
        )
        if _hidden_from(case, message, as_auditor=as_auditor):
            # Whatever the rule, an outsider learns only what an unknown id tells it
            # (issue 13, finding 6); the log keeps the rule's code.
            bound.info("message_refused", code=refusal.code, answered="case_not_found")
            raise _unknown_case(message.case_id) from None
        bound.info("message_refused", code=refusal.code)
        if isinstance(refusal, ParticipantErased):
            raise ParticipantDataErased(refusal.args[0]) from None
        raise refusal

    def _save(self, case: Case, receipt: Receipt, *, destroy_key: str | None) -> Any:
        if destroy_key is not None:  # the key goes in the same transaction as the erasure
            return self._app.save(case, receipt=receipt, destroy_key=destroy_key)
        return self._app.save(case, receipt=receipt)

    def _protect(self, message: Message) -> Message:
        """Encrypt the fields marked ``Personal`` before they reach the domain and the store."""
        cipher = self._cipher
        if cipher is None:
            return message
        key_id = case_key_id(str(message.case_id))
        payload = seal_personal(message.payload, lambda text: cipher.encrypt(key_id, text))
        if payload is message.payload:
            return message
        return message.model_copy(update={"payload": payload})

    def record_read(
        self,
        case_id: UUID | None,
        *,
        agency: str,
        actor: str,
        role: str,
        scope: str,
        categories: list[str] | None = None,
        user: str | None = None,
        target: str | None = None,
        case_known: bool = False,
    ) -> int | None:
        """Record a read in its own stream (``domain.reads``): the case's reads, or
        the day's for an inbox, caseload or dashboard (``case_id`` None). The case is
        not loaded: a read costs the same however long the case is, and never
        conflicts with a write. A read of an unknown case is refused (``CaseNotFound``)
        and never recorded: a caller that has just loaded the case says so
        (``case_known``) and spares the store that look. Returns the read event's
        position."""
        now = self._clock()
        if case_id is not None:
            if not case_known and not self._app.recorder.select_events(case_id, limit=1):
                raise CaseNotFound(f"case {case_id} does not exist")
            stream = case_reads_id(case_id)
        else:
            stream = daily_reads_id(now.date())
        for attempt in range(self._retries + 1):
            last = self._app.recorder.select_events(stream, desc=True, limit=1)
            read = ReadRecorded(
                originator_id=stream,
                originator_version=last[0].originator_version + 1 if last else 1,
                timestamp=now,
                case_id=case_id,
                agency=agency,
                actor=actor,
                user=user,
                role=role,
                scope=scope,
                target=target,
                categories=sorted(set(categories or [])),
                occurred_at=now,
            )
            try:
                recordings = self._app.save(read)
            except IntegrityError:  # another read took that version: take the next
                self._sleep(random.uniform(0, 0.002 * (attempt + 1)))  # noqa: S311 - jitter
                continue
            self._on_recorded()
            log.info(
                "read_recorded", case_id=str(case_id) if case_id else None, role=role, scope=scope
            )
            return recordings[-1].notification.id
        raise ConcurrencyConflict("too many reads at once; the read was not recorded")

    def _load_for(
        self, message: Message, *, as_auditor: bool
    ) -> tuple[Case | None, commands.Received]:
        kinds: dict[str, AgencyKind] = {}
        for agency_id in sorted(commands.referenced_agencies(message)):
            if as_auditor and agency_id == message.agency:
                continue
            kind = self._registry.kind_of(agency_id)
            if kind is None:
                raise AgencyUnknown(f"agency {agency_id} is not registered", agency=agency_id)
            kinds[agency_id] = kind
        # The hub's clock at reception, read after the registry and before the case:
        # what the domain checks consents and skew against.
        received = commands.Received(at=self._clock(), kinds=kinds)
        case = self._load(message.case_id)
        if case is None and message.type != "case.opened":
            raise _unknown_case(message.case_id)
        return case, received

    def _decide(
        self,
        case: Case | None,
        message: Message,
        received: commands.Received,
        *,
        as_auditor: bool,
    ) -> Case:
        if case is None:
            return commands.open_case(message, self._policy_book, received)
        commands.apply_to_case(case, message, self._policy_book, received, as_auditor=as_auditor)
        return case

    def _load(self, case_id: UUID) -> Case | None:
        try:
            aggregate = self._app.load(case_id)
        except AggregateNotFoundError:
            return None
        if not isinstance(aggregate, Case):
            raise CaseNotFound(f"case {case_id} does not exist")
        return aggregate

    def _duplicate_if_readable(self, message: Message, body_hash: str) -> dict[str, Any] | None:
        """``_duplicate``, or None when the store cannot even be read."""
        try:
            return self._duplicate(message, body_hash)
        except PersistenceError:
            return None

    def _duplicate(self, message: Message, body_hash: str) -> dict[str, Any] | None:
        receipt = self._app.store.find_receipt(message.message_id, message.agency)
        if receipt is None:
            return None
        if receipt.body_hash is not None and receipt.body_hash != body_hash:
            log.info("message_id_reused", message_id=str(message.message_id), agency=message.agency)
            raise MessageIdReused(
                f"message_id {message.message_id} was already used by agency "
                f"{message.agency} for another message; send a new message with a new "
                "message_id",
                message_id=str(message.message_id),
            )
        log.info(
            "message_duplicate",
            message_id=str(message.message_id),
            case_id=str(receipt.case_id),
        )
        return {**receipt.to_result(), "duplicate": True}


def _unknown_case(case_id: UUID) -> CaseNotFound:
    return CaseNotFound(f"case {case_id} does not exist")


def _hidden_from(case: Case | None, message: Message, *, as_auditor: bool) -> bool:
    """Whether the sender must not learn that this case exists: an agency not involved
    in it (rule 7), refused whatever the rule. Not for ``case.opened`` (an existing
    id is refused as ``case_exists``: the opener chose the id), nor for auditors."""
    return (
        case is not None
        and not as_auditor
        and message.type != "case.opened"
        and message.agency not in case.involved_agencies
    )


def message_body_hash(message: Message) -> str:
    """SHA-256 (hex) of the parsed message as canonical JSON: pydantic's JSON-mode
    dump without fields at their default (so an explicit default and an omitted one
    hash alike, and so do repeats across a schema version adding a defaulted field),
    keys sorted, no spaces, non-ASCII escaped. Taken before personal fields are
    encrypted (encryption is randomised); only the hash is stored."""
    plain = message.model_dump(mode="json", exclude_defaults=True)
    canonical = json.dumps(plain, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _handover_id(message: Message) -> UUID | None:
    payload = message.payload
    return getattr(payload, "new_handover_id", None) or getattr(payload, "handover_id", None)
