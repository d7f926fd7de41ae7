"""What the app holds between requests: its worker threads exist only during its
lifespan, and validated tokens are remembered for 5 s per process (README)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.api.auth import TOKEN_CACHE_SECONDS
from services.bootstrap import Hub, build_hub
from services.settings import Settings
from tests.http_helpers import assert_error, demo_tokens


def _api_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("hub-api")}


@pytest.fixture
def sqlite_hub(tmp_path: Path) -> Iterator[Hub]:
    hub = build_hub(Settings(database_url=f"sqlite:///{tmp_path / 'hub.db'}", var_dir=tmp_path))
    yield hub
    hub.close()


def _forget_every_token(hub: Hub) -> None:
    """As an operator revoking tokens in the store would (there is no command yet)."""
    with hub.app.recorder.datastore.transaction(commit=True) as c:  # type: ignore[attr-defined]
        c.execute("DELETE FROM hub_tokens")


def test_worker_threads_live_only_as_long_as_the_app(sqlite_hub: Hub) -> None:
    headers = {"Authorization": f"Bearer {demo_tokens(sqlite_hub).agencies['jc-trier']}"}
    before = _api_threads()  # other apps' (none, unless a test's server is still stopping)
    app = create_app(sqlite_hub)
    assert _api_threads() == before  # neither importing nor building the app starts any
    with TestClient(app) as client:
        assert client.get("/v1/agencies/jc-trier/inbox", headers=headers).status_code == 200
        assert _api_threads() - before  # the token and the inbox were read on one
    assert _api_threads() <= before


@pytest.mark.slow
def test_a_validated_token_is_remembered_for_a_few_seconds_per_app(sqlite_hub: Hub) -> None:
    headers = {"Authorization": f"Bearer {demo_tokens(sqlite_hub).agencies['jc-trier']}"}
    with TestClient(create_app(sqlite_hub)) as client:
        assert client.get("/v1/dashboard", headers=headers).status_code == 200
        _forget_every_token(sqlite_hub)
        assert client.get("/v1/dashboard", headers=headers).status_code == 200  # remembered
        with TestClient(create_app(sqlite_hub)) as fresh:  # another process's memory
            assert_error(fresh.get("/v1/dashboard", headers=headers), 401, "unauthenticated")
        time.sleep(TOKEN_CACHE_SECONDS + 0.2)
        assert_error(client.get("/v1/dashboard", headers=headers), 401, "unauthenticated")
