"""The pure reducers of ``projections`` on hand-made event records (no store, no I/O)."""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest

from projections.audit import GENESIS, STATUTORY_TASK, audit_row, legal_basis
from projections.case_doc import ERASED, reduce_case
from projections.case_view import case_view
from projections.caseload import caseload_rows, involved_agencies
from projections.dashboard import (
    apply_all_dashboard_ops,
    dashboard_delta,
    dashboard_figures,
    dashboard_ops,
    dashboard_snapshot,
    empty_state,
)
from projections.disclosure import may_see, withheld
from projections.events import EventRecord, decode, is_case_event
from projections.inbox import inbox_rows, with_overdue

CASE = "7d1e6c1a-2b5f-4c0e-9a51-0c6f5d2a9b10"
T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
JC, COACH, CLINIC, AA, DRV = "jc", "coach", "clinic", "aa", "drv"
H1 = "00000000-0000-4000-8000-000000000001"
H2 = "00000000-0000-4000-8000-000000000002"
H3 = "00000000-0000-4000-8000-000000000003"


def t(days: float = 0, hours: float = 0) -> str:
    return (T0 + timedelta(days=days, hours=hours)).isoformat()


def at(days: float = 0, hours: float = 0) -> datetime:
    return T0 + timedelta(days=days, hours=hours)


class Events:
    """Builds a case's event records with running positions and versions."""

    def __init__(self, case_id: str = CASE, first_position: int = 1) -> None:
        self.case_id = case_id
        self.position = first_position - 1
        self.version = 0

    def __call__(
        self, type_: str, agency: str | None, day: float = 0, actor: str = "u1", **data: Any
    ) -> EventRecord:
        self.position += 1
        self.version += 1
        return EventRecord(
            position=self.position,
            case_id=self.case_id,
            version=self.version,
            type=type_,
            agency=agency,
            actor=actor,
            occurred_at=t(day),
            recorded_at=t(day, hours=0.01),
            data=data,
        )


def opened(ev: Events, agency: str = JC, **participant: Any) -> EventRecord:
    return ev(
        "CaseOpened",
        agency,
        programme="Prog",
        site="Nord",
        assignment_months=12,
        participant={"pseudonym": "P-1", **participant},
    )


def offered(
    ev: Events,
    handover_id: str,
    sender: str,
    to: str,
    kind: str = "assignment",
    day: float = 0,
    categories: list[str] | None = None,
    basis: list[str] | None = None,
    accept_days: float = 7,
    decide_days: float | None = None,
) -> EventRecord:
    return ev(
        "HandoverOffered",
        sender,
        day,
        handover_id=handover_id,
        kind=kind,
        to_agency=to,
        data_categories=categories or [],
        reason=None,
        due_at=t(day + accept_days),
        decide_due_at=None if decide_days is None else t(day + decide_days),
        legal_basis=basis or [STATUTORY_TASK],
    )


def fold(events: list[EventRecord]) -> dict[str, Any]:
    doc = None
    for event in events:
        doc = reduce_case(doc, event)
    assert doc is not None
    return doc


# ---- decode ---------------------------------------------------------------------------


def test_decode_turns_the_stored_json_into_a_plain_record() -> None:
    state = json.dumps(
        {
            "timestamp": {"_type_": "datetime_iso", "_data_": "2026-03-02T09:00:01+00:00"},
            "originator_topic": "domain.case:Case",
            "handover_id": {"_type_": "uuid_hex", "_data_": UUID(H1).hex},
            "kind": "assignment",
            "due_at": {"_type_": "datetime_iso", "_data_": "2026-03-09T09:00:00+01:00"},
            "agency": JC,
            "actor": "fm-1",
            "occurred_at": {"_type_": "datetime_iso", "_data_": "2026-03-02T09:00:00+01:00"},
        }
    ).encode()

    record = decode(41, UUID(CASE), 3, "domain.case:Case.HandoverOffered", state)

    assert record == EventRecord(
        position=41,
        case_id=CASE,
        version=3,
        type="HandoverOffered",
        agency=JC,
        actor="fm-1",
        occurred_at="2026-03-02T09:00:00+01:00",
        recorded_at="2026-03-02T09:00:01+00:00",
        data={"handover_id": H1, "kind": "assignment", "due_at": "2026-03-09T09:00:00+01:00"},
    )
    assert is_case_event("domain.case:Case.CaseOpened")
    assert not is_case_event("domain.agency:Agency.AgencyRegistered")


# ---- the case document ---------------------------------------------------------------------


def test_reduce_case_is_pure_unless_in_place() -> None:
    ev = Events()
    doc = fold([opened(ev), offered(ev, H1, JC, COACH)])
    frozen = copy.deepcopy(doc)
    accepted = ev("HandoverAccepted", COACH, 2, handover_id=H1)

    after = reduce_case(doc, accepted)

    assert doc == frozen  # the input is untouched
    assert after is not doc
    assert after["handovers"][H1]["state"] == "accepted"
    assert after["handovers"] is not doc["handovers"]
    assert (after["version"], after["position"]) == (3, 3)

    same = reduce_case(doc, accepted, in_place=True)
    assert same is doc
    assert doc["handovers"][H1]["state"] == "accepted"
    assert doc == after


def test_reduce_case_needs_the_opening_first_and_ignores_unknown_events() -> None:
    ev = Events()
    with pytest.raises(ValueError, match="before the case was opened"):
        reduce_case(None, ev("HandoverAccepted", COACH, handover_id=H1))
    ev = Events()
    doc = fold([opened(ev)])

    read = reduce_case(doc, ev("CaseRead", "auditor", 5, role="auditor", scope="case"))

    assert {k: v for k, v in read.items() if k not in ("version", "position")} == {
        k: v for k, v in doc.items() if k not in ("version", "position")
    }
    assert read["last_activity_at"] == t(0)  # a read is not activity
    assert (read["version"], read["position"]) == (2, 2)


def test_case_lifecycle_in_the_document() -> None:
    ev = Events()
    doc = fold(
        [
            opened(ev, CLINIC, name="enc:n", contact="enc:c"),
            offered(ev, H1, CLINIC, JC, kind="discharge"),
            ev("HandoverAccepted", JC, 3, handover_id=H1),
            offered(ev, H2, JC, COACH, day=4),
            ev("HandoverAccepted", COACH, 5, handover_id=H2),
        ]
    )
    assert (doc["stage"], doc["lead_agency"], doc["opened_by"]) == ("opened", JC, CLINIC)
    assert doc["assignment_started_at"] == t(5)
    assert doc["participant"] == {
        "pseudonym": "P-1",
        "fields": {"name": "enc:n", "contact": "enc:c"},
        "source": CLINIC,
    }

    for event in (
        ev("CoachAssigned", COACH, 5, coach="coach-a"),
        ev("AgreementSigned", COACH, 6),
    ):
        doc = reduce_case(doc, event)
    assert (doc["stage"], doc["coach"], doc["coach_agency"]) == ("active", "coach-a", COACH)

    for event in (
        ev("AssignmentExtended", JC, 300, months=3, reason="r"),
        ev(
            "EmploymentStarted",
            JC,
            320,
            employer="enc:e",
            kind="employment",
            start_date="2027-01-20",
        ),
    ):
        doc = reduce_case(doc, event)
    assert (doc["stage"], doc["extension_months"]) == ("employed", 3)
    doc = reduce_case(doc, ev("AftercareStarted", JC, 320, until=t(500)))
    assert doc["stage"] == "aftercare"
    doc = reduce_case(doc, ev("AftercareEnded", JC, 500))
    doc = reduce_case(doc, ev("CaseClosed", JC, 501, outcome="employed"))
    assert (doc["stage"], doc["outcome"], doc["closed_at"]) == ("closed", "employed", t(501))
    assert doc["aftercare"] == {"started_at": t(320), "until": t(500), "ended_at": t(500)}
    assert doc["last_activity_at"] == t(501)


def test_forwarding_links_both_handovers_and_keeps_the_categories() -> None:
    ev = Events()
    doc = fold(
        [
            opened(ev),
            offered(
                ev,
                H1,
                JC,
                AA,
                kind="rehab_application",
                categories=["health"],
                basis=["c-1"],
                accept_days=14,
                decide_days=21,
            ),
            ev(
                "HandoverForwarded",
                AA,
                9,
                handover_id=H1,
                new_handover_id=H2,
                to_agency=DRV,
                reason="enc:r",
                due_at=t(23),
                decide_due_at=t(30),
                legal_basis=["c-1"],
            ),
        ]
    )
    first, second = doc["handovers"][H1], doc["handovers"][H2]
    assert (first["state"], first["forwarded_to"], first["decided_at"]) == ("forwarded", H2, t(9))
    assert second == {
        **second,
        "from_agency": AA,
        "to_agency": DRV,
        "state": "offered",
        "kind": "rehab_application",
        "data_categories": ["health"],
        "offered_at": t(9),
        "due_at": t(23),
        "decide_due_at": t(30),
        "forwarded_from": H1,
        "legal_basis": ["c-1"],
    }
    declined = reduce_case(doc, ev("HandoverDeclined", DRV, 10, handover_id=H2, reason="x"))
    assert (declined["handovers"][H2]["state"], declined["handovers"][H2]["decided_at"]) == (
        "declined",
        t(10),
    )
    withdrawn = reduce_case(doc, ev("HandoverWithdrawn", AA, 10, handover_id=H2, reason="x"))
    assert withdrawn["handovers"][H2]["state"] == "withdrawn"


def test_erasure_replaces_every_personal_field() -> None:
    ev = Events()
    doc = fold(
        [
            opened(ev, name="enc:n", birth_date="enc:b"),
            ev("NoteAdded", JC, 1, text="enc:t", category="notes"),
            ev(
                "EmploymentStarted",
                JC,
                2,
                employer="enc:e",
                kind="employment",
                start_date="2026-03-04",
            ),
            ev("ParticipantErased", JC, 3, reason="retention"),
        ]
    )
    assert doc["participant"] == {
        "pseudonym": "P-1",
        "fields": {"name": ERASED, "birth_date": ERASED},
        "source": JC,
        "erased": True,
    }
    assert [n["text"] for n in doc["notes"]] == [ERASED]
    assert doc["employment"]["employer"] == ERASED
    assert doc["erased_at"] == t(3)
    assert "enc:" not in json.dumps(doc)


# ---- inbox and caseload ---------------------------------------------------------------------


def test_inbox_rows_are_the_open_offers_of_an_open_case() -> None:
    ev = Events()
    doc = fold(
        [
            opened(ev),
            offered(ev, H1, JC, COACH, day=1),
            offered(ev, H2, JC, AA, kind="rehab_application", day=2, accept_days=14),
            offered(ev, H3, JC, DRV, kind="return", day=3),
            ev("HandoverAccepted", DRV, 4, handover_id=H3),
        ]
    )

    rows = inbox_rows(doc)

    assert [(r["agency"], r["handover_id"], r["due_at"]) for r in rows] == [
        (COACH, H1, t(8)),
        (AA, H2, t(16)),
    ]
    assert rows[0] == {
        **rows[0],
        "case_id": CASE,
        "programme": "Prog",
        "site": "Nord",
        "kind": "assignment",
        "from_agency": JC,
        "offered_at": t(1),
    }
    closed = reduce_case(doc, ev("CaseClosed", JC, 5, outcome="other"))
    assert inbox_rows(closed) == []


def test_overdue_is_strictly_after_the_due_instant_in_any_time_zone() -> None:
    row = {"due_at": "2026-03-09T10:00:00+01:00", "handover_id": H1}
    due = datetime(2026, 3, 9, 9, tzinfo=UTC)

    assert with_overdue(row, due)["overdue"] is False
    assert with_overdue(row, due + timedelta(microseconds=1))["overdue"] is True
    assert with_overdue(row, due - timedelta(days=1)) == {**row, "overdue": False}
    tokyo = timezone(timedelta(hours=9))
    assert with_overdue(row, datetime(2026, 3, 9, 18, 1, tzinfo=tokyo))["overdue"] is True
    assert "overdue" not in row  # the stored row is not changed


def test_caseload_rows_one_per_involved_agency_with_its_next_deadline() -> None:
    ev = Events()
    doc = fold(
        [
            opened(ev),
            offered(ev, H1, JC, AA, kind="rehab_application", accept_days=14, decide_days=21),
            ev("HandoverAccepted", AA, 2, handover_id=H1),
            offered(ev, H2, JC, AA, kind="return", day=3, accept_days=7),
            offered(ev, H3, JC, COACH, day=4, accept_days=30),
        ]
    )

    rows = {r["agency"]: r for r in caseload_rows(doc)}

    assert involved_agencies(doc) == [AA, COACH, JC]
    assert sorted(rows) == [AA, COACH, JC]
    # AA: an accepted application to decide by day 21, an offer to accept by day 10.
    assert rows[AA]["next_due_at"] == t(10)
    assert rows[COACH]["next_due_at"] == t(34)
    assert rows[JC]["next_due_at"] is None
    assert rows[AA] == {
        "agency": AA,
        "case_id": CASE,
        "programme": "Prog",
        "site": "Nord",
        "stage": "opened",
        "lead_agency": JC,
        "coach": None,
        "next_due_at": t(10),
        "last_activity_at": t(4),
    }
    later = reduce_case(doc, ev("HandoverDeclined", AA, 5, handover_id=H2, reason="x"))
    assert {r["agency"]: r["next_due_at"] for r in caseload_rows(later)}[AA] == t(21)
    closed = reduce_case(later, ev("CaseClosed", JC, 6, outcome="other"))
    assert {r["next_due_at"] for r in caseload_rows(closed)} == {None}


def test_next_deadline_compares_instants_not_strings() -> None:
    ev = Events()
    doc = fold([opened(ev), offered(ev, H1, JC, COACH), offered(ev, H2, AA, COACH)])
    # 10:30 at +02:00 is earlier than 09:00 at UTC, although it sorts later as text.
    doc["handovers"][H1]["due_at"] = "2026-03-09T09:00:00+00:00"
    doc["handovers"][H2]["due_at"] = "2026-03-09T10:30:00+02:00"

    assert {r["agency"]: r["next_due_at"] for r in caseload_rows(doc)}[COACH] == (
        "2026-03-09T10:30:00+02:00"
    )


# ---- consent and the case view --------------------------------------------------------------


def _consented_doc(*after: str, **consent: Any) -> dict[str, Any]:
    """The clinic opens, consents health and contact to the Jobcenter, writes a health
    and a working note, and offers it a discharge carrying health and contact (day
    1); ``after`` names the Jobcenter's answer ("HandoverAccepted" with the lead
    staying with the clinic, "HandoverDeclined"), if any."""
    ev = Events()
    grant = {
        "consent_id": "c-1",
        "categories": ["health", "contact"],
        "source_agency": CLINIC,
        "recipients": [JC],
        "valid_from": t(1),
        "valid_until": t(100),
        **consent,
    }
    events = [
        opened(ev, CLINIC, name="enc:n", contact="enc:c"),
        ev("ConsentGranted", CLINIC, 1, **grant),
        ev("NoteAdded", CLINIC, 2, text="enc:health", category="health"),
        ev("NoteAdded", CLINIC, 2, text="enc:notes", category="notes"),
        offered(ev, H1, CLINIC, JC, "discharge", day=1, categories=["health", "contact"]),
    ]
    events += [ev(type_, JC, 3, handover_id=H1, moves_lead=False) for type_ in after]
    return fold(events)


def test_may_see_needs_the_source_the_leads_task_or_a_carrying_handover() -> None:
    doc = _consented_doc()

    assert may_see(doc, CLINIC, "health", CLINIC, at(0))  # the source, always
    assert may_see(doc, JC, "health", CLINIC, at(1))  # offered; valid_from is inclusive
    assert not may_see(doc, JC, "contact", CLINIC, at(50))  # contact: only once accepted
    assert not may_see(doc, JC, "identity", CLINIC, at(50))  # category not carried
    assert not may_see(doc, COACH, "health", CLINIC, at(50))  # no handover to it
    assert not may_see(doc, JC, "health", AA, at(50))  # other source
    assert not may_see(doc, JC, "health", CLINIC, at(0.99))  # not yet valid
    assert not may_see(doc, JC, "health", CLINIC, at(100))  # valid_until is exclusive
    assert may_see(_consented_doc(valid_until=None), JC, "health", CLINIC, at(5000))

    accepted = _consented_doc("HandoverAccepted")
    assert accepted["lead_agency"] == CLINIC
    assert may_see(accepted, JC, "contact", CLINIC, at(50))
    assert not may_see(accepted, JC, "identity", CLINIC, at(50))  # not carried, not lead
    assert not may_see(_consented_doc("HandoverDeclined"), JC, "health", CLINIC, at(50))

    revoked = reduce_case(
        doc, Events(first_position=99)("ConsentRevoked", JC, 30, consent_id="c-1")
    )
    assert revoked["consents"]["c-1"]["revoked_at"] == t(30)
    assert not may_see(revoked, JC, "health", CLINIC, at(31))


def test_a_consent_alone_shows_nothing() -> None:
    ev = Events()
    doc = fold(
        [
            opened(ev, CLINIC, name="enc:n"),
            ev(
                "ConsentGranted",
                CLINIC,
                1,
                consent_id="c-1",
                categories=["health", "assessment"],
                source_agency=CLINIC,
                recipients=[JC],
                valid_from=t(1),
                valid_until=None,
            ),
            offered(ev, H1, CLINIC, JC, "discharge", day=1, categories=["assessment"]),
        ]
    )
    assert may_see(doc, JC, "assessment", CLINIC, at(2))
    assert not may_see(doc, JC, "health", CLINIC, at(2))  # consented, never carried


def test_the_lead_sees_its_statutory_categories_but_not_health() -> None:
    ev = Events()
    doc = fold([opened(ev, CLINIC, name="enc:n"), offered(ev, H1, CLINIC, JC, "discharge")])
    doc = reduce_case(doc, ev("HandoverAccepted", JC, 1, handover_id=H1, moves_lead=True))
    assert doc["lead_agency"] == JC
    for category in ("identity", "contact", "plan", "employment_history"):
        assert may_see(doc, JC, category, COACH, at(2))
    assert not may_see(doc, JC, "health", CLINIC, at(2))
    assert not may_see(doc, CLINIC, "plan", COACH, at(2))  # no longer the lead


def test_a_forwarded_handover_carries_from_the_chains_origin() -> None:
    ev = Events()
    doc = fold(
        [
            opened(ev, JC, name="enc:n"),
            ev(
                "ConsentGranted",
                JC,
                0,
                consent_id="c-1",
                categories=["health"],
                source_agency=JC,
                recipients=[AA, DRV],
                valid_from=t(0),
                valid_until=None,
            ),
            offered(ev, H1, JC, AA, "rehab_application", categories=["health"]),
            ev(
                "HandoverForwarded",
                AA,
                1,
                handover_id=H1,
                new_handover_id=H2,
                to_agency=DRV,
                reason="enc:r",
                due_at=t(15),
                decide_due_at=t(22),
                legal_basis=["c-1"],
            ),
        ]
    )
    assert may_see(doc, DRV, "health", JC, at(2))  # the origin is the source
    assert not may_see(doc, AA, "health", JC, at(2))  # its handover was forwarded
    assert not may_see(doc, DRV, "identity", JC, at(2))


def test_withheld_drops_the_personal_fields_the_agency_may_not_see() -> None:
    doc = _consented_doc()
    payload = {"pseudonym": "P-1", "name": "enc:n", "contact": "enc:c"}
    opened_payload = {"programme": "Prog", "participant": payload}
    paths = frozenset({"participant.name", "participant.contact", "participant.birth_date"})
    kept = withheld(doc, doc, JC, "CaseOpened", CLINIC, opened_payload, paths, at(50))
    assert kept == {"programme": "Prog", "participant": {"pseudonym": "P-1"}}
    assert opened_payload["participant"] == payload  # the caller's payload is untouched
    own = withheld(doc, doc, CLINIC, "CaseOpened", CLINIC, opened_payload, paths, at(50))
    assert own == opened_payload
    # A field whose category or source is unknown is withheld.
    assert withheld(doc, doc, CLINIC, "Unknown", CLINIC, {"x": 1}, frozenset({"x"}), at(1)) == {}


def test_case_view_leaves_out_what_the_caller_may_not_see() -> None:
    doc = _consented_doc("HandoverAccepted")

    recipient = case_view(doc, JC, at(10))
    outsider = case_view(doc, COACH, at(10))
    source = case_view(doc, CLINIC, at(10))

    assert recipient["participant"] == {"pseudonym": "P-1", "contact": "enc:c"}
    assert [n["text"] for n in recipient["notes"]] == ["enc:health"]
    assert outsider["participant"] == {"pseudonym": "P-1"}
    assert outsider["notes"] == []
    assert outsider["consents"] == []
    assert source["participant"] == {"pseudonym": "P-1", "name": "enc:n", "contact": "enc:c"}
    assert [n["text"] for n in source["notes"]] == ["enc:health", "enc:notes"]
    assert [c["consent_id"] for c in recipient["consents"]] == ["c-1"]
    # Structure stays visible to everyone; only personal data is filtered.
    assert outsider["stage"] == recipient["stage"] == "opened"
    assert "enc:" not in json.dumps(outsider)
    # After the consent ends the recipient sees what an outsider sees.
    assert case_view(doc, JC, at(100))["participant"] == {"pseudonym": "P-1"}
    assert case_view(doc, JC, at(100))["notes"] == []


def test_case_view_filters_plan_measures_and_employment_by_source_and_lead() -> None:
    ev = Events()
    doc = fold(
        [
            opened(ev),
            offered(ev, H1, JC, COACH),
            ev("PlanAgreed", COACH, 1, goals=["g"], modules=["m"]),
            ev("MeasureStarted", COACH, 2, measure_id=H2, kind="internship", title="T"),
            ev(
                "EmploymentStarted",
                JC,
                3,
                employer="enc:e",
                kind="employment",
                start_date="2026-03-05",
            ),
            ev(
                "ConsentGranted",
                COACH,
                3,
                consent_id="c-plan",
                categories=["plan"],
                source_agency=COACH,
                recipients=[JC],
                valid_from=t(3),
                valid_until=None,
            ),
        ]
    )

    jobcenter = case_view(doc, JC, at(4))
    coach = case_view(doc, COACH, at(4))

    assert jobcenter["plan"] == {"goals": ["g"], "modules": ["m"], "agency": COACH}
    assert [m["title"] for m in jobcenter["measures"]] == ["T"]
    assert jobcenter["employment"]["employer"] == "enc:e"
    assert coach["plan"] is not None
    assert coach["employment"] is None  # no handover carried employment history to it
    # The lead's own task (§§ 67 ff. SGB X), not the coach's consent: before it too.
    early = case_view(doc, JC, at(2.5))
    assert early["plan"] == jobcenter["plan"]
    assert set(early["categories_shown"]) == {"plan", "employment_history"}
    outsider = case_view(doc, AA, at(4))  # neither source, lead nor recipient
    assert outsider["plan"] is None
    assert outsider["measures"] == []
    assert outsider["employment"] is None


# ---- audit trail --------------------------------------------------------------------------


def test_legal_basis_names_consents_or_the_statutory_task() -> None:
    ev = Events()
    assert legal_basis(None) == STATUTORY_TASK
    assert legal_basis(offered(ev, H1, JC, COACH, basis=["b", "a"])) == "consent:b,consent:a"
    assert legal_basis(offered(ev, H2, JC, COACH, basis=[STATUTORY_TASK])) == STATUTORY_TASK
    assert legal_basis(ev("HandoverOffered", JC, handover_id=H3, legal_basis=[])) == STATUTORY_TASK
    assert legal_basis(ev("ConsentGranted", JC, consent_id="c-9")) == "consent:c-9"
    assert legal_basis(ev("ConsentRevoked", JC, consent_id="c-9")) == "consent:c-9"
    assert legal_basis(ev("HandoverAccepted", COACH, handover_id=H1)) == STATUTORY_TASK


AUDIT_COLUMNS = (
    "position",
    "case_id",
    "type",
    "agency",
    "actor",
    "occurred_at",
    "recorded_at",
    "legal_basis",
    "hash",
)


def _audit_entry(previous: str, *event: Any) -> dict[str, Any]:
    """``audit_row`` chained from the hex hash ``previous``, its row by column name."""
    _, row = audit_row(bytes.fromhex(previous), *event)
    return dict(zip(AUDIT_COLUMNS, row, strict=True))


def _sha(
    previous: str, position: int, originator: str, version: int, topic: str, state: bytes
) -> str:
    header = f"hub-audit-v1\n{position}\n{originator}\n{version}\n{topic}\n".encode()
    return hashlib.sha256(bytes.fromhex(previous) + header + state).hexdigest()


def test_audit_entries_chain_sha256_over_the_stored_bytes() -> None:
    ev = Events(first_position=5)
    record = ev("ConsentGranted", JC, consent_id="c-1")
    topic = "domain.case:Case.ConsentGranted"
    state = b'{"consent_id":"c-1"}'

    first = _audit_entry(GENESIS, 5, UUID(CASE), 1, topic, state, record)
    second = _audit_entry(first["hash"], 6, CASE, 2, topic, state, record)

    assert first == {
        "position": 5,
        "case_id": CASE,
        "type": "ConsentGranted",
        "agency": JC,
        "actor": "u1",
        "occurred_at": t(0),
        "recorded_at": t(0, hours=0.01),
        "legal_basis": "consent:c-1",
        "hash": _sha(GENESIS, 5, CASE, 1, topic, state),
    }
    assert second["hash"] == _sha(first["hash"], 6, CASE, 2, topic, state)
    # One changed byte, or another previous hash, gives another hash.
    assert (
        _audit_entry(GENESIS, 5, CASE, 1, topic, state.replace(b"1", b"2"), record)["hash"]
        != (first["hash"])
    )
    assert _audit_entry("1" * 64, 5, CASE, 1, topic, state, record)["hash"] != first["hash"]

    agency = _audit_entry(
        GENESIS, 1, UUID(int=7), 1, "domain.agency:Agency.AgencyRegistered", b"{}", None
    )
    assert {k: v for k, v in agency.items() if k != "hash"} == {
        "position": 1,
        "case_id": None,
        "type": "AgencyRegistered",
        "agency": None,
        "actor": None,
        "occurred_at": None,
        "recorded_at": None,
        "legal_basis": STATUTORY_TASK,
    }


# ---- dashboard --------------------------------------------------------------------------


def _fold_dashboard(
    events: list[EventRecord], state: dict[str, Any] | None = None
) -> dict[str, Any]:
    state = state if state is not None else empty_state()
    docs: dict[str, Any] = {}
    for event in events:
        before = docs.get(event.case_id)
        snap = dashboard_snapshot(before)
        docs[event.case_id] = reduce_case(before, event)
        dashboard_delta(state, snap, docs[event.case_id])
    return state


def test_dashboard_delta_moves_counters_with_the_case() -> None:
    ev = Events()
    state = _fold_dashboard([opened(ev), offered(ev, H1, JC, COACH, day=0)])
    assert state["cases_by_stage"] == {"Prog|Nord|opened": 1}
    assert state["handovers_by_state"] == {"Prog|jc|coach|assignment|offered": 1}

    ev2 = Events(case_id="11111111-1111-4111-8111-111111111111", first_position=50)
    more = [
        opened(ev2),
        offered(ev2, H2, JC, COACH, day=0),
        ev2("HandoverAccepted", COACH, 1.5, handover_id=H2),
        ev2("AgreementSigned", COACH, 2),
    ]
    state = _fold_dashboard(more, state)

    assert state["cases_by_stage"] == {"Prog|Nord|opened": 1, "Prog|Nord|active": 1}
    assert state["handovers_by_state"] == {
        "Prog|jc|coach|assignment|offered": 1,
        "Prog|jc|coach|assignment|accepted": 1,
    }
    assert state["offer_to_accept_hours"] == {"jc|coach": [36.0]}
    assert state["assigned"] == {"Prog|Nord": 1}
    assert state["places_used"] == {"Prog|Nord": 1}


def _two_cases() -> list[EventRecord]:
    """Two cases with rehab decisions (one met, one missed), employment and places."""
    ev = Events()
    events = [
        opened(ev),
        offered(ev, H1, JC, DRV, kind="rehab_application", accept_days=14, decide_days=21),
        ev("HandoverAccepted", DRV, 2, handover_id=H1),
        ev("HandoverCompleted", DRV, 21, handover_id=H1),  # exactly at the deadline: met
        offered(ev, H2, JC, COACH, day=1),
        ev("HandoverAccepted", COACH, 3, handover_id=H2),
        ev("AgreementSigned", COACH, 4),
        ev("EmploymentStarted", JC, 100, employer="e", kind="employment", start_date="2026-06-01"),
    ]
    late = Events(case_id="22222222-2222-4222-8222-222222222222", first_position=100)
    events += [
        opened(late),
        offered(late, H3, JC, DRV, kind="rehab_application", accept_days=14, decide_days=21),
        late("HandoverAccepted", DRV, 2, handover_id=H3),
        late("HandoverCompleted", DRV, 22, handover_id=H3),  # a day late: missed
        offered(late, "33333333-3333-4333-8333-333333333333", JC, COACH, day=1),
        late("HandoverAccepted", COACH, 3, handover_id="33333333-3333-4333-8333-333333333333"),
        late(
            "EmploymentStarted", JC, 400, employer="e", kind="employment", start_date="2027-04-10"
        ),
    ]
    return events


def test_dashboard_rehab_decisions_employment_and_places() -> None:
    events = _two_cases()
    state = _fold_dashboard(events)
    offers = [
        {"agency": COACH, "programme": "Prog", "site": "Nord", "due_at": t(10)},
        {"agency": COACH, "programme": "Prog", "site": "Nord", "due_at": t(30)},
        {"agency": AA, "programme": "Prog", "site": "Nord", "due_at": t(5)},
    ]

    figures = dashboard_figures(state, offers, at(20), {"Prog": {"Nord": 150, "Sued": 40}})

    assert figures["generated_at"] == at(20).isoformat()
    assert figures["rehab_decisions"] == [{"agency": DRV, "met": 1, "missed": 1}]
    # 2026-03-05 -> 2026-06-01 is 88 days; 2026-03-05 -> 2027-04-10 is 401 days.
    assert figures["assignment_to_employment"] == [
        {"programme": "Prog", "site": "Nord", "count": 2, "median_days": 244.5}
    ]
    assert figures["employed_within_12_months"] == [
        {"programme": "Prog", "site": "Nord", "assigned": 2, "employed": 1, "share": 0.5}
    ]
    assert figures["places"] == [
        {"programme": "Prog", "site": "Nord", "used": 2, "capacity": 150},
        {"programme": "Prog", "site": "Sued", "used": 0, "capacity": 40},
    ]
    assert figures["cases_by_stage"] == [
        {"programme": "Prog", "site": "Nord", "stage": "employed", "count": 2}
    ]
    assert figures["open_offers"] == [
        {"agency": AA, "open": 1, "overdue": 1},
        {"agency": COACH, "open": 2, "overdue": 1},
    ]
    assert figures["offer_to_accept"] == [
        {
            "from_agency": JC,
            "to_agency": COACH,
            "count": 2,
            "median_hours": 48.0,
            "p90_hours": 48.0,
        },
        {
            "from_agency": JC,
            "to_agency": DRV,
            "count": 2,
            "median_hours": 48.0,
            "p90_hours": 48.0,
        },
    ]


def test_dashboard_totals_do_not_depend_on_the_grain_or_the_order_of_folding() -> None:
    events = _two_cases()
    per_event = _fold_dashboard(events)

    # Each case folded whole, the later case first (a rebuild writes a case once).
    docs: dict[str, Any] = {}
    for event in events:
        docs[event.case_id] = reduce_case(docs.get(event.case_id), event)
    at_once = empty_state()
    apply_all_dashboard_ops(
        at_once, [dashboard_ops(None, doc)[1] for doc in reversed(docs.values())]
    )

    assert at_once == per_event
    assert json.dumps(at_once, sort_keys=True) == json.dumps(per_event, sort_keys=True)


def test_dashboard_quantiles_over_many_acceptances() -> None:
    state = empty_state()
    state["offer_to_accept_hours"] = {"a|b": [float(h) for h in range(1, 11)]}

    [pair] = dashboard_figures(state, [], at(0))["offer_to_accept"]

    assert pair == {
        "from_agency": "a",
        "to_agency": "b",
        "count": 10,
        "median_hours": 5.5,
        "p90_hours": 9.1,
    }


def test_dashboard_counters_drop_keys_that_reach_zero() -> None:
    ev = Events()
    state = _fold_dashboard(
        [
            opened(ev),
            offered(ev, H1, JC, COACH),
            ev("HandoverWithdrawn", JC, 1, handover_id=H1, reason="x"),
            ev("CaseClosed", JC, 2, outcome="other"),
        ]
    )

    assert state["cases_by_stage"] == {"Prog|Nord|closed": 1}
    assert state["handovers_by_state"] == {"Prog|jc|coach|assignment|withdrawn": 1}
    assert state["offer_to_accept_hours"] == {}
    assert dashboard_figures(state, [], at(3))["places"] == []
