"""The access report speaks German (issue "Trust model, part 2 — disclosure", build 4):
every code of the domain it can show has a German word, times read in Berlin."""

from __future__ import annotations

from enum import StrEnum

import pytest

from domain.values import (
    AppointmentKind,
    AppointmentState,
    DataCategory,
    HandoverKind,
    HandoverState,
    Outcome,
    RehabOutcome,
    Stage,
)
from services.subject_report import labels as de
from services.subject_report.html import render_html


@pytest.mark.parametrize(
    ("codes", "words"),
    [
        (DataCategory, de.CATEGORIES),
        (HandoverKind, de.HANDOVER_KINDS),
        (HandoverState, de.HANDOVER_STATES),
        (Stage, de.STAGES),
        (Outcome, de.OUTCOMES),
        (RehabOutcome, de.REHAB_OUTCOMES),
        (AppointmentKind, de.APPOINTMENT_KINDS),
        (AppointmentState, de.APPOINTMENT_STATES),
    ],
)
def test_every_code_has_a_german_word(codes: type[StrEnum], words: dict[str, str]) -> None:
    assert {c.value for c in codes} == set(words)


def test_times_are_shown_in_berlin_as_day_month_year_hours_minutes() -> None:
    assert de.when("2026-01-15T08:30:00+00:00") == "15.01.2026 09:30"  # CET
    assert de.when("2026-07-01T10:00:00+00:00") == "01.07.2026 12:00"  # CEST
    assert de.when("1989-04-12") == "12.04.1989"  # a day stays a day
    assert de.when(None) == ""


def test_every_value_of_the_page_is_escaped() -> None:
    hostile = '<script>x</script>"'
    agency = {"agency_id": "a", "name": hostile}
    step = {"state": "offered", "state_label": hostile, "at": None, "agency": "a"}
    report = {
        "title": "Auskunft nach Art. 15 DSGVO",
        "case": {
            "case_id": hostile,
            "pseudonym": hostile,
            "programme": hostile,
            "site": hostile,
            "stage_label": hostile,
            "outcome_label": None,
            "lead_agency": "a",
            "opened_by": "a",
            "opened_at": None,
            "closed_at": None,
            "erased": False,
            "erased_at": None,
            "leads": [{"agency": "a", "since": None}],
        },
        "produced_at": "2026-01-01T00:00:00+00:00",
        "produced_by": {"role": "auditor", "agency": "a", "user": hostile, "role_label": hostile},
        "agencies": [agency],
        "data": [
            {
                "category": "notes",
                "category_label": hostile,
                "source": "a",
                "items": [
                    {
                        "field": "goals",
                        "label": hostile,
                        "value": [hostile],
                        "occurred_at": None,
                        "recorded_by": "a",
                    }
                ],
            }
        ],
        "disclosures": [
            {
                "to_agency": "a",
                "from_agency": "a",
                "kind_label": hostile,
                "category_labels": [hostile],
                "offered_at": None,
                "recorded_at": None,
                "legal_basis": [{"label": hostile}],
                "state_label": hostile,
                "access_ended": True,
                "history": [step],
            }
        ],
        "consents": [
            {
                "consent_id": hostile,
                "category_labels": [hostile],
                "source_agency": "a",
                "recipients": ["a"],
                "purpose": hostile,
                "valid_from": None,
                "valid_until": None,
                "status": "revoked",
                "status_label": hostile,
                "history": [{"label": hostile, "at": None, "agency": "a"}],
            }
        ],
        "reads": [
            {
                "at": None,
                "agency": "a",
                "user": hostile,
                "actor": hostile,
                "role_label": hostile,
                "scope_label": hostile,
                "category_labels": [hostile],
            }
        ],
        "appointments": [
            {"kind_label": hostile, "at": None, "state_label": hostile, "agency": "a"}
        ],
    }
    page = render_html(report)
    assert "<script" not in page
    assert page.count("&lt;script&gt;x&lt;/script&gt;&quot;") >= 20
