"""German words for the participant's access report (Art. 15 GDPR).

The report is read by the participant, so every code of the contract (a
category, a handover kind or state, a scope) appears with its German name; a
test checks that every value of the domain's enumerations has one. An unknown
code (a newer one) shows as itself rather than not at all.
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

BERLIN = ZoneInfo("Europe/Berlin")
ERASED_TEXT = "[gelöscht]"

CATEGORIES = {
    "identity": "Angaben zur Person",
    "contact": "Kontaktdaten",
    "health": "Gesundheitsdaten",
    "benefits": "Leistungsdaten",
    "employment_history": "Beschäftigung und Erwerbsbiografie",
    "assessment": "Einschätzungen und Gutachten",
    "plan": "Förder- und Integrationsplan",
    "notes": "Notizen und Vermerke",
}
HANDOVER_KINDS = {
    "assignment": "Zuweisung",
    "discharge": "Entlassung",
    "rehab_application": "Reha-Antrag",
    "placement_support": "Vermittlungsunterstützung",
    "return": "Rückgabe",
}
HANDOVER_STATES = {
    "offered": "angeboten",
    "accepted": "angenommen",
    "declined": "abgelehnt",
    "forwarded": "weitergeleitet",
    "withdrawn": "zurückgezogen",
    "completed": "abgeschlossen",
}
STAGES = {
    "opened": "eröffnet",
    "active": "aktiv",
    "employed": "in Beschäftigung",
    "aftercare": "Nachbetreuung",
    "closed": "abgeschlossen",
}
OUTCOMES = {
    "employed": "Beschäftigung aufgenommen",
    "training": "Ausbildung aufgenommen",
    "transferred": "übergeleitet",
    "dropped_out": "Teilnahme abgebrochen",
    "moved_away": "verzogen",
    "incapacity": "volle Erwerbsminderung",
    "deceased": "verstorben",
    "other": "sonstiger Grund",
}
REHAB_OUTCOMES = {
    "granted": "bewilligt",
    "refused": "abgelehnt",
    "partly_granted": "teilweise bewilligt",
}
APPOINTMENT_KINDS = {
    "information": "Informationsgespräch",
    "first_interview": "Erstgespräch",
    "coaching": "Coaching-Termin",
    "other": "sonstiger Termin",
}
APPOINTMENT_STATES = {"scheduled": "geplant", "held": "stattgefunden", "missed": "versäumt"}
SCOPES = {
    "case": "Fallansicht",
    "history": "Verlauf",
    "replay": "Wiedergabe des Verlaufs",
    "subject-report": "Auskunft nach Art. 15 DSGVO",
    "inbox": "Posteingang",
    "caseload": "Fallliste",
    "dashboard": "Übersicht",
    "reads": "Zugriffsprotokoll",
}
ROLES = {"agency": "Stelle", "auditor": "Prüfung (Auditor)"}
CONSENT_EVENTS = {"granted": "erteilt", "revoked": "widerrufen"}
CONSENT_STATUS = {
    "valid": "gültig",
    "revoked": "widerrufen",
    "expired": "abgelaufen",
    "not_yet_valid": "noch nicht gültig",
}
STATUTORY_TASK = "gesetzliche Aufgabe der zuständigen Stelle (§§ 67 ff. SGB X)"

# The personal field an item came from, by event type and dotted payload path.
_FIELDS = {
    "participant.name": "Name",
    "participant.birth_date": "Geburtsdatum",
    "participant.contact": "Kontakt",
    "text": "Notiz",
    "goals": "Ziele",
    "modules": "Module",
    "title": "Maßnahme",
    "result": "Ergebnis der Maßnahme",
    "employer": "Arbeitgeber",
}
_REASONS = {
    "HandoverOffered": "Begründung einer Übergabe",
    "HandoverDeclined": "Begründung einer Ablehnung",
    "HandoverForwarded": "Begründung einer Weiterleitung",
    "HandoverWithdrawn": "Begründung einer Rücknahme",
    "AssignmentExtended": "Begründung einer Verlängerung",
    "RehabDecided": "Begründung einer Reha-Entscheidung",
    "LeadTransferred": "Begründung eines Zuständigkeitswechsels",
}


def label(words: dict[str, str], code: str | None) -> str | None:
    return None if code is None else words.get(code, code)


def field_label(event_type: str, path: str) -> str:
    if path == "reason":
        return _REASONS.get(event_type, "Begründung")
    return _FIELDS.get(path, path)


def when(value: str | None) -> str:
    """An ISO 8601 moment as dd.mm.yyyy HH:MM in Europe/Berlin; a day as dd.mm.yyyy."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if len(value) == 10:  # a calendar day (birth date, start date)
        return date.fromisoformat(value).strftime("%d.%m.%Y")
    if moment.tzinfo is None:
        return moment.strftime("%d.%m.%Y %H:%M")
    return moment.astimezone(BERLIN).strftime("%d.%m.%Y %H:%M")
