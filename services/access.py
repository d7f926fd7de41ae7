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
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

from domain.policy import PolicyBook
from projections.case_doc import Doc, reduce_case
from projections.case_view import case_view, full_view
from projections.caseload import involved_agencies
from projections.dashboard import scoped_figures
from projections.disclosure import withheld
from services.application import HubApplication, MessageService
from services.crypto import FieldCipher
from services.errors import CaseNotFound, NotAllowed
from services.messages.privacy import PERSONAL_PATHS_BY_EVENT
from services.replay import Axis, as_record, day_reads, replay_case
from services.views.queries import ViewQueries
from services.views.verify import verify_chain

AUDITOR_AGENCY = "auditor"


@dataclass(frozen=True)
class Principal:
    role: str  # "agency" or "auditor"
    subject: str  # the agency id, or the auditor's name
    name: str
    user: str | None = None  # the person acting (from the token or X-Hub-User)

    @property
    def acting(self) -> str:
        """Who is recorded as having acted: the user, else the agency id or auditor
        (never the agency's display name)."""
        return self.user or self.subject

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
        result = self._queries.inbox(agency_id, self._clock())
        if principal.is_auditor:
            self._record_read(principal, None, "inbox", [], target=agency_id)
        return result

    def caseload(
        self, principal: Principal, agency_id: str, limit: int = 200, after: str | None = None
    ) -> dict[str, Any]:
        self._own_agency(principal, agency_id)
        result = self._queries.caseload(agency_id, limit=limit, after=after)
        if principal.is_auditor:
            self._record_read(principal, None, "caseload", [], target=agency_id)
        return result

    def _record_read(
        self,
        principal: Principal,
        case_id: str | None,
        scope: str,
        categories: list[str],
        *,
        target: str | None = None,
    ) -> None:
        """Every auditor read, and every read that shows personal data, is recorded
        (DOMAIN "Views"): in the case's read stream, or the day's for an inbox,
        caseload or dashboard."""
        self._messages.record_read(
            UUID(case_id) if case_id is not None else None,
            agency=AUDITOR_AGENCY if principal.is_auditor else principal.subject,
            actor=principal.acting,
            user=principal.user,
            role=principal.role,
            scope=scope,
            categories=categories,
            target=target,
        )

    def case(self, principal: Principal, case_id: str) -> dict[str, Any]:
        doc = self._queries.case_doc(case_id)
        now = self._clock()
        if principal.is_auditor:
            view = full_view(doc)
            self._record_read(principal, case_id, "case", view["categories_shown"])
            return self._cipher.reveal(view)
        self._involved(principal, doc)
        view = case_view(doc, principal.subject, now)
        if view["categories_shown"]:
            self._record_read(principal, case_id, "case", view["categories_shown"])
        # Filtered first, decrypted second: only what the caller may see is opened.
        return self._cipher.reveal(view)

    @staticmethod
    def _involved(principal: Principal, doc: Doc) -> None:
        if principal.subject not in involved_agencies(doc):
            raise NotAllowed(f"agency {principal.subject} is not involved in this case")

    def history(
        self, principal: Principal, case_id: str, as_of: datetime | None = None
    ) -> dict[str, Any]:
        """The case's events (and recorded reads) up to ``as_of``: all of them for an
        auditor; an agency's part, its personal fields as disclosure allows now."""
        doc = self._queries.case_doc(case_id)
        if not principal.is_auditor:
            self._involved(principal, doc)
        replayed = replay_case(self._app, UUID(case_id), as_of, "recorded")
        shown: set[str] = set()
        items = self._items(principal, case_id, doc, replayed, self._clock(), shown)
        if principal.is_auditor or shown:
            self._record_read(principal, case_id, "history", sorted(shown))
        return {"case_id": case_id, "as_of": replayed["as_of"], "items": self._cipher.reveal(items)}

    def replay(
        self,
        principal: Principal,
        case_id: str,
        as_of: datetime | None = None,
        axis: Axis = "recorded",
    ) -> dict[str, Any]:
        """``hub replay``: the case as of ``as_of``. For an agency, what it could see
        then: its part of the events and its view of the case, both by the disclosure
        rule at that moment (not today's consents)."""
        replayed = replay_case(self._app, UUID(case_id), as_of, axis)
        if principal.is_auditor:
            self._record_read(principal, case_id, "replay", [])
            return self._cipher.reveal(replayed)
        then: Doc | None = None
        for event in replayed["events"]:
            then = reduce_case(then, as_record(case_id, event), in_place=True)
        if then is None:
            raise CaseNotFound(f"case {case_id} does not exist")
        self._involved(principal, then)
        moment = as_of or self._clock()
        shown: set[str] = set()
        items = self._items(principal, case_id, then, replayed, moment, shown)
        state = case_view(then, principal.subject, moment)
        shown |= set(state["categories_shown"])
        if shown:
            self._record_read(principal, case_id, "replay", sorted(shown))
        return self._cipher.reveal(
            {**replayed, "reads": [], "events": items, "state": state, "agency": principal.subject}
        )

    def _items(
        self,
        principal: Principal,
        case_id: str,
        doc: Doc,
        replayed: dict[str, Any],
        at: datetime,
        shown: set[str],
    ) -> list[dict[str, Any]]:
        """History items: the replayed events and reads in global order; for an agency
        only its part, personal fields by ``may_see`` in ``doc`` at ``at``. Its part
        includes every event that shows it personal data (not of a handover it is no
        party to): the case view shows the lead its participant, plan and employment,
        and the history must show the same items, not fewer; such an event names its
        author only when the case view names that agency too."""
        trail = {row["position"]: row for row in self._queries.audit_trail(case_id)}
        late_after = self._policy_book.for_programme(doc["programme"]).clock.late_after
        known = set() if principal.is_auditor else named_in(case_view(doc, principal.subject, at))
        folded: Doc | None = None
        tagged = [(e, False) for e in replayed["events"]] + [(r, True) for r in replayed["reads"]]
        tagged.sort(key=lambda pair: pair[0]["position"])
        items = []
        for event, is_read in tagged:
            payload = event["payload"]
            kept: set[str] = set()  # the categories of the personal fields it shows
            if not is_read:
                # The case through this event: what each personal field became (a
                # note's category and source), decided as the case view decides it.
                folded = reduce_case(folded, as_record(case_id, event), in_place=True)
                paths = PERSONAL_PATHS_BY_EVENT.get(event["type"])
                if not principal.is_auditor and paths and folded is not None:
                    payload = withheld(
                        doc,
                        folded,
                        principal.subject,
                        event["type"],
                        event["agency"],
                        payload,
                        paths,
                        at,
                        kept,
                    )
            concerns = principal.is_auditor or self._concerns(principal.subject, doc, event)
            if not (concerns or (kept and not _names_handover(event))):
                continue
            shown |= kept
            # Shown for its data alone: its author only if the case view names it too
            # (that a clinic opened the case is itself health data for a chamber).
            anonymous = not concerns and event["agency"] not in known
            audit = trail.get(event["position"], {})
            items.append(
                {
                    "position": event["position"],
                    "type": event["type"],
                    "agency": None if anonymous else event["agency"],
                    "actor": None if anonymous else event["actor"],
                    "occurred_at": event["occurred_at"],
                    "recorded_at": event["recorded_at"],
                    "legal_basis": audit.get("legal_basis"),
                    "hash": audit.get("hash"),
                    # Kept, and marked: recorded longer after it happened than policy allows.
                    "late_entry": _late(event, late_after),
                    "payload": payload,
                }
            )
        return items

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

    def reads_of_day(self, principal: Principal, day: date) -> dict[str, Any]:
        """Auditors: the reads of inboxes, caseloads and dashboards on one UTC day
        (reads of a case are in that case's history)."""
        if not principal.is_auditor:
            raise NotAllowed("only auditors read the read log")
        items = day_reads(self._app, day)
        self._record_read(principal, None, "reads", [], target=day.isoformat())
        return {"day": day.isoformat(), "items": items}

    def verify(self, principal: Principal) -> dict[str, Any]:
        if not principal.is_auditor:
            raise NotAllowed("only auditors verify the audit trail")
        result = verify_chain(self._app.recorder, self._view_store)
        return result.to_dict()

    def dashboard(self, principal: Principal) -> dict[str, Any]:
        """Everything for an auditor (recorded); for an agency the figures of its
        programmes and the overdue handovers of its own cases."""
        figures = self._queries.dashboard(self._clock())
        if principal.is_auditor:
            self._record_read(principal, None, "dashboard", [])
            return figures
        return scoped_figures(
            figures,
            self._queries.programmes_of(principal.subject),
            self._queries.case_ids_of(principal.subject),
        )


def named_in(view: dict[str, Any]) -> set[str]:
    """The agencies a case view names: who takes part as far as its reader may know,
    the parties of the handovers and consents it shows, the authors of its items."""
    named = set(view["agencies"]) | {view["lead_agency"]}
    for h in view["handovers"]:
        named |= {h["from_agency"], h["to_agency"]}
    for c in view["consents"]:
        named |= {c["source_agency"], c["granted_by"], c["revoked_by"], *c["recipients"]}
    items = [*view["notes"], *view["measures"], view["plan"], view["employment"]]
    return (named | {item["agency"] for item in items if item is not None}) - {None}


def _names_handover(event: dict[str, Any]) -> bool:
    """A handover's events stay with its parties (and the lead): that a handover
    exists is itself something only they learn (``_concerns``)."""
    payload = event["payload"]
    return any(payload.get(key) for key in ("handover_id", "new_handover_id"))


def _late(event: dict[str, Any], after: timedelta) -> bool:
    occurred = event["occurred_at"]
    if occurred is None:
        return False
    return datetime.fromisoformat(event["recorded_at"]) - datetime.fromisoformat(occurred) > after
