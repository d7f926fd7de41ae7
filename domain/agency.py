"""The ``Agency`` aggregate: the registry entry of one agency (id, kind, name)."""

from __future__ import annotations

from datetime import datetime
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain import errors
from domain.values import AgencyKind

_AGENCY_NAMESPACE = uuid5(NAMESPACE_URL, "urn:hub:agency")


def agency_aggregate_id(agency_id: str) -> UUID:
    """Agencies are addressed by their short id; the aggregate id derives from it."""
    return uuid5(_AGENCY_NAMESPACE, agency_id)


class Agency(Aggregate):
    @event("AgencyRegistered")
    def __init__(
        self,
        id: UUID,  # noqa: A002 - the library takes the aggregate id by this name
        agency_id: str,
        kind: str,
        name: str,
        registered_at: datetime,
    ) -> None:
        self.agency_id = agency_id
        self.kind = AgencyKind(kind)
        self.name = name
        self.registered_at = registered_at

    @classmethod
    def register(
        cls, agency_id: str, kind: AgencyKind, name: str, registered_at: datetime
    ) -> Agency:
        if not name.strip():
            raise errors.InvalidValue("an agency needs a display name")
        return cls(
            id=agency_aggregate_id(agency_id),
            agency_id=agency_id,
            kind=AgencyKind(kind).value,
            name=name.strip(),
            registered_at=registered_at,
        )

    def rename(self, name: str, at: datetime) -> None:
        if not name.strip():
            raise errors.InvalidValue("an agency needs a display name")
        self._renamed(name=name.strip(), at=at)

    @event("AgencyRenamed")
    def _renamed(self, name: str, at: datetime) -> None:
        self.name = name
