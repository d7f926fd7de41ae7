"""The dashboard page in a real browser: headless Chromium (Debian's ``chromium``)
driven by Playwright for Python, against ``hub serve --demo`` in its own process with
a generated year of cases (``hub demo --volume``) and the demo's capacity file.

Signs in through the form (keyboard only); checks every figure on the page against
``/v1/dashboard`` (unfiltered, and as the programme and site filters change them),
German labels and dates (no raw enum values or agency ids), English under the
switch, a 390 px phone without horizontal scrolling, the CSV export of every table,
a Content-Security-Policy of ``default-src 'self'``, and axe-core (from npm, in
``tests/e2e/package.json``) finding no violation in either language. Screenshots go
under the test's folder and ``test-output/`` (git-ignored).
Skipped locally when Chromium, Playwright or npm is missing; required in CI.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx2 as httpx
import pytest

from tests.e2e.browser import TIMEOUT_MS, launched, required, save, watched
from tests.factories import opened
from tests.http_helpers import ROOT, ServedProcess, bearer, hub_serve

VOLUME = 40  # generated cases beside the five scenarios: distributions, not single bars
NPM_DIR = Path(__file__).parent  # package.json: axe-core, pinned
AXE = NPM_DIR / "node_modules" / "axe-core" / "axe.min.js"
CSP = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
TRIER = "Inklusionsinitiative Trier"
BERLIN = ZoneInfo("Europe/Berlin")
STAGES = ("opened", "active", "employed", "aftercare", "closed")
STATES = ("offered", "accepted", "completed", "declined", "forwarded", "withdrawn")
KINDS = {
    "de": {
        "assignment": "Zuweisung",
        "discharge": "Entlassung",
        "rehab_application": "Reha-Antrag",
        "placement_support": "Vermittlungsunterstützung",
        "return": "Rückgabe",
    },
    "en": {
        "assignment": "assignment",
        "discharge": "discharge",
        "rehab_application": "rehabilitation application",
        "placement_support": "placement support",
        "return": "return",
    },
}
NO_SITE = {"de": "ohne Standort", "en": "no site"}
# What a German page must not show: the hub's enum values and agency ids as stored.
RAW_VALUES = re.compile(
    r"\b(assignment|discharge|rehab_application|placement_support|return|offered|accepted"
    r"|completed|declined|forwarded|withdrawn|opened|active|aftercare|closed|employed"
    r"|employment_agency|coaching_provider|jobcenter)\b"
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def axe_source() -> str:
    """axe-core from npm (``npm ci`` of tests/e2e/package.json when not yet installed)."""
    if not AXE.exists():
        npm = shutil.which("npm")
        if npm is None:
            required("npm is missing (apt-get install npm): it installs axe-core")
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--prefix", str(NPM_DIR)],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if done.returncode != 0 or not AXE.exists():
            required(f"npm ci of axe-core failed: {done.stderr[-500:]}")
    return AXE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedProcess]:
    folder = tmp_path_factory.mktemp("dashboard")
    url, var = f"sqlite:///{folder / 'hub.db'}", folder / "var"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HUB_CAPACITY_FILE", str(ROOT / "deploy" / "policy" / "capacity.json"))
        loaded = subprocess.run(
            [sys.executable, "-m", "services.cli", "demo", "--volume", str(VOLUME)],
            cwd=ROOT,
            env={
                **os.environ,
                "HUB_DATABASE_URL": url,
                "HUB_VAR_DIR": str(var),
                "HUB_LOG_LEVEL": "WARNING",
                "PYTHONPATH": str(ROOT),
            },
            capture_output=True,
            timeout=180,
            check=False,
        )
        assert loaded.returncode == 0, loaded.stderr[-2000:]
        with hub_serve(url, var, demo=True) as served:
            assert {"jc-trier", "kopra-erzgebirge", "auditor"} <= set(served.tokens), served.output
            yield served


def _context(browser: Any, *, width: int = 1280, height: int = 900, **options: Any) -> Any:
    context = browser.new_context(
        viewport={"width": width, "height": height},
        locale="de-DE",
        accept_downloads=True,
        **options,
    )
    context.set_default_timeout(TIMEOUT_MS)
    return context


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    # axe-core is added as a script, which a strict CSP would refuse: these pages
    # bypass it (test_the_page_holds_under_a_strict_csp runs without the bypass).
    context = _context(browser, bypass_csp=True)
    try:
        yield watched(context)
    finally:
        context.close()


def _figures(server: ServedProcess, token: str, **params: str) -> dict[str, Any]:
    response = httpx.get(
        f"{server.base_url}/v1/dashboard", params=params, headers=bearer(token), timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()


def _sign_in(page: Any, server: ServedProcess, who: str, query: str = "") -> None:
    page.goto(f"{server.base_url}/dashboard{query}")
    page.get_by_label("Zugangstoken").fill(server.tokens[who])
    page.get_by_role("button", name="Anmelden").click()
    page.wait_for_selector("body[data-loaded='true']")


def _loaded_after(page: Any, action: Any) -> None:
    """Run ``action`` (a filter change) and wait for the page's next answer."""
    with page.expect_response(lambda r: "/v1/dashboard" in r.url):
        action()
    page.wait_for_selector("body[data-loaded='true']")


# ---- reading the page ----


def _text(page: Any, test_id: str) -> str:
    return page.get_by_test_id(test_id).inner_text().strip()


def _table(page: Any, test_id: str) -> tuple[list[str], list[list[str]]]:
    table = page.get_by_test_id(test_id)
    head = [c.strip() for c in table.locator("thead th").all_inner_texts()]
    rows = table.locator("tbody tr")
    cells = [
        [c.strip() for c in rows.nth(i).locator("td").all_inner_texts()]
        for i in range(rows.count())
    ]
    return head, [] if cells in ([["keine"]], [["none"]]) else cells


def _number(text: str, lang: str) -> float:
    text = text.replace("\u202f", "").replace("\xa0", "").replace("%", "").strip()
    # de-DE: "1.234,5"; en-GB: "1,234.5"
    text = text.replace(".", "").replace(",", ".") if lang == "de" else text.replace(",", "")
    return float(text)


def _share(text: str, lang: str) -> float:
    return _number(text, lang) / 100


def _site(site: str | None, lang: str) -> str:
    return NO_SITE[lang] if site in (None, "-") else site


def _assert_page_shows(page: Any, figures: dict[str, Any], lang: str = "de") -> None:
    """Every figure of the answer, on the page as a programme lead reads it."""
    _assert_cards(page, figures, lang)
    _assert_site_tables(page, figures, lang)
    _assert_agency_tables(page, figures, lang)


def _assert_cards(page: Any, figures: dict[str, Any], lang: str) -> None:
    num = lambda text: _number(text, lang)  # noqa: E731
    by_stage: dict[str, int] = {}
    for row in figures["cases_by_stage"]:
        by_stage[row["stage"]] = by_stage.get(row["stage"], 0) + row["count"]
    assert num(_text(page, "cases-total")) == sum(by_stage.values())
    for stage in STAGES:
        assert num(_text(page, f"stage-{stage}")) == by_stage.get(stage, 0), stage
    assert num(_text(page, "open-handovers")) == sum(o["open"] for o in figures["open_offers"])
    overdue = sum(o["overdue"] for o in figures["open_offers"])
    assert num(_text(page, "overdue-handovers")) == overdue
    # Red only when something is overdue.
    warn = page.locator("#overdue-card").evaluate("e => e.classList.contains('warn')")
    assert warn == (overdue > 0)
    assigned = sum(r["assigned"] for r in figures["employed_within_12_months"])
    employed = sum(r["employed"] for r in figures["employed_within_12_months"])
    if assigned:
        assert _share(_text(page, "employed-share"), lang) == pytest.approx(
            employed / assigned, abs=0.0005
        )
    assert num(_text(page, "rehab-met")) == sum(r["met"] for r in figures["rehab_decisions"])
    assert num(_text(page, "rehab-missed")) == sum(r["missed"] for r in figures["rehab_decisions"])
    known = [p for p in figures["places"] if p["capacity"] is not None]
    if known:
        used, capacity = _text(page, "places-used").split(" / ")
        assert num(used) == sum(p["used"] for p in known)
        assert num(capacity) == sum(p["capacity"] for p in known)


def _programme(figures: dict[str, Any], programme: str | None) -> list[str]:
    """The programme's cell: without a column when one programme is chosen."""
    return [] if figures["filter"]["programme"] else [programme or "–"]


def _assert_site_tables(page: Any, figures: dict[str, Any], lang: str) -> None:
    num = lambda text: _number(text, lang)  # noqa: E731
    shift = 0 if figures["filter"]["programme"] else 1  # cells before the site

    def where(row: dict[str, Any]) -> list[str]:
        return [*_programme(figures, row["programme"]), _site(row["site"], lang)]

    _, places = _table(page, "places-table")
    assert len(places) == len(figures["places"])
    for cells, place in zip(places, figures["places"], strict=True):
        assert cells[: shift + 1] == where(place)
        cells = cells[shift + 1 :]  # noqa: PLW2901
        assert num(cells[0]) == place["used"]
        if place["capacity"] is None:
            assert cells[1] == "–"
        else:  # no dash where the capacity file knows the site
            assert num(cells[1]) == place["capacity"]
            assert _share(cells[2], lang) == pytest.approx(
                place["used"] / place["capacity"], abs=0.0005
            )

    _, cases = _table(page, "cases-table")
    sites: dict[tuple[str, str], dict[str, int]] = {}
    for row in figures["cases_by_stage"]:
        key = tuple(where(row))
        sites.setdefault(key, {})[row["stage"]] = row["count"]
    assert [tuple(c[: shift + 1]) for c in cases] == list(sites)
    for cells, counts in zip(cases, sites.values(), strict=True):
        assert [num(c) for c in cells[shift + 1 :]] == [
            *(counts.get(s, 0) for s in STAGES),
            sum(counts.values()),
        ]

    _, shares = _table(page, "employed-table")
    assert len(shares) == len(figures["employed_within_12_months"])
    for cells, row in zip(shares, figures["employed_within_12_months"], strict=True):
        assert cells[: shift + 1] == where(row)
        numbers = cells[shift + 1 :]
        assert (num(numbers[0]), num(numbers[1])) == (row["assigned"], row["employed"])
        assert _share(numbers[2], lang) == pytest.approx(row["share"], abs=0.0005)

    _, days = _table(page, "employment-days-table")
    assert len(days) == len(figures["assignment_to_employment"])
    for cells, row in zip(days, figures["assignment_to_employment"], strict=True):
        assert cells[: shift + 1] == where(row)
        assert num(cells[shift + 1]) == row["count"]
        assert num(cells[shift + 2]) == pytest.approx(row["median_days"], abs=0.05)


def _assert_agency_tables(page: Any, figures: dict[str, Any], lang: str) -> None:
    names = {a["agency_id"]: a["name"] for a in figures["agencies"]}
    kinds = KINDS[lang]
    num = lambda text: _number(text, lang)  # noqa: E731
    _, handovers = _table(page, "handovers-table")
    pivot: dict[tuple[str, ...], dict[str, int]] = {}
    for row in figures["handovers_by_state"]:
        key = (
            *_programme(figures, row["programme"]),
            names[row["from_agency"]],
            names[row["to_agency"]],
            kinds[row["kind"]],
        )
        pivot.setdefault(key, {})[row["state"]] = row["count"]
    width = len(next(iter(pivot), ()))
    assert [tuple(c[:width]) for c in handovers] == list(pivot)
    for cells, counts in zip(handovers, pivot.values(), strict=True):
        assert [num(c) for c in cells[width:]] == [
            *(counts.get(s, 0) for s in STATES),
            sum(counts.values()),
        ]

    _, offers = _table(page, "offer-table")
    assert len(offers) == len(figures["offer_to_accept"])
    deadlines = figures["offer_to_accept_deadlines"]
    for cells, pair, deadline in zip(offers, figures["offer_to_accept"], deadlines, strict=True):
        assert cells[:3] == [
            names[pair["from_agency"]],
            names[pair["to_agency"]],
            ", ".join(kinds[k] for k in deadline["kinds"]),
        ]
        assert num(cells[3]) == pair["count"]
        assert num(cells[4]) == pair["median_hours"]
        assert num(cells[5]) == pair["p90_hours"]
        assert num(cells[6]) == deadline["accept_days"]
    # The chart: one row per pair, each with its deadline line.
    chart = page.get_by_test_id("chart")
    assert chart.locator(".chart-row").count() == len(figures["offer_to_accept"])
    assert chart.locator(".chart-deadline").count() == sum(
        1 for d in deadlines if d["accept_days"] is not None
    )

    _, open_rows = _table(page, "open-table")
    assert [[c[0], num(c[1]), num(c[2])] for c in open_rows] == [
        [names[r["agency"]], r["open"], r["overdue"]] for r in figures["open_offers"]
    ]

    _, late = _table(page, "overdue-table")
    assert len(late) == len(figures["overdue_handovers"])
    for cells, row in zip(late, figures["overdue_handovers"], strict=True):
        due = datetime.fromisoformat(row["due_at"]).astimezone(BERLIN)
        shown_due = due.strftime("%d.%m.%Y") if lang == "de" else f"{due.day} {due:%b %Y}"
        assert num(cells[0]) == row["days_overdue"]
        assert cells[1:-1] == [
            names[row["agency"]],
            kinds[row["kind"]],
            shown_due,
            names[row["from_agency"]],
            *_programme(figures, row["programme"]),
            _site(row["site"], lang),
        ]
        assert row["case_id"].startswith(cells[-1])

    _, rehab = _table(page, "rehab-table")
    assert [[c[0], num(c[1]), num(c[2])] for c in rehab] == [
        [names[r["agency"]], r["met"], r["missed"]] for r in figures["rehab_decisions"]
    ]


def _assert_german(page: Any, figures: dict[str, Any]) -> None:
    """Labels in German, agencies by name, dates in de-DE."""
    shown = page.locator("#board").inner_text()
    assert not RAW_VALUES.search(shown), RAW_VALUES.search(shown)
    for agency in figures["agencies"]:
        assert agency["agency_id"] not in shown, agency
    assert re.fullmatch(r"\d{2}\.\d{2}\.\d{4}, \d{2}:\d{2}", _text(page, "generated"))


def _focused(page: Any) -> str:
    return page.evaluate(
        "() => { const e = document.activeElement;"
        " return e ? (e.id || e.getAttribute('type') || e.tagName) : ''; }"
    )


def _axe(page: Any, source: str) -> list[dict[str, Any]]:
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(content=source)
    result = page.evaluate(
        """async () => { const r = await axe.run(document);
             return {passes: r.passes.length, violations: r.violations.map(
               v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target)}))}; }"""
    )
    assert result["passes"] > 10  # axe did look (a page it cannot read passes nothing)
    return result["violations"]


def _no_horizontal_scroll(page: Any, width: int) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert page.evaluate("document.body.scrollWidth") <= width


# ---- the tests ----


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
    save(page, tmp_path, "dashboard-login.png")

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
    total = sum(r["count"] for r in figures["cases_by_stage"])
    assert total == 5 + VOLUME  # the five scenarios and the generated year
    _assert_page_shows(page, figures)
    _assert_german(page, figures)
    german = save(page, tmp_path, "dashboard.png")
    assert german.stat().st_size > 10_000

    # English, and back.
    page.get_by_role("button", name="Switch to English").click()
    assert page.evaluate("document.documentElement.lang") == "en"
    assert page.get_by_role("heading", level=1).inner_text() == "Handover hub: dashboard"
    assert page.get_by_text("cases in total").is_visible()
    assert page.get_by_role("button", name="Auf Deutsch umschalten").inner_text() == "Deutsch"
    _assert_page_shows(page, figures, "en")
    save(page, tmp_path, "dashboard-en.png")

    # The page refreshes itself: a new case appears after the 30-second interval.
    case = opened("jc-trier", uuid.uuid4(), site="Trier-Nord")
    posted = httpx.post(
        f"{server.base_url}/v1/messages",
        json=case,
        headers=bearer(server.tokens["jc-trier"]),
        timeout=10,
    )
    assert posted.status_code == 201, posted.text
    assert _number(_text(page, "cases-total"), "en") == total
    page.clock.run_for(31_000)
    page.wait_for_function(
        f"document.querySelector(\"[data-testid='cases-total']\").textContent === '{total + 1}'"
    )
    _assert_page_shows(page, _figures(server, server.tokens["auditor"]), "en")

    # Signing out forgets the token.
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("#login")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('hub-token')") is None
    # Chromium logs the wrong token's 401 on the console; nothing else may go wrong.
    assert [p for p in page.problems if "status of 401" not in p] == []


def test_the_filters_show_what_the_api_answers_for_a_programme_and_a_site(
    page: Any, server: ServedProcess, tmp_path: Path
) -> None:
    token = server.tokens["auditor"]
    _sign_in(page, server, "auditor")
    whole = _figures(server, token)
    programmes = page.locator("#f-programme option").all_inner_texts()
    assert programmes == ["Alle Programme", *sorted({s["programme"] for s in whole["sites"]})]

    _loaded_after(page, lambda: page.get_by_label("Programm", exact=True).select_option(TRIER))
    trier = _figures(server, token, programme=TRIER)
    assert sum(r["count"] for r in trier["cases_by_stage"]) < sum(
        r["count"] for r in whole["cases_by_stage"]
    )
    _assert_page_shows(page, trier)
    _assert_german(page, trier)
    assert _text(page, "scope") == TRIER
    assert "programme=Inklusionsinitiative" in page.url
    # Only the programme's sites to choose from.
    sites = page.locator("#f-site option").all_inner_texts()
    assert sites == ["Alle Standorte", "Trier-Ehrang", "Trier-Nord", "Trier-Süd", "Trier-West"]

    _loaded_after(
        page, lambda: page.get_by_label("Standort", exact=True).select_option("Trier-Süd")
    )
    south = _figures(server, token, programme=TRIER, site="Trier-Süd")
    _assert_page_shows(page, south)
    assert {r["site"] for r in south["cases_by_stage"]} == {"Trier-Süd"}
    assert _text(page, "scope") == f"{TRIER}, Trier-Süd"
    save(page, tmp_path, "dashboard-filtered.png")

    # The address keeps the filter: a reload (the token is in the tab) shows it again.
    page.reload()
    page.wait_for_selector("body[data-loaded='true']")
    assert page.get_by_label("Standort", exact=True).input_value() == "Trier-Süd"
    _assert_page_shows(page, _figures(server, token, programme=TRIER, site="Trier-Süd"))

    _loaded_after(page, lambda: page.get_by_label("Programm", exact=True).select_option(""))
    _assert_page_shows(page, _figures(server, token))
    assert page.problems == []


def test_an_agency_sees_and_filters_only_its_programmes(page: Any, server: ServedProcess) -> None:
    _sign_in(page, server, "kopra-erzgebirge")
    token = server.tokens["kopra-erzgebirge"]
    _assert_page_shows(page, _figures(server, token))
    assert page.locator("#f-programme option").all_inner_texts() == ["Alle Programme", "KoPrA"]
    _loaded_after(page, lambda: page.get_by_label("Standort", exact=True).select_option("Aue"))
    _assert_page_shows(page, _figures(server, token, site="Aue"))
    # Reloading the tab keeps the session (sessionStorage), without the form.
    page.reload()
    page.wait_for_selector("body[data-loaded='true']")
    assert page.locator("#login").is_hidden()
    assert page.problems == []


def test_a_phone_390_px_wide_needs_no_horizontal_scrolling(
    browser: Any, server: ServedProcess, tmp_path: Path, axe_source: str
) -> None:
    context = _context(browser, width=390, height=844, bypass_csp=True, is_mobile=True)
    try:
        phone = watched(context)
        phone.goto(f"{server.base_url}/dashboard")
        _no_horizontal_scroll(phone, 390)
        _sign_in(phone, server, "auditor")
        _no_horizontal_scroll(phone, 390)
        save(phone, tmp_path, "dashboard-390.png")
        # Wide tables scroll inside their own box, and the box takes the keyboard.
        wrap = phone.locator(".table-wrap").filter(has=phone.get_by_test_id("handovers-table"))
        assert wrap.evaluate("e => e.scrollWidth > e.clientWidth")
        assert wrap.get_attribute("tabindex") == "0"
        assert _axe(phone, axe_source) == []
        phone.get_by_role("button", name="Switch to English").click()
        _no_horizontal_scroll(phone, 390)
        _loaded_after(
            phone, lambda: phone.get_by_label("Programme", exact=True).select_option(TRIER)
        )
        _no_horizontal_scroll(phone, 390)
        save(phone, tmp_path, "dashboard-390-en.png")
        assert phone.problems == []
    finally:
        context.close()


TABLES = {
    "places": "places-table",
    "cases": "cases-table",
    "employed": "employed-table",
    "employmentDays": "employment-days-table",
    "handovers": "handovers-table",
    "offers": "offer-table",
    "open": "open-table",
    "overdue": "overdue-table",
    "rehab": "rehab-table",
}


def _downloaded(page: Any, table: str) -> tuple[str, list[list[str]]]:
    with page.expect_download() as info:
        page.locator(f"button.csv[data-table='{table}']").click()
    download = info.value
    raw = Path(download.path()).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # a BOM, so spreadsheets read UTF-8
    return download.suggested_filename, list(
        csv.reader(io.StringIO(raw.decode("utf-8-sig")), delimiter=";")
    )


def test_every_table_exports_as_csv_what_it_shows(page: Any, server: ServedProcess) -> None:
    _sign_in(page, server, "auditor", f"?programme={TRIER}")
    assert page.locator("button.csv").count() == len(TABLES)
    for table, test_id in TABLES.items():
        name, rows = _downloaded(page, table)
        assert name.startswith(f"dashboard-{table}-Inklusionsinitiative_Trier-"), name
        assert name.endswith(".csv")
        head, cells = _table(page, test_id)
        assert rows[0] == head, table
        assert len(rows) - 1 == len(cells), table
        for exported, shown in zip(rows[1:], cells, strict=True):
            if table == "overdue":  # the case: its full id in the file, the start on screen
                assert exported[-1].startswith(shown[-1])
                assert len(exported[-1]) == 36
                assert exported[:-1] == shown[:-1]
            else:
                assert exported == shown, table
    figures = _figures(server, server.tokens["auditor"], programme=TRIER)
    _, overdue = _downloaded(page, "overdue")
    assert [r[-1] for r in overdue[1:]] == [h["case_id"] for h in figures["overdue_handovers"]]
    assert page.problems == []


def test_axe_finds_no_violation_in_german_or_english(
    page: Any, server: ServedProcess, axe_source: str, tmp_path: Path
) -> None:
    page.goto(f"{server.base_url}/dashboard")
    assert _axe(page, axe_source) == []  # the sign-in form
    _sign_in(page, server, "auditor")
    assert _axe(page, axe_source) == []
    page.get_by_role("button", name="Switch to English").click()
    assert _axe(page, axe_source) == []
    _loaded_after(page, lambda: page.get_by_label("Programme", exact=True).select_option("G-A-L"))
    assert _axe(page, axe_source) == []
    assert page.problems == []


def test_the_page_holds_under_a_strict_csp(browser: Any, server: ServedProcess) -> None:
    """No inline script or style: with ``default-src 'self'`` nothing is refused."""
    context = _context(browser)
    try:
        strict = watched(context)

        def with_csp(route: Any) -> None:
            response = route.fetch()
            route.fulfill(
                response=response,
                headers={**response.headers, "content-security-policy": CSP},
            )

        strict.route(re.compile(r".*/dashboard(\?.*)?$"), with_csp)
        _sign_in(strict, server, "auditor")
        header = strict.evaluate(
            "fetch(location.href).then(r => r.headers.get('content-security-policy'))"
        )
        assert header is not None  # the route's header (or the hub's own, once it sends one)
        bars = strict.locator(".chart-bar.p90")
        assert bars.count() > 0
        assert bars.first.evaluate("e => e.getBoundingClientRect().width") > 0
        _assert_page_shows(strict, _figures(server, server.tokens["auditor"]))
        assert strict.problems == []
    finally:
        context.close()
