"""The dashboard page in a real browser: headless Chromium (Debian's ``chromium``)
driven by Playwright for Python, against ``hub serve --demo`` in its own process.

Signs in through the form (keyboard only), checks every figure on the page against
``/v1/dashboard``, switches to English, lets the page refresh itself, and saves
screenshots under the test's folder and ``test-output/`` (git-ignored).
Skipped locally when Chromium or Playwright is missing; required in CI.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.factories import opened
from tests.http_helpers import ROOT, ServedProcess, bearer, hub_serve

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000
STAGES = ("opened", "active", "employed", "aftercare", "closed")

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _missing() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "Playwright for Python is missing (pip install playwright)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    problem = _missing()
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the browser test is required in CI: {problem}")
        pytest.skip(problem)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServedProcess]:
    with hub_serve(f"sqlite:///{tmp_path / 'hub.db'}", tmp_path / "var", demo=True) as served:
        assert {"jc-trier", "auditor"} <= set(served.tokens), served.output
        yield served


@pytest.fixture
def page(browser: Any, server: ServedProcess) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="de-DE")
    context.set_default_timeout(TIMEOUT_MS)
    opened_page = context.new_page()
    problems: list[str] = []
    opened_page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    opened_page.on(
        "console",
        lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None,
    )
    opened_page.problems = problems
    try:
        yield opened_page
    finally:
        context.close()


def _save(page: Any, tmp_path: Path, name: str) -> Path:
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=True)
    target = ROOT / "test-output"
    target.mkdir(exist_ok=True)
    shutil.copyfile(shot, target / name)
    return shot


def _text(page: Any, test_id: str) -> str:
    return page.get_by_test_id(test_id).inner_text().strip()


def _rows(page: Any, test_id: str) -> list[list[str]]:
    rows = page.get_by_test_id(test_id).locator("tbody tr")
    cells = [
        [c.strip() for c in rows.nth(i).locator("td").all_inner_texts()]
        for i in range(rows.count())
    ]
    return [] if cells in ([["keine"]], [["none"]]) else cells


def _number(text: str) -> float:
    return float(text.replace(",", "."))


def _assert_page_shows(page: Any, figures: dict[str, Any]) -> None:
    by_stage: dict[str, int] = {}
    for row in figures["cases_by_stage"]:
        by_stage[row["stage"]] = by_stage.get(row["stage"], 0) + row["count"]
    assert int(_text(page, "cases-total")) == sum(by_stage.values())
    for stage in STAGES:
        assert int(_text(page, f"stage-{stage}")) == by_stage.get(stage, 0), stage
    assert int(_text(page, "open-handovers")) == sum(o["open"] for o in figures["open_offers"])
    assert int(_text(page, "overdue-handovers")) == sum(
        o["overdue"] for o in figures["open_offers"]
    )

    offers = _rows(page, "offer-table")
    assert len(offers) == len(figures["offer_to_accept"])
    for cells, pair in zip(offers, figures["offer_to_accept"], strict=True):
        assert cells[:3] == [pair["from_agency"], pair["to_agency"], str(pair["count"])]
        assert _number(cells[3]) == pair["median_hours"]
        assert _number(cells[4]) == pair["p90_hours"]

    places = _rows(page, "places-table")
    assert len(places) == len(figures["places"])
    for cells, place in zip(places, figures["places"], strict=True):
        assert cells[:3] == [place["programme"], place["site"], str(place["used"])]
        capacity = place["capacity"]
        assert cells[3] == ("–" if capacity is None else str(capacity))

    overdue = _rows(page, "overdue-table")
    assert len(overdue) == len(figures["overdue_handovers"])


def _figures(server: ServedProcess, token: str) -> dict[str, Any]:
    response = httpx.get(f"{server.base_url}/v1/dashboard", headers=bearer(token), timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def _focused(page: Any) -> str:
    return page.evaluate(
        "() => { const e = document.activeElement;"
        " return e ? (e.id || e.getAttribute('type') || e.tagName) : ''; }"
    )


def test_dashboard_signs_in_shows_the_api_figures_and_switches_language(
    page: Any, server: ServedProcess, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    page.clock.install()  # so the page's 30-second refresh can be fast-forwarded
    page.goto(f"{server.base_url}/dashboard")
    assert page.evaluate("document.documentElement.lang") == "de"
    assert page.get_by_role("heading", level=1).inner_text() == "Übergabe-Hub: Dashboard"
    assert page.locator("#board").is_hidden()
    # The token field has a real label.
    assert page.get_by_label("Zugangstoken").is_visible()
    _save(page, tmp_path, "dashboard-login.png")

    # Keyboard: from the top of the page, Tab reaches the token field, then the button.
    page.get_by_role("heading", level=1).click()  # moves the Tab starting point to the top
    order = []
    for _ in range(6):
        page.keyboard.press("Tab")
        order.append(_focused(page))
        if order[-1] == "submit":
            break
    assert "token" in order, order
    assert order.index("submit") > order.index("token"), order

    # A wrong token is refused on the form, with an alert.
    page.get_by_label("Zugangstoken").focus()
    page.keyboard.type("not-a-valid-token")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_have_text("Token ungültig.")
    assert page.locator("#board").is_hidden()

    # Sign in with the keyboard only: type, Tab to the button, Enter.
    page.get_by_label("Zugangstoken").fill("")
    page.get_by_label("Zugangstoken").focus()
    page.keyboard.type(server.tokens["auditor"])
    page.keyboard.press("Tab")
    assert _focused(page) == "submit"
    page.keyboard.press("Enter")
    page.wait_for_selector("body[data-loaded='true']")
    assert page.locator("#login").is_hidden()
    # The token stays in the tab's session storage, never in the address.
    assert server.tokens["auditor"] not in page.url
    assert page.evaluate("sessionStorage.getItem('hub-token')") == server.tokens["auditor"]
    assert page.evaluate("localStorage.length") == 0

    figures = _figures(server, server.tokens["auditor"])
    assert int(_text(page, "cases-total")) == 5  # the five scenarios
    _assert_page_shows(page, figures)
    german = _save(page, tmp_path, "dashboard.png")
    assert german.stat().st_size > 10_000

    # English, and back.
    page.get_by_role("button", name="Switch to English").click()
    assert page.evaluate("document.documentElement.lang") == "en"
    assert page.get_by_role("heading", level=1).inner_text() == "Handover hub: dashboard"
    assert page.get_by_text("cases in total").is_visible()
    assert page.get_by_role("button", name="Auf Deutsch umschalten").inner_text() == "Deutsch"
    _assert_page_shows(page, figures)
    _save(page, tmp_path, "dashboard-en.png")

    # The page refreshes itself: a new case appears after the 30-second interval.
    case = opened("jc-trier", uuid.uuid4(), site="Trier-Nord")
    posted = httpx.post(
        f"{server.base_url}/v1/messages",
        json=case,
        headers=bearer(server.tokens["jc-trier"]),
        timeout=10,
    )
    assert posted.status_code == 201, posted.text
    assert int(_text(page, "cases-total")) == 5
    page.clock.run_for(31_000)
    page.wait_for_function(
        "document.querySelector(\"[data-testid='cases-total']\").textContent === '6'"
    )
    _assert_page_shows(page, _figures(server, server.tokens["auditor"]))

    # Signing out forgets the token.
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("#login")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('hub-token')") is None
    # Chromium logs the wrong token's 401 on the console; nothing else may go wrong.
    assert [p for p in page.problems if "status of 401" not in p] == []


def test_an_agency_token_signs_in_too(page: Any, server: ServedProcess) -> None:
    page.goto(f"{server.base_url}/dashboard")
    page.get_by_label("Zugangstoken").fill(server.tokens["kopra-erzgebirge"])
    page.get_by_role("button", name="Anmelden").click()
    page.wait_for_selector("body[data-loaded='true']")
    _assert_page_shows(page, _figures(server, server.tokens["kopra-erzgebirge"]))
    # Reloading the tab keeps the session (sessionStorage), without the form.
    page.reload()
    page.wait_for_selector("body[data-loaded='true']")
    assert page.locator("#login").is_hidden()
    assert page.problems == []
