"""Who may read what, and the reads themselves (plain values in, plain values out).

Agencies read their own inbox and caseload, a case they are involved in (only
the data ``projections.disclosure`` lets them see at the moment of reading) and
their own part of its history (its personal payload fields by the same rule).
Auditors read everything; each auditor read of a case or history,
and each read that shows health data, is recorded in the case's history.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from domain.policy import PolicyBook
from projections.case_doc import Doc, reduce_case
from projections.case_view import case_view, full_view
from projections.caseload import involved_agencies
from projections.disclosure import withheld
from services.application import HubApplication, MessageService
from services.crypto import FieldCipher
from services.errors import NotAllowed
from services.messages.privacy import PERSONAL_PATHS_BY_EVENT
from services.replay import as_record, replay_case
from services.views.queries import ViewQueries
from services.views.verify import verify_chain

AUDITOR_AGENCY = "auditor"


@dataclass(frozen=True)
class Principal:
    role: str  # "agency" or "auditor"
    subject: str  # the agency id, or the auditor's name
    name: str
    # The acting person: the token's user, or for an agency-wide token the one its
    # caller names in X-Hub-User; None when neither says.
    user: str | None = None

    @property
    def is_auditor(self) -> bool:
        return self.role == "auditor"


class ReadService:
    def __init__(
        self,
        app: HubApplication,
        queries: ViewQueries,
        messages: MessageService,
        view_store: Any,
        cipher: FieldCipher,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        policy_book: PolicyBook | None = None,
    ) -> None:
        self._policy_book = policy_book or PolicyBook()
        self._cipher = cipher
        self._app = app
        self._queries = queries
        self._messages = messages
        self._view_store = view_store
        self._clock = clock

    def _own_agency(self, principal: Principal, agency_id: str) -> None:
        if not principal.is_auditor and principal.subject != agency_id:
            raise NotAllowed(f"this token may read only agency {principal.subject}'s views")

    def inbox(self, principal: Principal, agency_id: str) -> dict[str, Any]:
        self._own_agency(principal, agency_id)
        return self._queries.inbox(agency_id, self._clock())

    def caseload(
        self, principal: Principal, agency_id: str, limit: int = 200, after: str | None = None
    ) -> dict[str, Any]:
        self._own_agency(principal, agency_id)
        return self._queries.caseload(agency_id, limit=limit, after=after)

    def _record_read(
        self, principal: Principal, case_id: str, scope: str, categories: list[str]
    ) -> None:
        self._messages.record_read(
            UUID(case_id),
            agency=AUDITOR_AGENCY if principal.is_auditor else principal.subject,
            actor=principal.subject if principal.is_auditor else principal.name,
            role=principal.role,
            scope=scope,
            categories=categories,
        )

    def case(self, principal: Principal, case_id: str) -> dict[str, Any]:
        doc = self._queries.case_doc(case_id)
        now = self._clock()
        if principal.is_auditor:
            view = full_view(doc)
            self._record_read(principal, case_id, "case", view["categories_shown"])
            return self._cipher.reveal(view)
        if principal.subject not in involved_agencies(doc):
            raise NotAllowed(f"agency {principal.subject} is not involved in this case")
        view = case_view(doc, principal.subject, now)
        if "health" in view["categories_shown"]:
            self._record_read(principal, case_id, "case", view["categories_shown"])
        # Filtered first, decrypted second: only what the caller may see is opened.
        return self._cipher.reveal(view)

    def history(
        self, principal: Principal, case_id: str, as_of: datetime | None = None
    ) -> dict[str, Any]:
        doc = self._queries.case_doc(case_id)
        if not principal.is_auditor and principal.subject not in involved_agencies(doc):
            raise NotAllowed(f"agency {principal.subject} is not involved in this case")
        replayed = replay_case(self._app, UUID(case_id), as_of, "recorded")
        trail = {row["position"]: row for row in self._queries.audit_trail(case_id)}
        late_after = self._policy_book.for_programme(doc["programme"]).clock.late_after
        now = self._clock()
        folded: Doc | None = None
        items = []
        for event in replayed["events"]:
            # The case through this event: what each personal field became (a note's
            # category and source), decided as the case view decides it.
            folded = reduce_case(folded, as_record(case_id, event), in_place=True)
            audit = trail.get(event["position"], {})
            payload = event["payload"]
            paths = PERSONAL_PATHS_BY_EVENT.get(event["type"])
            if not principal.is_auditor and paths:
                payload = withheld(
                    doc,
                    folded,
                    principal.subject,
                    event["type"],
                    event["agency"],
                    payload,
                    paths,
                    now,
                )
            item = {
                "position": event["position"],
                "type": event["type"],
                "agency": event["agency"],
                "actor": event["actor"],
                "occurred_at": event["occurred_at"],
                "recorded_at": event["recorded_at"],
                "legal_basis": audit.get("legal_basis"),
                "hash": audit.get("hash"),
                # Kept, and marked: recorded longer after it happened than policy allows.
                "late_entry": _late(event, late_after),
                "payload": payload,
            }
            if principal.is_auditor or self._concerns(principal.subject, doc, event):
                items.append(item)
        if principal.is_auditor:
            self._record_read(principal, case_id, "history", [])
        return {
            "case_id": case_id,
            "as_of": replayed["as_of"],
            "items": self._cipher.reveal(items),
        }

    @staticmethod
    def _concerns(agency: str, doc: dict[str, Any], event: dict[str, Any]) -> bool:
        """An agency's part of a history: what it did, the handovers it is party to,
        and the consents that name it (as source or recipient): the basis of what it
        may receive, including their revocation by the source or the lead."""
        if event["agency"] == agency:
            return True
        payload = event["payload"]
        for key in ("handover_id", "new_handover_id"):
            handover = doc["handovers"].get(payload.get(key) or "")
            if handover is not None and agency in (handover["from_agency"], handover["to_agency"]):
                return True
        consent = doc["consents"].get(payload.get("consent_id") or "")
        return consent is not None and (
            agency == consent["source_agency"] or agency in consent["recipients"]
        )

    def verify(self, principal: Principal) -> dict[str, Any]:
        if not principal.is_auditor:
            raise NotAllowed("only auditors verify the audit trail")
        result = verify_chain(self._app.recorder, self._view_store)
        return result.to_dict()

    def dashboard(self, principal: Principal) -> dict[str, Any]:
        return self._queries.dashboard(self._clock())


def _late(event: dict[str, Any], after: timedelta) -> bool:
    occurred = event["occurred_at"]
    if occurred is None:
        return False
    return datetime.fromisoformat(event["recorded_at"]) - datetime.fromisoformat(occurred) > after
