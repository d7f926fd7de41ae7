"""Tokens as an attacker and an operator meet them over HTTP, on SQLite and PostgreSQL:
a revoked, deleted or expired token stops working in every server process within a
second, says why without saying more, a client guessing tokens is answered 429 with
``Retry-After`` from a table of bounded size, and the acting user comes from the
token (or, for an agency-wide token, from ``X-Hub-User``).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse
from uuid import uuid4

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.bootstrap import Hub, build_hub
from services.demo import register_demo_agencies
from services.settings import Settings
from tests.cli_helpers import hub_cli
from tests.factories import message, opened
from tests.http_helpers import ROOT, assert_error, bearer, hub_serve, served

JC = "jc-trier"
WITHIN = 1.0  # seconds: the promise for revocation across processes


def _execute(database_url: str, *statements: str) -> None:
    """Statements run on the store beside the hub, as an operator's psql would."""
    if database_url.startswith("sqlite"):
        with sqlite3.connect(urlparse(database_url).path[1:]) as conn:
            for statement in statements:
                conn.execute(statement)
        return
    import psycopg

    schema = parse_qs(urlparse(database_url).query)["schema"][0]
    with psycopg.connect(database_url.split("?", maxsplit=1)[0], autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        for statement in statements:
            conn.execute(statement)


def _refused_within(
    request: Callable[[], Any], seconds: float, started: float
) -> tuple[Any, float]:
    """Ask until the answer is 401; the answer and how long after ``started`` it came."""
    while True:
        response = request()
        elapsed = time.monotonic() - started
        if response.status_code == 401 or elapsed > seconds + 2:
            return response, elapsed
        assert response.status_code == 200, response.text
        time.sleep(0.02)


def _cli(*args: str, settings: Settings) -> subprocess.CompletedProcess[bytes]:
    env = {
        **os.environ,
        "HUB_DATABASE_URL": settings.effective_database_url,
        "HUB_VAR_DIR": str(settings.var_dir),
        "HUB_LOG_FORMAT": "json",
        "PYTHONPATH": str(ROOT),
    }
    return hub_cli(*args, env=env, text=False)


@pytest.fixture
def agencies(hub: Hub) -> Hub:
    register_demo_agencies(hub.registry)
    return hub


@pytest.fixture
def api(agencies: Hub) -> Iterator[TestClient]:
    with TestClient(create_app(agencies)) as client:
        yield client


# ---- revocation, deletion, expiry --------------------------------------------------------


@pytest.mark.slow
def test_a_token_revoked_by_another_process_is_refused_by_hub_serve_within_a_second(
    agencies: Hub, settings: Settings
) -> None:
    issued = agencies.tokens.issue_for_agency(JC, user="fm-1")
    other = agencies.tokens.issue_agency_token(JC)
    with hub_serve(settings.effective_database_url, settings.var_dir, demo=False) as served_hub:
        url = f"{served_hub.base_url}/v1/agencies/{JC}/inbox"

        def inbox(token: str = issued.token) -> httpx.Response:
            return httpx.get(url, headers=bearer(token), timeout=10)

        assert inbox().status_code == 200  # now remembered by the server
        revoked = _cli("token", "revoke", issued.token_id, settings=settings)
        assert revoked.returncode == 0, revoked.stderr.decode()
        response, elapsed = _refused_within(inbox, WITHIN, time.monotonic())
        error = assert_error(response, 401, "unauthenticated")
        assert "revoked" in error["message"]
        assert elapsed < WITHIN, elapsed
        assert inbox(other).status_code == 200  # only that token


def test_a_token_deleted_by_hand_is_refused_within_a_second(
    agencies: Hub, api: TestClient, settings: Settings
) -> None:
    token = agencies.tokens.issue_agency_token(JC)
    url = f"/v1/agencies/{JC}/inbox"
    assert api.get(url, headers=bearer(token)).status_code == 200
    _execute(settings.effective_database_url, "DELETE FROM hub_tokens")
    response, elapsed = _refused_within(
        lambda: api.get(url, headers=bearer(token)), WITHIN, time.monotonic()
    )
    assert_error(response, 401, "unauthenticated")
    assert elapsed < WITHIN, elapsed


def test_a_revoked_token_is_refused_by_a_second_app_on_the_same_store(
    agencies: Hub, settings: Settings
) -> None:
    issued = agencies.tokens.issue_for_agency(JC, user="fm-1")
    second = build_hub(settings)  # another process's hub and memory
    try:
        with (
            TestClient(create_app(agencies)) as first_app,
            TestClient(create_app(second)) as second_app,
        ):
            url = f"/v1/agencies/{JC}/cases"
            for client in (first_app, second_app):
                assert client.get(url, headers=bearer(issued.token)).status_code == 200
            _, newly = agencies.tokens.revoke(issued.token_id)
            assert newly
            started = time.monotonic()
            for client in (second_app, first_app):
                response, elapsed = _refused_within(
                    lambda c=client: c.get(url, headers=bearer(issued.token)), WITHIN, started
                )
                assert "revoked" in assert_error(response, 401, "unauthenticated")["message"]
                assert elapsed < WITHIN, elapsed
    finally:
        second.close()


def test_an_expired_token_is_refused_and_says_so_and_nothing_else(
    agencies: Hub, api: TestClient
) -> None:
    issued = agencies.tokens.issue_for_agency(
        JC, user="fm-7", expires_at=datetime.now(UTC) + timedelta(seconds=1.5)
    )
    url = f"/v1/agencies/{JC}/inbox"
    assert api.get(url, headers=bearer(issued.token)).status_code == 200  # remembered
    time.sleep(1.6)
    response = api.get(url, headers=bearer(issued.token))
    error = assert_error(response, 401, "unauthenticated")
    assert error["message"] == "the token has expired"
    assert error["details"] is None
    for secret in (issued.token, issued.token_id, "fm-7", JC, "Trier"):
        assert secret not in response.text


def test_unknown_revoked_and_missing_tokens_answer_alike_but_for_the_reason(
    agencies: Hub, api: TestClient
) -> None:
    issued = agencies.tokens.issue_for_agency(JC, user="fm-1")
    agencies.tokens.revoke(issued.token_id)
    url = f"/v1/agencies/{JC}/inbox"
    revoked = api.get(url, headers=bearer(issued.token))
    unknown = api.get(url, headers=bearer("hub_" + "x" * 43))
    missing = api.get(url)
    assert assert_error(revoked, 401, "unauthenticated")["message"] == "the token has been revoked"
    assert assert_error(unknown, 401, "unauthenticated")["message"] == "the token is not valid"
    assert_error(missing, 401, "unauthenticated")
    for text in (revoked.text, unknown.text):
        for secret in (issued.token_id, "fm-1", JC):
            assert secret not in text


def test_a_use_is_recorded_at_most_once_a_minute(agencies: Hub, settings: Settings) -> None:
    issued = agencies.tokens.issue_for_agency(JC, user="fm-1")

    def last_used() -> str | None:
        rows = {row["token_id"]: row for row in agencies.tokens.all()}
        return rows[issued.token_id]["last_used_at"]

    assert last_used() is None
    url = f"/v1/agencies/{JC}/inbox"
    with TestClient(create_app(agencies)) as client:
        assert client.get(url, headers=bearer(issued.token)).status_code == 200
    first = last_used()
    assert first is not None
    second = build_hub(settings)  # a fresh process: reads the token from the store again
    try:
        with TestClient(create_app(second)) as client:
            for _ in range(3):
                assert client.get(url, headers=bearer(issued.token)).status_code == 200
    finally:
        second.close()
    assert last_used() == first


# ---- bad tokens: 429, bounded memory ------------------------------------------------------


@pytest.fixture
def limited(database_url: str, tmp_path: Path) -> Iterator[Hub]:
    """A hub allowing 5 bad tokens per client and minute, remembering 50 clients."""
    hub = build_hub(
        Settings(
            database_url=database_url,
            var_dir=tmp_path / "var",
            auth_bad_token_limit=5,
            auth_bad_token_window_s=60,
            auth_bad_token_clients=50,
        )
    )
    register_demo_agencies(hub.registry)
    yield hub
    hub.close()


def _from(address: str, token: str) -> dict[str, str]:
    # uvicorn takes the client address from X-Forwarded-For when the connection comes
    # from a trusted proxy (127.0.0.1 by default), as behind a reverse proxy.
    return {**bearer(token), "X-Forwarded-For": address}


def test_a_client_sending_bad_tokens_gets_429_with_retry_after(limited: Hub) -> None:
    valid = limited.tokens.issue_agency_token(JC)
    fresh = limited.tokens.issue_agency_token(JC)
    with served(create_app(limited)) as base_url, httpx.Client(base_url=base_url) as client:
        url = f"/v1/agencies/{JC}/inbox"
        attacker = "203.0.113.7"
        assert client.get(url, headers=_from(attacker, valid)).status_code == 200
        for n in range(5):
            guess = f"hub_guess{n:02d}" + "x" * 34
            assert_error(client.get(url, headers=_from(attacker, guess)), 401, "unauthenticated")
        for _ in range(3):
            refused = client.get(url, headers=_from(attacker, "hub_guess99" + "x" * 34))
            error = assert_error(refused, 429, "too_many_requests")
            retry_after = int(refused.headers["retry-after"])
            assert 1 <= retry_after <= 60
            assert str(retry_after) in error["message"]
        # A token already known valid still works from there (an office behind one
        # address); one not yet known waits like a guess.
        assert client.get(url, headers=_from(attacker, valid)).status_code == 200
        assert_error(client.get(url, headers=_from(attacker, fresh)), 429, "too_many_requests")
        # Other clients are not affected.
        assert client.get(url, headers=_from("198.51.100.1", fresh)).status_code == 200
        assert_error(
            client.get(url, headers=_from("198.51.100.1", "hub_" + "y" * 43)),
            401,
            "unauthenticated",
        )


def test_the_bad_token_table_is_bounded(limited: Hub) -> None:
    app = create_app(limited)
    with served(app) as base_url, httpx.Client(base_url=base_url) as client:
        url = "/v1/dashboard"
        first = "203.0.113.1"
        for n in range(6):
            client.get(url, headers=_from(first, f"hub_bad{n}" + "z" * 40))
        assert_error(client.get(url, headers=_from(first, "hub_" + "z" * 43)), 429)
        # 200 more addresses, one bad token each: the table keeps 50, the oldest goes.
        for n in range(200):
            address = f"10.0.{n // 250}.{n % 250}"
            response = client.get(url, headers=_from(address, "hub_" + "w" * 43))
            assert_error(response, 401, "unauthenticated")
        assert len(app.state.api.auth.bad_tokens) == 50
        assert_error(client.get(url, headers=_from(first, "hub_" + "z" * 43)), 401)


# ---- the acting user ----------------------------------------------------------------------


def _post(client: TestClient, token: str, body: dict[str, Any], **headers: str) -> Any:
    return client.post("/v1/messages", json=body, headers={**bearer(token), **headers})


def _actors(hub: Hub, case_id: Any) -> list[str]:
    auditor = hub.tokens.issue_auditor_token("Prüferin")
    with TestClient(create_app(hub)) as client:
        history = client.get(f"/v1/cases/{case_id}/history", headers=bearer(auditor))
    assert history.status_code == 200, history.text
    return [item["actor"] for item in history.json()["items"] if item["type"] != "case.read"]


def test_a_per_user_token_records_its_user_and_refuses_another_actor(
    agencies: Hub, api: TestClient
) -> None:
    token = agencies.tokens.issue_agency_token(JC, user="fm-3")
    case_id = uuid4()
    opening = {**opened(JC, case_id), "actor": "fm-3"}
    assert _post(api, token, opening).status_code == 201
    note = message("note.added", JC, case_id, {"text": "Rückruf", "category": "notes"})
    refused = _post(api, token, {**note, "actor": "someone-else"})
    assert_error(refused, 403, "actor_mismatch")
    assert "someone-else" not in refused.text
    # Naming another user in the header is refused as well.
    assert_error(
        _post(api, token, {**note, "actor": "fm-3"}, **{"X-Hub-User": "fm-4"}),
        403,
        "actor_mismatch",
    )
    assert _post(api, token, {**note, "actor": "fm-3"}).status_code == 201
    assert _actors(agencies, case_id) == ["fm-3", "fm-3"]


def test_an_agency_wide_token_may_name_its_user_in_a_header(agencies: Hub, api: TestClient) -> None:
    token = agencies.tokens.issue_agency_token(JC)
    case_id = uuid4()
    as_fm5 = {"X-Hub-User": "fm-5@jc-trier"}
    assert (
        _post(api, token, {**opened(JC, case_id), "actor": "fm-5@jc-trier"}, **as_fm5).status_code
        == 201
    )
    note = message("note.added", JC, case_id, {"text": "x", "category": "notes"}, actor="fm-6")
    assert_error(_post(api, token, note, **as_fm5), 403, "actor_mismatch")
    for bad in ("fm 5", "", "x" * 65, "fm-5;drop", "ä".encode()):
        response = api.get(f"/v1/agencies/{JC}/inbox", headers={**bearer(token), "X-Hub-User": bad})
        error = assert_error(response, 422, "invalid_request")
        assert error["details"][0]["path"] == "header.x-hub-user"
    # Without the header, an agency-wide token sends any actor (as before).
    assert _post(api, token, note).status_code == 201
    assert _actors(agencies, case_id) == ["fm-5@jc-trier", "fm-6"]


# ---- tokens from before: the first schema of hub_tokens ----------------------------------

FIRST_SQLITE = (
    "CREATE TABLE hub_tokens (token_hash TEXT PRIMARY KEY, role TEXT NOT NULL, "
    "subject TEXT NOT NULL, name TEXT NOT NULL, created_at TEXT DEFAULT CURRENT_TIMESTAMP)"
)
FIRST_POSTGRES = (
    "CREATE TABLE hub_tokens (token_hash text PRIMARY KEY, role text NOT NULL, "
    "subject text NOT NULL, name text NOT NULL, created_at timestamptz DEFAULT now())"
)


def test_tokens_of_the_first_schema_keep_working_and_can_be_revoked(settings: Settings) -> None:
    url = settings.effective_database_url
    hub = build_hub(settings)
    register_demo_agencies(hub.registry)
    hub.close()
    old_token = "hub_" + "o" * 43
    old_hash = hashlib.sha256(old_token.encode()).hexdigest()
    sqlite = url.startswith("sqlite")
    _execute(
        url,
        "DROP TABLE hub_tokens" + ("" if sqlite else " CASCADE"),
        "DROP TABLE hub_token_state",
        *(() if sqlite else ("DROP FUNCTION hub_tokens_changed()",)),
        FIRST_SQLITE if sqlite else FIRST_POSTGRES,
        "INSERT INTO hub_tokens (token_hash, role, subject, name) "
        f"VALUES ('{old_hash}', 'agency', '{JC}', 'Jobcenter Trier')",
    )
    for _start in range(2):  # the migration runs once and changes nothing the second time
        hub = build_hub(settings)
        try:
            rows = hub.tokens.all()
            assert [(r["role"], r["subject"], r["user"], r["state"]) for r in rows] == [
                ("agency", JC, None, "active")
            ]
            token_id = rows[0]["token_id"]
            assert token_id.startswith("tok_")
            assert rows[0]["created_at"] is not None
            with TestClient(create_app(hub)) as client:
                inbox = f"/v1/agencies/{JC}/inbox"
                assert client.get(inbox, headers=bearer(old_token)).status_code == 200
        finally:
            hub.close()
    hub = build_hub(settings)
    try:
        with TestClient(create_app(hub)) as client:
            assert client.get(inbox, headers=bearer(old_token)).status_code == 200
            hub.tokens.revoke(token_id)
            response, elapsed = _refused_within(
                lambda: client.get(inbox, headers=bearer(old_token)), WITHIN, time.monotonic()
            )
            assert "revoked" in assert_error(response, 401, "unauthenticated")["message"]
            assert elapsed < WITHIN
    finally:
        hub.close()
