"""Group commit: concurrent writes share one transaction, each answered by its own outcome.

A writer hands its write to ``GroupCommitter.submit`` and blocks. One writer at a
time leads: it takes the writes queued so far (at most ``max_size``), has them
committed together by the store's ``commit`` function, hands every writer its own
outcome (a result or an exception), and steps down; a writer still queued then
leads the next group. Writes queue while a group commits, so the groups grow with
the load by themselves and a lone writer never waits. Under load (the last group
had company) the leader also waits up to ``window_s`` for more writes before it
commits; alone it commits at once.

Store-agnostic: ``commit`` receives the writes in order and answers one outcome per
write, in the same order; an exception it raises is every member's outcome.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar, cast

T = TypeVar("T")
R = TypeVar("R")

# Writes per group at most. On PostgreSQL each is a subtransaction; past 64 in one
# transaction the server's cache of them overflows and every snapshot slows.
MAX_GROUP = 32


class _Member(Generic[T]):
    __slots__ = ("done", "error", "item", "result")

    def __init__(self, item: T) -> None:
        self.item = item
        self.done = False
        self.result: object = None
        self.error: BaseException | None = None


class GroupCommitter(Generic[T, R]):
    def __init__(
        self,
        commit: Callable[[Sequence[T]], Sequence[R | BaseException]],
        *,
        window_s: float,
        max_size: int = MAX_GROUP,
    ) -> None:
        if window_s < 0 or max_size < 1:
            raise ValueError("window_s >= 0 and max_size >= 1")
        self._commit = commit
        self._window = window_s
        self._max = max_size
        self._cond = threading.Condition()
        self._queue: list[_Member[T]] = []
        self._leading = False
        self._last_size = 0
        self.groups = 0  # committed groups (for tests and the bench)
        self.members = 0  # writes in them

    def submit(self, item: T) -> R:
        member = _Member(item)
        with self._cond:
            self._queue.append(member)
            if len(self._queue) >= self._max:
                self._cond.notify_all()  # a waiting leader need wait no longer
            while True:
                while not member.done and self._leading:
                    self._cond.wait()
                if member.done:
                    break
                self._leading = True
                try:
                    self._lead()
                finally:
                    self._leading = False
                    self._cond.notify_all()
        if member.error is not None:
            raise member.error
        return cast(R, member.result)

    def _lead(self) -> None:
        """Called holding the condition's lock, released while waiting and committing."""
        if self._window and self._last_size > 1 and len(self._queue) < self._max:
            deadline = time.monotonic() + self._window
            while len(self._queue) < self._max:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
        group = self._queue[: self._max]
        del self._queue[: self._max]
        self._last_size = len(group)
        self._cond.release()
        try:
            try:
                outcomes: Sequence[R | BaseException] = self._commit([m.item for m in group])
                if len(outcomes) != len(group):
                    raise AssertionError("one outcome per write")
            except BaseException as error:  # every member's, and the leader's own
                outcomes = [error, *(_copy(error) for _ in group[1:])]
        finally:
            self._cond.acquire()
        for m, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                m.error = outcome
            else:
                m.result = outcome
            m.done = True
        self.groups += 1
        self.members += len(group)


def _copy(error: BaseException) -> BaseException:
    """An exception of the same type and arguments for another thread to raise (one
    object raised in several threads would share, and tangle, its traceback)."""
    try:
        copy = type(error)(*error.args)
    except Exception:
        return error
    copy.__cause__ = error
    return copy


# A recorder's group member: the stored events and the keyword arguments of its
# ``insert_events`` (receipt, key to destroy).
Write = tuple[Sequence[Any], dict[str, Any]]


class GroupCommitting:
    """What both recorders share: ``use_group_commit`` switches grouping on (a window
    in ms; 0 off) for a recorder whose ``_commit_group`` commits a group's writes."""

    _group: GroupCommitter[Write, Sequence[int] | None] | None = None

    def _commit_group(self, writes: Sequence[Write]) -> list[Sequence[int] | Exception | None]:
        raise NotImplementedError

    def use_group_commit(self, window_ms: float, max_size: int = MAX_GROUP) -> None:
        """Concurrent ``insert_events`` calls share one transaction: the events' table
        lock (PostgreSQL) and the commit, with its sync of the log to disk, are paid
        once per group. ``window_ms`` 0 turns it off; else, under load, a group waits
        up to that long for company."""
        if window_ms < 0:
            raise ValueError("window_ms is 0 (off) or a number of milliseconds")
        self._group = (
            GroupCommitter(self._commit_group, window_s=window_ms / 1000, max_size=max_size)
            if window_ms
            else None
        )

    @property
    def group_committer(self) -> GroupCommitter[Write, Sequence[int] | None] | None:
        return self._group
