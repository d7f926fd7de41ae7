"""The event feed over HTTP (issue 16, build 1): an agency follows its part of the hub
with a cursor, as its history shows it (the same filter), resumes after a restart,
long-polls, and an unchanged page answers 304. Both stores, via the ``hub`` fixture.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.bootstrap import Hub, build_hub
from services.settings import Settings
from tests.e2e.test_http_authority_and_time import CLINIC, COACH, JC, Agencies, ago, kopra_case
from tests.http_helpers import Tokens, assert_error, demo_tokens, served

GAL_CLINIC, GAL_JC = "klinik-oder-spree", "jc-oder-spree"
HEALTH_NOTE = "Belastbarkeit drei Stunden täglich"


@pytest.fixture
def tokens(hub: Hub) -> Tokens:
    return demo_tokens(hub)


@pytest.fixture
def api(hub: Hub) -> Iterator[TestClient]:
    with TestClient(create_app(hub)) as client:
        yield client


@pytest.fixture
def agencies(api: TestClient, tokens: Tokens, hub: Hub) -> Agencies:
    return Agencies(api, tokens, hub)


def two_programmes(a: Agencies) -> tuple[UUID, UUID]:
    """A KoPrA case with a health note the coach was never handed, and a G-A-L case
    none of the KoPrA agencies is involved in."""
    kopra, _ = kopra_case(a)
    a.ok(CLINIC, "note.added", kopra, {"text": HEALTH_NOTE, "category": "health"}, at=ago(26))
    gal = a.open(GAL_CLINIC, at=ago(25))
    a.consent(GAL_CLINIC, gal, [GAL_JC], ["health"], at=ago(25))
    a.offer(GAL_CLINIC, gal, GAL_JC, "discharge", ["health"], at=ago(25))
    a.hub.views.catch_up()
    return kopra, gal


def feed_page(
    api: Any, headers: dict[str, str], path: str, **params: Any
) -> tuple[dict[str, Any], Any]:
    response = api.get(path, params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body, response


def whole_feed(
    api: Any, headers: dict[str, str], path: str, limit: int = 3
) -> list[dict[str, Any]]:
    """Every item, page by page through the cursor."""
    items: list[dict[str, Any]] = []
    after = None
    for _ in range(100):
        body, _ = feed_page(api, headers, path, limit=limit, **({"after": after} if after else {}))
        items += body["items"]
        after = body["next"]
        if not body["more"]:
            return items
    raise AssertionError("the feed did not end")


def history_events(a: Agencies, agency: str, case_id: UUID) -> list[dict[str, Any]]:
    response = a.api.get(f"/v1/cases/{case_id}/history", headers=a.tokens.of(agency))
    assert response.status_code == 200, response.text
    return [
        {"case_id": str(case_id), **item}
        for item in response.json()["items"]
        if item["type"] != "CaseRead"
    ]


def from_involvement(agency: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The history from the event that made ``agency`` involved (its opening, its offer)."""
    since = min(
        i["position"]
        for i in items
        if i["agency"] == agency or i["payload"].get("to_agency") == agency
    )
    return [i for i in items if i["position"] >= since]


def without_ids(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in item.items() if k != "event_id"} for item in items]


def test_each_agencys_feed_is_its_part_of_its_cases_histories(agencies: Agencies) -> None:
    kopra, gal = two_programmes(agencies)
    for agency, cases in [(CLINIC, [kopra]), (JC, [kopra]), (COACH, [kopra]), (GAL_JC, [gal])]:
        feed = whole_feed(agencies.api, agencies.tokens.of(agency), f"/v1/agencies/{agency}/feed")
        expected = sorted(
            (
                item
                for case in cases
                for item in from_involvement(agency, history_events(agencies, agency, case))
            ),
            key=lambda item: item["position"],
        )
        assert without_ids(feed) == expected, agency
        assert [item["position"] for item in feed] == sorted(item["position"] for item in feed)
        assert len({item["event_id"] for item in feed}) == len(feed)
    coach_feed = whole_feed(agencies.api, agencies.tokens.of(COACH), f"/v1/agencies/{COACH}/feed")
    assert str(gal) not in {item["case_id"] for item in coach_feed}
    assert HEALTH_NOTE not in str(coach_feed)  # never handed to the coach
    clinic_feed = whole_feed(
        agencies.api, agencies.tokens.of(CLINIC), f"/v1/agencies/{CLINIC}/feed"
    )
    assert HEALTH_NOTE in str(clinic_feed)


def test_a_case_joins_the_feed_with_the_offer_that_involves_the_agency(
    agencies: Agencies,
) -> None:
    """The consent naming the Jobcenter, recorded before it was offered the case, is in
    its history but not its feed: the feed is the same whenever it is read."""
    kopra, _ = two_programmes(agencies)
    feed = whole_feed(agencies.api, agencies.tokens.of(JC), f"/v1/agencies/{JC}/feed")
    history = history_events(agencies, JC, kopra)
    # (The history starts with the opening, which shows the lead-to-be its participant.)
    types = [i["type"] for i in history]
    assert types.index("ConsentGranted") < types.index("HandoverOffered")
    assert feed[0]["type"] == "HandoverOffered"
    assert feed[0]["payload"]["to_agency"] == JC
    assert "ConsentGranted" not in [i["type"] for i in feed]


def test_the_auditor_feed_has_every_case_event_and_records_the_reads(
    agencies: Agencies, hub: Hub
) -> None:
    kopra, gal = two_programmes(agencies)
    feed = whole_feed(agencies.api, agencies.tokens.audit(), "/v1/audit/feed", limit=50)
    events = [
        r
        for r in hub.view_store.query("SELECT position, case_id, type FROM view_audit")
        if r["case_id"] and r["type"] != "CaseRead"
    ]
    assert [i["position"] for i in feed] == sorted(r["position"] for r in events)
    assert {i["case_id"] for i in feed} == {str(kopra), str(gal)}
    hub.views.catch_up()
    reads = agencies.api.get(f"/v1/cases/{gal}/history", headers=agencies.tokens.audit()).json()[
        "items"
    ]
    assert any(i["type"] == "CaseRead" and i["payload"]["scope"] == "feed" for i in reads)


def test_a_feed_read_that_shows_personal_data_is_recorded(agencies: Agencies, hub: Hub) -> None:
    kopra, _ = two_programmes(agencies)
    whole_feed(agencies.api, agencies.tokens.of(JC), f"/v1/agencies/{JC}/feed")
    hub.views.catch_up()
    reads = [
        i
        for i in agencies.api.get(
            f"/v1/cases/{kopra}/history", headers=agencies.tokens.audit()
        ).json()["items"]
        if i["type"] == "CaseRead" and i["payload"]["scope"] == "feed"
    ]
    assert reads, "no feed read recorded"  # one per page that showed personal fields
    assert all(r["agency"] == JC and r["payload"]["categories"] for r in reads)


def test_an_unchanged_page_answers_304_and_records_no_read(agencies: Agencies, hub: Hub) -> None:
    two_programmes(agencies)
    path, headers = f"/v1/agencies/{JC}/feed", agencies.tokens.of(JC)
    _, first = feed_page(agencies.api, headers, path, limit=5)
    head = hub.app.recorder.max_notification_id()
    again = agencies.api.get(
        path, params={"limit": 5}, headers={**headers, "If-None-Match": first.headers["ETag"]}
    )
    assert again.status_code == 304
    assert again.headers["ETag"] == first.headers["ETag"]
    assert hub.app.recorder.max_notification_id() == head  # nothing shown, nothing recorded
    other = agencies.api.get(
        path, params={"limit": 4}, headers={**headers, "If-None-Match": first.headers["ETag"]}
    )
    assert other.status_code == 200


def test_the_feed_resumes_from_its_cursor_after_a_restart(
    agencies: Agencies, hub: Hub, settings: Settings
) -> None:
    two_programmes(agencies)
    path, headers = f"/v1/agencies/{JC}/feed", agencies.tokens.of(JC)
    whole = whole_feed(agencies.api, headers, path, limit=100)
    first, _ = feed_page(agencies.api, headers, path, limit=2)
    assert first["items"] == whole[:2]
    assert first["more"]

    restarted = build_hub(settings)
    try:
        with TestClient(create_app(restarted)) as api:
            rest, _ = feed_page(api, headers, path, limit=100, after=first["next"])
    finally:
        restarted.close()
    assert without_ids(rest["items"]) == without_ids(whole[2:])
    assert [i["event_id"] for i in rest["items"]] == [i["event_id"] for i in whole[2:]]


def test_refusals_name_their_codes(agencies: Agencies) -> None:
    api, tokens = agencies.api, agencies.tokens
    assert_error(api.get(f"/v1/agencies/{JC}/feed", headers=tokens.of(COACH)), 403, "forbidden")
    assert_error(api.get(f"/v1/agencies/{JC}/feed", headers=tokens.audit()), 403, "forbidden")
    assert_error(api.get("/v1/audit/feed", headers=tokens.of(JC)), 403, "forbidden")
    for bad in ["nonsense", "ZmVlZC12MTp4", "", "a" * 65]:
        response = api.get(f"/v1/agencies/{JC}/feed", params={"after": bad}, headers=tokens.of(JC))
        if bad == "":
            assert response.status_code == 200  # no cursor: from the start
        else:
            assert_error(response, 422)
    assert_error(
        api.get(f"/v1/agencies/{JC}/feed", params={"wait": 31}, headers=tokens.of(JC)), 422
    )
    assert_error(api.get(f"/v1/agencies/{JC}/feed"), 401)


@pytest.mark.slow
def test_a_long_poll_returns_when_the_agencys_event_is_recorded(hub: Hub, tokens: Tokens) -> None:
    with served(create_app(hub)) as base_url, httpx.Client(base_url=base_url, timeout=30) as client:
        a = Agencies(client, tokens, hub)  # type: ignore[arg-type]
        case_id = a.open(CLINIC)
        path, headers = f"/v1/agencies/{JC}/feed", tokens.of(JC)
        start, _ = feed_page(client, headers, path)
        assert start["items"] == []

        started = time.monotonic()
        idle, _ = feed_page(client, headers, path, after=start["next"], wait=1)
        assert idle["items"] == []
        assert 0.9 <= time.monotonic() - started < 5

        def offer_later() -> None:
            time.sleep(0.5)
            with httpx.Client(base_url=base_url) as other:
                Agencies(other, tokens, hub).offer(CLINIC, case_id, JC, "discharge")  # type: ignore[arg-type]

        later = threading.Thread(target=offer_later)
        started = time.monotonic()
        later.start()
        body, _ = feed_page(client, headers, path, after=start["next"], wait=20)
        later.join()
        waited = time.monotonic() - started
        assert [i["type"] for i in body["items"]] == ["HandoverOffered"]
        assert 0.4 <= waited < 5, waited
