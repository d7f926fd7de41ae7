"""``/v1/dashboard?programme=…&site=…``: the figures of one programme or site, as a
programme lead reports them (issue "Screens", build 2), on both stores.

Before, the parameters were ignored: a Trier token saw Aachen, Erzgebirge and
Oder-Spree summed into one total. Now each filtered answer is the part of the whole
that belongs to its programme or site (summed from the same per-case entries as the
stored totals), an agency sees only the programmes it takes part in, and the answer
names its agencies, the accept deadline of each agency pair and each overdue
handover's days overdue.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from projections.dashboard import dashboard_figures, scoped_figures
from services.api.app import create_app
from services.bootstrap import Hub
from services.demo import AGENCIES, load_demo
from services.demo_volume import load_volume
from services.views.queries import OFFER_COLUMNS
from tests.http_helpers import Tokens, assert_error, demo_tokens

TRIER = "Inklusionsinitiative Trier"
BY_PROGRAMME = (
    "cases_by_stage",
    "handovers_by_state",
    "assignment_to_employment",
    "employed_within_12_months",
    "places",
)
NAMES = {agency: name for agency, _, name in AGENCIES}


@pytest.fixture
def tokens(hub: Hub) -> Tokens:
    issued = demo_tokens(hub)
    list(load_demo(hub.registry, hub.messages))
    load_volume(hub.messages, 40)  # distributions across the four programmes
    hub.views.catch_up()
    return issued


@pytest.fixture
def api(hub: Hub, tokens: Tokens) -> Iterator[TestClient]:
    with TestClient(create_app(hub)) as client:
        yield client


def dashboard(api: TestClient, headers: dict[str, str], **params: str) -> dict[str, Any]:
    response = api.get("/v1/dashboard", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def _without_generated(figures: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in figures.items() if k != "generated_at"}


def _programmes(figures: dict[str, Any]) -> list[str]:
    return sorted({row["programme"] for row in figures["cases_by_stage"]})


def test_each_programme_filter_is_that_programmes_part_of_the_whole(
    api: TestClient, tokens: Tokens
) -> None:
    whole = dashboard(api, tokens.audit())
    programmes = _programmes(whole)
    assert len(programmes) == 4
    parts = {p: dashboard(api, tokens.audit(), programme=p) for p in programmes}

    for name in BY_PROGRAMME:
        for programme, part in parts.items():
            expected = [row for row in whole[name] if row["programme"] == programme]
            assert part[name] == expected, (programme, name)
    # Figures kept per agency (pair) add up over the programmes to the whole.
    pairs: Counter[tuple[str, str]] = Counter()
    for part in parts.values():
        pairs.update(
            {(r["from_agency"], r["to_agency"]): r["count"] for r in part["offer_to_accept"]}
        )
    assert pairs == Counter(
        {(r["from_agency"], r["to_agency"]): r["count"] for r in whole["offer_to_accept"]}
    )
    for name, fields in (
        ("open_offers", ("open", "overdue")),
        ("rehab_decisions", ("met", "missed")),
    ):
        for field in fields:
            total: Counter[str] = Counter()
            for part in parts.values():
                total.update({r["agency"]: r[field] for r in part[name]})
            expected_total = Counter({r["agency"]: r[field] for r in whole[name]})
            assert +total == +expected_total, (name, field)
    overdue = sorted(h["handover_id"] for part in parts.values() for h in part["overdue_handovers"])
    assert overdue == sorted(h["handover_id"] for h in whole["overdue_handovers"])
    assert overdue  # the generated year leaves some offers overdue
    # A filter narrows the figures; the choices of programme and site stay the whole's.
    for part in parts.values():
        assert part["sites"] == whole["sites"]
    trier_cases = sum(r["count"] for r in parts[TRIER]["cases_by_stage"])
    assert 0 < trier_cases < sum(r["count"] for r in whole["cases_by_stage"])
    assert parts[TRIER]["filter"] == {"programme": TRIER, "site": None}


def test_site_filters_split_a_programme_and_keep_its_capacity(
    api: TestClient, tokens: Tokens
) -> None:
    whole = dashboard(api, tokens.audit(), programme=TRIER)
    sites = [row["site"] for row in whole["sites"] if row["programme"] == TRIER]
    assert len(sites) == 4
    handovers: Counter[tuple[str, ...]] = Counter()
    cases = 0
    for site in sites:
        part = dashboard(api, tokens.audit(), programme=TRIER, site=site)
        assert {row["site"] for row in part["cases_by_stage"]} <= {site}
        assert part["cases_by_stage"] == [r for r in whole["cases_by_stage"] if r["site"] == site]
        assert part["places"] == [r for r in whole["places"] if r["site"] == site]
        assert all(h["site"] == site for h in part["overdue_handovers"])
        cases += sum(r["count"] for r in part["cases_by_stage"])
        handovers.update(
            {
                (r["from_agency"], r["to_agency"], r["kind"], r["state"]): r["count"]
                for r in part["handovers_by_state"]
            }
        )
    assert cases == sum(r["count"] for r in whole["cases_by_stage"])
    assert handovers == Counter(
        {
            (r["from_agency"], r["to_agency"], r["kind"], r["state"]): r["count"]
            for r in whole["handovers_by_state"]
        }
    )
    # A site alone (its name is the programme's) gives the same answer.
    one = dashboard(api, tokens.audit(), site=sites[0])
    two = dashboard(api, tokens.audit(), programme=TRIER, site=sites[0])
    assert _without_generated(one) | {"filter": None} == _without_generated(two) | {"filter": None}


def test_the_unfiltered_answer_keeps_its_figures(api: TestClient, tokens: Tokens, hub: Hub) -> None:
    answer = dashboard(api, tokens.audit())
    stored = hub.queries.dashboard(datetime.fromisoformat(answer["generated_at"]))
    for name, rows in stored.items():
        assert answer[name] == rows, name
    assert answer["filter"] == {"programme": None, "site": None}


def test_an_agency_filters_only_within_its_own_programmes(api: TestClient, tokens: Tokens) -> None:
    trier = tokens.of("jc-trier")
    mine = dashboard(api, trier)
    assert mine["programmes"] == [TRIER]
    assert {row["programme"] for row in mine["sites"]} == {TRIER}

    # Another programme's filter shows nothing of it (and does not tell whether it exists).
    for other in ("KoPrA", "no such programme"):
        foreign = dashboard(api, trier, programme=other)
        for name in (*BY_PROGRAMME, "offer_to_accept", "open_offers", "rehab_decisions"):
            assert foreign[name] == [], (other, name)
        assert foreign["overdue_handovers"] == []
        assert foreign["agencies"] == []
        assert foreign["sites"] == mine["sites"]

    own_cases = {
        row["case_id"]
        for row in api.get("/v1/agencies/jc-trier/cases?limit=1000", headers=trier).json()["items"]
    }
    audited = dashboard(api, tokens.audit(), programme=TRIER, site="Trier-Nord")
    scoped = dashboard(api, trier, programme=TRIER, site="Trier-Nord")
    for name in BY_PROGRAMME:
        assert scoped[name] == audited[name], name
    assert {h["case_id"] for h in scoped["overdue_handovers"]} <= own_cases
    # The coaching provider of KoPrA sees its programme, not Trier's.
    kopra = dashboard(api, tokens.of("kopra-erzgebirge"), programme=TRIER)
    assert kopra["cases_by_stage"] == []


def test_names_deadlines_and_days_overdue_come_with_the_figures(
    api: TestClient, tokens: Tokens
) -> None:
    figures = dashboard(api, tokens.audit())
    named = {row["agency_id"]: row for row in figures["agencies"]}
    used = {r["from_agency"] for r in figures["handovers_by_state"]}
    used |= {r["to_agency"] for r in figures["handovers_by_state"]}
    used |= {r["agency"] for r in figures["open_offers"] + figures["rehab_decisions"]}
    assert used <= set(named)
    for agency, row in named.items():
        assert row["name"] == NAMES[agency]
    assert named["aa-trier"]["kind"] == "employment_agency"

    deadlines = {
        (r["from_agency"], r["to_agency"]): r for r in figures["offer_to_accept_deadlines"]
    }
    assert len(deadlines) == len(figures["offer_to_accept"])
    assert deadlines["jc-trier", "coach-trier"]["kinds"] == ["assignment"]
    assert deadlines["jc-trier", "coach-trier"]["accept_days"] == 7
    assert deadlines["jc-trier", "aa-trier"]["kinds"] == ["rehab_application"]
    assert deadlines["jc-trier", "aa-trier"]["accept_days"] == 14

    now = datetime.fromisoformat(figures["generated_at"])
    for row in figures["overdue_handovers"]:
        late = now - datetime.fromisoformat(row["due_at"])
        assert late > timedelta(0)
        assert row["days_overdue"] == math.ceil(late / timedelta(days=1))


@pytest.mark.parametrize(
    "query",
    ["programme=", "site=", f"programme={'x' * 201}"],
)
def test_a_malformed_filter_is_refused_with_its_code(
    api: TestClient, tokens: Tokens, query: str
) -> None:
    assert_error(api.get(f"/v1/dashboard?{query}", headers=tokens.audit()), 422, "invalid_request")


def test_a_filtered_auditor_read_is_recorded_like_any_dashboard_read(
    api: TestClient, tokens: Tokens, hub: Hub
) -> None:
    day = datetime.fromisoformat(dashboard(api, tokens.audit())["generated_at"]).date()
    before = api.get(f"/v1/audit/reads?day={day}", headers=tokens.audit()).json()["items"]
    dashboard(api, tokens.audit(), programme=TRIER)
    after = api.get(f"/v1/audit/reads?day={day}", headers=tokens.audit()).json()["items"]
    scopes = Counter(item["payload"]["scope"] for item in after) - Counter(
        item["payload"]["scope"] for item in before
    )
    # The filtered dashboard read, and the earlier read of the read log itself.
    assert scopes["dashboard"] == 1


def test_the_dashboard_read_by_deadline_equals_the_figures_counted_from_every_offer(
    api: TestClient, tokens: Tokens, hub: Hub
) -> None:
    """The open offers counted in the totals and only the overdue inbox rows read (by
    the deadline's index), for the auditor and for each agency: the same figures as
    counting every open offer, with the agency's part cut by the old rule."""
    now = datetime.fromisoformat(dashboard(api, tokens.audit())["generated_at"])
    q = hub.queries
    state = q._totals()
    assert state["open_offers"]  # the totals count them
    every = dashboard_figures(
        state, hub.view_store.query(f"SELECT {OFFER_COLUMNS} FROM view_inbox"), now, q._capacity
    )
    assert every["overdue_handovers"]
    assert len(every["open_offers"]) > 1
    assert q.dashboard(now) == every
    for agency in ("jc-trier", "kopra-erzgebirge", "hwk-ffo", "aa-trier"):
        old = scoped_figures(every, q.programmes_of(agency), q.case_ids_of(agency))
        assert q.dashboard(now, agency=agency) == old, agency


def test_a_foreign_agency_sees_no_overdue_handover_of_cases_it_is_not_part_of(
    api: TestClient, tokens: Tokens
) -> None:
    """Over HTTP: each agency's overdue handovers are exactly the auditor's of its own
    cases, though the auditor's list holds others; the open-offer counts it sees are
    the whole's, for the agencies of its programmes only."""
    whole = dashboard(api, tokens.audit())
    everyone = {h["handover_id"] for h in whole["overdue_handovers"]}
    for agency in ("jc-trier", "kopra-erzgebirge", "hwk-ffo"):
        headers = tokens.of(agency)
        own = {
            row["case_id"]
            for row in api.get(f"/v1/agencies/{agency}/cases?limit=1000", headers=headers).json()[
                "items"
            ]
        }
        seen = dashboard(api, headers)
        expected = [h for h in whole["overdue_handovers"] if h["case_id"] in own]
        assert seen["overdue_handovers"] == expected, agency
        assert {h["handover_id"] for h in expected} < everyone  # others' are withheld
        shown = {r["agency"] for r in seen["open_offers"]}
        assert seen["open_offers"] == [r for r in whole["open_offers"] if r["agency"] in shown]
        assert set(seen["programmes"]) < {r["programme"] for r in whole["cases_by_stage"]}
