"""Group commit (issue 14, item 3): concurrent writes share one transaction (on
PostgreSQL the events' table lock and the commit paid once, on SQLite the commit and
its sync), and each write is still answered on its own: its own positions, its own
duplicate, its own conflict.

Most tests run on both stores; those that count the transactions (by the rows'
command ids) and the lock's timeout are PostgreSQL's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, OperationalError, StoredEvent
from psycopg import sql

from domain.case import Act
from services.application import MessageService
from services.bootstrap import Hub, build_hub
from services.settings import Settings
from services.store import Receipt
from services.store.group_commit import GroupCommitter
from tests import factories as f
from tests.conftest import POSTGRES_URL

JC = "jc-test"
THREADS = 12


def _together(n: int, work: Callable[[int], None]) -> None:
    """``work(i)`` for i < n in n threads released at once; their errors re-raised."""
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            work(i)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    if errors:
        raise errors[0]


def _note(case_id: UUID, text: str = "note", **kw: Any) -> dict[str, Any]:
    return f.message("note.added", JC, case_id, {"text": text, "category": "notes"}, **kw)


def _open_cases(hub: Hub, n: int) -> list[UUID]:
    if not hub.registry.exists(JC):
        hub.registry.register(JC, "jobcenter", "Jobcenter Test")
    cases = [uuid4() for _ in range(n)]
    for case_id in cases:
        hub.messages.record_raw(f.opened(JC, case_id))
    return cases


def _positions(hub: Hub) -> list[int]:
    return [n.id for n in hub.app.recorder.select_notifications(1, 100_000)]


# ---- the committer alone (no store) ----------------------------------------------------


def test_the_committer_answers_each_write_with_its_own_outcome() -> None:
    sizes: list[int] = []
    release = threading.Event()

    def commit(items: Sequence[int]) -> list[int | BaseException]:
        sizes.append(len(items))
        release.wait(5)  # the first group holds the rest back: they queue together
        return [ValueError(i) if i % 3 == 0 else i * 10 for i in items]

    committer: GroupCommitter[int, int] = GroupCommitter(commit, window_s=0.05, max_size=8)
    answers: dict[int, object] = {}

    def submit(i: int) -> None:
        try:
            answers[i] = committer.submit(i)
        except ValueError as error:
            answers[i] = error

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    release.set()
    for thread in threads:
        thread.join(timeout=10)
    for i in range(20):
        answer = answers[i]
        if i % 3 == 0:
            assert isinstance(answer, ValueError)
            assert answer.args == (i,)
        else:
            assert answer == i * 10
    assert sum(sizes) == 20 == committer.members
    assert max(sizes) <= 8
    assert len(sizes) < 20  # they did share


def test_a_failed_commit_is_every_writes_error_and_a_lone_write_never_waits() -> None:
    def commit(items: Sequence[int]) -> list[int | BaseException]:
        raise RuntimeError("the commit failed")

    committer: GroupCommitter[int, int] = GroupCommitter(commit, window_s=1.0)
    failures: list[BaseException] = []

    def submit(i: int) -> None:
        try:
            committer.submit(i)
        except RuntimeError as error:
            failures.append(error)

    _together(6, submit)
    assert len(failures) == 6
    assert all(str(f) == "the commit failed" for f in failures)
    lone: GroupCommitter[int, int] = GroupCommitter(list, window_s=1.0)
    began = time.perf_counter()
    assert lone.submit(7) == 7
    assert time.perf_counter() - began < 0.5  # alone: no window


# ---- both stores ---------------------------------------------------------------------


def test_concurrent_writers_each_get_their_own_position_and_none_is_skipped(hub: Hub) -> None:
    cases = _open_cases(hub, THREADS)
    answers: dict[int, list[dict[str, Any]]] = {i: [] for i in range(THREADS)}

    def write(i: int) -> None:
        for n in range(8):
            answers[i].append(hub.messages.record_raw(_note(cases[i], f"n{n}")))

    _together(THREADS, write)
    mine = [a["position"] for i in range(THREADS) for a in answers[i]]
    assert len(mine) == len(set(mine)) == THREADS * 8
    for i in range(THREADS):  # each answer names its own event
        for answer in answers[i]:
            (event,) = hub.app.recorder.select_notifications(answer["position"], 1)
            assert event.originator_id == cases[i]
            assert answer["duplicate"] is False
    log = _positions(hub)
    assert log == list(range(1, len(log) + 1))  # no gap: nothing failed, nothing skipped
    assert all(len(hub.app.store.select_case_events(c)) == 9 for c in cases)


def test_a_repeat_among_concurrent_writers_is_a_duplicate_and_fails_no_other(hub: Hub) -> None:
    cases = _open_cases(hub, THREADS)
    repeated = _note(cases[0], "once")
    answers: list[dict[str, Any]] = []

    def write(i: int) -> None:
        if i % 2 == 0:
            answers.append(hub.messages.record_raw(repeated))
        else:
            answers.append(hub.messages.record_raw(_note(cases[i], "other")))

    _together(THREADS, write)
    firsts = [a for a in answers if a["message_id"] == repeated["message_id"]]
    assert sorted(a["duplicate"] for a in firsts) == [False] + [True] * (THREADS // 2 - 1)
    assert len({a["position"] for a in firsts}) == 1  # every repeat names the first's event
    others = [a for a in answers if a["message_id"] != repeated["message_id"]]
    assert len(others) == THREADS // 2
    assert not any(a["duplicate"] for a in others)
    assert len(hub.app.store.select_case_events(cases[0])) == 2
    assert all(len(hub.app.store.select_case_events(c)) == 2 for c in cases[1::2])


def test_two_services_writing_one_case_conflict_retry_and_all_land(hub: Hub) -> None:
    """Two ``MessageService`` over one store have their own ``CaseLocks``, as two
    processes do: their writes to one case conflict, one is retried, none is lost."""
    (case_id,) = _open_cases(hub, 1)
    conflicts: list[float] = []

    def sleep(seconds: float) -> None:  # called by the service on each conflict
        conflicts.append(seconds)

    services = [
        MessageService(hub.app, hub.registry, hub.settings.policy_book, sleep=sleep, retries=200)
        for _ in range(4)
    ]

    def write(i: int) -> None:
        for n in range(10):
            services[i].record_raw(_note(case_id, f"s{i}-{n}"))

    _together(len(services), write)
    assert len(hub.app.store.select_case_events(case_id)) == 1 + 4 * 10
    assert conflicts, "the four services never met; the test proves nothing"
    hub.messages.record_raw(_note(case_id, "after"))  # the store is still usable


# ---- PostgreSQL: one transaction per group ---------------------------------------------


@pytest.fixture
def pg_hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Hub]:
    request.getfixturevalue("postgres_url")
    schema = f"test_{uuid4().hex[:16]}"
    url = f"{POSTGRES_URL}?schema={schema}"
    window = getattr(request, "param", 200.0)  # long: concurrent writes surely meet
    built = build_hub(Settings(database_url=url, var_dir=tmp_path / "var", group_commit_ms=window))
    try:
        yield built
    finally:
        built.close()
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            for name in (schema, f"{schema}_keys"):
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
                )


def _transactions(hub: Hub, positions: list[int]) -> int:
    """How many transactions wrote the one-event writes at ``positions``.

    A row's ``cmin`` is "the command identifier (starting at zero) within the
    inserting transaction" (PostgreSQL's system columns): a write alone inserts its
    receipt (command 0) then its event (1); in a shared transaction the next write's
    commands come after the first's (2, 3; then 4, 5 ...). So the events at the lowest
    command id are those of the first write of each transaction. (``xmin`` cannot
    tell: a write inside a savepoint has its subtransaction's id.)"""
    recorder: Any = hub.app.recorder
    with recorder.datastore.transaction(commit=False) as curs:
        curs.execute(
            sql.SQL(
                "WITH e AS (SELECT cmin::text::int AS command FROM {}.{} "
                "WHERE notification_id = ANY(%s)) "
                "SELECT count(*) AS n FROM e WHERE command = (SELECT min(command) FROM e)"
            ).format(
                sql.Identifier(recorder.datastore.schema),
                sql.Identifier(recorder.events_table_name),
            ),
            (positions,),
        )
        row = curs.fetchone()
    assert row is not None
    return int(row["n"])


@pytest.mark.postgres
def test_concurrent_writes_share_a_transaction(pg_hub: Hub) -> None:
    cases = _open_cases(pg_hub, THREADS)
    positions: list[int] = []

    def write(i: int) -> None:
        for n in range(3):
            positions.append(pg_hub.messages.record_raw(_note(cases[i], f"n{n}"))["position"])

    _together(THREADS, write)
    assert len(set(positions)) == 3 * THREADS
    transactions = _transactions(pg_hub, positions)
    # One transaction per write before group commit: 36. With a 200 ms window, writes
    # released together meet; a handful of groups is plenty of margin.
    assert transactions <= THREADS, f"{transactions} transactions for {3 * THREADS} writes"


@pytest.mark.postgres
@pytest.mark.parametrize("pg_hub", [0.0], indirect=True)
def test_off_means_a_transaction_per_write(pg_hub: Hub) -> None:
    """The measure above can tell: with group commit off every write is its own."""
    cases = _open_cases(pg_hub, 4)
    positions: list[int] = []
    _together(
        4, lambda i: positions.append(pg_hub.messages.record_raw(_note(cases[i]))["position"])
    )
    assert _transactions(pg_hub, positions) == 4
    assert pg_hub.app.recorder.group_committer is None  # type: ignore[attr-defined]


def _write(
    hub: Hub,
    case_id: UUID,
    *,
    message_type: str | None = "note.added",
    message_id: UUID | None = None,
    destroy_key: str | None = None,
) -> tuple[list[StoredEvent], dict[str, Any]]:
    """A note's events and receipt, as ``MessageService`` would save them."""
    case = hub.app.repository.get(case_id)
    case.add_note(Act(agency=JC, actor="user-1", occurred_at=f.T0), text="direct", category="notes")
    stored = [hub.app.mapper.to_stored_event(e) for e in case.collect_events()]
    receipt = Receipt(
        message_id=message_id or uuid4(),
        case_id=case_id,
        message_type=message_type,  # type: ignore[arg-type]  # None: a NOT NULL violated
        handover_id=None,
        case_version=case.version,
        agency=JC,
        body_hash="test",
    )
    kwargs: dict[str, Any] = {"receipt": receipt}
    if destroy_key is not None:
        kwargs["destroy_key"] = destroy_key
    return stored, kwargs


def test_a_failing_member_is_answered_alone_and_the_others_commit(hub: Hub) -> None:
    """One group, as the committer hands it to the store: a concurrent version, a
    repeated receipt and a violated constraint each get their own IntegrityError and
    leave nothing behind (not even the key a refused erasure would have destroyed);
    the other writes commit together, in write order."""
    a, b, c, d = _open_cases(hub, 4)
    repeat_id = uuid4()
    writes = [
        _write(hub, a),
        _write(hub, a),  # the same version of case a: a concurrent write
        _write(hub, b, message_id=repeat_id),
        _write(hub, c, message_id=repeat_id, destroy_key="key-refused"),  # a repeat
        _write(hub, c, message_type=None),  # NOT NULL violated
        _write(hub, d, destroy_key="key-destroyed"),
    ]
    recorder: Any = hub.app.recorder
    head = recorder.max_notification_id()
    outcomes = recorder._commit_group(writes)
    assert [type(o) for o in outcomes[1:5:2]] == [IntegrityError, IntegrityError]
    assert isinstance(outcomes[4], IntegrityError)
    accepted = [outcomes[0], outcomes[2], outcomes[5]]
    assert all(isinstance(ids, list) and len(ids) == 1 for ids in accepted)
    positions = [ids[0] for ids in accepted]
    assert positions[0] == head + 1
    assert sorted(positions) == positions
    # PostgreSQL's sequence gave the conflict's rolled-back insert head + 2; SQLite
    # numbers rows by the largest rowid, so none is skipped there.
    assert positions[2] == positions[1] + 1
    assert [len(hub.app.store.select_case_events(x)) for x in (a, b, c, d)] == [2, 2, 1, 2]
    assert hub.app.store.load_key("key-refused") is None
    assert hub.app.store.load_key("key-destroyed") == (None, True)
    if not hub.settings.is_sqlite:
        assert _transactions(hub, positions) == 1
    # The connections are fine afterwards: the pool's five, each used again.
    _together(10, lambda i: hub.messages.record_raw(_note((a, b, c)[i % 3])))
    assert [len(hub.app.store.select_case_events(x)) for x in (a, b, c)] == [6, 5, 4]


@pytest.mark.postgres
def test_a_failed_transaction_is_every_members_error(pg_hub: Hub) -> None:
    """When the transaction itself fails (here the table lock times out), no member
    is written and each gets the error."""
    (a,) = _open_cases(pg_hub, 1)
    recorder: Any = pg_hub.app.recorder
    (b,) = _open_cases(pg_hub, 1)
    writes = [_write(pg_hub, a), _write(pg_hub, b)]
    schema = recorder.datastore.schema
    lock_statements = list(recorder.lock_table_statements)
    recorder.lock_table_statements[0] = sql.SQL("SET LOCAL lock_timeout = '0.5s'")
    with psycopg.connect(POSTGRES_URL, autocommit=True) as other, other.transaction():
        other.execute(
            sql.SQL("LOCK TABLE {}.{} IN EXCLUSIVE MODE").format(
                sql.Identifier(schema), sql.Identifier(recorder.events_table_name)
            )
        )
        try:
            with pytest.raises(OperationalError) as raised:
                recorder._commit_group(writes)
        finally:
            recorder.lock_table_statements[:] = lock_statements
    assert "lock" in str(raised.value).lower()
    assert [len(pg_hub.app.store.select_case_events(x)) for x in (a, b)] == [1, 1]
    pg_hub.messages.record_raw(_note(a))  # and the next write is fine


@pytest.mark.postgres
def test_a_line_cut_under_group_commit_loses_and_doubles_nothing(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The database's line dropped while groups commit: every write is answered (the
    library's retries, or an error), no thread hangs, and sending the messages again
    leaves each exactly once."""
    from urllib.parse import urlparse, urlunparse

    from tests.tcp_proxy import TcpProxy

    request.getfixturevalue("postgres_url")
    schema = f"test_{uuid4().hex[:16]}"
    parts = urlparse(f"{POSTGRES_URL}?schema={schema}")
    proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    url = urlunparse(parts._replace(netloc=f"{parts.username}@{proxy.address}"))
    hub = build_hub(Settings(database_url=url, var_dir=tmp_path / "var"))
    try:
        cases = _open_cases(hub, 8)
        notes = {i: [_note(cases[i], f"n{n}") for n in range(30)] for i in range(8)}
        failed: list[dict[str, Any]] = []

        def write(i: int) -> None:
            for n, note in enumerate(notes[i]):
                if i == 0 and n == 10:
                    proxy.refuse()  # every connection dropped, for a second
                    threading.Timer(1.0, proxy.forward).start()
                try:
                    hub.messages.record_raw(note)
                except Exception:  # a store failure after the retries: sent again below
                    failed.append(note)

        _together(8, write)
        for note in failed:
            hub.messages.record_raw(note)
        assert [len(hub.app.store.select_case_events(c)) for c in cases] == [31] * 8
        log = _positions(hub)
        assert len(log) == len(set(log))
    finally:
        proxy.cut()
        hub.close()
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            for name in (schema, f"{schema}_keys"):
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
                )
