"""The pages' texts (``services/api/static/labels.json``): one German and one
English table with the same keys, and a label in each for every kind, state,
stage, category, outcome and event type the API can show (issue 15)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from domain import values
from projections.case_doc import APPLY

STATIC = Path(__file__).resolve().parents[2] / "services" / "api" / "static"
TEXTS = json.loads((STATIC / "labels.json").read_text(encoding="utf-8"))
GROUPS = {
    "kind": values.HandoverKind,
    "state": values.HandoverState,
    "stage": values.Stage,
    "outcome": values.Outcome,
    "category": values.DataCategory,
    "agencyKind": values.AgencyKind,
    "appointment": values.AppointmentKind,
    "appointmentState": values.AppointmentState,
    "employmentKind": values.EmploymentKind,
    "rehab": values.RehabOutcome,
}


def test_german_and_english_have_the_same_keys_and_no_empty_text() -> None:
    assert set(TEXTS) == {"de", "en"}
    assert set(TEXTS["de"]) == set(TEXTS["en"])
    assert all(text.strip() for table in TEXTS.values() for text in table.values())


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_every_value_has_a_label_in_both_languages(group: str) -> None:
    for member in GROUPS[group]:
        for lang in ("de", "en"):
            assert f"{group}.{member.value}" in TEXTS[lang], (lang, group, member.value)


def test_every_event_type_has_a_label() -> None:
    # Every type a history can show: those the case document folds, the opening, and
    # the recorded reads.
    names = {*APPLY, "CaseOpened", "CaseRead"}
    for lang in ("de", "en"):
        assert sorted(n for n in names if f"event.{n}" not in TEXTS[lang]) == [], lang
