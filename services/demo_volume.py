"""A seeded year of programme work beside the five scenarios (``hub demo --volume N``).

The dashboard of five cases shows single bars; a programme lead reports from
hundreds. These cases follow the same rules as the scenarios (roles, consents by
their source, deadlines, § 14 SGB IX) through the same application service, with
invented, clearly fictitious participants. Every id derives from the seed and the
case number, so loading again records nothing new; an event dated after now is left
out (and recorded by a later load once its day has come).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.errors import DomainError
from services.demo import CET, DemoFailed, _Writer, demo_id
from services.errors import ServiceError

YEAR_START = datetime(2025, 12, 1, 8, tzinfo=CET)
FIRST_NAMES = ("Alex", "Sam", "Kim", "Robin", "Jule", "Noah", "Mia", "Ben", "Lea", "Finn")
LAST_NAMES = ("Beispiel", "Muster", "Probe", "Exempel", "Vorlage", "Platzhalter")
EMPLOYERS = ("Bäckerei Beispiel", "Gartenbau Muster GmbH", "Lager & Logistik Probe KG")


@dataclass(frozen=True)
class Programme:
    name: str
    sites: tuple[str, ...]
    share: float


PROGRAMMES = (
    Programme(
        "Inklusionsinitiative Trier",
        ("Trier-Nord", "Trier-Ehrang", "Trier-Süd", "Trier-West"),
        0.45,
    ),
    Programme("G-A-L", ("Beeskow", "Fürstenwalde"), 0.2),
    Programme("KoPrA", ("Annaberg-Buchholz", "Aue"), 0.15),
    Programme("MIAR", ("Aachen", "Eschweiler"), 0.2),
)


def _pick(rng: random.Random) -> Programme:
    roll, total = rng.random(), 0.0
    for programme in PROGRAMMES:
        total += programme.share
        if roll < total:
            return programme
    return PROGRAMMES[-1]


class _Case:
    """One generated case: a scenario writer with the programme's usual path."""

    def __init__(self, number: int, rng: random.Random) -> None:
        self.rng = rng
        self.programme = _pick(rng)
        start = YEAR_START + timedelta(days=rng.uniform(0, 360))
        self.w = _Writer(1000 + number, f"volume {number}", start)
        self.w.scenario.case_id = demo_id(f"volume/{number}/case")
        self.tag = f"V-{number:05d}"

    def participant(self) -> dict[str, Any]:
        rng = self.rng
        return {
            "pseudonym": self.tag,
            "name": f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)} (fiktiv)",
            "birth_date": f"{rng.randint(1965, 2004)}-{rng.randint(1, 12):02d}-"
            f"{rng.randint(1, 28):02d}",
        }

    def open(self, day: float, agency: str, actor: str) -> None:
        self.w.send(
            day,
            agency,
            actor,
            "case.opened",
            {
                "programme": self.programme.name,
                "site": self.rng.choice(self.programme.sites),
                "participant": self.participant(),
            },
        )

    def handover(
        self, day: float, sender: str, actor: str, to: str, kind: str, categories: list[str]
    ) -> float | None:
        """Consent by the sender, the offer, and (mostly) its acceptance: the day the
        receiver accepted, or None when the offer stays open or is declined."""
        w, rng = self.w, self.rng
        name = f"{kind}-{to}"
        w.consent(day, sender, actor, f"{self.tag}-{name}", categories, [to], until=5 * 365)
        w.offer(day, sender, actor, name, kind, to=to, categories=categories)
        roll = rng.random()
        if roll < 0.06:
            return None  # still open: in the receiver's inbox
        accept_day = day + rng.choice((0.2, 0.5, 1, 1, 2, 3, 4, 6, 9, 12))
        if roll < 0.1:
            w.send(
                accept_day,
                to,
                "team-1",
                "handover.declined",
                {"handover_id": w.id(name), "reason": "keine Kapazität"},
            )
            return None
        w.send(accept_day, to, "team-1", "handover.accepted", {"handover_id": w.id(name)})
        return accept_day

    def work(self, day: float, agency: str, lead: str, assignment: str | None) -> None:
        """Coaching or placement, then an outcome (or still running)."""
        w, rng = self.w, self.rng
        w.send(day + 1, agency, "coach-1", "agreement.signed")
        w.send(
            day + rng.uniform(5, 25),
            agency,
            "coach-1",
            "plan.agreed",
            {"goals": ["Tagesstruktur", "Arbeitsaufnahme"], "modules": ["Bewerbungstraining"]},
        )
        measure = w.id("measure")
        begun = day + rng.uniform(20, 60)
        w.send(
            begun,
            agency,
            "coach-1",
            "measure.started",
            {"measure_id": measure, "kind": "internship", "title": "Praktikum"},
        )
        w.send(
            begun + rng.uniform(14, 60), agency, "coach-1", "measure.ended", {"measure_id": measure}
        )
        roll = rng.random()
        end = begun + rng.uniform(60, 330)
        if roll < 0.3:
            return  # still in the programme
        if assignment is not None:
            w.send(end - 1, agency, "coach-1", "handover.completed", {"handover_id": assignment})
        if roll < 0.7:
            start = (self.w.at(end)).date().isoformat()
            w.send(
                end,
                lead,
                "fall-1",
                "employment.started",
                {"employer": rng.choice(EMPLOYERS), "kind": "employment", "start_date": start},
            )
            w.send(end + 1, lead, "fall-1", "case.closed", {"outcome": "employed"})
        else:
            outcome = rng.choice(("dropped_out", "moved_away", "training", "incapacity"))
            w.send(end + 1, lead, "fall-1", "case.closed", {"outcome": outcome})


def _trier(case: _Case) -> None:
    jc, coach, aa = "jc-trier", "coach-trier", "aa-trier"
    case.open(0, jc, "fall-1")
    if case.rng.random() < 0.15:  # a rehabilitation application to the employment agency
        accepted = case.handover(1, jc, "fall-1", aa, "rehab_application", ["health", "assessment"])
        if accepted is not None:
            decided = accepted + case.rng.choice((5, 10, 15, 19, 20, 24, 30))
            case.w.send(
                decided,
                aa,
                "reha-1",
                "rehab.decided",
                {
                    "handover_id": case.w.id(f"rehab_application-{aa}"),
                    "outcome": "granted",
                    # The notice supports the decision's date (entered later, as here).
                    "document_ref": f"Bescheid-{case.tag}",
                },
            )
        return
    accepted = case.handover(0, jc, "fall-1", coach, "assignment", ["identity", "contact"])
    if accepted is not None:
        case.work(accepted, coach, jc, case.w.id(f"assignment-{coach}"))


def _clinic_path(case: _Case, clinic: str, jc: str, partner: str, kind: str) -> None:
    case.open(0, clinic, "sozialdienst-1")
    accepted = case.handover(0, clinic, "sozialdienst-1", jc, "discharge", ["health", "contact"])
    if accepted is None:
        return
    case.w.send(
        accepted + 2,
        jc,
        "fall-1",
        "handover.completed",
        {"handover_id": case.w.id(f"discharge-{jc}")},
    )
    categories = (
        ["identity", "employment_history"]
        if kind == "placement_support"
        else ["identity", "contact"]
    )
    taken = case.handover(accepted + 3, jc, "fall-1", partner, kind, categories)
    if taken is not None:
        case.work(taken, partner, jc, case.w.id(f"{kind}-{partner}"))


def _aachen(case: _Case) -> None:
    jc, ifd = "jc-aachen", "ifd-aachen"
    case.open(0, jc, "fall-1")
    accepted = case.handover(0, jc, "fall-1", ifd, "assignment", ["identity", "contact"])
    if accepted is not None:
        case.work(accepted, ifd, jc, case.w.id(f"assignment-{ifd}"))


def volume_cases(count: int, seed: int = 2026) -> Iterator[_Case]:
    for number in range(1, count + 1):
        # A seeded generator on purpose: the same cases every load (idempotent).
        case = _Case(number, random.Random(f"{seed}/{number}"))  # noqa: S311
        name = case.programme.name
        if name == "G-A-L":
            _clinic_path(case, "klinik-oder-spree", "jc-oder-spree", "hwk-ffo", "placement_support")
        elif name == "KoPrA":
            _clinic_path(
                case, "klinik-erzgebirge", "jc-erzgebirge", "kopra-erzgebirge", "assignment"
            )
        elif name == "MIAR":
            _aachen(case)
        else:
            _trier(case)
        yield case


@dataclass
class VolumeReport:
    cases: int = 0
    recorded: int = 0
    duplicates: int = 0
    not_yet: int = 0  # dated after now: a later load records them


def load_volume(
    messages: Any, count: int, *, seed: int = 2026, now: datetime | None = None
) -> VolumeReport:
    """Record ``count`` generated cases (the demo agencies must be registered)."""
    report = VolumeReport()
    now = now or datetime.now(UTC)
    for case in volume_cases(count, seed):
        report.cases += 1
        steps = sorted(case.w.scenario.steps, key=lambda s: s.message["occurred_at"])
        for step in steps:
            if datetime.fromisoformat(step.message["occurred_at"]) > now:
                report.not_yet += 1
                continue
            try:
                result = messages.record_raw(step.message)
            except (DomainError, ServiceError) as refusal:
                raise DemoFailed(
                    f"volume case {case.tag}: {step.message['type']} refused with "
                    f"{refusal.code}: {refusal.message}"
                ) from refusal
            if result["duplicate"]:
                report.duplicates += 1
            else:
                report.recorded += 1
    return report
