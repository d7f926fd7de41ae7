"""The access report as one printable German HTML page.

Self-contained (no script, no external asset; a Content-Security-Policy in the
page forbids both even when the file is opened from disk), every value escaped:
a note may hold any text. Times in Europe/Berlin, dd.mm.yyyy HH:MM.
"""

from __future__ import annotations

from html import escape
from typing import Any

from services.subject_report import labels as de

Doc = dict[str, Any]

_CSS = """
body { font-family: "DejaVu Sans", Arial, Helvetica, sans-serif; font-size: 10.5pt;
       color: #111; margin: 2em auto; max-width: 60em; line-height: 1.35; }
h1 { font-size: 17pt; margin-bottom: 0.2em; }
h2 { font-size: 13pt; margin-top: 1.6em; border-bottom: 1px solid #444; }
h3 { font-size: 11pt; margin-bottom: 0.3em; }
table { border-collapse: collapse; width: 100%; margin: 0.4em 0 1em; }
th, td { border: 1px solid #999; padding: 0.25em 0.45em; text-align: left;
         vertical-align: top; }
th { background: #eee; }
table.facts th { width: 30%; }
.ended { color: #7a1c1c; font-weight: bold; }
.erased { color: #555; font-style: italic; }
.note { color: #444; font-size: 9.5pt; }
ul { margin: 0; padding-left: 1.1em; }
@page { size: A4; margin: 16mm 14mm; }
@media print {
  body { margin: 0; max-width: none; font-size: 9.5pt; }
  h2 { break-after: avoid; page-break-after: avoid; }
  tr, li { break-inside: avoid; page-break-inside: avoid; }
  th { background: #eee; -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def render_html(report: Doc) -> str:
    names = {a["agency_id"]: a["name"] for a in report["agencies"]}

    def agency(agency_id: str | None) -> str:
        if agency_id is None:
            return ""
        name = names.get(agency_id, agency_id)
        return _e(name) if name == agency_id else f"{_e(name)} ({_e(agency_id)})"

    case = report["case"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="de"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(report['title'])} – {_e(case['pseudonym'])}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_e(report['title'])}</h1>",
        '<p class="note">Auskunft über die zu Ihrer Teilnahme gespeicherten Daten, ihre '
        "Weitergabe an andere Stellen und jeden protokollierten Zugriff, aus dem "
        "Verlauf des Falls. Alle Zeiten in deutscher Zeit (Europe/Berlin).</p>",
        _case_section(case, agency),
        _data_section(report["data"], agency, case["erased"]),
        _disclosure_section(report["disclosures"], agency),
        _consent_section(report["consents"], agency),
        _read_section(report["reads"], agency),
        _appointment_section(report["appointments"], agency),
        _footer(report, agency),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _case_section(case: Doc, agency: Any) -> str:
    rows = [
        ("Fallnummer", _e(case["case_id"])),
        ("Pseudonym", _e(case["pseudonym"])),
        ("Programm", _e(case["programme"])),
        ("Standort", _e(case["site"])),
        ("Stand", _e(case["stage_label"])),
        ("Ergebnis", _e(case["outcome_label"])),
        ("Federführende Stelle", agency(case["lead_agency"])),
        ("Eröffnet", f"{_e(de.when(case['opened_at']))} von {agency(case['opened_by'])}"),
        ("Abgeschlossen", _e(de.when(case["closed_at"]))),
    ]
    if case["erased"]:
        rows.append(("Personenbezogene Daten gelöscht", _e(de.when(case["erased_at"]))))
    leads = "".join(
        f"<li>seit {_e(de.when(lead['since']))}: {agency(lead['agency'])}</li>"
        for lead in case["leads"]
    )
    rows.append(("Zuständigkeit im Verlauf", f"<ul>{leads}</ul>"))
    body = "".join(f"<tr><th>{_e(k)}</th><td>{v or '–'}</td></tr>" for k, v in rows)
    return f'<h2>Fall</h2><table class="facts">{body}</table>'


def _value(value: Any, field: str) -> str:
    def one(text: Any) -> str:
        if text == de.ERASED_TEXT:
            return f'<span class="erased">{_e(text)}</span>'
        if field == "participant.birth_date":
            return _e(de.when(str(text)))
        return _e(text)

    if isinstance(value, list):
        return "<ul>" + "".join(f"<li>{one(v)}</li>" for v in value) + "</ul>"
    return one(value)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    """A table: a row of ``headers``, then ``rows`` (each cell's markup, escaped)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _section(title: str, headers: list[str], rows: list[list[str]], empty: str | None) -> str:
    """A section of the report: its heading and table, or ``empty`` said when there
    are no rows (``None``: no section at all)."""
    if not rows:
        return "" if empty is None else f"<h2>{_e(title)}</h2><p>{_e(empty)}</p>"
    return f"<h2>{_e(title)}</h2>" + _table(headers, rows)


def _data_section(groups: list[Doc], agency: Any, erased: bool) -> str:
    parts = ["<h2>Angaben zur Person und gespeicherte Daten</h2>"]
    if erased:
        parts.append(
            '<p class="note">Ihre personenbezogenen Daten wurden gelöscht (der Schlüssel, '
            "mit dem sie verschlüsselt waren, ist vernichtet). Der Ablauf des Falls bleibt "
            "nachvollziehbar.</p>"
        )
    if not groups:
        parts.append("<p>Keine personenbezogenen Angaben gespeichert.</p>")
    for group in groups:
        rows = [
            [
                _e(item["label"]),
                _value(item["value"], item["field"]),
                _e(de.when(item["occurred_at"])),
                agency(item["recorded_by"]),
            ]
            for item in group["items"]
        ]
        parts.append(
            f"<h3>{_e(group['category_label'])} – Quelle: {agency(group['source'])}</h3>"
            + _table(["Angabe", "Inhalt", "erfasst am", "erfasst von"], rows)
        )
    return "".join(parts)


def _disclosure_section(disclosures: list[Doc], agency: Any) -> str:
    rows = []
    for d in disclosures:
        steps = "".join(
            f"<li>{_e(de.when(s['at']))}: {_e(s['state_label'])} "
            f"({agency(s['agency'])}{', ' + _e(s['decision_label']) if s.get('decision') else ''})"
            "</li>"
            for s in d["history"]
        )
        state = _e(d["state_label"])
        if d["access_ended"]:
            state = f'<span class="ended">{state} – kein Zugriff mehr auf das Übergebene</span>'
        rows.append(
            [
                agency(d["to_agency"]),
                agency(d["from_agency"]),
                _e(d["kind_label"]),
                _e(", ".join(d["category_labels"])),
                f'{_e(de.when(d["offered_at"]))}<br><span class="note">im Hub erfasst '
                f"{_e(de.when(d['recorded_at']))}</span>",
                "<br>".join(_e(b["label"]) for b in d["legal_basis"]),
                f"{state}<ul>{steps}</ul>",
            ]
        )
    headers = [
        "Empfänger",
        "von",
        "Art",
        "Datenkategorien",
        "übermittelt am",
        "Rechtsgrundlage",
        "Stand",
    ]
    return _section("Weitergaben an andere Stellen", headers, rows, "Keine Weitergaben.")


def _consent_section(consents: list[Doc], agency: Any) -> str:
    rows = []
    for c in consents:
        steps = "".join(
            f"<li>{_e(s['label'])} am {_e(de.when(s['at']))} durch {agency(s['agency'])}</li>"
            for s in c["history"]
        )
        status = _e(c["status_label"])
        if c["status"] == "revoked":
            status = f'<span class="ended">{status}</span>'
        rows.append(
            [
                _e(c["consent_id"]),
                _e(", ".join(c["category_labels"])),
                agency(c["source_agency"]),
                ", ".join(agency(r) for r in c["recipients"]),
                _e(c["purpose"]),
                _e(de.when(c["valid_from"])),
                _e(de.when(c["valid_until"])) or "unbefristet",
                f"{status}<ul>{steps}</ul>",
            ]
        )
    headers = [
        "Kennung",
        "Datenkategorien",
        "Quelle",
        "Empfänger",
        "Zweck",
        "gültig ab",
        "gültig bis",
        "Status",
    ]
    return _section("Einwilligungen", headers, rows, "Keine Einwilligungen erfasst.")


def _read_section(reads: list[Doc], agency: Any) -> str:
    rows = [
        [
            _e(de.when(r["at"])),
            agency(r["agency"]),
            _e(r["user"] or r["actor"]),
            _e(r["role_label"]),
            _e(r["scope_label"]),
            _e(", ".join(r["category_labels"])) or "–",
        ]
        for r in reads
    ]
    headers = ["Zeitpunkt", "Stelle", "Person", "Rolle", "Zugriff auf", "gezeigte Datenkategorien"]
    return _section("Protokollierte Zugriffe", headers, rows, "Keine Zugriffe protokolliert.")


def _appointment_section(appointments: list[Doc], agency: Any) -> str:
    rows = [
        [_e(a["kind_label"]), _e(de.when(a["at"])), _e(a["state_label"]), agency(a["agency"])]
        for a in appointments
    ]
    return _section("Termine", ["Termin", "am", "Stand", "Stelle"], rows, None)


def _footer(report: Doc, agency: Any) -> str:
    by = report["produced_by"]
    who = _e(by.get("user") or by.get("agency"))
    return (
        f'<p class="note">Erstellt am {_e(de.when(report["produced_at"]))} von {who} '
        f"({agency(by.get('agency'))}, {_e(by.get('role_label'))}). Diese Erstellung ist "
        "selbst als Zugriff protokolliert.</p>"
    )
