"""Who did something, as which kind of agency, and when on both clocks (DOMAIN rule 4)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from domain import errors
from domain.values import AgencyKind

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Act:
    """One agency's act as the hub received it.

    ``recorded_at`` is the hub's clock at reception; ``kinds`` the registered kinds
    of the acting agency and of every agency the act names (roles follow kinds).
    The application service always fills both; ``recorded_at`` left out means
    "now is when it happened" (pure-domain use: builders, benchmarks).
    """

    agency: str
    actor: str
    occurred_at: datetime
    recorded_at: datetime | None = None
    kinds: Mapping[str, AgencyKind] = field(default_factory=dict)
    # How far the agency's clock may run ahead of the hub's (policy: clock).
    future_skew: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        require_timezone(self.occurred_at, self.recorded_at)
        require_in_range(self.occurred_at)
        if self.occurred_at > self.hub_time + self.future_skew:
            raise errors.OccurredInFuture(
                "occurred_at lies in the future by the hub's clock",
                allowed_skew_seconds=int(self.future_skew.total_seconds()),
            )

    @property
    def hub_time(self) -> datetime:
        return self.recorded_at if self.recorded_at is not None else self.occurred_at

    @property
    def moments(self) -> tuple[datetime, ...]:
        """Both clocks: a disclosure needs its basis valid at each (rule 4)."""
        if self.recorded_at is None or self.recorded_at == self.occurred_at:
            return (self.occurred_at,)
        return (self.occurred_at, self.recorded_at)

    def is_late(self, after: timedelta) -> bool:
        return self.hub_time - self.occurred_at > after

    def kind_of(self, agency: str) -> AgencyKind | None:
        return self.kinds.get(agency)

    def not_before(self, moment: datetime | None, what: str) -> None:
        """Refuse an act dated before the step it answers."""
        if moment is not None and self.occurred_at < moment:
            raise errors.OccurredTooEarly(f"occurred_at lies before {what}")


def require_timezone(*moments: datetime | None) -> None:
    if any(m is not None and m.tzinfo is None for m in moments):
        raise errors.InvalidValue("times must carry a timezone")


def require_in_range(*moments: datetime | None) -> None:
    """Dates outside 1900-2200 are typing errors (and would overflow deadline sums)."""
    for moment in moments:
        if moment is not None and not EARLIEST <= moment < LATEST:
            raise errors.InvalidValue("times must lie between 1900 and 2200")
