"""The auditor's case timeline and the agency inbox in a real browser (issue 15):
headless Chromium (Debian's ``chromium``) driven by Playwright, against ``hub
serve --demo`` in its own process, every page served under
``Content-Security-Policy: default-src 'self'`` (added to the pages' answers here,
so an inline script or style would fail the test), checked by axe-core (from npm)
in German and English and at 390 px. Screenshots go to the test's folder and
``test-output/``. Skipped locally when Chromium, Playwright or npm is missing;
required in CI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from domain.case.consent import consent_valid
from services.demo import demo_id
from tests.e2e.axe import AxeMissing, axe_source, violations
from tests.e2e.browser import TIMEOUT_MS, launched, missing, save, watched
from tests.factories import T0, message, offer
from tests.http_helpers import ROOT, ServedProcess, bearer, hub_serve

CSP = "default-src 'self'"
PAGES = re.compile(r"^http://127\.0\.0\.1:\d+/(audit|inbox)(/[^?]*)?(\?.*)?$")
S4 = demo_id("s4/case")  # KoPrA: the health consent is revoked on 6 May 2026
REVOKED = "erz-0815-health-kopra"
HUB = (sys.executable, "-m", "services.cli")

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _axe_missing() -> str | None:
    try:
        axe_source()
    except AxeMissing as error:
        return str(error)
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched("--lang=de-DE", problem=missing() or _axe_missing()) as chromium:
        yield chromium


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServedProcess]:
    with hub_serve(f"sqlite:///{tmp_path / 'hub.db'}", tmp_path / "var", demo=True) as served:
        assert {"jc-trier", "drv-rlp", "auditor"} <= set(served.tokens), served.output
        yield served


def _with_csp(route: Any) -> None:
    response = route.fetch()
    route.fulfill(response=response, headers={**response.headers, "content-security-policy": CSP})


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    opened_context = browser.new_context(
        viewport={"width": 1280, "height": 900}, locale="de-DE", timezone_id="Europe/Berlin"
    )
    opened_context.set_default_timeout(TIMEOUT_MS)
    opened_context.route(PAGES, _with_csp)
    try:
        yield opened_context
    finally:
        opened_context.close()


@pytest.fixture
def page(context: Any) -> Any:
    return watched(context)


# ---- helpers --------------------------------------------------------------------------


def _sign_in(page: Any, url: str, token: str) -> None:
    page.goto(url)
    page.get_by_label("Zugangstoken").fill(token)
    page.get_by_role("button", name="Anmelden").click()
    page.wait_for_selector("body[data-loaded='true']")


def _loaded_again(page: Any) -> None:
    page.evaluate("delete document.body.dataset.loaded")


def _accessible_and_narrow(page: Any, tmp_path: Path, name: str) -> None:
    """axe finds nothing, in German and in English; at 390 px nothing is wider than
    the page. Screenshots of each (German desktop and phone, English desktop)."""
    assert violations(page) == [], name
    save(page, tmp_path, f"{name}.png")
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, name
    assert violations(page) == [], f"{name} at 390 px"
    save(page, tmp_path, f"{name}-390.png")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.get_by_role("button", name="Switch to English").click()
    assert page.evaluate("document.documentElement.lang") == "en"
    assert violations(page) == [], f"{name} in English"
    save(page, tmp_path, f"{name}-en.png")
    page.get_by_role("button", name="Auf Deutsch umschalten").click()
    assert page.evaluate("document.documentElement.lang") == "de"


def _api(server: ServedProcess, who: str, path: str) -> dict[str, Any]:
    response = httpx.get(f"{server.base_url}{path}", headers=bearer(server.tokens[who]), timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def _post(server: ServedProcess, who: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(
        f"{server.base_url}/v1/messages", json=body, headers=bearer(server.tokens[who]), timeout=10
    )
    assert response.status_code in (200, 201, 202), response.text
    return response.json()


def _cli_replay(server: ServedProcess, database: Path, as_of: str) -> dict[str, Any]:
    """``hub replay --as-of … --axis occurred --json`` on the served store."""
    env = {
        **os.environ,
        "HUB_DATABASE_URL": f"sqlite:///{database}",
        "HUB_VAR_DIR": str(database.parent / "var"),
        "HUB_LOG_FORMAT": "json",
        "HUB_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [*HUB, "replay", str(S4), "--as-of", as_of, "--axis", "occurred", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _page_state(page: Any) -> dict[str, Any]:
    handovers = page.get_by_test_id("state-handovers").locator("tbody tr[data-handover-id]")
    consents = page.get_by_test_id("state-consents").locator("tbody tr[data-consent-id]")
    return {
        "stage": page.get_by_test_id("state-stage").inner_text(),
        "lead": page.get_by_test_id("state-lead").inner_text(),
        "handovers": {
            handovers.nth(i).get_attribute("data-handover-id"): handovers.nth(i).get_attribute(
                "data-state"
            )
            for i in range(handovers.count())
        },
        "in_force": {
            consents.nth(i).get_attribute("data-consent-id"): consents.nth(i).get_attribute(
                "data-in-force"
            )
            == "true"
            for i in range(consents.count())
        },
    }


def _expected_state(replayed: dict[str, Any], as_of: str) -> dict[str, Any]:
    state = replayed["state"]
    moment = datetime.fromisoformat(as_of)
    stages = {"opened": "eröffnet", "active": "aktiv", "closed": "abgeschlossen"}
    return {
        "stage": stages[state["stage"]],
        "lead": {"jc-erzgebirge": "Jobcenter Erzgebirgskreis"}[state["lead_agency"]],
        "handovers": {h["handover_id"]: h["state"] for h in state["handovers"]},
        "in_force": {
            c["consent_id"]: consent_valid(
                datetime.fromisoformat(c["valid_from"]),
                datetime.fromisoformat(c["valid_until"]) if c["valid_until"] else None,
                datetime.fromisoformat(c["revoked_at"]) if c["revoked_at"] else None,
                moment,
            )
            for c in state["consents"]
        },
    }


def _show_as_of(page: Any, local: str, shown: str) -> None:
    page.get_by_label("Geschehen bei der Stelle").check()
    page.get_by_label("Zeitpunkt", exact=True).fill(local)
    with page.expect_response(re.compile(r"/replay\?")):
        page.get_by_role("button", name="Anzeigen").click()
    heading = page.get_by_test_id("state-heading")
    heading.filter(has_text=f"Stand am {shown}").wait_for()


# ---- the auditor ------------------------------------------------------------------------


def test_the_auditor_finds_a_case_sees_its_timeline_the_state_as_of_a_moment_and_the_chain(
    page: Any, server: ServedProcess, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    _sign_in(page, f"{server.base_url}/audit", server.tokens["auditor"])
    assert page.get_by_role("heading", level=1).inner_text() == "Übergabe-Hub: Prüfung"
    _accessible_and_narrow(page, tmp_path, "audit-search")

    # Search by pseudonym (any case): one result, linked to its timeline.
    page.get_by_label("Fall-ID oder Pseudonym").fill("erz-0815")
    page.get_by_role("button", name="Suchen").click()
    link = page.get_by_role("link", name="Zeitleiste öffnen: ERZ-0815")
    expect(link).to_be_visible()
    _loaded_again(page)
    link.click()
    page.wait_for_selector("body[data-loaded='true']")
    assert page.url == f"{server.base_url}/audit/cases/{S4}"
    expect(page.get_by_role("heading", name="Fall ERZ-0815")).to_be_visible()

    # Every event in order with both clocks, display names, legal basis; late entries
    # (the demo records months after the fact) and reads (the search, the replay) marked.
    rows = page.get_by_test_id("timeline").locator("tbody tr")
    positions = [int(p) for p in rows.evaluate_all("rs => rs.map(r => r.dataset.position)")]
    assert positions == sorted(positions)
    history = _api(server, "auditor", f"/v1/cases/{S4}/history")
    events = [i for i in history["items"] if i["type"] != "CaseRead"]
    assert [p for p in positions if p in {e["position"] for e in events}] == [
        e["position"] for e in events
    ]
    first = page.locator(f"tr[data-position='{events[0]['position']}']")
    assert "Fall eröffnet" in first.inner_text()
    assert "06.04.2026, 10:00:00 MESZ" in first.inner_text()  # occurred, de-DE
    assert "Klinikum Erzgebirge, Psychiatrie" in first.inner_text()  # display name
    assert "Nachtrag" in first.inner_text()
    revoked = page.locator("tr[data-type='ConsentRevoked']")
    assert f"Einwilligung {REVOKED}" in revoked.inner_text()  # legal basis
    reads = page.locator("tr[data-type='CaseRead']")
    assert reads.count() >= 2  # the search and the replay, before this history was read
    assert "Lesezugriff" in reads.first.inner_text()
    assert "Fallsuche" in reads.first.inner_text()

    # The chain: this case's entries and the whole log, intact, with the head hash.
    expect(page.get_by_test_id("chain-case")).to_have_attribute("data-ok", "true")
    expect(page.get_by_test_id("chain-log")).to_have_attribute("data-ok", "true")
    assert "Kette intakt" in page.get_by_test_id("chain-case").inner_text()
    assert re.fullmatch(r"[0-9a-f]{64}", page.get_by_test_id("head-hash").inner_text())
    _accessible_and_narrow(page, tmp_path, "audit-case")

    # As of 1 May 2026 (the agencies' clock): the health consent for KoPrA is in force,
    # as `hub replay --as-of` says.
    database = tmp_path / "hub.db"
    _show_as_of(page, "2026-05-01T12:00:00", "01.05.2026, 12:00:00 MESZ")
    before = _expected_state(
        _cli_replay(server, database, "2026-05-01T10:00:00+00:00"), "2026-05-01T10:00:00+00:00"
    )
    assert before["in_force"][REVOKED] is True
    assert _page_state(page) == before
    assert "01.05.2026, 12:00:00 MESZ" in page.get_by_test_id("state-heading").inner_text()
    later = page.locator("tr.later[data-type='ConsentRevoked']")
    expect(later).to_have_count(1)  # events after the moment are marked
    save(page, tmp_path, "audit-case-as-of-before.png")

    # As of 10 May, after the revocation on 6 May: revoked.
    _show_as_of(page, "2026-05-10T12:00:00", "10.05.2026, 12:00:00 MESZ")
    after = _expected_state(
        _cli_replay(server, database, "2026-05-10T10:00:00+00:00"), "2026-05-10T10:00:00+00:00"
    )
    assert after["in_force"][REVOKED] is False
    assert _page_state(page) == after
    consent = page.locator(f"tr[data-consent-id='{REVOKED}']")
    assert "widerrufen am 06.05.2026, 10:00:00 MESZ" in consent.inner_text()
    save(page, tmp_path, "audit-case-as-of-after.png")
    # The moment is in the address (never the token): a reload shows the same state.
    assert "as_of=2026-05-10T10%3A00%3A00.000Z" in page.url
    assert server.tokens["auditor"] not in page.url

    # Every view was recorded as a read: the search, each replay, history, chain check.
    scopes = [
        i["payload"]["scope"]
        for i in _api(server, "auditor", f"/v1/cases/{S4}/history")["items"]
        if i["type"] == "CaseRead"
    ]
    assert scopes.count("search") == 1
    assert scopes.count("replay") >= 4  # the page's three, the CLI's two
    assert {"history", "verify"} <= set(scopes)
    assert page.problems == []


def test_the_erased_case_shows_erased_fields_and_an_agency_cannot_use_the_audit_page(
    page: Any, server: ServedProcess
) -> None:
    s5 = demo_id("s5/case")
    _sign_in(page, f"{server.base_url}/audit/cases/{s5}", server.tokens["auditor"])
    opened_row = page.locator("tr[data-type='CaseOpened']")
    assert "Pseudonym: AC-0300" in opened_row.inner_text()
    assert "Name: [gelöscht]" in opened_row.inner_text()
    assert "Personendaten gelöscht" in page.get_by_test_id("timeline").inner_text()
    assert page.get_by_test_id("chain-case").get_attribute("data-ok") == "true"

    page.get_by_role("button", name="Abmelden").click()
    page.get_by_label("Zugangstoken").fill(server.tokens["jc-trier"])
    page.get_by_role("button", name="Anmelden").click()
    from playwright.sync_api import expect

    expect(page.get_by_text("Diese Seite ist Prüferinnen und Prüfern vorbehalten.")).to_be_visible()
    assert page.problems == []


def _backup(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite store (the server keeps running)."""
    with sqlite3.connect(source) as live, sqlite3.connect(target) as copy:
        live.backup(copy)


def test_the_chain_check_names_the_broken_position_in_a_tampered_copy(
    page: Any, server: ServedProcess, tmp_path: Path
) -> None:
    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    _backup(tmp_path / "hub.db", copy_dir / "hub.db")
    shutil.copytree(tmp_path / "var", copy_dir / "var")
    # Behind the hub's back: the revocation's actor rewritten in the stored event.
    with sqlite3.connect(copy_dir / "hub.db") as db:
        ((position, state),) = db.execute(
            "SELECT rowid, state FROM stored_events WHERE topic LIKE '%ConsentRevoked'"
        ).fetchall()
        changed = bytes(state).replace(b'"actor":"integration-4"', b'"actor":"integration-9"')
        assert changed != bytes(state)
        db.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (changed, position))
    env = {
        **os.environ,
        "HUB_DATABASE_URL": f"sqlite:///{copy_dir / 'hub.db'}",
        "HUB_VAR_DIR": str(copy_dir / "var"),
        "HUB_LOG_FORMAT": "json",
        "PYTHONPATH": str(ROOT),
    }
    issued = subprocess.run(
        [*HUB, "token", "auditor", "--name", "Prüfer Kopie"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    token = issued.stdout.strip().splitlines()[-1]
    with hub_serve(f"sqlite:///{copy_dir / 'hub.db'}", copy_dir / "var", demo=False) as copy:
        _sign_in(page, f"{copy.base_url}/audit/cases/{S4}", token)
        case_check = page.get_by_test_id("chain-case")
        assert case_check.get_attribute("data-ok") == "false"
        assert f"Kette gebrochen an Position {position}" in case_check.inner_text()
        assert "gespeichertes Ereignis passt nicht zu seinem Hash" in case_check.inner_text()
        log_check = page.get_by_test_id("chain-log")
        assert log_check.get_attribute("data-ok") == "false"
        assert f"Kette gebrochen an Position {position}" in log_check.inner_text()
        row = page.locator(f"tr[data-position='{position}']")
        assert "broken" in (row.get_attribute("class") or "")
        assert "Kette gebrochen" in row.inner_text()
        save(page, tmp_path, "audit-case-tampered.png")
    assert page.problems == []


# ---- an agency --------------------------------------------------------------------------


def _rehab_offer_to_drv(server: ServedProcess) -> tuple[str, str]:
    """A new case of jc-trier with a rehabilitation application offered to drv-rlp a
    few minutes ago (so within the 14 days in which it may be forwarded)."""
    case_id, handover_id = uuid.uuid4(), uuid.uuid4()
    today = (datetime.now(UTC) - T0).total_seconds() / 86_400 - 0.01
    body = {"programme": "Inklusionsinitiative Trier", "participant": {"pseudonym": "TR-9001"}}
    _post(server, "jc-trier", message("case.opened", "jc-trier", case_id, body, day=today))
    _post(
        server,
        "jc-trier",
        offer("jc-trier", case_id, handover_id, kind="rehab_application", to="drv-rlp", day=today),
    )
    return str(case_id), str(handover_id)


def _events_of(server: ServedProcess, case_id: str, event_type: str) -> list[dict[str, Any]]:
    history = _api(server, "auditor", f"/v1/cases/{case_id}/history")
    return [i for i in history["items"] if i["type"] == event_type]


def test_an_agency_accepts_declines_and_forwards_from_its_inbox_and_records_a_note(
    page: Any, server: ServedProcess, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    to_accept = _rehab_offer_to_drv(server)
    to_decline = _rehab_offer_to_drv(server)
    to_forward = _rehab_offer_to_drv(server)
    posted: list[dict[str, Any]] = []

    def seen(response: Any) -> None:
        if response.url.endswith("/v1/messages") and response.request.method == "POST":
            posted.append(
                {"body": json.loads(response.request.post_data), "status": response.status}
            )

    page.on("response", seen)
    _sign_in(page, f"{server.base_url}/inbox", server.tokens["drv-rlp"])
    assert "Deutsche Rentenversicherung Rheinland-Pfalz" in page.locator("#who").inner_text()
    inbox = page.get_by_test_id("inbox-table")
    expect(inbox.locator("tbody tr[data-handover-id]")).to_have_count(3)
    row = inbox.locator(f"tr[data-handover-id='{to_accept[1]}']")
    assert "Reha-Antrag" in row.inner_text()
    assert "Jobcenter Trier" in row.inner_text()
    # The first agency of a § 14 application may forward it: the button is there.
    assert row.locator("[data-action=forward]").count() == 1
    _accessible_and_narrow(page, tmp_path, "inbox")

    # Accept with a double click: the same message twice, recorded once.
    row.locator("[data-action=accept]").dblclick()
    page.wait_for_selector("body[data-done='2']")  # both answers arrived and were shown
    expect(page.locator("#status")).to_contain_text("Übergabe angenommen.")
    accepted = [p for p in posted if p["body"]["type"] == "handover.accepted"]
    assert len(accepted) == 2, accepted
    assert accepted[0]["body"] == accepted[1]["body"]  # same message_id, same body
    assert sorted(p["status"] for p in accepted) in ([200, 201], [200, 202])
    assert len(_events_of(server, to_accept[0], "HandoverAccepted")) == 1
    # A § 14 application stays in the inbox until decided (scenario 2): decide it.
    row = inbox.locator(f"tr[data-handover-id='{to_accept[1]}']")
    expect(row).to_contain_text("Entscheidung ausstehend")
    assert row.locator("[data-action=forward]").count() == 0  # accepted: no longer
    row.locator("[data-action=decide]").click()
    form = page.get_by_test_id("decide-form")
    form.get_by_label("Entscheidung", exact=True).select_option("granted")
    form.get_by_label("Bescheid (Aktenzeichen, optional)").fill("DRV-RLP-Bescheid-2026-1201")
    _loaded_again(page)
    form.get_by_role("button", name="Senden").click()
    page.wait_for_selector("body[data-loaded='true']")
    expect(inbox.locator(f"tr[data-handover-id='{to_accept[1]}']")).to_have_count(0)
    (decided,) = _events_of(server, to_accept[0], "RehabDecided")
    assert decided["payload"]["outcome"] == "granted"

    # Decline needs a reason: without one nothing is sent.
    row = inbox.locator(f"tr[data-handover-id='{to_decline[1]}']")
    row.locator("[data-action=decline]").click()
    form = page.get_by_test_id("decline-form")
    sent_before = len(posted)
    form.get_by_role("button", name="Senden").click()
    expect(form.get_by_role("alert")).to_have_text("Bitte eine Begründung angeben.")
    assert len(posted) == sent_before
    assert violations(page) == []  # the open form with its error, too
    form.get_by_label("Begründung").fill("Nicht zuständig: keine Wartezeit erfüllt")
    _loaded_again(page)
    form.get_by_role("button", name="Senden").click()
    page.wait_for_selector("body[data-loaded='true']")
    expect(inbox.locator(f"tr[data-handover-id='{to_decline[1]}']")).to_have_count(0)
    declined = _events_of(server, to_decline[0], "HandoverDeclined")
    assert len(declined) == 1

    # Forward to the employment agency (§ 14: once).
    row = inbox.locator(f"tr[data-handover-id='{to_forward[1]}']")
    row.locator("[data-action=forward]").click()
    form = page.get_by_test_id("forward-form")
    form.get_by_label("Weiterleiten an").select_option("aa-trier")
    assert "Weiterleitung nach § 14 SGB IX möglich bis" in form.inner_text()
    form.get_by_label("Begründung").fill("Zuständigkeit der Agentur für Arbeit")
    _loaded_again(page)
    form.get_by_role("button", name="Senden").click()
    page.wait_for_selector("body[data-loaded='true']")
    forwarded = _events_of(server, to_forward[0], "HandoverForwarded")
    assert [e["payload"]["to_agency"] for e in forwarded] == ["aa-trier"]

    # The inbox is empty now; the caseload lists the accepted case.
    expect(inbox.locator("tbody")).to_have_text("Keine offenen Übergaben.")
    assert _api(server, "drv-rlp", "/v1/agencies/drv-rlp/inbox")["items"] == []
    caseload = page.get_by_test_id("caseload-table")
    case_row = caseload.locator(f"tr[data-case-id='{to_accept[0]}']")
    expect(case_row).to_have_count(1)

    # The case page: the case as the rules let drv-rlp see it, and a note.
    _loaded_again(page)
    case_row.get_by_role("link").click()
    page.wait_for_selector("body[data-loaded='true']")
    assert page.url == f"{server.base_url}/inbox/cases/{to_accept[0]}"
    handover = page.get_by_test_id("case-handovers").locator(
        f"tr[data-handover-id='{to_accept[1]}']"
    )
    assert "abgeschlossen" in handover.inner_text()  # decided
    assert "Reha-Antrag" in handover.inner_text()
    page.get_by_label("Notiz", exact=True).fill("Unterlagen vollständig, Gutachten nicht nötig")
    _loaded_again(page)
    page.get_by_role("button", name="Notiz speichern").click()
    page.wait_for_selector("body[data-loaded='true']")
    expect(page.get_by_test_id("case-notes")).to_contain_text(
        "Unterlagen vollständig, Gutachten nicht nötig"
    )
    assert len(_events_of(server, to_accept[0], "NoteAdded")) == 1
    _accessible_and_narrow(page, tmp_path, "agency-case")
    assert [p for p in page.problems if "status of 4" not in p] == []


def test_a_coaching_provider_completes_an_accepted_assignment_from_its_case_page(
    page: Any, server: ServedProcess
) -> None:
    s4_assignment = str(demo_id("s4/assignment"))
    _sign_in(page, f"{server.base_url}/inbox/cases/{S4}", server.tokens["kopra-erzgebirge"])
    row = page.get_by_test_id("case-handovers").locator(f"tr[data-handover-id='{s4_assignment}']")
    _loaded_again(page)
    row.locator("[data-action=complete]").click()
    page.wait_for_selector("body[data-loaded='true']")
    assert "abgeschlossen" in row.inner_text()
    assert len(_events_of(server, str(S4), "HandoverCompleted")) == 1
    assert page.problems == []
