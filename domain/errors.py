"""Domain errors: one base class, each refusal with a stable machine code.

Messages name ids and rules, never personal data, because they reach logs and
clients verbatim.
"""

from __future__ import annotations


class DomainError(Exception):
    """A rule of the domain refused a command. ``code`` is stable for clients."""

    code = "domain_error"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class CaseClosed(DomainError):
    code = "case_closed"


class CaseExists(DomainError):
    code = "case_exists"


class InvalidTransition(DomainError):
    code = "invalid_transition"


class NotReceiver(DomainError):
    code = "not_receiver"


class NotSender(DomainError):
    code = "not_sender"


class NotLeadAgency(DomainError):
    code = "not_lead_agency"


class NotInvolved(DomainError):
    code = "not_involved"


class ForwardLimitReached(DomainError):
    code = "forward_limit_reached"


class ConsentMissing(DomainError):
    code = "consent_missing"


class ConsentUnknown(DomainError):
    code = "consent_unknown"


class ConsentExists(DomainError):
    code = "consent_exists"


class HandoverUnknown(DomainError):
    code = "handover_unknown"


class HandoverExists(DomainError):
    code = "handover_exists"


class InvalidRecipient(DomainError):
    code = "invalid_recipient"


class AppointmentUnknown(DomainError):
    code = "appointment_unknown"


class AppointmentExists(DomainError):
    code = "appointment_exists"


class MeasureUnknown(DomainError):
    code = "measure_unknown"


class MeasureExists(DomainError):
    code = "measure_exists"


class PlanMissing(DomainError):
    code = "plan_missing"


class AlreadyDone(DomainError):
    """A once-only fact (agreement signed, erasure) was already recorded."""

    code = "already_recorded"


class InvalidValue(DomainError):
    code = "invalid_value"


class NotConsentSource(DomainError):
    """A consent is recorded by its source agency; revoked through it or the lead."""

    code = "not_consent_source"


class KindNotAllowed(DomainError):
    """Roles follow agency kinds (policy): this kind may not do this."""

    code = "kind_not_allowed"


class OccurredInFuture(DomainError):
    code = "occurred_in_future"


class OccurredTooEarly(DomainError):
    """Dated before the case opened or before the step it answers."""

    code = "occurred_too_early"


class ForwardPeriodOver(DomainError):
    code = "forward_period_over"


class RehabApplicationOpen(DomainError):
    code = "rehab_application_open"


class DecisionRequired(DomainError):
    """The second agency of a § 14 chain decides; it cannot decline or undo."""

    code = "decision_required"


class DecisionPending(DomainError):
    code = "decision_pending"


class OpenHandovers(DomainError):
    code = "open_handovers"


class RetentionRunning(DomainError):
    """Erasure before the closure and the retention period, without an Art. 17 ground."""

    code = "retention_running"
