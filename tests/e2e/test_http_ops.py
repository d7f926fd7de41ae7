"""``/healthz``, ``/readyz`` and ``/metrics`` as an operator's probes and scraper see
them: over HTTP, on both stores, with the failures made for real (views left
behind, the database's line cut or hanging through a proxy, the store's key check
replaced)."""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse, urlunparse

import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.bootstrap import Hub, build_hub
from services.messages import parse_message
from services.settings import Settings
from tests.factories import message, new_id, opened
from tests.http_helpers import Tokens, assert_error, demo_tokens
from tests.tcp_proxy import TcpProxy

CHECKS = {"database", "views", "master_key", "kafka"}
JSON = {"content-type": "application/json"}


@pytest.fixture
def tokens(hub: Hub) -> Tokens:
    return demo_tokens(hub)


def _ready(client: TestClient) -> tuple[int, dict[str, Any]]:
    response = client.get("/readyz")
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"status", "checks"}
    assert set(body["checks"]) == CHECKS
    for check in body["checks"].values():
        assert set(check) == {"ok", "reason"}
        assert isinstance(check["reason"], str)
        assert check["reason"]
    return response.status_code, body


def test_liveness_stays_a_plain_ok(hub: Hub) -> None:
    with TestClient(create_app(hub)) as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_names_every_check_and_its_reason(hub: Hub, settings: Settings) -> None:
    with TestClient(create_app(hub)) as client:
        status, body = _ready(client)
    assert status == 200, body
    assert body["status"] == "ready"
    assert all(check["ok"] for check in body["checks"].values()), body
    assert "head position" in body["checks"]["database"]["reason"]
    assert "bound 1000" in body["checks"]["views"]["reason"]
    assert body["checks"]["kafka"]["reason"] == "not used by this process"
    text = str(body)
    for secret in (settings.effective_database_url, str(settings.var_dir)):
        assert secret not in text


def test_views_behind_the_bound_make_the_process_unready(settings: Settings) -> None:
    hub = build_hub(settings.model_copy(update={"ready_max_view_lag": 2}))
    try:
        demo_tokens(hub)
        hub.views.catch_up()
        # No live runner in this app: what is recorded behind its back stays unapplied.
        with TestClient(create_app(hub, start_views=False)) as client:
            case_id = new_id()
            hub.messages.record(parse_message(opened("jc-trier", case_id)))
            status, body = _ready(client)
            assert status == 200, body  # one event behind: within the bound
            for day in range(1, 4):
                note = message(
                    "note.added", "jc-trier", case_id, {"text": "x", "category": "notes"}, day=day
                )
                hub.messages.record(parse_message(note))
            status, body = _ready(client)
            assert status == 503, body
            assert body["status"] == "not_ready"
            views = body["checks"]["views"]
            assert not views["ok"]
            assert views["reason"] == "events behind: audit 4, cases 4, dashboard 4 (bound 2)"
            assert body["checks"]["database"]["ok"]
            hub.views.catch_up()
            status, body = _ready(client)
            assert status == 200, body
    finally:
        hub.close()


def _through(proxy: TcpProxy, url: str) -> str:
    parts = urlparse(url)
    return urlunparse(parts._replace(netloc=f"{parts.username}@{proxy.address}"))


@pytest.fixture
def postgres_behind_proxy(database_url: str, tmp_path: Any) -> Iterator[tuple[Hub, TcpProxy]]:
    if not database_url.startswith("postgresql"):
        pytest.skip("the line to cut is PostgreSQL's")
    parts = urlparse(database_url)
    proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    hub = build_hub(
        Settings(
            database_url=_through(proxy, database_url),
            var_dir=tmp_path / "var",
            ready_timeout_s=1.0,
        )
    )
    try:
        yield hub, proxy
    finally:
        proxy.cut()
        hub.close()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_database_that_is_gone_or_hangs_is_unready_within_the_bound(
    postgres_behind_proxy: tuple[Hub, TcpProxy],
) -> None:
    hub, proxy = postgres_behind_proxy
    with TestClient(create_app(hub)) as client:
        status, body = _ready(client)
        assert status == 200, body

        proxy.hang()  # connections accepted, nothing answered
        for _ in range(3):  # probes keep coming while it hangs; each answers in time
            started = time.monotonic()
            status, body = _ready(client)
            elapsed = time.monotonic() - started
            assert status == 503, body
            assert not body["checks"]["database"]["ok"]
            assert elapsed < 3.0, f"readiness took {elapsed:.1f} s with a 1 s bound"

        proxy.refuse()  # gone: every connection dropped
        status, body = _ready(client)
        assert status == 503, body
        database = body["checks"]["database"]
        assert not database["ok"]
        assert re.fullmatch(r"(failed \(\w+\)|no answer within 1 s)", database["reason"]), database
        assert "127.0.0.1" not in str(body)
        assert client.get("/healthz").status_code == 200  # alive all the same

        proxy.forward()  # back: ready again once the pool has reconnected
        deadline = time.monotonic() + 30
        while (status := _ready(client)[0]) != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert status == 200


def test_a_master_key_that_no_longer_opens_the_store_is_unready(
    hub: Hub, settings: Settings
) -> None:
    with TestClient(create_app(hub)) as client:
        assert _ready(client)[0] == 200
        # The store's key check replaced from outside, as when another deployment's
        # store is restored under a running hub: the key in memory cannot open it.
        if settings.is_sqlite:
            path = settings.effective_database_url.removeprefix("sqlite:///")
            with sqlite3.connect(path) as db:
                db.execute("UPDATE hub_key_check SET value = ? WHERE id = 1", (os.urandom(44),))
        else:
            store = hub.app.recorder
            with store.datastore.transaction(commit=True) as curs:  # type: ignore[attr-defined]
                curs.execute(
                    f'UPDATE "{store.keys_schema}".hub_key_check SET value = %s WHERE id = 1',  # type: ignore[attr-defined]
                    (os.urandom(44),),
                )
        status, body = _ready(client)
    assert status == 503, body
    assert body["checks"]["master_key"] == {"ok": False, "reason": "failed (master_key_mismatch)"}


def test_metrics_count_messages_by_entrypoint_refusals_by_code_and_the_process(
    hub: Hub, tokens: Tokens
) -> None:
    case_id = new_id()
    with TestClient(create_app(hub)) as client:
        jc = tokens.of("jc-trier")
        assert client.post("/v1/messages", json=opened("jc-trier", case_id), headers=jc).is_success
        note = message("note.added", "jc-trier", case_id, {"text": "x", "category": "notes"})
        assert client.post("/v1/messages", json=note, headers=jc).status_code == 201
        assert client.post("/v1/messages", json=note, headers=jc).status_code == 200  # duplicate
        assert_error(client.get("/v1/dashboard"), 401, "unauthenticated")
        assert_error(
            client.post(
                "/v1/messages", content=b"{", headers={**jc, "content-type": "application/json"}
            ),
            422,
            "malformed_json",
        )
        text = client.get("/metrics").text
    figures = _samples(text)
    assert figures['hub_messages_recorded_total{entrypoint="http",type="case.opened"}'] == 1
    assert figures['hub_messages_recorded_total{entrypoint="http",type="note.added"}'] == 1
    assert figures['hub_messages_duplicate_total{entrypoint="http"}'] == 1
    assert figures['hub_refusals_total{code="unauthenticated",entrypoint="http"}'] == 1
    assert figures['hub_refusals_total{code="malformed_json",entrypoint="http"}'] == 1
    assert figures["process_resident_memory_bytes"] > 0
    assert figures["process_cpu_seconds_total"] > 0
    assert any(name.startswith("python_info{") for name in figures)
    assert any(name.startswith("python_gc_collections_total{") for name in figures)


def _samples(text: str) -> dict[str, float]:
    """``name{labels} value`` lines of a Prometheus text answer."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found
