"""A seeded, realistic history of cases, written straight into the event store.

The cases follow DOMAIN.md's scenario shapes (assignment coaching cases, clinic
discharges with a later placement, rehabilitation applications forwarded at most
once and decided by their receiver under § 14 SGB IX, consents granted and revoked,
notes, closures, erasure after retention). Each case is driven through the real
``domain.case.Case`` commands in memory, so every event is one the hub could have
recorded, and turned into a stored event by the application's own mapper. Cases
start at random moments over four years and run for weeks to more than a year, so
the global order interleaves tens of thousands of cases, as a real store would; the
history ends mid-stream (cases still open, offers still waiting).

Writing goes through the recorder's ``insert_events`` in large batches, not the
application service: a million messages through the service would take longer
than everything this generator exists to measure.
"""

from __future__ import annotations

import contextlib
import gc
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from functools import cached_property
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from domain.agency import Agency
from domain.case import Act, Case
from domain.policy import DeadlinePolicy
from domain.values import (
    AgencyKind,
    AppointmentKind,
    DataCategory,
    EmploymentKind,
    HandoverKind,
    Outcome,
    RehabOutcome,
)
from services.crypto import case_key_id, seal

CET = timezone(timedelta(hours=1), "CET")
HISTORY_START = datetime(2022, 1, 3, 8, tzinfo=CET)
HISTORY_END = datetime(2026, 1, 5, 8, tzinfo=CET)
POLICY = DeadlinePolicy()

PROGRAMMES = ["G-A-L", "Inklusionsinitiative", "KoPrA", "MIAR", "Netzwerk Arbeit", "rehapro"]
TOWNS = [
    "Beeskow", "Trier", "Annaberg", "Aachen", "Cottbus", "Chemnitz", "Koblenz", "Leipzig",
    "Potsdam", "Mainz", "Erfurt", "Kassel", "Rostock", "Halle", "Jena", "Bonn", "Ulm",
    "Passau", "Siegen", "Gera", "Zwickau", "Wismar", "Görlitz", "Bautzen",
]  # fmt: skip
NAMES = ["Erika Musterfrau", "Max Beispielmann", "Lena Probst", "Jonas Vorbild", "Sabine Platz"]
NOTES = [
    ("Erstgespräch geführt, Teilnehmer motiviert.", DataCategory.NOTES),
    ("Bewerbung bei einem Handwerksbetrieb versandt.", DataCategory.NOTES),
    ("Termin wegen Krankheit abgesagt, neuer Termin folgt.", DataCategory.NOTES),
    ("Belastbarkeit vier Stunden täglich, keine Nachtschichten.", DataCategory.HEALTH),
    ("Praktikumsplatz in Aussicht, Rückmeldung nächste Woche.", DataCategory.NOTES),
    ("Unterlagen zur Eingliederungsvereinbarung nachgereicht.", DataCategory.NOTES),
    ("Teilnehmerin zieht im nächsten Monat um.", DataCategory.CONTACT),
]


@dataclass(frozen=True)
class Region:
    """One programme region: the agencies that hand cases to each other."""

    programme: str
    sites: tuple[str, ...]
    jobcenter: str
    employment_agency: str
    clinic: str
    coaches: tuple[str, str]
    chamber: str
    rehab: str

    def agencies(self) -> list[tuple[str, AgencyKind]]:
        return [
            (self.jobcenter, AgencyKind.JOBCENTER),
            (self.employment_agency, AgencyKind.EMPLOYMENT_AGENCY),
            (self.clinic, AgencyKind.PSYCHIATRIC_CLINIC),
            (self.coaches[0], AgencyKind.COACHING_PROVIDER),
            (self.coaches[1], AgencyKind.COACHING_PROVIDER),
            (self.chamber, AgencyKind.CHAMBER),
            (self.rehab, AgencyKind.REHABILITATION_AGENCY),
        ]

    @cached_property
    def kinds(self) -> Mapping[str, AgencyKind]:
        """The registered kinds every ``Act`` carries, as the service fills them from
        the registry: roles follow kinds. One mapping per region, shared by its acts."""
        return dict(self.agencies())


def regions(count: int) -> list[Region]:
    out = []
    for i in range(count):
        town = TOWNS[i % len(TOWNS)].lower() + ("" if i < len(TOWNS) else f"-{i}")
        out.append(
            Region(
                programme=PROGRAMMES[i % len(PROGRAMMES)],
                sites=tuple(f"{town}-{s}" for s in ("nord", "mitte", "sued")),
                jobcenter=f"jc-{town}",
                employment_agency=f"aa-{town}",
                clinic=f"klinik-{town}",
                coaches=(f"coach-{town}", f"ifd-{town}"),
                chamber=f"hwk-{town}",
                rehab=f"drv-{town}",
            )
        )
    return out


class _HistoryEnds(Exception):
    """The next step would happen after the end of the history."""


class _CaseWriter:
    """Drives one case through its commands with a running agency clock."""

    def __init__(
        self,
        rng: random.Random,
        region: Region,
        number: int,
        start: datetime,
        *,
        encrypt: bool = True,
    ) -> None:
        self.rng = rng
        self.encrypt = encrypt
        self.region = region
        self.number = number
        self.t = start
        self.case: Case | None = None
        self.pseudonym = f"P-{number:07d}"
        self.case_id = self.uuid()
        self._key_id = case_key_id(str(self.case_id))
        self._key = rng.randbytes(32)

    def seal_text(self, text: str) -> str:
        """Personal fields enter events encrypted, as ``MessageService`` stores them."""
        nonce = self.rng.randbytes(12)  # drawn either way: the same history, on or off
        return seal(self._key, self._key_id, text, nonce) if self.encrypt else text

    def seal(self, text: str | None) -> str | None:
        return None if text is None else self.seal_text(text)

    def seal_all(self, texts: Sequence[str]) -> list[str]:
        return [self.seal_text(text) for text in texts]

    def uuid(self) -> UUID:
        return UUID(int=self.rng.getrandbits(128), version=4)

    def wait(self, days: float) -> None:
        self.t += timedelta(minutes=max(1, round(days * 1440 * (0.7 + 0.6 * self.rng.random()))))
        if self.t >= HISTORY_END:
            raise _HistoryEnds

    def act(self, agency: str, actor: str | None = None) -> Act:
        # ``recorded_at`` left out: the hub's clock is ``_stamp``'s, seconds after
        # ``occurred_at``, so both clocks see the same consents.
        return Act(
            agency,
            actor or f"{agency.split('-', 1)[0]}-user-{self.rng.randrange(12)}",
            self.t,
            kinds=self.region.kinds,
        )

    # ---- building blocks ----------------------------------------------------------

    def open(self, agency: str, categories: str = "full") -> Case:
        participant: dict[str, Any] = {"pseudonym": self.pseudonym}
        participant["name"] = self.seal(self.rng.choice(NAMES))
        if categories == "full":
            participant["birth_date"] = self.seal(
                f"19{self.rng.randrange(60, 99)}-{self.rng.randrange(1, 13):02d}-"
                f"{self.rng.randrange(1, 29):02d}"
            )
            participant["contact"] = self.seal(f"Tel. 0{self.rng.randrange(10**8, 10**9)}")
        self.case = Case.open(
            self.case_id,
            self.act(agency),
            POLICY,
            programme=self.region.programme,
            site=self.rng.choice(self.region.sites),
            assignment_months=self.rng.choice((6, 12, 12, 12, 18, 24)),
            participant=participant,
        )
        return self.case

    def consent(
        self,
        agency: str,
        categories: Sequence[DataCategory],
        recipients: Sequence[str],
        days: float | None = 540,
    ) -> str:
        assert self.case is not None
        consent_id = f"{self.pseudonym}-{len(self.case.consents) + 1}"
        self.case.grant_consent(
            self.act(agency),
            consent_id=consent_id,
            categories=list(categories),
            source_agency=agency,
            recipients=list(recipients),
            valid_from=self.t,
            valid_until=None if days is None else self.t + timedelta(days=days),
        )
        return consent_id

    def offer(
        self, agency: str, kind: HandoverKind, to: str, categories: Sequence[DataCategory]
    ) -> UUID:
        assert self.case is not None
        handover_id = self.uuid()
        self.case.offer_handover(
            self.act(agency),
            POLICY,
            handover_id=handover_id,
            kind=kind,
            to_agency=to,
            data_categories=list(categories),
            reason=self.seal(self.rng.choice((None, "Anschlussversorgung", "Vermittlung"))),
        )
        return handover_id

    def notes(self, agency: str, most: int, spacing: float) -> None:
        assert self.case is not None
        for _ in range(self.rng.randrange(most + 1)):
            self.wait(spacing)
            text, category = self.rng.choice(NOTES)
            self.case.add_note(self.act(agency), text=self.seal(text), category=category)

    def reads(self, agency: str, categories: list[str], most: int, spacing: float) -> None:
        """Reads of health data are recorded in the case's history."""
        assert self.case is not None
        for _ in range(self.rng.randrange(most + 1)):
            self.wait(spacing)
            self.case.record_read(
                self.act(agency), role="agency", scope="case", categories=categories
            )

    def employment_and_aftercare(self, agency: str) -> bool:
        assert self.case is not None
        self.wait(self.rng.uniform(20, 200))
        self.case.start_employment(
            self.act(agency),
            employer=self.seal(f"Betrieb {self.rng.randrange(5000)} GmbH"),
            kind=self.rng.choice(list(EmploymentKind)),
            start_date=(self.t + timedelta(days=self.rng.randrange(1, 20))).date().isoformat(),
        )
        self.wait(1)
        self.case.start_aftercare(self.act(agency), until=self.t + timedelta(days=182))
        self.wait(self.rng.uniform(60, 182))
        self.case.end_aftercare(self.act(agency))
        return True

    def close_and_maybe_erase(self, lead: str, outcome: Outcome, target: str | None = None) -> None:
        assert self.case is not None
        self.wait(self.rng.uniform(1, 20))
        # A transfer names where the participant went; other outcomes name no target.
        self.case.close(
            self.act(lead),
            outcome=outcome,
            target=target if outcome is Outcome.TRANSFERRED else None,
        )
        if self.rng.random() < 0.15:
            self.wait(self.rng.uniform(300, 700))
            # Erasure follows the closure by the programme's retention period at least.
            assert self.case.closed_at is not None
            self.t = max(self.t, self.case.closed_at + POLICY.retention + timedelta(days=1))
            if self.t >= HISTORY_END:
                raise _HistoryEnds
            self.case.erase_participant(
                self.act(lead, "datenschutz-1"), POLICY, reason="Frist abgelaufen"
            )

    # ---- scenario shapes --------------------------------------------------------------

    def coaching(self) -> None:  # noqa: PLR0915 - one scenario, step by step
        """Scenario 3: a Jobcenter assigns a participant to a coaching provider."""
        r, rng = self.region, self.rng
        jc, coach = r.jobcenter, rng.choice(r.coaches)
        self.open(jc)
        self.consent(jc, [DataCategory.IDENTITY, DataCategory.CONTACT, DataCategory.PLAN], [coach])
        assignment = self.offer(
            jc, HandoverKind.ASSIGNMENT, coach, [DataCategory.IDENTITY, DataCategory.CONTACT]
        )
        fate = rng.random()
        if fate < 0.04:
            return  # the offer is never answered: it stays in the inbox, overdue
        assert self.case is not None
        if fate < 0.10:
            self.wait(rng.uniform(1, 6))
            self.case.decline_handover(
                self.act(coach), handover_id=assignment, reason=self.seal("keine Kapazität")
            )
            coach = r.coaches[1] if coach == r.coaches[0] else r.coaches[0]
            self.wait(1)
            self.consent(
                jc, [DataCategory.IDENTITY, DataCategory.CONTACT, DataCategory.PLAN], [coach]
            )
            assignment = self.offer(
                jc, HandoverKind.ASSIGNMENT, coach, [DataCategory.IDENTITY, DataCategory.CONTACT]
            )
        elif fate < 0.13:
            self.wait(rng.uniform(2, 10))
            self.case.withdraw_handover(
                self.act(jc), handover_id=assignment, reason=self.seal("Teilnahme abgelehnt")
            )
            self.close_and_maybe_erase(jc, Outcome.DROPPED_OUT)
            return
        self.wait(rng.uniform(0.3, 9))
        self.case.accept_handover(self.act(coach), POLICY, handover_id=assignment)
        coach_user = f"coach-{rng.randrange(40)}"
        self.wait(0.2)
        self.case.assign_coach(self.act(coach), coach=coach_user)
        kinds = [AppointmentKind.INFORMATION]
        if rng.random() < 0.5:
            kinds.append(AppointmentKind.FIRST_INTERVIEW)
        for kind in kinds:
            appointment = self.uuid()
            self.wait(rng.uniform(0.5, 3))
            self.case.schedule_appointment(
                self.act(coach, coach_user),
                appointment_id=appointment,
                kind=kind,
                at=self.t + timedelta(days=rng.uniform(2, 8)),
            )
            self.wait(rng.uniform(2, 8))
            if rng.random() < 0.9:
                self.case.record_appointment_held(
                    self.act(coach, coach_user), appointment_id=appointment
                )
            else:
                self.case.record_appointment_missed(
                    self.act(coach, coach_user), appointment_id=appointment
                )
            if kind is AppointmentKind.INFORMATION:
                self.wait(rng.uniform(0.5, 4))
                self.case.sign_agreement(self.act(coach, coach_user))
        self.wait(rng.uniform(3, 15))
        self.case.agree_plan(
            self.act(coach, coach_user),
            goals=self.seal_all(
                rng.sample(["Tagesstruktur", "Teilzeitstelle", "Ausbildung", "Führerschein"], 2)
            ),
            modules=self.seal_all(
                rng.sample(["Bewerbungstraining", "Praktikum", "Qualifizierung"], 2)
            ),
        )
        for _ in range(rng.choice((0, 1, 1))):
            measure = self.uuid()
            self.wait(rng.uniform(5, 40))
            self.case.start_measure(
                self.act(coach, coach_user),
                measure_id=measure,
                kind=rng.choice(("internship", "qualification")),
                title=self.seal_text("Praktikum"),
            )
            self.notes(coach, 1, 10)
            self.wait(rng.uniform(10, 60))
            self.case.end_measure(
                self.act(coach, coach_user),
                measure_id=measure,
                result=self.seal(rng.choice((None, "erfolgreich", "abgebrochen"))),
            )
        self.notes(coach, 2, 20)
        if rng.random() < 0.2:
            self.wait(rng.uniform(10, 40))
            self.case.update_plan(
                self.act(coach, coach_user),
                goals=self.seal_all(["Teilzeitstelle"]),
                modules=self.seal_all(["Praktikum"]),
            )
        if rng.random() < 0.15:
            self.wait(rng.uniform(100, 300))
            self.case.extend_assignment(
                self.act(jc),
                months=rng.choice((3, 6)),
                reason=self.seal_text("Praktikumsplatz in Aussicht"),
            )
        employed = rng.random() < 0.45 and self.employment_and_aftercare(rng.choice((jc, coach)))
        self.wait(rng.uniform(5, 30))
        self.case.complete_handover(self.act(coach, coach_user), handover_id=assignment)
        self.close_and_maybe_erase(
            jc,
            Outcome.EMPLOYED
            if employed
            else rng.choice(
                (Outcome.DROPPED_OUT, Outcome.MOVED_AWAY, Outcome.TRAINING, Outcome.OTHER)
            ),
        )

    def discharge(self) -> None:
        """Scenario 1: a clinic discharges a patient into the Jobcenter's care."""
        r, rng = self.region, self.rng
        clinic, jc = r.clinic, r.jobcenter
        self.open(clinic)
        self.consent(clinic, [DataCategory.HEALTH, DataCategory.CONTACT], [jc], days=365)
        discharge = self.offer(
            clinic, HandoverKind.DISCHARGE, jc, [DataCategory.HEALTH, DataCategory.CONTACT]
        )
        assert self.case is not None
        if rng.random() < 0.04:
            return  # never answered
        self.wait(rng.uniform(0.5, 8))
        self.case.accept_handover(self.act(jc), POLICY, handover_id=discharge)
        self.reads(jc, ["contact", "health", "identity"], 2, 2)
        self.wait(rng.uniform(3, 12))
        self.case.complete_handover(self.act(jc), handover_id=discharge)
        self.notes(jc, 1, 10)
        if rng.random() < 0.6:
            self.wait(rng.uniform(5, 30))
            self.consent(
                jc, [DataCategory.IDENTITY, DataCategory.EMPLOYMENT_HISTORY], [r.chamber], days=400
            )
            placement = self.offer(
                jc,
                HandoverKind.PLACEMENT_SUPPORT,
                r.chamber,
                [DataCategory.IDENTITY, DataCategory.EMPLOYMENT_HISTORY],
            )
            self.wait(rng.uniform(1, 14))
            self.case.accept_handover(self.act(r.chamber), POLICY, handover_id=placement)
            measure = self.uuid()
            self.wait(rng.uniform(5, 30))
            self.case.start_measure(
                self.act(r.chamber),
                measure_id=measure,
                kind="internship",
                title=self.seal_text("Praktikum Tischlerei"),
            )
            self.wait(rng.uniform(14, 60))
            self.case.end_measure(
                self.act(r.chamber), measure_id=measure, result=self.seal("Übernahme angeboten")
            )
            self.wait(rng.uniform(1, 5))
            self.case.complete_handover(self.act(r.chamber), handover_id=placement)
        employed = rng.random() < 0.4 and self.employment_and_aftercare(jc)
        self.close_and_maybe_erase(jc, Outcome.EMPLOYED if employed else Outcome.OTHER)

    def rehab(self) -> None:
        """Scenario 2: a rehabilitation application, forwarded at most once."""
        r, rng = self.region, self.rng
        jc, aa, drv = r.jobcenter, r.employment_agency, r.rehab
        self.open(jc, categories="short")
        self.consent(jc, [DataCategory.HEALTH, DataCategory.ASSESSMENT], [aa, drv], days=180)
        first = self.offer(
            jc, HandoverKind.REHAB_APPLICATION, aa, [DataCategory.HEALTH, DataCategory.ASSESSMENT]
        )
        assert self.case is not None
        receiver, handover = aa, first
        if rng.random() < 0.5:
            handover = self.uuid()
            # At most 10 days, 13 with ``wait``'s jitter: § 14 Abs. 1 allows a forward
            # only within two weeks of receipt.
            self.wait(rng.uniform(2, 10))
            self.case.forward_handover(
                self.act(aa),
                POLICY,
                handover_id=first,
                new_handover_id=handover,
                to_agency=drv,
                reason=self.seal("Zuständigkeit der Rentenversicherung"),
            )
            receiver = drv
        if rng.random() < 0.03:
            return  # never answered
        self.wait(rng.uniform(1, 12))
        self.case.accept_handover(self.act(receiver), POLICY, handover_id=handover)
        self.wait(rng.uniform(4, 28))  # some decisions miss the 21 days
        # An application is completed only by its decision (§ 14 Abs. 2). Entered on
        # time, so it needs no notice (document_ref) to count on the agency's date.
        self.case.decide_rehab(
            self.act(receiver),
            POLICY,
            handover_id=handover,
            outcome=rng.choice(
                (RehabOutcome.GRANTED, RehabOutcome.PARTLY_GRANTED, RehabOutcome.REFUSED)
            ),
        )
        self.notes(jc, 1, 15)
        if rng.random() < 0.6:
            self.close_and_maybe_erase(
                jc, rng.choice((Outcome.TRANSFERRED, Outcome.TRAINING)), target=receiver
            )

    def revoked(self) -> None:
        """Scenario 4: a discharge, a coaching assignment and a revoked health consent."""
        r, rng = self.region, self.rng
        clinic, jc, coach = r.clinic, r.jobcenter, rng.choice(r.coaches)
        self.open(clinic)
        self.consent(clinic, [DataCategory.HEALTH, DataCategory.CONTACT], [jc], days=None)
        discharge = self.offer(
            clinic, HandoverKind.DISCHARGE, jc, [DataCategory.HEALTH, DataCategory.CONTACT]
        )
        assert self.case is not None
        self.wait(rng.uniform(1, 6))
        self.case.accept_handover(self.act(jc), POLICY, handover_id=discharge)
        self.wait(rng.uniform(1, 5))
        self.consent(jc, [DataCategory.IDENTITY, DataCategory.CONTACT], [coach], days=None)
        assignment = self.offer(
            jc, HandoverKind.ASSIGNMENT, coach, [DataCategory.IDENTITY, DataCategory.CONTACT]
        )
        self.wait(rng.uniform(1, 5))
        self.case.accept_handover(self.act(coach), POLICY, handover_id=assignment)
        self.wait(rng.uniform(0.5, 3))
        health = self.consent(clinic, [DataCategory.HEALTH], [coach], days=None)
        # The clinic's report goes to the coach as a discharge (the programme's
        # coordination point, as in KoPrA): a clinic may not send placement support.
        # The coach cannot lead, so accepting it leaves the lead with the Jobcenter.
        report = self.offer(clinic, HandoverKind.DISCHARGE, coach, [DataCategory.HEALTH])
        self.wait(rng.uniform(0.5, 3))
        self.case.accept_handover(self.act(coach), POLICY, handover_id=report)
        self.reads(coach, ["contact", "health", "identity"], 2, 3)
        self.notes(coach, 3, 7)
        self.wait(rng.uniform(10, 40))
        # The participant revokes through the lead (or the source); the coach may not.
        self.case.revoke_consent(self.act(jc), consent_id=health)
        self.notes(coach, 2, 20)

    def run(self) -> Case | None:
        roll = self.rng.random()  # the mix of scenario shapes
        if roll < 0.40:
            shape = self.coaching
        elif roll < 0.70:
            shape = self.discharge
        elif roll < 0.95:
            shape = self.rehab
        else:
            shape = self.revoked
        with contextlib.suppress(_HistoryEnds):
            shape()
        return self.case


@dataclass
class History:
    """Stored events in recorded order, with what a benchmark needs to know of them."""

    events: list[StoredEvent]
    cases: int
    regions: list[Region]
    case_ids: list[UUID] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.events)


def _stamp(events: Sequence[Any], rng: random.Random) -> list[tuple[datetime, Any]]:
    """The hub's clock: each event is recorded shortly after it occurred at its agency."""
    out = []
    previous = None
    for e in events:
        recorded = (e.occurred_at + timedelta(seconds=rng.randrange(5, 900))).astimezone(UTC)
        if previous is not None and recorded <= previous:
            recorded = previous + timedelta(milliseconds=1)
        object.__setattr__(e, "timestamp", recorded)  # events are frozen dataclasses
        out.append((recorded, e))
        previous = recorded
    return out


def generate(
    mapper: Any,
    events: int,
    *,
    seed: int = 20260101,
    region_count: int | None = None,
    events_per_case: float = 10.0,
    encrypt: bool = True,
) -> History:
    """About ``events`` events (exactly, unless fewer cases fit) in recorded order.

    ``region_count`` defaults to one region per 5,000 cases; every case of a region
    involves its Jobcenter, so a region of 10,000 cases gives an agency 10,000 cases.
    """
    collecting = gc.isenabled()
    gc.disable()  # millions of young objects, no cycles: the collector only costs time
    try:
        return _generate(mapper, events, seed, region_count, events_per_case, encrypt)
    finally:
        if collecting:
            gc.enable()


def _generate(
    mapper: Any,
    events: int,
    seed: int,
    region_count: int | None,
    events_per_case: float,
    encrypt: bool,
) -> History:
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    n_cases = max(1, round(events / events_per_case))
    region_list = regions(region_count or max(1, n_cases // 5000))
    span = (HISTORY_END - HISTORY_START).total_seconds() - 20 * 86400
    stamped: list[tuple[datetime, int, Any]] = []
    case_ids = []
    produced = 0
    number = 0
    while produced < events:
        # More cases until the history is long enough (truncation at the end of the
        # history shortens the last ones, so the first estimate falls a bit short).
        batch = max(100, round((events - produced) / events_per_case * 1.05))
        for _ in range(batch):
            number += 1
            start = HISTORY_START + timedelta(seconds=rng.random() * span)
            writer = _CaseWriter(rng, rng.choice(region_list), number, start, encrypt=encrypt)
            case = writer.run()
            if case is None:
                continue
            case_ids.append(case.id)
            for recorded, e in _stamp(case.collect_events(), rng):
                stamped.append((recorded, number, e))
                produced += 1
    stamped.sort(key=lambda item: (item[0], item[1]))
    del stamped[events:]  # drop the latest: a suffix of each case, so still valid
    registrations = []
    registered_at = HISTORY_START - timedelta(days=30)
    for region in region_list:
        for agency_id, kind in region.agencies():
            agency = Agency.register(agency_id, kind, agency_id.upper(), registered_at)
            for e in agency.collect_events():
                object.__setattr__(e, "timestamp", registered_at.astimezone(UTC))
                registrations.append(e)
    # Registrations come first and count towards the total.
    stored = [mapper.to_stored_event(e) for e in registrations]
    stored += [mapper.to_stored_event(e) for _, _, e in stamped[: events - len(stored)]]
    kept = {s.originator_id for s in stored}
    return History(
        events=stored,
        cases=sum(1 for c in case_ids if c in kept),
        regions=region_list,
        case_ids=[c for c in case_ids if c in kept],
    )


def write(recorder: Any, events: Sequence[StoredEvent], batch: int | None = None) -> int:
    """Bulk-insert through the recorder; checks each batch got its notification ids.

    PostgreSQL batches stay at 5,000: the library inserts in pipeline mode and, seen
    here with psycopg 3.3, waits forever on batches of about 10,000 events or more."""
    if batch is None:
        batch = 5_000 if "postgres" in type(recorder).__module__ else 20_000
    last = recorder.max_notification_id() or 0
    for i in range(0, len(events), batch):
        chunk = events[i : i + batch]
        ids = recorder.insert_events(chunk)
        if ids is None or len(ids) != len(chunk) or ids[0] <= last or list(ids) != sorted(ids):
            raise RuntimeError(f"notification ids not assigned as expected for batch at {i}")
        last = ids[-1]
    top = recorder.max_notification_id()
    if top != last:
        raise RuntimeError(f"max notification id {top} != last assigned {last}")
    return last
