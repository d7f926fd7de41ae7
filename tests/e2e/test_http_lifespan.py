"""What the app holds between requests: its worker threads exist only during its
lifespan. (How long a validated token is remembered, and how a revocation ends
that: ``test_http_tokens``.)"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.bootstrap import Hub, build_hub
from services.settings import Settings
from tests.http_helpers import demo_tokens


def _api_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("hub-api")}


@pytest.fixture
def sqlite_hub(tmp_path: Path) -> Iterator[Hub]:
    hub = build_hub(Settings(database_url=f"sqlite:///{tmp_path / 'hub.db'}", var_dir=tmp_path))
    yield hub
    hub.close()


def test_worker_threads_live_only_as_long_as_the_app(sqlite_hub: Hub) -> None:
    headers = {"Authorization": f"Bearer {demo_tokens(sqlite_hub).agencies['jc-trier']}"}
    before = _api_threads()  # other apps' (none, unless a test's server is still stopping)
    app = create_app(sqlite_hub)
    assert _api_threads() == before  # neither importing nor building the app starts any
    with TestClient(app) as client:
        assert client.get("/v1/agencies/jc-trier/inbox", headers=headers).status_code == 200
        assert _api_threads() - before  # the token and the inbox were read on one
    assert _api_threads() <= before
