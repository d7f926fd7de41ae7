"""The participant's access report (Art. 15 GDPR) over HTTP, on both stores (issue
"Trust model, part 2 — disclosure", build 4; DOMAIN "Privacy and erasure": the
participant may ask what is held and who received or read it).

Every demo case's report is checked against the case's own record, read apart from
the report's code: its stored events (``replay_case``) and its recorded reads.
Before ``services.subject_report`` there was no such answer at all (404).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from fastapi.testclient import TestClient

from domain.case.act import Act
from domain.reads import case_reads_id
from projections.events import CASE_READ
from services.api.app import create_app
from services.bootstrap import Hub
from services.demo import demo_id, load_demo, scenarios
from services.messages.envelope import event_type
from services.messages.privacy import PERSONAL_PATHS
from services.replay import replay_case
from tests.http_helpers import Tokens, assert_error, demo_tokens

LEADS = {  # each demo case and its lead at the end of its scenario
    demo_id("s1/case"): "jc-oder-spree",
    demo_id("s2/case"): "jc-trier",
    demo_id("s3/case"): "jc-trier",
    demo_id("s4/case"): "jc-erzgebirge",
    demo_id("s5/case"): "jc-aachen",
}
S4, S5 = demo_id("s4/case"), demo_id("s5/case")
ERASED = "[gelöscht]"


@pytest.fixture
def tokens(hub: Hub) -> Tokens:
    issued = demo_tokens(hub)
    list(load_demo(hub.registry, hub.messages))
    hub.views.catch_up()
    return issued


@pytest.fixture
def api(hub: Hub, tokens: Tokens) -> Iterator[TestClient]:
    with TestClient(create_app(hub)) as client:
        yield client


def report_of(api: TestClient, case_id: UUID, headers: dict[str, str]) -> dict[str, Any]:
    response = api.get(f"/v1/cases/{case_id}/subject-report", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    return body


def send(api: TestClient, tokens: Tokens, agency: str, type_: str, case_id: UUID, **payload: Any):
    response = api.post(
        "/v1/messages",
        json={
            "message_id": str(uuid4()),
            "type": type_,
            "agency": agency,
            "case_id": str(case_id),
            "occurred_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
            "actor": f"user@{agency}",
            "payload": payload,
        },
        headers=tokens.of(agency),
    )
    assert response.status_code in (200, 201, 202), response.text


# ---- what the events say, computed here, not by the report's code ------------------


def handovers_in(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each handover as the events record it: sender, recipient, categories, both
    times, the consents it relied on, and the state its last step left it in."""
    found: dict[str, dict[str, Any]] = {}
    last = {
        "HandoverAccepted": "accepted",
        "HandoverDeclined": "declined",
        "HandoverWithdrawn": "withdrawn",
        "HandoverCompleted": "completed",
        "RehabDecided": "completed",
    }
    for e in events:
        p = e["payload"]
        if e["type"] == "HandoverOffered":
            found[p["handover_id"]] = {
                "from": e["agency"],
                "to": p["to_agency"],
                "categories": sorted(p["data_categories"]),
                "offered_at": e["occurred_at"],
                "recorded_at": e["recorded_at"],
                "basis": sorted(p["legal_basis"]),
                "state": "offered",
            }
        elif e["type"] == "HandoverForwarded":
            found[p["handover_id"]]["state"] = "forwarded"
            found[p["new_handover_id"]] = {
                "from": e["agency"],
                "to": p["to_agency"],
                "categories": found[p["handover_id"]]["categories"],
                "offered_at": e["occurred_at"],
                "recorded_at": e["recorded_at"],
                "basis": sorted(p["legal_basis"]),
                "state": "offered",
            }
        elif e["type"] in last:
            found[p["handover_id"]]["state"] = last[e["type"]]
    return found


def consents_in(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for e in events:
        p = e["payload"]
        if e["type"] == "ConsentGranted":
            found[p["consent_id"]] = {
                "categories": sorted(p["categories"]),
                "source": p["source_agency"],
                "recipients": sorted(p["recipients"]),
                "valid_from": p["valid_from"],
                "valid_until": p.get("valid_until"),
                "granted_at": e["occurred_at"],
                "granted_by": e["agency"],
                "revoked_at": None,
                "revoked_by": None,
            }
        elif e["type"] == "ConsentRevoked":
            found[p["consent_id"]].update(revoked_at=e["occurred_at"], revoked_by=e["agency"])
    return found


def reads_in(replayed: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Every recorded read: the read stream's and ``CaseRead`` events inside the case."""
    reads = [e for e in replayed["events"] if e["type"] == CASE_READ] + replayed["reads"]
    return sorted(
        (
            r["position"],
            r["recorded_at"],
            r["agency"],
            r["actor"],
            r["payload"]["scope"],
            sorted(r["payload"]["categories"]),
        )
        for r in reads
    )


def categories_held(replayed: dict[str, Any]) -> set[str]:
    """Every category the case's record names anywhere."""
    held: set[str] = set()
    for e in replayed["events"] + replayed["reads"]:
        p = e["payload"]
        held.update(p.get("categories") or [])
        held.update(p.get("data_categories") or [])
        if e["type"] == "NoteAdded":
            held.add(p["category"])
        for path, category in PERSONAL_PATHS_BY_EVENT_TYPE.get(e["type"], {}).items():
            if value_at(p, path) is not None:
                held.add(category)
    return held


PERSONAL_PATHS_BY_EVENT_TYPE = {
    event_type(t): {path: c.value for path, c in paths.items()}
    for t, paths in PERSONAL_PATHS.items()
}


def value_at(payload: dict[str, Any], path: str) -> Any:
    for key in path.split("."):
        payload = payload.get(key) if isinstance(payload, dict) else None  # type: ignore[assignment]
    return payload


def plaintexts_sent(case_id: UUID) -> list[str]:
    """The personal values the demo's agencies sent for ``case_id`` (as they typed them)."""
    values: list[str] = []
    for scenario in scenarios():
        if scenario.case_id != case_id:
            continue
        for step in scenario.steps:
            if step.expect_refusal is not None:
                continue
            message = step.message
            for path in PERSONAL_PATHS[message["type"]]:
                value = value_at(message["payload"], path)
                values += value if isinstance(value, list) else [] if value is None else [value]
    return values


def report_values(report: dict[str, Any]) -> list[str]:
    values: list[str] = []
    for group in report["data"]:
        for item in group["items"]:
            value = item["value"]
            values += value if isinstance(value, list) else [value]
    return values


def report_categories(report: dict[str, Any]) -> set[str]:
    found = set(report["categories_shown"]) | {g["category"] for g in report["data"]}
    for section in ("disclosures", "reads", "consents"):
        for entry in report[section]:
            found.update(entry["categories"])
    return found


# ---- the tests ------------------------------------------------------------------------


def test_the_subject_report_of_each_demo_case_matches_its_events(
    api: TestClient, tokens: Tokens, hub: Hub
) -> None:
    for case_id, lead in LEADS.items():
        # An auditor read first, so every report has a read besides its own.
        assert api.get(f"/v1/cases/{case_id}", headers=tokens.audit()).status_code == 200
        report = report_of(api, case_id, tokens.of(lead))
        replayed = replay_case(hub.app, case_id)
        events = replayed["events"]
        where = f"case {case_id}"

        assert report["case"]["case_id"] == str(case_id)
        assert report["case"]["lead_agency"] == lead, where
        assert report["produced_by"] == {
            "role": "agency",
            "agency": lead,
            "user": lead,
            "role_label": "Stelle",
        }

        expected = handovers_in(events)
        shown = {
            d["handover_id"]: {
                "from": d["from_agency"],
                "to": d["to_agency"],
                "categories": sorted(d["categories"]),
                "offered_at": d["offered_at"],
                "recorded_at": d["recorded_at"],
                "basis": sorted(d["consent_ids"])
                or [b["kind"] for b in d["legal_basis"] if b["kind"] == "statutory_task"],
                "state": d["state"],
            }
            for d in report["disclosures"]
        }
        assert shown == expected, where

        consents = {
            c["consent_id"]: {
                "categories": sorted(c["categories"]),
                "source": c["source_agency"],
                "recipients": sorted(c["recipients"]),
                "valid_from": c["valid_from"],
                "valid_until": c["valid_until"],
                "granted_at": c["granted_at"],
                "granted_by": c["granted_by"],
                "revoked_at": c["revoked_at"],
                "revoked_by": c["revoked_by"],
            }
            for c in report["consents"]
        }
        assert consents == consents_in(events), where
        for c in report["consents"]:
            assert [s["event"] for s in c["history"]] == (
                ["granted", "revoked"] if c["revoked_at"] else ["granted"]
            )

        # The reads the store holds now, this report's own request included.
        listed = sorted(
            (r["position"], r["at"], r["agency"], r["actor"], r["scope"], sorted(r["categories"]))
            for r in report["reads"]
        )
        assert listed == reads_in(replayed), where
        assert [r[4] for r in listed][-2:] == ["case", "subject-report"]

        assert report_categories(report) <= categories_held(replayed), where

        # The data held: every personal value an agency sent, decrypted (or erased).
        sent = plaintexts_sent(case_id)
        assert sent, where
        if case_id == S5:
            assert set(report_values(report)) == {ERASED}
        else:
            assert sorted(report_values(report)) == sorted(sent), where


def test_only_the_lead_or_an_auditor_gets_the_report(
    api: TestClient, tokens: Tokens, hub: Hub
) -> None:
    path = f"/v1/cases/{S4}/subject-report"
    reads_before = len(hub.app.store.select_case_events(case_reads_id(S4)))

    # The coach and the clinic (which opened the case but is no longer its lead) take
    # part in the case: refused as not the lead.
    for involved in ("kopra-erzgebirge", "klinik-erzgebirge"):
        error = assert_error(api.get(path, headers=tokens.of(involved)), 403, "forbidden")
        assert "lead" in error["message"]
    # An agency with no part in the case: the same answer the case view gives it.
    outsider = api.get(path, headers=tokens.of("jc-trier"))
    case_view = api.get(f"/v1/cases/{S4}", headers=tokens.of("jc-trier"))
    assert (outsider.status_code, outsider.json()) == (case_view.status_code, case_view.json())
    assert_error(outsider, 404, "case_not_found")
    # No token, an unknown case, an unknown format.
    assert_error(api.get(path), 401, "unauthenticated")
    assert_error(
        api.get(f"/v1/cases/{uuid4()}/subject-report", headers=tokens.audit()),
        404,
        "case_not_found",
    )
    assert_error(api.get(f"{path}?format=pdf", headers=tokens.audit()), 422, "invalid_request")

    # No refusal was recorded as a read; the lead and an auditor get the report.
    assert len(hub.app.store.select_case_events(case_reads_id(S4))) == reads_before
    assert report_of(api, S4, tokens.of("jc-erzgebirge"))["case"]["pseudonym"] == "ERZ-0815"
    assert report_of(api, S4, tokens.audit())["produced_by"]["role"] == "auditor"


def test_the_request_is_recorded_and_shows_in_the_auditors_history(
    api: TestClient, tokens: Tokens
) -> None:
    report = report_of(api, S4, tokens.of("jc-erzgebirge"))
    assert report["categories_shown"] == ["identity", "health", "notes"]

    history = api.get(f"/v1/cases/{S4}/history", headers=tokens.audit()).json()["items"]
    (read,) = [
        i for i in history if i["type"] == CASE_READ and i["payload"]["scope"] == "subject-report"
    ]
    assert (read["agency"], read["actor"], read["payload"]["role"]) == (
        "jc-erzgebirge",
        "jc-erzgebirge",
        "agency",
    )
    assert sorted(read["payload"]["categories"]) == sorted(report["categories_shown"])
    assert read["hash"] is not None
    # The report lists its own production as the newest read.
    assert report["reads"][-1]["position"] == read["position"]
    assert api.get("/v1/audit/verify", headers=tokens.audit()).json()["ok"] is True


def test_a_read_recorded_inside_the_case_by_an_older_version_is_listed(
    api: TestClient, tokens: Tokens, hub: Hub
) -> None:
    case_id = demo_id("s3/case")
    case = hub.app.repository.get(case_id)
    case.record_read(
        Act("auditor", "Altprüfung", datetime.now(UTC)),
        role="auditor",
        scope="history",
        categories=["identity", "plan"],
    )
    hub.app.save(case)

    reads = report_of(api, case_id, tokens.audit())["reads"]
    assert [(r["stored"], r["actor"], r["scope"], r["categories"]) for r in reads] == [
        ("case", "Altprüfung", "history", ["identity", "plan"]),
        ("reads", "Prüferin Test", "subject-report", ["identity", "contact", "plan", "notes"]),
    ]
    assert reads[0]["scope_label"] == "Verlauf"


def test_the_html_report_is_german_printable_and_escapes_hostile_text(
    api: TestClient, tokens: Tokens
) -> None:
    hostile = "<script>alert('x')</script> & <img src=x onerror=alert(1)>"
    send(api, tokens, "kopra-erzgebirge", "note.added", S4, text=hostile, category="notes")
    # A handover the chamber declined: marked in the report, its basis statutory.
    handover = str(uuid4())
    send(
        api,
        tokens,
        "kopra-erzgebirge",
        "handover.offered",
        S4,
        handover_id=handover,
        kind="placement_support",
        to_agency="hwk-ffo",
        data_categories=[],
    )
    send(api, tokens, "hwk-ffo", "handover.declined", S4, handover_id=handover, reason="kein Platz")

    response = api.get(f"/v1/cases/{S4}/subject-report?format=html", headers=tokens.audit())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    page = response.text
    for words in (
        '<html lang="de">',
        "Auskunft nach Art. 15 DSGVO",
        "Angaben zur Person und gespeicherte Daten",
        "Gesundheitsdaten – Quelle: Klinikum Erzgebirge, Psychiatrie (klinik-erzgebirge)",
        "Weitergaben an andere Stellen",
        "Einwilligung erz-0815-health-kopra",
        "Vermittlungsunterstützung",
        "abgelehnt – kein Zugriff mehr auf das Übergebene",
        "gesetzliche Aufgabe",
        "Einwilligungen",
        "widerrufen am 06.05.2026 10:00 durch Jobcenter Erzgebirgskreis",
        "Protokollierte Zugriffe",
        "Jonas Vorbild",
        "Belastbarkeit drei Stunden täglich",
        "06.04.2026 10:00",  # 09:00 CET as sent; summer time in Berlin
        "Erstellt am",
        "@media print",
    ):
        assert words in page, words
    # Nothing the page runs or fetches; the note only as text.
    assert "<script" not in page
    assert "<img" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &lt;img" in page
    assert "<link" not in page
    assert "src=" not in page.replace("src=x", "")
    assert "default-src 'none'" in page


def test_after_erasure_personal_values_show_as_geloescht(api: TestClient, tokens: Tokens) -> None:
    report = report_of(api, S5, tokens.of("jc-aachen"))
    assert report["case"]["erased"] is True
    values = report_values(report)
    assert values
    assert set(values) == {ERASED}
    assert report["categories_shown"] == []
    # The record of who received what stays.
    assert [(d["to_agency"], d["categories"]) for d in report["disclosures"]] == [
        ("ifd-aachen", ["identity", "contact"])
    ]
    page = api.get(f"/v1/cases/{S5}/subject-report?format=html", headers=tokens.audit()).text
    assert ERASED in page
    for plaintext in plaintexts_sent(S5):
        assert plaintext not in page
