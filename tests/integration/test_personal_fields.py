"""Every field marked ``Personal`` is treated alike, on every path: encrypted at rest
(lists stay lists), withheld from Kafka envelopes, never logged, and shown as
erased in the views after erasure (both stores)."""

from __future__ import annotations

import io
import json
from typing import Any
from uuid import UUID

import structlog

from projections.case_view import full_view
from services.application import MessageService
from services.bootstrap import Hub
from services.crypto import ERASED, PREFIX
from services.kafka.envelope import build_envelope, encode, is_case_notification
from services.logging import drop_personal_keys
from services.messages import PERSONAL_PATHS, PERSONAL_PATHS_BY_EVENT, parse_message
from services.replay import event_to_dict, replay_case
from tests import factories as f

JC, COACH, AA, DRV = "jc-pf", "coach-pf", "aa-pf", "drv-pf"

# One distinct value per personal field, so a leak names the field.
SECRETS = {
    "participant.name": "Nora Geheim",
    "participant.birth_date": "1971-02-03",
    "participant.contact": "nora@geheim.example",
    "handover.offered.reason": "offer reason Geheim",
    "handover.withdrawn.reason": "withdraw reason Geheim",
    "handover.declined.reason": "decline reason Geheim",
    "handover.forwarded.reason": "forward reason Geheim",
    "plan.agreed.goals": "goal Geheim",
    "plan.agreed.modules": "module Geheim",
    "plan.updated.goals": "updated goal Geheim",
    "plan.updated.modules": "updated module Geheim",
    "measure.started.title": "measure title Geheim",
    "measure.ended.result": "measure result Geheim",
    "assignment.extended.reason": "extension reason Geheim",
    "employment.started.employer": "Geheim GmbH",
    "note.added.text": "note text Geheim",
    "rehab.decided.reason": "decision reason Geheim",
    "lead.transferred.reason": "transfer reason Geheim",
}


def _register(hub: Hub) -> None:
    for agency, kind in (
        (JC, "jobcenter"),
        (COACH, "coaching_provider"),
        (AA, "employment_agency"),
        (DRV, "rehabilitation_agency"),
    ):
        hub.registry.register(agency, kind, agency)


def _case_with_every_personal_field(messages: MessageService) -> UUID:
    """One case that carries each field of ``PERSONAL_PATHS`` once."""
    s = SECRETS
    case_id = f.new_id()
    assignment, withdrawn, declined, rehab, forwarded = (f.new_id() for _ in range(5))
    participant = {
        "pseudonym": "PF-1",
        "name": s["participant.name"],
        "birth_date": s["participant.birth_date"],
        "contact": s["participant.contact"],
    }
    steps: list[dict[str, Any]] = [
        f.opened(JC, case_id, participant=participant),
        _with(f.offer(JC, case_id, assignment, kind="assignment", to=COACH), reason="offer"),
        f.decide("handover.accepted", COACH, case_id, assignment),
        f.offer(JC, case_id, withdrawn, kind="rehab_application", to=AA, day=1),
        f.decide("handover.withdrawn", JC, case_id, withdrawn, reason=s[_k("withdrawn")]),
        f.offer(JC, case_id, declined, kind="rehab_application", to=AA, day=1),
        f.decide("handover.declined", AA, case_id, declined, reason=s[_k("declined")]),
        f.offer(JC, case_id, rehab, kind="rehab_application", to=AA, day=1),
        f.decide(
            "handover.forwarded",
            AA,
            case_id,
            rehab,
            day=2,
            new_handover_id=str(forwarded),
            to_agency=DRV,
            reason=s[_k("forwarded")],
        ),
        f.decide(
            "rehab.decided",
            DRV,
            case_id,
            forwarded,
            day=2,
            outcome="granted",
            reason=s["rehab.decided.reason"],
        ),
        f.message(
            "plan.agreed",
            COACH,
            case_id,
            {"goals": [s["plan.agreed.goals"], "second goal Geheim"], "modules": [s[_m("agreed")]]},
            day=2,
        ),
        f.message(
            "plan.updated",
            COACH,
            case_id,
            {
                "goals": [s["plan.updated.goals"], "second updated goal Geheim"],
                "modules": [s[_m("updated")]],
            },
            day=3,
        ),
    ]
    measure = str(f.new_id())
    steps += [
        f.message(
            "measure.started",
            COACH,
            case_id,
            {"measure_id": measure, "kind": "internship", "title": s["measure.started.title"]},
            day=3,
        ),
        f.message(
            "measure.ended",
            COACH,
            case_id,
            {"measure_id": measure, "result": s["measure.ended.result"]},
            day=4,
        ),
        f.message(
            "assignment.extended",
            JC,
            case_id,
            {"months": 3, "reason": s["assignment.extended.reason"]},
            day=4,
        ),
        f.message(
            "employment.started",
            COACH,
            case_id,
            {
                "employer": s["employment.started.employer"],
                "kind": "employment",
                "start_date": "2026-04-01",
            },
            day=5,
        ),
        f.message("note.added", COACH, case_id, {"text": s["note.added.text"]}, day=5),
        # The lead passes the case to the employment agency and takes it back.
        f.message(
            "lead.transferred",
            JC,
            case_id,
            {"to_agency": AA, "reason": s["lead.transferred.reason"]},
            day=5,
        ),
        f.message("lead.transferred", AA, case_id, {"to_agency": JC, "reason": "zurück"}, day=5),
    ]
    steps[1]["payload"]["reason"] = s["handover.offered.reason"]
    for step in steps:
        messages.record_raw(step)
    return case_id


def _with(message: dict[str, Any], **payload: Any) -> dict[str, Any]:
    message["payload"].update(payload)
    return message


def _k(verb: str) -> str:
    return f"handover.{verb}.reason"


def _m(verb: str) -> str:
    return f"plan.{verb}.modules"


def _erase(messages: MessageService, case_id: UUID) -> None:
    messages.record_raw(
        f.message(
            "participant.erased",
            JC,
            case_id,
            {"reason": "Aufbewahrung", "ground": "Art. 17 (1) b DSGVO"},
            day=6,
        )
    )


def _case_events(hub: Hub, case_id: UUID) -> list[Any]:
    return [
        (n.id, hub.app.mapper.to_domain_event(n))
        for n in hub.app.recorder.select_notifications(1, 100_000)
        if is_case_notification(n) and n.originator_id == case_id
    ]


def test_the_scenario_covers_every_personal_field() -> None:
    covered = {
        f"{type_}.{path}" if not path.startswith("participant.") else path
        for type_, paths in PERSONAL_PATHS.items()
        for path in paths
    }
    assert set(SECRETS) == covered


def test_every_personal_field_is_encrypted_at_rest_and_lists_stay_lists(hub: Hub) -> None:
    _register(hub)
    case_id = _case_with_every_personal_field(hub.messages)

    stored = b"".join(event.state for event in hub.app.store.select_case_events(case_id))
    for field, secret in SECRETS.items():
        assert secret.encode() not in stored, f"plaintext at rest: {field}"
    events = hub.cipher.reveal(replay_case(hub.app, case_id))["events"]
    agreed = next(e for e in events if e["type"] == "PlanAgreed")["payload"]
    assert agreed["goals"] == [SECRETS["plan.agreed.goals"], "second goal Geheim"]
    assert agreed["modules"] == [SECRETS["plan.agreed.modules"]]
    assert events[0]["payload"]["participant"]["birth_date"] == "1971-02-03"


def test_kafka_envelopes_withhold_every_personal_field_alike(hub: Hub) -> None:
    _register(hub)
    case_id = _case_with_every_personal_field(hub.messages)

    for position, event in _case_events(hub, case_id):
        envelope = build_envelope(event, position)
        raw = encode(envelope).decode()
        assert PREFIX not in raw, envelope["type"]  # no ciphertext leaves the hub either
        for field, secret in SECRETS.items():
            assert secret not in raw, field
        sent = event_to_dict(event, position)["payload"]
        marked = PERSONAL_PATHS_BY_EVENT.get(envelope["type"], frozenset())
        assert set(envelope["withheld"]) == {p for p in marked if _at(sent, p) is not None}


def _at(payload: dict[str, Any], path: str) -> Any:
    for key in path.split("."):
        payload = payload.get(key) if isinstance(payload, dict) else None
    return payload


def test_views_show_every_personal_field_as_erased(hub: Hub) -> None:
    _register(hub)
    case_id = _case_with_every_personal_field(hub.messages)
    _erase(hub.messages, case_id)
    hub.views.catch_up()

    doc = hub.queries.case_doc(str(case_id))
    assert PREFIX not in json.dumps(doc)
    view = full_view(hub.cipher.reveal(doc))
    assert view["plan"]["goals"] == [ERASED, ERASED]  # still a list, one entry per goal
    assert view["plan"]["modules"] == [ERASED]
    assert [(m["title"], m["result"]) for m in view["measures"]] == [(ERASED, ERASED)]
    assert view["employment"]["employer"] == ERASED
    assert [n["text"] for n in view["notes"]] == [ERASED]
    assert set(view["participant"]) == {"pseudonym", "name", "birth_date", "contact", "erased"}
    assert {view["participant"][k] for k in ("name", "birth_date", "contact")} == {ERASED}


def test_without_encryption_erasure_still_blanks_every_personal_field(hub: Hub) -> None:
    """The views' own list of personal places agrees with the marks: with plaintext
    events (no cipher) no marked value survives erasure in the case document."""
    _register(hub)
    plaintext = MessageService(hub.app, hub.registry, hub.settings.policy_book)
    case_id = _case_with_every_personal_field(plaintext)
    hub.views.catch_up()
    assert SECRETS["plan.updated.goals"] in json.dumps(hub.queries.case_doc(str(case_id)))

    _erase(plaintext, case_id)
    hub.views.catch_up()
    stored = json.dumps(hub.queries.case_doc(str(case_id)), ensure_ascii=False)
    for field, secret in SECRETS.items():
        assert secret not in stored, f"{field} survives erasure in the case document"


def test_recording_logs_no_personal_field(hub: Hub) -> None:
    _register(hub)
    stream = io.StringIO()
    structlog.configure(
        processors=[drop_personal_keys, structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    try:
        case_id = _case_with_every_personal_field(hub.messages)
        structlog.get_logger("test").info("echo", **_payload_of(case_id))
    finally:
        structlog.reset_defaults()
    logged = stream.getvalue()
    assert "message_recorded" in logged
    assert "echo" in logged
    for field, secret in SECRETS.items():
        assert secret not in logged, field


def _payload_of(case_id: UUID) -> dict[str, Any]:
    """A careless log call: every marked field of a few messages, bound by name."""
    extended = parse_message(
        f.message("assignment.extended", JC, case_id, {"months": 3, "reason": "x"})
    )
    return {
        "reason": SECRETS["assignment.extended.reason"],
        "goals": [SECRETS["plan.agreed.goals"]],
        "title": SECRETS["measure.started.title"],
        "result": SECRETS["measure.ended.result"],
        "employer": SECRETS["employment.started.employer"],
        "message_type": extended.type,
    }
