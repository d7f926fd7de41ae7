"""Who may read what, and the reads themselves (plain values in, plain values out).

Agencies read their own inbox and caseload, a case they are involved in (only
the data ``projections.disclosure`` lets them see at the moment of reading) and
their own part of its history (its personal payload fields by the same rule).
Auditors read everything; each auditor read of a case or history,
and each read that shows health data, is recorded in the case's history. The
participant's access report (``subject_report``) goes to the lead or an auditor.
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
from services.application import AgencyRegistry, HubApplication, MessageService
from services.crypto import FieldCipher
from services.errors import AgencyUnknown, CaseNotFound, NotAllowed, NotInvolved
from services.messages.privacy import PERSONAL_PATHS_BY_EVENT
from services.replay import Axis, as_record, case_reads, day_reads, replay_case
from services.subject_report import build_report, read_entries
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
            raise NotInvolved(f"agency {principal.subject} is not involved in this case")

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
        only its part, personal fields by ``may_see`` in ``doc`` at ``at``."""
        trail = {row["position"]: row for row in self._queries.audit_trail(case_id)}
        late_after = self._policy_book.for_programme(doc["programme"]).clock.late_after
        folded: Doc | None = None
        tagged = [(e, False) for e in replayed["events"]] + [(r, True) for r in replayed["reads"]]
        tagged.sort(key=lambda pair: pair[0]["position"])
        items = []
        for event, is_read in tagged:
            payload = event["payload"]
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
                        shown,
                    )
            if not (principal.is_auditor or self._concerns(principal.subject, doc, event)):
                continue
            audit = trail.get(event["position"], {})
            items.append(
                {
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

    def subject_report(self, principal: Principal, case_id: str) -> dict[str, Any]:
        """The participant's access report (Art. 15 GDPR), for the case's current lead
        or an auditor: everything the hub holds of the participant, decrypted (the
        participant is owed all of it), every disclosure, read and consent. Built from
        the event store, not the views; the request is itself recorded as a read
        (scope ``subject-report``, the categories shown) and listed in the report."""
        replayed = replay_case(self._app, UUID(case_id))
        doc: Doc | None = None
        for event in replayed["events"]:
            doc = reduce_case(doc, as_record(case_id, event), in_place=True)
        if doc is None:  # replay_case refuses a case without events; kept for the types
            raise CaseNotFound(f"case {case_id} does not exist")
        if not principal.is_auditor and principal.subject != doc["lead_agency"]:
            self._involved(principal, doc)  # the case view's answer to an uninvolved agency
            raise NotAllowed("only the case's lead agency or an auditor may read its access report")
        registry = AgencyRegistry(self._app)
        report = build_report(
            case_id,
            replayed["events"],
            replayed["reads"],
            agencies={a: _display_name(registry, a) for a in _agencies_in(replayed)},
            produced_at=self._clock(),
            produced_by={
                "role": principal.role,
                "agency": AUDITOR_AGENCY if principal.is_auditor else principal.subject,
                "user": principal.acting,
            },
            reveal=self._cipher.reveal,
        )
        self._record_read(principal, case_id, "subject-report", report["categories_shown"])
        # The reads again, now with this one: the report lists its own production.
        report["reads"] = read_entries(replayed["events"], case_reads(self._app, UUID(case_id)))
        return report

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


def _agencies_in(replayed: dict[str, Any]) -> set[str]:
    """Every agency a case's events and reads name (actors, recipients, sources)."""
    found: set[str] = set()
    for item in [*replayed["events"], *replayed["reads"]]:
        payload = item["payload"]
        named = [item["agency"], payload.get("to_agency"), payload.get("source_agency")]
        found.update(a for a in [*named, *(payload.get("recipients") or [])] if a)
    return found - {AUDITOR_AGENCY}


def _display_name(registry: AgencyRegistry, agency_id: str) -> str:
    try:
        return registry.get(agency_id)["name"]
    except AgencyUnknown:
        return agency_id


def _late(event: dict[str, Any], after: timedelta) -> bool:
    occurred = event["occurred_at"]
    if occurred is None:
        return False
    return datetime.fromisoformat(event["recorded_at"]) - datetime.fromisoformat(occurred) > after


class FeedReads:
    """The feed's (and the webhooks') items through the history's own filter:
    ``ReadService._items`` decides an agency's part of each case and withholds the
    personal fields disclosure does not allow now. Appended beside ``ReadService``."""

    def __init__(self, reads: ReadService) -> None:
        self._reads = reads

    def items(
        self, principal: Principal, positions_by_case: dict[str, set[int]]
    ) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
        """The events at ``positions_by_case`` the caller may see, in global order,
        decrypted as far as it may see them; and per case the categories to record a
        read with (a case only where a shown item carries personal fields)."""
        reads = self._reads
        now = reads._clock()
        items: list[dict[str, Any]] = []
        to_record: dict[str, list[str]] = {}
        for case_id, positions in positions_by_case.items():
            try:
                doc = reads._queries.case_doc(case_id)
                if not principal.is_auditor:
                    reads._involved(principal, doc)
                replayed = replay_case(reads._app, UUID(case_id), None, "recorded")
            except (CaseNotFound, NotInvolved):
                continue  # no longer its case (or erased from the views): nothing to show
            replayed["reads"] = []  # reads are not in the feed (a feed read would feed itself)
            versions = {event["position"]: event["version"] for event in replayed["events"]}
            since = 0 if principal.is_auditor else _involved_since(principal.subject, replayed)
            shown: set[str] = set()
            page = [
                {"case_id": case_id, "version": versions[item["position"]], **item}
                for item in reads._items(principal, case_id, doc, replayed, now, shown)
                if item["position"] in positions and item["position"] >= since
            ]
            items.extend(page)
            personal = any(item["type"] in PERSONAL_PATHS_BY_EVENT for item in page)
            if principal.is_auditor and page:
                to_record[case_id] = []  # every auditor read is recorded
            elif personal and shown:
                # The categories this agency may see in the case (as a history read
                # records them): a read is never recorded with less than it showed.
                to_record[case_id] = sorted(shown)
        items.sort(key=lambda item: item["position"])
        return reads._cipher.reveal(items), to_record

    def record(self, principal: Principal, to_record: dict[str, list[str]], scope: str) -> None:
        for case_id, categories in to_record.items():
            self._reads._record_read(principal, case_id, scope, categories)


def _involved_since(agency: str, replayed: dict[str, Any]) -> int:
    """The position of the event that first made ``agency`` involved in the case (its
    offer, its opening, a lead transfer to it). A feed holds an agency's part from
    there on, whenever it is read: what came before (a consent naming it, recorded
    before it was offered the case) is in the history, never in the feed at one time
    and not at another."""
    folded: Doc | None = None
    for event in replayed["events"]:
        folded = reduce_case(folded, as_record(replayed["case_id"], event), in_place=True)
        if folded is not None and agency in involved_agencies(folded):
            return int(event["position"])
    return 1 << 62  # not involved: nothing
