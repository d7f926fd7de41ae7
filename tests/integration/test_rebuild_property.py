"""Property: views built incrementally equal views rebuilt from zero.

Hypothesis drives a small model of the case rules (DOMAIN.md) to generate random
*valid* message sequences over a few cases. Each message is recorded through the
application service on a temporary SQLite store and the views are caught up after
it (sometimes by a freshly started runner, with a random page size, so state is
reloaded from the tables); then every view is rebuilt from the events with another
page size and the tables must be identical.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid5

from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from services.bootstrap import build_hub
from services.settings import Settings
from services.views.runner import ViewRunner
from tests.factories import T0
from tests.view_helpers import (
    CHAMBER,
    CLINIC,
    COACH,
    DRV,
    EMPLOYMENT_AGENCY,
    JOBCENTER,
    TEST_AGENCIES,
    register_test_agencies,
    snapshot,
)

AGENCIES = (JOBCENTER, COACH, CLINIC, EMPLOYMENT_AGENCY, DRV, CHAMBER)
KINDS = ("assignment", "discharge", "rehab_application", "placement_support", "return")
CATEGORIES = ("health", "contact", "identity", "notes")
KIND_OF = dict(TEST_AGENCIES)
LEAD_KINDS = frozenset({"jobcenter", "employment_agency"})
OPENER_KINDS = LEAD_KINDS | {"psychiatric_clinic"}
REHAB_RECEIVER_KINDS = frozenset({"rehabilitation_agency", "employment_agency"})
# Handover kind -> (sender kinds, receiver kinds) as in domain/policy.py; a ``return``
# goes from any kind to the current lead only (receivers None).
ROLES: dict[str, tuple[frozenset[str], frozenset[str] | None]] = {
    "assignment": (LEAD_KINDS, frozenset({"coaching_provider"})),
    "discharge": (frozenset({"psychiatric_clinic"}), LEAD_KINDS | {"coaching_provider"}),
    "rehab_application": (LEAD_KINDS | {"psychiatric_clinic"}, REHAB_RECEIVER_KINDS),
    "placement_support": (
        LEAD_KINDS | {"coaching_provider"},
        frozenset({"chamber", "integration_office"}),
    ),
    "return": (frozenset(KIND_OF.values()), None),
}
FORWARD_HOURS = 14 * 24  # § 14 Abs. 1: a rehab application is forwarded within 14 days
OPEN_STATES = ("offered", "accepted")
CHECKPOINT_EVERY = 3
# Handover decisions most often, closing and erasing rarely, so cases live long enough.
FAMILY_WEIGHTS = (
    "open",
    "offer",
    "offer",
    "decide",
    "decide",
    "decide",
    "decide",
    "consent",
    "case",
    "case",
    "case",
    "finish",
)
_NS = UUID("6f0c4c3e-94a4-4e35-9d59-1d4c35b7f0a1")


@dataclass
class Handover:
    kind: str
    sender: str
    receiver: str
    offered_at: float  # hours since T0
    state: str = "offered"
    forwarded_from: str | None = None

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def bound_to_decide(self) -> bool:
        """§ 14: the second agency of a chain decides; it cannot decline, and the
        forwarder cannot withdraw."""
        return self.kind == "rehab_application" and self.forwarded_from is not None


@dataclass
class Consent:
    categories: list[str]
    source: str
    recipients: list[str]
    valid_until: float | None  # hours since T0
    revoked: bool = False


@dataclass
class CaseModel:
    """What the domain will accept next, tracked from what was sent so far."""

    case_id: str
    opened: bool = False
    opener: str = ""
    lead: str = ""
    stage: str = "opened"
    erased: bool = False
    assignment_started: bool = False
    agreement_signed: bool = False
    plan: bool = False
    aftercare_ended: bool = False
    handovers: dict[str, Handover] = field(default_factory=dict)
    consents: dict[str, Consent] = field(default_factory=dict)
    appointments: dict[str, str] = field(default_factory=dict)
    measures: dict[str, bool] = field(default_factory=dict)  # id -> ended

    @property
    def involved(self) -> list[str]:
        """Opener, lead, senders, and receivers whose handover did not end declined or
        withdrawn (rule 7: those took no part)."""
        agencies = {self.opener, self.lead}
        for h in self.handovers.values():
            agencies.add(h.sender)
            if h.state not in ("declined", "withdrawn"):
                agencies.add(h.receiver)
        return sorted(agencies)

    @property
    def rehab_open(self) -> bool:
        """A rehab application awaits its decision: no new one, and no closure."""
        return any(h.kind == "rehab_application" and h.is_open for h in self.handovers.values())

    def receivers(self, kind: str) -> list[str]:
        """The agencies a ``kind`` handover may go to now (by kind, or the lead)."""
        allowed = ROLES[kind][1]
        if allowed is None:
            return [self.lead]
        return [a for a in AGENCIES if KIND_OF[a] in allowed]

    @property
    def closed(self) -> bool:
        return self.stage == "closed"

    def activate(self) -> None:
        if self.stage == "opened" and self.assignment_started and self.agreement_signed:
            self.stage = "active"


Command = tuple[str, str, dict[str, Any], Callable[[], None]]  # type, agency, payload, apply


class Model:
    def __init__(self, draw: Callable[[Any], Any], cases: int) -> None:
        self.draw = draw
        self.cases = [CaseModel(str(uuid5(_NS, f"case-{i}"))) for i in range(cases)]
        self.hours = 0.0
        self.counter = 0
        self.with_categories: set[str] = set()  # handovers that carry data categories

    def new_id(self, what: str) -> str:
        self.counter += 1
        return str(uuid5(_NS, f"{what}-{self.counter}"))

    def pick(self, options: list[Any] | tuple[Any, ...]) -> Any:
        return self.draw(st.sampled_from(sorted(options) if isinstance(options, set) else options))

    # ---- the commands each case accepts now -------------------------------------------

    def commands(self, c: CaseModel) -> dict[str, list[Command]]:
        """The valid commands on ``c`` now, by family (families are drawn with weights)."""
        if not c.opened:
            return {"open": [self._open(c)]}
        finish = [] if c.erased else [self._erase(c)]
        if c.closed:
            return {"finish": finish}
        handovers = self._handover_commands(c)
        close = self._close(c)
        return {
            "offer": handovers[:1],
            "decide": handovers[1:],
            "consent": self._consent_commands(c),
            "case": self._case_commands(c),
            "finish": [*finish, *([close] if close else [])],
        }

    def _open(self, c: CaseModel) -> Command:
        opener = self.pick([a for a in AGENCIES if KIND_OF[a] in OPENER_KINDS])
        payload = {
            "programme": self.pick(["KoPrA", "MIAR"]),
            "participant": {"pseudonym": f"P-{c.case_id[:4]}", "name": "Anna Beispiel"},
        }
        if self.draw(st.booleans()):
            payload["site"] = self.pick(["Nord", "Sued"])
            payload["participant"]["contact"] = "Tel. 0000"

        def apply() -> None:
            c.opened, c.opener, c.lead = True, opener, opener

        return ("case.opened", opener, payload, apply)

    def _covered(self, c: CaseModel, sender: str, receiver: str) -> set[str]:
        """Categories a consent from ``sender`` covers for ``receiver`` now, on the
        agency's clock (the model's hours) and on the hub's (the real clock: the model's
        dates lie in the past, so a short consent has expired by the time it is
        recorded and covers nothing)."""
        hub_now = datetime.now(UTC) + timedelta(hours=1)
        return {
            category
            for consent in c.consents.values()
            if not consent.revoked
            and consent.source == sender
            and receiver in consent.recipients
            and (
                consent.valid_until is None
                or (
                    self.hours < consent.valid_until
                    and hub_now < T0 + timedelta(hours=consent.valid_until)
                )
            )
            for category in consent.categories
        }

    def _offers(self, c: CaseModel, sender: str) -> dict[str, list[str]]:
        """Handover kind -> the receivers ``sender`` may offer it to now."""
        found: dict[str, list[str]] = {}
        for kind in KINDS:
            if KIND_OF[sender] not in ROLES[kind][0]:
                continue
            if kind == "rehab_application" and c.rehab_open:
                continue
            receivers = [a for a in c.receivers(kind) if a != sender]
            if receivers:
                found[kind] = receivers
        return found

    def _handover_commands(self, c: CaseModel) -> list[Command]:
        found: list[Command] = []
        offers = {a: o for a in c.involved if (o := self._offers(c, a))}
        # The lead can always offer (an assignment or a discharge), so offers is never empty.
        sender = self.pick(sorted(offers))
        kind = self.pick(sorted(offers[sender]))
        receiver = self.pick(offers[sender][kind])
        covered = sorted(self._covered(c, sender, receiver))
        categories = self.draw(st.lists(st.sampled_from(covered), unique=True)) if covered else []
        handover_id = self.new_id("handover")

        def offer() -> None:
            c.handovers[handover_id] = Handover(kind, sender, receiver, offered_at=self.hours)

        found.append(
            (
                "handover.offered",
                sender,
                {
                    "handover_id": handover_id,
                    "kind": kind,
                    "to_agency": receiver,
                    "data_categories": categories,
                },
                offer,
            )
        )
        for hid, h in sorted(c.handovers.items()):
            found += self._decisions(c, hid, h)
        return found

    def _forward_targets(self, c: CaseModel, h: Handover) -> list[str]:
        if h.kind == "rehab_application":
            # § 14 Abs. 1: once along the chain, within 14 days of the offer, to a
            # rehabilitation agency (or the employment agency).
            if h.forwarded_from or self.hours - h.offered_at > FORWARD_HOURS:
                return []
            targets = [a for a in AGENCIES if KIND_OF[a] in REHAB_RECEIVER_KINDS]
        else:  # the next receiver's kind must be allowed for the kind (return: the lead)
            targets = c.receivers(h.kind)
        return [a for a in targets if a not in (h.sender, h.receiver)]

    def _decisions(self, c: CaseModel, hid: str, h: Handover) -> list[Command]:
        found: list[Command] = []

        def to(state: str) -> Callable[[], None]:
            def apply() -> None:
                if (
                    state == "accepted"
                    and h.kind == "discharge"
                    and h.sender == c.lead
                    and KIND_OF[h.receiver] in LEAD_KINDS
                ):
                    c.lead = h.receiver
                h.state = state
                if state == "accepted" and h.kind == "assignment":
                    c.assignment_started = True
                    c.activate()

            return apply

        if h.state == "offered":
            if not c.erased:
                reason = {"handover_id": hid, "reason": "passt nicht"}
                if not h.bound_to_decide:
                    found.append(("handover.declined", h.receiver, reason, to("declined")))
                    found.append(("handover.withdrawn", h.sender, reason, to("withdrawn")))
                targets = self._forward_targets(c, h)
                if targets and not self._carries_data(c, hid):
                    target = self.pick(targets)
                    new_id = self.new_id("forwarded")

                    def forward() -> None:
                        h.state = "forwarded"
                        c.handovers[new_id] = Handover(
                            h.kind, h.receiver, target, offered_at=self.hours, forwarded_from=hid
                        )

                    found.append(
                        (
                            "handover.forwarded",
                            h.receiver,
                            {
                                "handover_id": hid,
                                "new_handover_id": new_id,
                                "to_agency": target,
                                "reason": "zuständig",
                            },
                            forward,
                        )
                    )
            found.append(("handover.accepted", h.receiver, {"handover_id": hid}, to("accepted")))
        if h.is_open and h.kind == "rehab_application":
            # § 14: decided by its receiver (offered or accepted), never "completed".
            outcome = self.pick(["granted", "refused", "partly_granted"])
            found.append(
                (
                    "rehab.decided",
                    h.receiver,
                    {"handover_id": hid, "outcome": outcome},
                    to("completed"),
                )
            )
        elif h.state == "accepted":
            found.append(("handover.completed", h.receiver, {"handover_id": hid}, to("completed")))
        return found

    def _carries_data(self, c: CaseModel, hid: str) -> bool:
        # Forwarding data needs consents to the next agency; the model forwards only
        # handovers that carry none.
        return hid in self.with_categories

    def _consent_commands(self, c: CaseModel) -> list[Command]:
        agency = self.pick(c.involved)  # a consent is recorded by its source agency
        recipients = self.draw(
            st.lists(
                st.sampled_from([a for a in AGENCIES if a != agency]),
                min_size=1,
                max_size=2,
                unique=True,
            )
        )
        categories = self.draw(st.lists(st.sampled_from(CATEGORIES), min_size=1, unique=True))
        # Open-ended, short (expired by the hub's clock when recorded: it never covers a
        # disclosure, but the views still fold it), or valid for years (covers).
        lasts = self.draw(
            st.none() | st.integers(1, 200) | st.integers(10 * 365 * 24, 20 * 365 * 24)
        )
        consent_id = f"c-{self.counter}-{len(c.consents)}"
        payload: dict[str, Any] = {
            "consent_id": consent_id,
            "categories": categories,
            "source_agency": agency,
            "recipients": recipients,
            "valid_from": self.at(),
        }
        if lasts is not None:
            payload["valid_until"] = self.at(lasts)

        def grant() -> None:
            c.consents[consent_id] = Consent(
                categories, agency, recipients, None if lasts is None else self.hours + lasts
            )

        found: list[Command] = [("consent.granted", agency, payload, grant)]
        involved = c.involved
        for cid, consent in sorted(c.consents.items()):
            if not consent.revoked:

                def revoke(consent: Consent = consent) -> None:
                    consent.revoked = True

                # Revoked through the source or the lead (the lead is always involved).
                by = self.pick([a for a in (consent.source, c.lead) if a in involved])
                found.append(("consent.revoked", by, {"consent_id": cid}, revoke))
        return found

    def _case_commands(self, c: CaseModel) -> list[Command]:
        found: list[Command] = []
        agency = self.pick(c.involved)

        def nothing() -> None:
            return None

        coaching = {
            h.receiver
            for h in c.handovers.values()
            if h.kind == "assignment" and h.state in ("accepted", "completed")
        }
        found.append(
            (
                "coach.assigned",
                self.pick(sorted(coaching | {c.lead})),
                {"coach": "coach-x"},
                nothing,
            )
        )
        appointment = self.new_id("appointment")

        def schedule() -> None:
            c.appointments[appointment] = "scheduled"

        found.append(
            (
                "appointment.scheduled",
                agency,
                {"appointment_id": appointment, "kind": "information", "at": self.at(48)},
                schedule,
            )
        )
        for aid, state in sorted(c.appointments.items()):
            if state == "scheduled":
                outcome = self.pick(["held", "missed"])

                def mark(aid: str = aid, outcome: str = outcome) -> None:
                    c.appointments[aid] = outcome

                found.append((f"appointment.{outcome}", agency, {"appointment_id": aid}, mark))
        if not c.agreement_signed:

            def sign() -> None:
                c.agreement_signed = True
                c.activate()

            found.append(("agreement.signed", agency, {}, sign))
        if not c.erased:  # plans, measure titles and extension reasons are personal data
            found += self._personal_coaching_commands(c, agency)

        for mid, ended in sorted(c.measures.items()):
            if not ended:

                def end(mid: str = mid) -> None:
                    c.measures[mid] = True

                found.append(("measure.ended", agency, {"measure_id": mid}, end))
        if c.stage in ("opened", "active") and not c.erased:

            def employ() -> None:
                c.stage = "employed"

            start = (T0 + timedelta(hours=self.hours)).date().isoformat()
            found.append(
                (
                    "employment.started",
                    agency,
                    {"employer": "Beispiel GmbH", "kind": "employment", "start_date": start},
                    employ,
                )
            )
        if c.stage == "employed":

            def aftercare() -> None:
                c.stage = "aftercare"

            found.append(("aftercare.started", agency, {}, aftercare))
        if c.stage == "aftercare" and not c.aftercare_ended:

            def end_aftercare() -> None:
                c.aftercare_ended = True

            found.append(("aftercare.ended", agency, {}, end_aftercare))
        leads = [a for a in c.involved if a != c.lead and KIND_OF[a] in LEAD_KINDS]
        if leads and not c.erased:  # the reason is personal data
            new_lead = self.pick(leads)

            def transfer() -> None:
                c.lead = new_lead

            found.append(
                (
                    "lead.transferred",
                    c.lead,
                    {"to_agency": new_lead, "reason": "zuständig"},
                    transfer,
                )
            )
        if not c.erased:
            category = self.pick(CATEGORIES)
            found.append(("note.added", agency, {"text": "Notiz", "category": category}, nothing))
        return found

    def _personal_coaching_commands(self, c: CaseModel, agency: str) -> list[Command]:
        """Commands whose payloads carry personal data: refused once the key is gone."""
        found: list[Command] = []
        plan = {"goals": ["Arbeit"], "modules": ["Training"]}

        def agree() -> None:
            c.plan = True

        found.append(("plan.updated" if c.plan else "plan.agreed", agency, plan, agree))
        measure = self.new_id("measure")

        def nothing() -> None:
            pass

        def start_measure() -> None:
            c.measures[measure] = False

        found.append(
            (
                "measure.started",
                agency,
                {"measure_id": measure, "kind": "internship", "title": "Praktikum"},
                start_measure,
            )
        )
        found.append(
            ("assignment.extended", c.lead, {"months": 3, "reason": "verlängert"}, nothing)
        )
        return found

    def _close(self, c: CaseModel) -> Command | None:
        """By the lead; not while a rehab application awaits its decision; other open
        handovers are withdrawn by the closure (``withdraw_open``)."""
        if c.rehab_open:
            return None
        open_handovers = [h for _, h in sorted(c.handovers.items()) if h.is_open]
        outcome = self.pick(["employed", "other", "transferred"])
        payload: dict[str, Any] = {"outcome": outcome}
        if outcome == "transferred":
            payload["target"] = "other-programme"
        if open_handovers:
            payload["withdraw_open"] = True

        def close() -> None:
            for h in open_handovers:
                h.state = "withdrawn"
            c.stage = "closed"

        return ("case.closed", c.lead, payload, close)

    def _erase(self, c: CaseModel) -> Command:
        def erase() -> None:
            c.erased = True

        return (
            "participant.erased",
            c.lead,
            {"reason": "Aufbewahrung", "ground": "Art. 17 (1) b DSGVO"},
            erase,
        )

    # ---- one message -------------------------------------------------------------------

    def at(self, plus_hours: float = 0) -> str:
        return (T0 + timedelta(hours=self.hours + plus_hours)).isoformat()

    def next_message(self) -> dict[str, Any] | None:
        """The next valid message, or None once every case is closed and erased."""
        self.hours += self.draw(st.integers(1, 96))
        open_cases = [c for c in self.cases if not (c.closed and c.erased)]
        if not open_cases:
            return None
        case = self.pick(open_cases)
        families = {name: found for name, found in self.commands(case).items() if found}
        family = self.pick([f for f in FAMILY_WEIGHTS if f in families] or sorted(families))
        type_, agency, payload, apply = self.pick(families[family])
        note(f"{type_} by {agency} on case {self.cases.index(case)}")
        apply()
        if type_ == "handover.offered" and payload["data_categories"]:
            self.with_categories.add(payload["handover_id"])
        self.counter += 1
        return {
            "message_id": str(uuid5(_NS, f"message-{self.counter}")),
            "type": type_,
            "agency": agency,
            "case_id": case.case_id,
            "occurred_at": self.at(),
            "actor": f"user@{agency}",
            "payload": payload,
        }


@settings(
    max_examples=25,
    deadline=None,
    # No shrinking: every example builds a store, and shrinking a failure could take
    # minutes; the notes list the failing sequence's messages instead.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_rebuild_equals_incremental_over_random_valid_histories(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        hub = build_hub(
            Settings(
                database_url=f"sqlite:///{tmp}/hub.db",
                var_dir=Path(tmp) / "var",
                audit_checkpoint_every=CHECKPOINT_EVERY,
            )
        )
        try:
            register_test_agencies(hub)
            model = Model(data.draw, cases=data.draw(st.integers(1, 3), label="cases"))

            def fresh_runner() -> ViewRunner:
                return ViewRunner(
                    hub.app.recorder,
                    hub.view_store,
                    page_size=data.draw(st.integers(1, 6), label="page size"),
                    checkpoint_every=CHECKPOINT_EVERY,
                )

            runner = fresh_runner()
            head = 0
            for _ in range(data.draw(st.integers(3, 40), label="messages")):
                sent = model.next_message()
                if sent is None:
                    break
                result = hub.messages.record_raw(sent)
                assert not result["duplicate"]
                head = result["position"]
                if data.draw(st.booleans(), label="restart the runner"):
                    runner = fresh_runner()
                runner.catch_up()
                assert runner.position() == head
            incremental = snapshot(hub.view_store)

            rebuilt_by = ViewRunner(
                hub.app.recorder,
                hub.view_store,
                page_size=data.draw(st.integers(1, 50), label="rebuild page size"),
                checkpoint_every=CHECKPOINT_EVERY,
            )
            assert rebuilt_by.rebuild() == head

            assert snapshot(hub.view_store) == incremental
            assert [r["position"] for r in incremental["view_audit"]] == list(range(1, head + 1))
        finally:
            hub.close()
