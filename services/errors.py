"""Refusals raised by the application services (beside the domain's own)."""

from __future__ import annotations


class ServiceError(Exception):
    code = "service_error"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class CaseNotFound(ServiceError):
    code = "case_not_found"


class AgencyUnknown(ServiceError):
    code = "agency_unknown"


class AgencyExists(ServiceError):
    code = "agency_exists"


class ConcurrencyConflict(ServiceError):
    code = "concurrency_conflict"


class ParticipantDataErased(ServiceError):
    code = "participant_erased"


class NotAllowed(ServiceError):
    code = "forbidden"


class NotInvolved(NotAllowed):
    """An agency asked for a case it has no part in; HTTP answers it as an unknown
    case, so an outsider cannot tell which cases exist."""


class MessageIdReused(ServiceError):
    """The agency already sent another message under this ``message_id`` (409)."""

    code = "message_id_reused"
