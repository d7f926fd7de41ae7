"""Reads are recorded, outside the case, and agencies see only their programmes
(issue "Trust model, part 2 — disclosure", items 1 and 2; DOMAIN "Views").

Reproductions over HTTP on both stores: before, an auditor's read of an inbox,
caseload or dashboard left no trace; every recorded read was an event inside the
case (loaded again for every write); an agency's read that showed its
participant's name was not recorded; and any agency's token saw every
programme's figures and the case ids of every overdue handover.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from domain.reads import case_reads_id
from services.api.app import create_app
from services.bootstrap import Hub
from services.demo import demo_id, load_demo
from tests.cli_helpers import hub_cli
from tests.http_helpers import Tokens, demo_tokens

ROOT = Path(__file__).resolve().parents[2]
S2 = demo_id("s2/case")  # Inklusionsinitiative Trier: jc-trier, aa-trier, drv-rlp
S4 = demo_id("s4/case")  # KoPrA: klinik-erzgebirge, jc-erzgebirge, kopra-erzgebirge


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


def get(api: TestClient, path: str, headers: dict[str, str]) -> Any:
    response = api.get(path, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def reads_in(history: dict[str, Any]) -> list[dict[str, Any]]:
    return [item for item in history["items"] if item["type"] == "CaseRead"]


def test_an_auditors_read_is_recorded_outside_the_case(
    api: TestClient, tokens: Tokens, hub: Hub
) -> None:
    case_events = len(hub.app.store.select_case_events(S4))
    get(api, f"/v1/cases/{S4}", tokens.audit())

    # The case's own stream did not grow: a read never makes a write load more.
    assert len(hub.app.store.select_case_events(S4)) == case_events
    assert len(hub.app.store.select_case_events(case_reads_id(S4))) == 1
    # Still in the case's history, chained like every event.
    history = get(api, f"/v1/cases/{S4}/history", tokens.audit())
    (read,) = [r for r in reads_in(history) if r["payload"]["scope"] == "case"]
    assert read["agency"] == "auditor"
    assert read["payload"]["role"] == "auditor"
    assert "health" in read["payload"]["categories"]
    assert read["hash"] is not None
    verified = get(api, "/v1/audit/verify", tokens.audit())
    assert verified["ok"] is True


def test_auditor_reads_of_inbox_caseload_and_dashboard_are_in_the_read_log(
    api: TestClient, tokens: Tokens
) -> None:
    get(api, "/v1/agencies/jc-trier/inbox", tokens.audit())
    get(api, "/v1/agencies/aa-trier/cases", tokens.audit())
    get(api, "/v1/dashboard", tokens.audit())
    # An agency reading its own inbox shows no personal data: not recorded.
    get(api, "/v1/agencies/jc-trier/inbox", tokens.of("jc-trier"))

    day = datetime.now(UTC).date().isoformat()
    log = get(api, f"/v1/audit/reads?day={day}", tokens.audit())
    seen = [(r["payload"]["scope"], r["payload"]["target"], r["agency"]) for r in log["items"]]
    assert seen == [
        ("inbox", "jc-trier", "auditor"),
        ("caseload", "aa-trier", "auditor"),
        ("dashboard", None, "auditor"),
    ]
    # The read log is for auditors only.
    assert api.get(f"/v1/audit/reads?day={day}", headers=tokens.of("jc-trier")).status_code == 403


def test_an_agency_read_that_shows_personal_data_is_recorded_with_its_categories(
    api: TestClient, tokens: Tokens
) -> None:
    view = get(api, f"/v1/cases/{S4}", tokens.of("jc-erzgebirge"))
    assert "identity" in view["categories_shown"]  # the lead sees its participant's name

    history = get(api, f"/v1/cases/{S4}/history", tokens.of("jc-erzgebirge"))
    (read,) = [r for r in reads_in(history) if r["payload"]["scope"] == "case"]
    assert read["agency"] == "jc-erzgebirge"
    assert read["payload"]["categories"] == view["categories_shown"]
    # The actor is the agency (or its user), never the agency's display name.
    assert read["actor"] == "jc-erzgebirge"
    # Another agency does not see the lead's reads in its part of the history.
    coach = get(api, f"/v1/cases/{S4}/history", tokens.of("kopra-erzgebirge"))
    assert all(r["agency"] == "kopra-erzgebirge" for r in reads_in(coach))


def test_an_agencys_dashboard_shows_only_its_programmes_and_own_overdue_cases(
    api: TestClient, tokens: Tokens
) -> None:
    everything = get(api, "/v1/dashboard", tokens.audit())
    programmes = {row["programme"] for row in everything["cases_by_stage"]}
    assert {"KoPrA", "Inklusionsinitiative Trier"} <= programmes

    for agency in ("jc-trier", "kopra-erzgebirge", "hwk-ffo"):
        own = {
            row["case_id"]
            for row in get(api, f"/v1/agencies/{agency}/cases", tokens.of(agency))["items"]
        }
        mine = {
            row["programme"]
            for row in get(api, f"/v1/agencies/{agency}/cases", tokens.of(agency))["items"]
        }
        figures = get(api, "/v1/dashboard", tokens.of(agency))
        assert set(figures["programmes"]) == mine
        for name in ("cases_by_stage", "handovers_by_state", "places"):
            assert {row["programme"] for row in figures[name]} <= mine, (agency, name)
        assert {row["case_id"] for row in figures["overdue_handovers"]} <= own
    trier = get(api, "/v1/dashboard", tokens.of("jc-trier"))
    assert "KoPrA" not in {row["programme"] for row in trier["cases_by_stage"]}
    assert all(row["to_agency"] != "kopra-erzgebirge" for row in trier["offer_to_accept"])


def hub_bytes(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return hub_cli(*args, env=env, text=False)


def test_replay_for_an_agency_applies_the_disclosure_rule_of_that_moment(
    database_url: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "HUB_DATABASE_URL": database_url,
        "HUB_VAR_DIR": str(tmp_path / "var"),
        "HUB_LOG_FORMAT": "json",
        "PYTHONPATH": str(ROOT),
    }
    assert hub_bytes("demo", env=env).returncode == 0

    def coach_notes(*extra: str) -> list[str]:
        shown = hub_bytes(
            "replay", str(S4), "--agency", "kopra-erzgebirge", "--json", *extra, env=env
        )
        assert shown.returncode == 0, shown.stderr.decode()
        result = json.loads(shown.stdout)
        assert result["agency"] == "kopra-erzgebirge"
        texts = [n["text"] for n in result["state"]["notes"]]
        in_events = [e["payload"]["text"] for e in result["events"] if "text" in e["payload"]]
        assert texts == in_events
        return texts

    # Day 14 of the scenario: the health consent to the coach was still valid.
    before = coach_notes("--axis", "occurred", "--as-of", "2026-04-20T00:00:00+02:00")
    assert any("Belastbarkeit" in text for text in before)
    # Today, after the revocation on day 30: the note is withheld in replay too.
    assert not any("Belastbarkeit" in text for text in coach_notes())

    # An agency not involved gets no replay at all.
    refused = hub_bytes("replay", str(S4), "--agency", "jc-trier", env=env)
    assert refused.returncode != 0
    assert "forbidden" in refused.stderr.decode()


def test_a_read_records_the_acting_user_from_the_token_or_header(
    api: TestClient, tokens: Tokens, hub: Hub
) -> None:
    user_token = hub.tokens.issue_agency_token("jc-erzgebirge", user="fm-7")
    get(api, f"/v1/cases/{S4}", {"Authorization": f"Bearer {user_token}"})
    get(api, f"/v1/cases/{S4}", {**tokens.of("jc-erzgebirge"), "X-Hub-User": "fm-8"})

    history = get(api, f"/v1/cases/{S4}/history", tokens.audit())
    case_reads = [r for r in reads_in(history) if r["agency"] == "jc-erzgebirge"]
    assert [(r["actor"], r["payload"]["user"]) for r in case_reads] == [
        ("fm-7", "fm-7"),
        ("fm-8", "fm-8"),
    ]
