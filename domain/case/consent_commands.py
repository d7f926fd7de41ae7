"""The case's consent commands and the facts they record (the rules: ``consent.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from domain import errors
from domain.case.act import Act, require_in_range, require_timezone
from domain.case.consent import Consent
from domain.case.state import CaseState, Event, who
from domain.values import DataCategory

if TYPE_CHECKING:
    from domain.case import Case


class ConsentCommands(CaseState):
    """Consents recorded by their source agency, revoked through it or the lead."""

    def grant_consent(
        self,
        act: Act,
        *,
        consent_id: str,
        categories: Sequence[DataCategory],
        source_agency: str,
        recipients: Sequence[str],
        valid_from: datetime,
        valid_until: datetime | None = None,
        purpose: str | None = None,
        document_ref: str | None = None,
    ) -> None:
        self._check_involved(act)
        require_timezone(valid_from, valid_until)
        require_in_range(valid_from, valid_until)
        if source_agency != act.agency:
            # The source is released from confidentiality and holds the signed form.
            raise errors.NotConsentSource(
                f"a consent is recorded by its source agency {source_agency}, not by {act.agency}"
            )
        if consent_id in self.consents:
            raise errors.ConsentExists(f"consent {consent_id} is already recorded")
        if not categories or not recipients:
            raise errors.InvalidValue("a consent names categories and recipients")
        if valid_until is not None and valid_until <= valid_from:
            raise errors.InvalidValue("valid_until must be after valid_from")
        self.trigger_event(
            ConsentGranted,
            consent_id=consent_id,
            categories=sorted(DataCategory(c).value for c in set(categories)),
            source_agency=source_agency,
            recipients=sorted(set(recipients)),
            valid_from=valid_from,
            valid_until=valid_until,
            purpose=purpose,
            document_ref=document_ref,
            **who(act),
        )

    def revoke_consent(self, act: Act, *, consent_id: str) -> None:
        """The participant revokes through the source or the lead."""
        self._check_involved(act)
        consent = self.consents.get(consent_id)
        if consent is None:
            raise errors.ConsentUnknown(f"consent {consent_id} is not part of this case")
        if act.agency not in (consent.source_agency, self.lead_agency):
            raise errors.NotConsentSource(
                "a consent is revoked through its source agency or the lead agency"
            )
        if consent.revoked_at is not None:
            raise errors.InvalidTransition(f"consent {consent_id} is already revoked")
        self.trigger_event(ConsentRevoked, consent_id=consent_id, **who(act))


class ConsentGranted(Event):
    """Schema v2 added ``purpose`` and ``document_ref``."""

    class_version = 2
    consent_id: str
    categories: list[str]
    source_agency: str
    recipients: list[str]
    valid_from: datetime
    valid_until: datetime | None
    purpose: str | None
    document_ref: str | None

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["purpose"] = None
        state["document_ref"] = None

    def apply_to(self, case: Case) -> None:
        case.consents[self.consent_id] = Consent(
            consent_id=self.consent_id,
            categories=frozenset(DataCategory(c) for c in self.categories),
            source_agency=self.source_agency,
            recipients=frozenset(self.recipients),
            valid_from=self.valid_from,
            valid_until=self.valid_until,
            granted_by=self.agency,
            purpose=self.purpose,
            document_ref=self.document_ref,
        )


class ConsentRevoked(Event):
    consent_id: str

    def apply_to(self, case: Case) -> None:
        case.consents[self.consent_id].revoked_at = self.occurred_at
