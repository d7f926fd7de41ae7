"""DOMAIN.md's five scenarios as messages, recorded through the application service.

Every id derives from a fixed name, so loading twice records nothing new: the
second run's messages are answered as duplicates. Refusals the scenarios expect
(the DRV's second forward, the handover after consent was revoked) are checked
to be refused with their codes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from domain.errors import DomainError
from services.application import MessageService
from services.errors import AgencyExists, ServiceError

_NS = uuid5(NAMESPACE_URL, "urn:hub:demo")
CET = timezone(timedelta(hours=1), "CET")

AGENCIES: list[tuple[str, str, str]] = [
    ("klinik-oder-spree", "psychiatric_clinic", "Psychiatrische Klinik Oder-Spree"),
    ("jc-oder-spree", "jobcenter", "Jobcenter Oder-Spree"),
    ("hwk-ffo", "chamber", "Handwerkskammer Frankfurt (Oder)"),
    ("jc-trier", "jobcenter", "Jobcenter Trier"),
    ("aa-trier", "employment_agency", "Agentur für Arbeit Trier"),
    ("drv-rlp", "rehabilitation_agency", "Deutsche Rentenversicherung Rheinland-Pfalz"),
    ("coach-trier", "coaching_provider", "Jobcoaching Trier gGmbH"),
    ("klinik-erzgebirge", "psychiatric_clinic", "Klinikum Erzgebirge, Psychiatrie"),
    ("jc-erzgebirge", "jobcenter", "Jobcenter Erzgebirgskreis"),
    ("kopra-erzgebirge", "coaching_provider", "KoPrA Koordinierungsstelle"),
    ("jc-aachen", "jobcenter", "Jobcenter StädteRegion Aachen"),
    ("ifd-aachen", "coaching_provider", "Integrationsfachdienst Aachen"),
]


def demo_id(name: str) -> UUID:
    return uuid5(_NS, name)


@dataclass
class Step:
    message: dict[str, Any]
    expect_refusal: str | None = None


@dataclass
class Scenario:
    number: int
    title: str
    case_id: UUID
    steps: list[Step] = field(default_factory=list)


class _Writer:
    """Builds one scenario's messages with a running agency clock."""

    def __init__(self, number: int, title: str, start: datetime) -> None:
        self.scenario = Scenario(number, title, demo_id(f"s{number}/case"))
        self.start = start
        self.count = 0

    def at(self, day: float) -> datetime:
        return self.start + timedelta(days=day)

    def send(
        self,
        day: float,
        agency: str,
        actor: str,
        type_: str,
        payload: dict[str, Any] | None = None,
        expect: str | None = None,
    ) -> None:
        self.count += 1
        message = {
            "message_id": str(demo_id(f"s{self.scenario.number}/m{self.count}")),
            "type": type_,
            "agency": agency,
            "case_id": str(self.scenario.case_id),
            "occurred_at": self.at(day).isoformat(),
            "actor": actor,
            "payload": payload or {},
        }
        self.scenario.steps.append(Step(message, expect))

    def id(self, name: str) -> str:
        return str(demo_id(f"s{self.scenario.number}/{name}"))

    def consent(
        self,
        day: float,
        agency: str,
        actor: str,
        consent_id: str,
        categories: list[str],
        recipients: list[str],
        until: float | None = None,
    ) -> None:
        """``agency`` grants from ``day`` on (to day ``until``), as the source of its data.

        Every scenario's consent is valid from the day it is given and names its
        sender as the source. The payload keeps the key order the scenarios were
        first written with, so the recorded messages stay the same.
        """
        payload: dict[str, Any] = {
            "consent_id": consent_id,
            "categories": categories,
            "source_agency": agency,
            "recipients": recipients,
            "valid_from": self.at(day).isoformat(),
        }
        if until is not None:
            payload["valid_until"] = self.at(until).isoformat()
        self.send(day, agency, actor, "consent.granted", payload)

    def offer(
        self,
        day: float,
        agency: str,
        actor: str,
        handover: str,
        kind: str,
        *,
        to: str,
        categories: list[str],
        reason: str | None = None,
        expect: str | None = None,
    ) -> None:
        """``agency`` offers ``to`` the handover named ``handover`` (id: ``self.id(handover)``)."""
        payload: dict[str, Any] = {
            "handover_id": self.id(handover),
            "kind": kind,
            "to_agency": to,
            "data_categories": categories,
        }
        if reason is not None:
            payload["reason"] = reason
        self.send(day, agency, actor, "handover.offered", payload, expect=expect)


def _clinic_to_jobcenter() -> Scenario:
    w = _Writer(1, "Clinic to Jobcenter (G-A-L Oder-Spree)", datetime(2026, 2, 2, 9, tzinfo=CET))
    clinic, jc, hwk = "klinik-oder-spree", "jc-oder-spree", "hwk-ffo"
    w.send(
        0,
        clinic,
        "sozialdienst-1",
        "case.opened",
        {
            "programme": "G-A-L",
            "site": "Beeskow",
            "participant": {
                "pseudonym": "GAL-0001",
                "name": "Erika Musterfrau",
                "birth_date": "1989-04-12",
                "contact": "Beeskow, Tel. 03366 000000",
            },
        },
    )
    w.consent(
        0,
        clinic,
        "sozialdienst-1",
        "gal-0001-klinik-jc",
        ["health", "contact"],
        [jc],
        until=5 * 365,
    )
    w.offer(
        0,
        clinic,
        "sozialdienst-1",
        "discharge",
        "discharge",
        to=jc,
        categories=["health", "contact"],
        reason="Entlassung in zehn Tagen geplant; Ziel erster Arbeitsmarkt",
    )
    w.send(3, jc, "eingliederung-7", "handover.accepted", {"handover_id": w.id("discharge")})
    w.send(9, jc, "eingliederung-7", "handover.completed", {"handover_id": w.id("discharge")})
    w.consent(
        12,
        jc,
        "eingliederung-7",
        "gal-0001-jc-hwk",
        ["identity", "employment_history"],
        [hwk],
        until=5 * 365,
    )
    w.offer(
        12,
        jc,
        "eingliederung-7",
        "placement",
        "placement_support",
        to=hwk,
        categories=["identity", "employment_history"],
    )
    w.send(16, hwk, "akquise-2", "handover.accepted", {"handover_id": w.id("placement")})
    w.send(
        30,
        hwk,
        "akquise-2",
        "measure.started",
        {"measure_id": w.id("internship"), "kind": "internship", "title": "Praktikum Tischlerei"},
    )
    w.send(
        58,
        hwk,
        "akquise-2",
        "measure.ended",
        {"measure_id": w.id("internship"), "result": "Übernahme angeboten"},
    )
    w.send(59, hwk, "akquise-2", "handover.completed", {"handover_id": w.id("placement")})
    w.send(
        61,
        jc,
        "eingliederung-7",
        "employment.started",
        {"employer": "Tischlerei Beispiel GmbH", "kind": "employment", "start_date": "2026-04-04"},
    )
    w.send(61, jc, "eingliederung-7", "aftercare.started", {"until": w.at(61 + 182).isoformat()})
    w.send(61 + 182, jc, "eingliederung-7", "aftercare.ended")
    w.send(61 + 183, jc, "eingliederung-7", "case.closed", {"outcome": "employed"})
    return w.scenario


def _rehab_ping_pong_stopped() -> Scenario:
    w = _Writer(
        2, "Rehabilitation ping-pong stopped (§ 14 SGB IX)", datetime(2026, 3, 2, 10, tzinfo=CET)
    )
    jc, aa, drv = "jc-trier", "aa-trier", "drv-rlp"
    w.send(
        0,
        jc,
        "fallmanager-3",
        "case.opened",
        {
            "programme": "Inklusionsinitiative Trier",
            "site": "Trier-Nord",
            "participant": {
                "pseudonym": "TR-0042",
                "name": "Max Beispielmann",
                "birth_date": "1978-11-30",
            },
        },
    )
    w.consent(
        0, jc, "fallmanager-3", "tr-0042-reha", ["health", "assessment"], [aa, drv], until=5 * 365
    )
    w.offer(
        0,
        jc,
        "fallmanager-3",
        "reha-1",
        "rehab_application",
        to=aa,
        categories=["health", "assessment"],
        reason="Antrag auf LTA",
    )
    w.send(
        9,
        aa,
        "reha-team-1",
        "handover.forwarded",
        {
            "handover_id": w.id("reha-1"),
            "new_handover_id": w.id("reha-2"),
            "to_agency": drv,
            "reason": "Zuständigkeit der Rentenversicherung (15 Jahre Wartezeit erfüllt)",
        },
    )
    w.send(
        11,
        drv,
        "sachbearbeitung-5",
        "handover.forwarded",
        {
            "handover_id": w.id("reha-2"),
            "new_handover_id": w.id("reha-3"),
            "to_agency": aa,
            "reason": "Rückgabe versucht",
        },
        expect="forward_limit_reached",
    )
    w.send(12, drv, "sachbearbeitung-5", "handover.accepted", {"handover_id": w.id("reha-2")})
    # Day 25: 16 days after the DRV's own receipt (met), 25 after the first (it would
    # be late if the window ran from there). The notice supports the date of a
    # decision entered later than it was made.
    w.send(
        25,
        drv,
        "sachbearbeitung-5",
        "rehab.decided",
        {
            "handover_id": w.id("reha-2"),
            "outcome": "granted",
            "reason": "Leistungen zur Teilhabe am Arbeitsleben bewilligt",
            "document_ref": "DRV-RLP-Bescheid-2026-0327",
        },
    )
    return w.scenario


def _coaching_trier() -> Scenario:
    w = _Writer(3, "Coaching up to twelve months (Trier)", datetime(2025, 10, 6, 8, tzinfo=CET))
    jc, coach = "jc-trier", "coach-trier"
    w.send(
        0,
        jc,
        "fallmanager-3",
        "case.opened",
        {
            "programme": "Inklusionsinitiative Trier",
            "site": "Trier-Ehrang",
            "assignment_months": 12,
            "participant": {
                "pseudonym": "TR-0107",
                "name": "Lena Probst",
                "contact": "lena.probst@example.org",
            },
        },
    )
    w.consent(
        0,
        jc,
        "fallmanager-3",
        "tr-0107-coach",
        ["identity", "contact", "plan"],
        [coach],
        until=5 * 365,
    )
    w.offer(
        0,
        jc,
        "fallmanager-3",
        "assignment",
        "assignment",
        to=coach,
        categories=["identity", "contact"],
    )
    w.send(2, coach, "leitung-1", "handover.accepted", {"handover_id": w.id("assignment")})
    w.send(2, coach, "leitung-1", "coach.assigned", {"coach": "coach-mueller"})
    w.send(
        2,
        coach,
        "coach-mueller",
        "appointment.scheduled",
        {"appointment_id": w.id("info"), "kind": "information", "at": w.at(6).isoformat()},
    )
    w.send(6, coach, "coach-mueller", "appointment.held", {"appointment_id": w.id("info")})
    w.send(8, coach, "coach-mueller", "agreement.signed")
    w.send(
        8,
        coach,
        "coach-mueller",
        "appointment.scheduled",
        {"appointment_id": w.id("first"), "kind": "first_interview", "at": w.at(13).isoformat()},
    )
    w.send(13, coach, "coach-mueller", "appointment.held", {"appointment_id": w.id("first")})
    w.send(
        20,
        coach,
        "coach-mueller",
        "plan.agreed",
        {
            "goals": ["Tagesstruktur stabilisieren", "Teilzeitstelle im Einzelhandel"],
            "modules": ["Bewerbungstraining", "Praktikum"],
        },
    )
    w.send(
        40,
        coach,
        "coach-mueller",
        "measure.started",
        {"measure_id": w.id("module"), "kind": "qualification", "title": "Kassenschulung"},
    )
    w.send(70, coach, "coach-mueller", "measure.ended", {"measure_id": w.id("module")})
    w.send(
        330,
        jc,
        "fallmanager-3",
        "assignment.extended",
        {"months": 3, "reason": "Praktikumsplatz in Aussicht"},
    )
    w.send(
        380,
        coach,
        "coach-mueller",
        "note.added",
        {"text": "Teilnehmerin zieht im nächsten Monat nach Hamburg.", "category": "notes"},
    )
    w.send(385, coach, "coach-mueller", "handover.completed", {"handover_id": w.id("assignment")})
    w.send(390, jc, "fallmanager-3", "case.closed", {"outcome": "moved_away"})
    return w.scenario


def _consent_revoked() -> Scenario:
    w = _Writer(4, "Consent revoked (KoPrA Erzgebirgskreis)", datetime(2026, 4, 6, 9, tzinfo=CET))
    clinic, jc, kopra = "klinik-erzgebirge", "jc-erzgebirge", "kopra-erzgebirge"
    w.send(
        0,
        clinic,
        "sozialdienst-2",
        "case.opened",
        {
            "programme": "KoPrA",
            "site": "Annaberg-Buchholz",
            "participant": {
                "pseudonym": "ERZ-0815",
                "name": "Jonas Vorbild",
                "birth_date": "1995-07-01",
            },
        },
    )
    w.consent(0, clinic, "sozialdienst-2", "erz-0815-jc", ["health", "contact"], [jc])
    w.offer(
        0,
        clinic,
        "sozialdienst-2",
        "discharge",
        "discharge",
        to=jc,
        categories=["health", "contact"],
    )
    w.send(4, jc, "integration-4", "handover.accepted", {"handover_id": w.id("discharge")})
    w.consent(5, jc, "integration-4", "erz-0815-kopra", ["identity", "contact"], [kopra])
    w.offer(
        5,
        jc,
        "integration-4",
        "assignment",
        "assignment",
        to=kopra,
        categories=["identity", "contact"],
    )
    w.send(7, kopra, "coach-schmidt", "handover.accepted", {"handover_id": w.id("assignment")})
    w.consent(7, clinic, "sozialdienst-2", "erz-0815-health-kopra", ["health"], [kopra])
    w.offer(
        8,
        clinic,
        "sozialdienst-2",
        "report-1",
        "discharge",
        to=kopra,
        categories=["health"],
        reason="Belastbarkeit laut Entlassbericht",
    )
    w.send(9, kopra, "coach-schmidt", "handover.accepted", {"handover_id": w.id("report-1")})
    w.send(
        9,
        kopra,
        "coach-schmidt",
        "note.added",
        {"text": "Belastbarkeit drei Stunden täglich, keine Nachtschichten.", "category": "health"},
    )
    # The participant revokes through the lead Jobcenter (or the clinic, the source).
    w.send(30, jc, "integration-4", "consent.revoked", {"consent_id": "erz-0815-health-kopra"})
    w.offer(
        35,
        clinic,
        "sozialdienst-2",
        "report-2",
        "discharge",
        to=kopra,
        categories=["health"],
        expect="consent_missing",
    )
    return w.scenario


def _erasure() -> Scenario:
    w = _Writer(
        5, "Erasure after closure and retention (MIAR Aachen)", datetime(2025, 1, 13, 9, tzinfo=CET)
    )
    jc, ifd = "jc-aachen", "ifd-aachen"
    w.send(
        0,
        jc,
        "fallmanager-9",
        "case.opened",
        {
            "programme": "MIAR",
            "site": "Aachen",
            "participant": {
                "pseudonym": "AC-0300",
                "name": "Sabine Platzhalter",
                "birth_date": "1984-02-29",
                "contact": "Aachen, Tel. 0241 000000",
            },
        },
    )
    w.consent(0, jc, "fallmanager-9", "ac-0300-ifd", ["identity", "contact"], [ifd], until=5 * 365)
    w.offer(
        0,
        jc,
        "fallmanager-9",
        "assignment",
        "assignment",
        to=ifd,
        categories=["identity", "contact"],
    )
    w.send(3, ifd, "coach-klein", "handover.accepted", {"handover_id": w.id("assignment")})
    w.send(5, ifd, "coach-klein", "agreement.signed")
    w.send(
        40,
        ifd,
        "coach-klein",
        "note.added",
        {
            "text": "Bewerbung bei einer Gärtnerei, Vorstellungsgespräch vereinbart.",
            "category": "notes",
        },
    )
    w.send(
        90,
        jc,
        "fallmanager-9",
        "employment.started",
        {"employer": "Gärtnerei Grünwerk", "kind": "budget_for_work", "start_date": "2025-04-14"},
    )
    w.send(90, jc, "fallmanager-9", "aftercare.started")
    w.send(270, jc, "fallmanager-9", "aftercare.ended")
    w.send(270, ifd, "coach-klein", "handover.completed", {"handover_id": w.id("assignment")})
    w.send(271, jc, "fallmanager-9", "case.closed", {"outcome": "employed"})
    w.send(
        640, jc, "datenschutz-1", "participant.erased", {"reason": "Aufbewahrungsfrist abgelaufen"}
    )
    return w.scenario


def scenarios() -> list[Scenario]:
    return [
        _clinic_to_jobcenter(),
        _rehab_ping_pong_stopped(),
        _coaching_trier(),
        _consent_revoked(),
        _erasure(),
    ]


@dataclass
class ScenarioReport:
    number: int
    title: str
    case_id: str
    recorded: int = 0
    duplicates: int = 0
    refused_as_expected: list[str] = field(default_factory=list)


class DemoFailed(Exception):
    code = "demo_failed"


def register_demo_agencies(registry: Any) -> int:
    added = 0
    for agency_id, kind, name in AGENCIES:
        try:
            registry.register(agency_id, kind, name)
            added += 1
        except AgencyExists:
            continue
    return added


def load_demo(registry: Any, messages: MessageService) -> Iterator[ScenarioReport]:
    """Register the demo agencies and record every scenario, yielding a report each."""
    register_demo_agencies(registry)
    for scenario in scenarios():
        report = ScenarioReport(scenario.number, scenario.title, str(scenario.case_id))
        for step in scenario.steps:
            try:
                result = messages.record_raw(step.message)
            except (DomainError, ServiceError) as refusal:
                if refusal.code != step.expect_refusal:
                    raise DemoFailed(
                        f"scenario {scenario.number}: {step.message['type']} refused "
                        f"with {refusal.code}: {refusal.message}"
                    ) from refusal
                report.refused_as_expected.append(refusal.code)
                continue
            if step.expect_refusal is not None:
                raise DemoFailed(
                    f"scenario {scenario.number}: {step.message['type']} was recorded "
                    f"but should be refused with {step.expect_refusal}"
                )
            if result["duplicate"]:
                report.duplicates += 1
            else:
                report.recorded += 1
        yield report
