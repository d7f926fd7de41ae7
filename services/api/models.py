"""What the GET answers hold, as pydantic models: the OpenAPI document is typed (an
agency can generate a client) and schemathesis checks real answers against it.

The answers are built as plain dicts by ``ReadService``; these models describe
them, they do not shape them: every model keeps keys it does not name
(``extra="allow"``, API.md: "at least these keys"), and the routes pass
``response_model_exclude_unset=True`` so a key the dict lacks is not added as
``null``. Times are ISO 8601 strings as recorded (not re-formatted). Names are
chosen apart from the message schemas' (``Participant`` is the message's): the
document has one namespace of components.

Nullable where an answer may hold null (audited against ``projections.case_view``,
``projections.disclosure``, ``projections.case_doc`` and the view tables): what the
disclosure rule withholds from an agency is left out of a case view (participant
fields, ``plan`` and ``employment`` null) or, in a history item shown only for its
data, is the author (``agency``, ``actor`` null); an erasure blanks values to the
``[erased]`` string (lists stay lists) and keeps every key; events of schema v1 are
upcast before they are folded (``purpose``, ``document_ref``, a handover's
``priority`` filled in). ``tests/e2e/test_http_typed_nulls.py`` reads every demo case
erased, and a schema v1 store, as every agency kind and an auditor.
"""

from __future__ import annotations

from typing import Any, TypedDict

from pydantic import BaseModel, ConfigDict, Field


class Typed(TypedDict):
    response_model: type[BaseModel]
    response_model_exclude_unset: bool


def typed(model: type[BaseModel]) -> Typed:
    """A route's options for answering as ``model`` describes (keys the answer
    lacks stay absent)."""
    return {"response_model": model, "response_model_exclude_unset": True}


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


# ---- inbox and caseload -------------------------------------------------------------


class InboxItem(_Open):
    handover_id: str
    case_id: str
    kind: str
    from_agency: str
    offered_at: str
    due_at: str
    overdue: bool = Field(description="past due_at at the moment of reading")


class Inbox(_Open):
    """Open handovers offered to the agency, oldest first."""

    items: list[InboxItem]


class CaseloadItem(_Open):
    case_id: str
    programme: str | None = None
    site: str | None = None
    stage: str
    lead_agency: str
    coach: str | None = None
    next_due_at: str | None
    last_activity_at: str | None


class Caseload(_Open):
    items: list[CaseloadItem]
    next: str | None = Field(description="the `after` of the next page, null on the last")


# ---- a case ----------------------------------------------------------------------------


class ParticipantShown(_Open):
    """The pseudonym always; each other field only when the caller may see it."""

    pseudonym: str | None = None
    name: str | None = None
    birth_date: str | None = None
    contact: str | None = None
    erased: bool | None = None


class CaseHandover(_Open):
    handover_id: str
    kind: str
    from_agency: str
    to_agency: str
    state: str
    data_categories: list[str] | None = None
    offered_at: str | None = None
    due_at: str | None = None
    decide_due_at: str | None = None
    forwarded_from: str | None = None
    forwarded_to: str | None = None
    decision: Any = None


class CaseConsent(_Open):
    consent_id: str
    categories: list[str]
    source_agency: str
    recipients: list[str]
    valid_from: str
    valid_until: str | None = None
    granted_by: str | None = None
    revoked_at: str | None = None
    revoked_by: str | None = None
    purpose: str | None = None
    document_ref: str | None = None


class CaseView(_Open):
    """The case as the caller may see it: full structure, personal data filtered."""

    case_id: str
    programme: str | None = None
    site: str | None = None
    stage: str
    outcome: str | None = None
    lead_agency: str
    agencies: list[str]
    coach: str | None = None
    participant: ParticipantShown
    handovers: list[CaseHandover]
    consents: list[CaseConsent] = []
    appointments: list[dict[str, Any]] = []
    agreement_signed_at: str | None = None
    plan: dict[str, Any] | None = None
    measures: list[dict[str, Any]] = []
    employment: dict[str, Any] | None = None
    aftercare: dict[str, Any] | None = None
    notes: list[dict[str, Any]] = []
    opened_at: str | None = None
    closed_at: str | None = None
    erased_at: str | None = None
    last_activity_at: str | None = None
    categories_shown: list[str] = Field(
        default=[], description="the data categories this answer shows (the read is recorded)"
    )


# ---- history and the chain ------------------------------------------------------------


class HistoryItem(_Open):
    position: int
    type: str
    # None when an event is shown to an agency only for its data and the case view
    # does not name its author (a chamber does not learn that a clinic opened it).
    agency: str | None
    actor: str | None
    occurred_at: str | None
    recorded_at: str
    legal_basis: str | None
    hash: str | None
    late_entry: bool | None = None
    payload: dict[str, Any]


class CaseHistory(_Open):
    case_id: str
    as_of: str | None = None
    items: list[HistoryItem]


class Verified(_Open):
    ok: bool
    events_checked: int
    head_hash: str | None


# ---- dashboard -------------------------------------------------------------------------


class StageCount(_Open):
    programme: str
    site: str
    stage: str
    count: int


class HandoverStateCount(_Open):
    programme: str
    from_agency: str
    to_agency: str
    kind: str
    state: str
    count: int


class OfferToAccept(_Open):
    from_agency: str
    to_agency: str
    count: int
    median_hours: int | float
    p90_hours: int | float


class AssignmentToEmployment(_Open):
    programme: str
    site: str
    count: int
    median_days: int | float


class EmployedWithinYear(_Open):
    programme: str
    site: str
    assigned: int
    employed: int
    share: int | float = Field(description="employed / assigned, 0..1")


class Places(_Open):
    programme: str
    site: str
    used: int
    capacity: int | None = Field(description="places of the site, null when not configured")


class OpenOffers(_Open):
    agency: str
    open: int
    overdue: int


class OverdueHandover(_Open):
    handover_id: str | None
    case_id: str | None
    agency: str | None
    from_agency: str | None
    kind: str | None
    programme: str | None
    site: str | None
    due_at: str | None


class RehabDecisions(_Open):
    agency: str
    met: int
    missed: int


class Dashboard(_Open):
    """Figures per programme and site (an agency: of its programmes, which
    ``programmes`` names, and the overdue handovers of its own cases)."""

    generated_at: str
    cases_by_stage: list[StageCount]
    handovers_by_state: list[HandoverStateCount]
    offer_to_accept: list[OfferToAccept]
    assignment_to_employment: list[AssignmentToEmployment]
    employed_within_12_months: list[EmployedWithinYear]
    places: list[Places]
    open_offers: list[OpenOffers]
    overdue_handovers: list[OverdueHandover]
    rehab_decisions: list[RehabDecisions]
    programmes: list[str] | None = None
