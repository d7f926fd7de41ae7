"""Consent (Einwilligung, Schweigepflichtentbindung) and the legal basis of a disclosure.

One definition of validity, ``consent_valid``: the aggregate decides disclosures
with it and the case view decides visibility with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from domain import errors
from domain.values import DataCategory

STATUTORY_TASK = "statutory_task"


def consent_valid(
    valid_from: datetime,
    valid_until: datetime | None,
    revoked_at: datetime | None,
    at: datetime,
) -> bool:
    """In force at ``at``: inside its window and not revoked by then."""
    return (
        valid_from <= at
        and (valid_until is None or at < valid_until)
        and (revoked_at is None or at < revoked_at)
    )


@dataclass
class Consent:
    consent_id: str
    categories: frozenset[DataCategory]
    source_agency: str
    recipients: frozenset[str]
    valid_from: datetime
    valid_until: datetime | None
    granted_by: str
    revoked_at: datetime | None = None
    purpose: str | None = None
    document_ref: str | None = None

    def covers(
        self, category: DataCategory, sources: Iterable[str], recipient: str, at: datetime
    ) -> bool:
        # A revoked consent covers no new disclosure, whatever date the revocation
        # names: from its recording on, nothing more may flow under it.
        return (
            self.revoked_at is None
            and category in self.categories
            and self.source_agency in sources
            and recipient in self.recipients
            and consent_valid(self.valid_from, self.valid_until, None, at)
        )


def legal_basis(
    consents: Iterable[Consent],
    categories: Sequence[DataCategory],
    sources: Iterable[str],
    recipient: str,
    moments: Sequence[datetime],
) -> tuple[str, ...]:
    """DOMAIN rule 3: every carried category needs a consent from the source that
    covers it for the recipient at every moment given (both clocks, rule 4)."""
    if not categories:
        return (STATUTORY_TASK,)
    sources = set(sources)
    consents = list(consents)
    basis: set[str] = set()
    missing: list[str] = []
    for category in categories:
        covering = next(
            (
                c.consent_id
                for c in consents
                if all(c.covers(category, sources, recipient, at) for at in moments)
            ),
            None,
        )
        if covering is None:
            missing.append(category.value)
        else:
            basis.add(covering)
    if missing:
        raise errors.ConsentMissing(
            f"no valid consent covers {', '.join(missing)} for agency {recipient}",
            categories=missing,
            recipient=recipient,
        )
    return tuple(sorted(basis))
