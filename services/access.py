"""Who may read what, and the reads themselves (plain values in, plain values out).

Agencies read their own inbox and caseload, a case they are involved in (only
the data ``projections.disclosure`` lets them see at the moment of reading) and
their own part of its history (its personal payload fields by the same rule).
Auditors read everything; each auditor read of a case or history,
and each read that shows health data, is recorded in the case's history. The
participant's access report (``subject_report``) goes to the lead or an auditor.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from domain.case import Case
from domain.case.consent import consent_valid
from domain.errors import DomainError
from domain.policy import DeadlinePolicy, PolicyBook
from domain.reads import case_reads_id
from domain.values import AgencyKind, HandoverKind
from projections.audit import GENESIS, canonical, chain_hash
from projections.case_doc import Doc, reduce_case
from projections.case_view import case_view, full_view
from projections.caseload import involved_agencies
from projections.dashboard import accept_deadlines
from projections.disclosure import withheld
from services.application import AgencyRegistry, HubApplication, MessageService
from services.commands import Received, apply_to_case
from services.crypto import FieldCipher
from services.errors import AgencyUnknown, CaseNotFound, NotAllowed, NotInvolved
from services.messages import parse_message
from services.messages.privacy import PERSONAL_PATHS_BY_EVENT
from services.replay import Axis, as_record, case_reads, day_reads, replay_case
from services.subject_report import build_report, read_entries
from services.views.queries import ViewQueries
from services.views.sql.schema import tracking_name
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
        case_known: bool = True,
    ) -> None:
        """Every auditor read, and every read that shows personal data, is recorded
        (DOMAIN "Views"): in the case's read stream, or the day's for an inbox,
        caseload or dashboard. The reads here record a case's read only after they
        loaded the case (its document, its events), so ``record_read`` need not look
        for it again (``case_known``)."""
        self._messages.record_read(
            UUID(case_id) if case_id is not None else None,
            case_known=case_known,
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

    def feed_part(
        self, principal: Principal, case_id: str, positions: set[int]
    ) -> tuple[list[dict[str, Any]], set[str]]:
        """The feed's entry to the history rule (``_items``): of the case's events at
        ``positions``, the caller's part (an auditor's: all) from the event that made
        the agency involved on, each with its ``case_id`` and ``version``, decrypted as
        far as it may see them; and the categories of the personal fields they show.
        No reads (a feed read would feed itself), none recorded here (``FeedReads``
        records them once the page is sent). ``CaseNotFound``, ``NotInvolved`` as the
        history."""
        doc = self._queries.case_doc(case_id)
        if not principal.is_auditor:
            self._involved(principal, doc)
        replayed = replay_case(self._app, UUID(case_id), None, "recorded")
        replayed["reads"] = []
        versions = {event["position"]: event["version"] for event in replayed["events"]}
        since = 0 if principal.is_auditor else _involved_since(principal.subject, replayed)
        shown: set[str] = set()
        page = [
            {"case_id": case_id, "version": versions[item["position"]], **item}
            for item in self._items(principal, case_id, doc, replayed, self._clock(), shown)
            if item["position"] in positions and item["position"] >= since
        ]
        return self._cipher.reveal(page), shown

    def record_case_read(
        self, principal: Principal, case_id: str, scope: str, categories: list[str]
    ) -> None:
        """Record a read of a case the caller was shown (the feed's, the webhooks'):
        called apart from the read, so the case is looked for (one read of the store
        per case and page), and a read of an unknown case is never recorded."""
        self._record_read(principal, case_id, scope, categories, case_known=False)

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
            agencies={a: agency_entry(registry, a)["name"] for a in _agencies_in(replayed)},
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

    def dashboard(
        self, principal: Principal, programme: str | None = None, site: str | None = None
    ) -> dict[str, Any]:
        """Everything for an auditor (recorded); for an agency the figures of its
        programmes and the overdue handovers of its own cases. ``programme``/``site``:
        only that programme's or site's cases (within what the caller may see)."""
        agency = None if principal.is_auditor else principal.subject
        figures = self._queries.dashboard(
            self._clock(), programme=programme, site=site, agency=agency
        )
        if principal.is_auditor:
            self._record_read(principal, None, "dashboard", [])
        figures["offer_to_accept_deadlines"] = accept_deadlines(figures, self._accept_days)
        return figures

    def _accept_days(self, programme: str, kind: str) -> int:
        return self._policy_book.for_programme(programme).handovers[HandoverKind(kind)].accept_days

    # ---- the pages' reads (issue 15): who is calling, the registry, the auditor's
    # search, the replay with its consents in force, one case's chain check, and
    # what an agency may do to its handovers ----

    def me(self, principal: Principal) -> dict[str, Any]:
        """Who the token speaks for: no personal data, not recorded."""
        return {
            "role": principal.role,
            "agency_id": None if principal.is_auditor else principal.subject,
            "name": principal.name,
            "user": principal.user,
        }

    def agencies(self, principal: Principal) -> dict[str, Any]:
        """The registry (id, kind, display name): any token, not recorded."""
        cached: tuple[float, list[dict[str, Any]]] | None = getattr(self, "_agency_list", None)
        now = time.monotonic()
        if cached is None or now - cached[0] > AGENCY_LIST_SECONDS:
            # Every registered agency, shown as every read shows one (``agency_entry``).
            found = AgencyRegistry(self._app).all()
            cached = (now, [_shown_agency(a["agency_id"], a) for a in found])
            self._agency_list = cached
        return {"items": [dict(a) for a in cached[1]]}

    def search_cases(
        self, principal: Principal, *, pseudonym: str | None = None, case_id: str | None = None
    ) -> dict[str, Any]:
        """Auditors: the cases with this pseudonym (case-insensitive, exact) or id.
        Each case found records a read of it (scope ``search``); a search that finds
        nothing is recorded in the day's read log with what was looked for."""
        if not principal.is_auditor:
            raise NotAllowed("only auditors search cases")
        if case_id is not None:
            try:
                docs = [self._queries.case_doc(case_id)]
            except CaseNotFound:
                docs = []
            looked_for = f"case:{case_id}"
        else:
            docs = self._queries.cases_with_pseudonym(pseudonym or "", limit=SEARCH_LIMIT)
            looked_for = f"pseudonym:{pseudonym}"
        items = [_case_summary(doc) for doc in docs]
        for item in items:
            self._record_read(principal, item["case_id"], "search", [])
        if not items:
            self._record_read(principal, None, "search", [], target=looked_for)
        return {"items": items}

    def replay_state(
        self,
        principal: Principal,
        case_id: str,
        as_of: datetime | None = None,
        axis: Axis = "recorded",
    ) -> dict[str, Any]:
        """``replay`` (what ``hub replay --json`` prints; recorded as a read), each
        consent of the state marked ``in_force`` at that moment by the aggregate's own
        rule (``consent_valid``). An agency not involved at that moment is answered as
        for an unknown case: the answer does not tell it the case exists."""
        try:
            result = self.replay(principal, case_id, as_of, axis)
        except NotAllowed:
            raise CaseNotFound(f"case {case_id} does not exist") from None
        state = result["state"]
        if state is not None:
            moment = as_of or self._clock()
            state["consents"] = [
                {
                    **c,
                    "in_force": consent_valid(
                        datetime.fromisoformat(c["valid_from"]),
                        _moment(c["valid_until"]),
                        _moment(c["revoked_at"]),
                        moment,
                    ),
                }
                for c in state["consents"]
            ]
        return result

    def verify_case(self, principal: Principal, case_id: str) -> dict[str, Any]:
        """Auditors: each audit entry of this case (its events and recorded reads)
        recomputed from its stored event and the entry before it in the global chain,
        and every stored event of the case present in the trail. The whole log's check
        is ``verify``; the newest checkpoint of its head is returned beside. Recorded."""
        if not principal.is_auditor:
            raise NotAllowed("only auditors verify the audit trail")
        self._queries.case_doc(case_id)  # an unknown case is 404
        views = self._view_store
        upto = views.max_tracking_id(tracking_name("audit")) or 0
        trail = self._queries.audit_trail(case_id)
        broken: tuple[int, str] | None = None
        checked = 0
        for row in trail:
            position = row["position"]
            found = self._app.recorder.select_notifications(position, 1)
            if not found or found[0].id != position:
                broken = (position, "audit entry without stored event")
                break
            before = self._queries.audit_hash_before(position)
            stored = found[0]
            recomputed = chain_hash(
                before or GENESIS,
                canonical(
                    stored.id,
                    stored.originator_id,
                    stored.originator_version,
                    stored.topic,
                    stored.state,
                ),
            )
            if recomputed != row["hash"]:
                broken = (position, "stored event does not match its audit hash")
                break
            checked += 1
        if broken is None:
            in_trail = {row["position"] for row in trail}
            stored_positions = {
                r.position
                for stream in (UUID(case_id), case_reads_id(UUID(case_id)))
                for r in self._app.store.select_case_events(stream)
                if r.position <= upto
            }
            missing = sorted(stored_positions - in_trail)
            if missing:
                broken = (missing[0], "no audit entry for this stored event")
        checkpoint = self._queries.latest_checkpoint()
        self._record_read(principal, case_id, "verify", [])
        return {
            "case_id": case_id,
            "ok": broken is None,
            "entries_checked": checked,
            "first_broken_position": broken[0] if broken else None,
            "reason": broken[1] if broken else None,
            "checkpoint": checkpoint,
        }

    def handover_actions(self, principal: Principal, case_id: str) -> dict[str, Any]:
        """What the calling agency may do now to each handover it receives in this
        case: ``accept``, ``decline``, ``forward`` (with the agencies it may forward
        to), ``complete`` and ``decide`` (a § 14 application's decision). Decided by
        a dry run of each message on the case, so by the very rules that decide when
        it is sent (never saved). An agency not involved is answered as for an unknown
        case; auditors do not act."""
        if principal.is_auditor:
            raise NotAllowed("auditors do not act on handovers")
        doc = self._queries.case_doc(case_id)
        try:
            self._involved(principal, doc)
        except NotAllowed:
            raise CaseNotFound(f"case {case_id} does not exist") from None
        me = principal.subject
        now = self._clock()
        registry = self.agencies(principal)["items"]
        kinds = {a["agency_id"]: AgencyKind(a["kind"]) for a in registry}
        case: Case = self._app.repository.get(UUID(case_id))
        policy = self._policy_book.for_programme(doc["programme"])
        received = Received(at=now, kinds=kinds)

        def allowed(type_: str, payload: dict[str, Any]) -> bool:
            message = parse_message(
                {
                    "message_id": str(uuid4()),
                    "type": type_,
                    "agency": me,
                    "case_id": case_id,
                    "occurred_at": now.isoformat(),
                    "actor": principal.acting,
                    "payload": payload,
                }
            )
            try:
                apply_to_case(copy.deepcopy(case), message, self._policy_book, received)
            except DomainError:
                return False
            return True

        items = []
        for h in doc["handovers"].values():
            if h["to_agency"] != me:
                continue
            ref = {"handover_id": h["handover_id"]}
            actions = [
                verb
                for verb, type_, payload in (
                    ("accept", "handover.accepted", ref),
                    ("decline", "handover.declined", {**ref, "reason": _ACTION_REASON}),
                    ("complete", "handover.completed", ref),
                    ("decide", "rehab.decided", {**ref, "outcome": "granted"}),
                )
                if allowed(type_, payload)
            ]
            targets = [
                a["agency_id"]
                for a in registry
                if a["agency_id"] not in (me, h["from_agency"])
                and kinds[a["agency_id"]] in _receiver_kinds(policy, h["kind"])
                and allowed(
                    "handover.forwarded",
                    {
                        **ref,
                        "new_handover_id": str(uuid4()),
                        "to_agency": a["agency_id"],
                        "reason": _ACTION_REASON,
                    },
                )
            ]
            if targets:
                actions.append("forward")
            forward_until = (
                policy.forward_due(datetime.fromisoformat(h["offered_at"])).isoformat()
                if targets and h["kind"] == HandoverKind.REHAB_APPLICATION.value
                else None
            )
            items.append(
                {
                    "handover_id": h["handover_id"],
                    "kind": h["kind"],
                    "state": h["state"],
                    "actions": actions,
                    "forward_to": targets,
                    "forward_until": forward_until,
                }
            )
        return {"case_id": case_id, "agency": me, "items": items}


def _agencies_in(replayed: dict[str, Any]) -> set[str]:
    """Every agency a case's events and reads name (actors, recipients, sources)."""
    found: set[str] = set()
    for item in [*replayed["events"], *replayed["reads"]]:
        payload = item["payload"]
        named = [item["agency"], payload.get("to_agency"), payload.get("source_agency")]
        found.update(a for a in [*named, *(payload.get("recipients") or [])] if a)
    return found - {AUDITOR_AGENCY}


def agency_entry(registry: AgencyRegistry | None, agency_id: str) -> dict[str, Any]:
    """An agency as every read shows it: ``agency_id``, ``kind`` and display ``name``,
    read from the registry each time (an agency may be renamed; `/v1/dashboard` keeps
    them 5 s, `NAMES_SECONDS`). The dashboard's
    ``agencies``, the registry list of the pages (``ReadService.agencies``) and the
    access report's names all come from here. One a case names that this registry
    does not know (or no registry): no kind, its id for its name."""
    try:
        found = registry.get(agency_id) if registry is not None else None
    except AgencyUnknown:
        found = None
    return _shown_agency(agency_id, found)


def _shown_agency(agency_id: str, found: dict[str, str] | None) -> dict[str, Any]:
    """``agency_entry`` of a registry entry already read (``AgencyRegistry.get``)."""
    if found is None:
        return {"agency_id": agency_id, "kind": None, "name": agency_id}
    return {"agency_id": agency_id, "kind": found["kind"], "name": found["name"] or agency_id}


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


# ---- for the pages' reads ----

AGENCY_LIST_SECONDS = 30.0  # agencies are only ever added: a short cache is exact enough
SEARCH_LIMIT = 50
_ACTION_REASON = "-"  # a dry run's reason: never recorded, never shown


def _moment(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _case_summary(doc: Doc) -> dict[str, Any]:
    """What the search lists of a case: no personal field, only the pseudonym."""
    return {
        "case_id": doc["case_id"],
        "pseudonym": doc["participant"]["pseudonym"],
        "programme": doc["programme"],
        "site": doc["site"],
        "stage": doc["stage"],
        "outcome": doc["outcome"],
        "lead_agency": doc["lead_agency"],
        "opened_at": doc["opened_at"],
        "closed_at": doc["closed_at"],
        "erased": bool(doc["participant"].get("erased")),
    }


def _receiver_kinds(policy: DeadlinePolicy, kind: str) -> frozenset[AgencyKind]:
    """Which kinds could receive a forwarded handover of ``kind``: only a first cut,
    so the dry runs stay few; the dry run decides."""
    if kind == HandoverKind.REHAB_APPLICATION.value:
        return policy.roles.forward_to
    return policy.roles.handovers[HandoverKind(kind)].receivers


class FeedReads:
    """The feed's (and the webhooks') items, each case's through
    ``ReadService.feed_part``: the history's own filter decides an agency's part and
    withholds the personal fields disclosure does not allow now."""

    def __init__(self, reads: ReadService) -> None:
        self._reads = reads

    def items(
        self, principal: Principal, positions_by_case: dict[str, set[int]]
    ) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
        """The events at ``positions_by_case`` the caller may see, in global order,
        decrypted as far as it may see them; and per case the categories to record a
        read with (a case only where a shown item carries personal fields)."""
        items: list[dict[str, Any]] = []
        to_record: dict[str, list[str]] = {}
        for case_id, positions in positions_by_case.items():
            try:
                page, shown = self._reads.feed_part(principal, case_id, positions)
            except (CaseNotFound, NotInvolved):
                continue  # no longer its case (or erased from the views): nothing to show
            items.extend(page)
            personal = any(item["type"] in PERSONAL_PATHS_BY_EVENT for item in page)
            if principal.is_auditor and page:
                to_record[case_id] = []  # every auditor read is recorded
            elif personal and shown:
                # The categories this agency may see in the case (as a history read
                # records them): a read is never recorded with less than it showed.
                to_record[case_id] = sorted(shown)
        items.sort(key=lambda item: item["position"])
        return items, to_record

    def record(self, principal: Principal, to_record: dict[str, list[str]], scope: str) -> None:
        for case_id, categories in to_record.items():
            self._reads.record_case_read(principal, case_id, scope, categories)


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
