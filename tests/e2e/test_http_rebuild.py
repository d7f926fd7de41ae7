"""A rebuild never shows partial views (issue 14, build 5), over HTTP on both stores.

``hub``'s API runs in this process (TestClient, its live view runner started) while
a rebuild runs in another process, slowed to a few seconds (small pages, a pause
after each) so that reads and writes land before, during and after its swap.
Before, a rebuild emptied the live tables first: an agency's inbox read empty, or
half full, until the rebuild had reached its cases.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.bootstrap import Hub
from services.views.runner import ViewRunner
from services.views.sql.schema import SHADOW
from services.views.store import GROUPS
from tests.factories import new_id, offer, opened
from tests.http_helpers import bearer
from tests.view_helpers import (
    COACH,
    DRV,
    EMPLOYMENT_AGENCY,
    JOBCENTER,
    ROOT,
    history,
    process_env,
    record_all,
    register_test_agencies,
    snapshot,
    table_names,
)

CASES = 300  # about 2,900 events
PAGE = 100

SLOW_REBUILD = """
import time
from services.bootstrap import build_hub
from services.settings import Settings
from services.views.runner import ViewRunner

hub = build_hub(Settings())
runner = ViewRunner(hub.app.recorder, hub.view_store, page_size={page}, rebuild_page_size={page})


def progress(done, total):
    time.sleep(0.05)


print("applied", runner.rebuild(progress=progress), flush=True)
hub.close()
"""


@pytest.fixture
def tokens(hub: Hub) -> dict[str, dict[str, str]]:
    register_test_agencies(hub)
    record_all(hub, history(CASES))
    hub.views.catch_up()
    return {a: bearer(hub.tokens.issue_agency_token(a)) for a in (JOBCENTER, COACH, DRV)}


@pytest.fixture
def api(hub: Hub, tokens: dict[str, dict[str, str]]) -> Iterator[TestClient]:
    with TestClient(create_app(hub, read_your_writes_timeout=10.0)) as client:
        yield client


def start_rebuild(database_url: str, tmp_path: Path) -> subprocess.Popen[str]:
    script = tmp_path / "slow_rebuild.py"
    script.write_text(SLOW_REBUILD.format(page=PAGE))
    return subprocess.Popen(
        [sys.executable, str(script)],
        cwd=ROOT,
        env=process_env(database_url, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(child: subprocess.Popen[str]) -> str:
    try:
        out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    return out


def agency_views(api: TestClient, tokens: dict[str, dict[str, str]]) -> dict[str, Any]:
    """What the Jobcenter and the coach see: both inboxes, both caseloads (one page
    holds all), the Jobcenter's dashboard (without the moment it was made)."""
    paths = {
        "jc inbox": (f"/v1/agencies/{JOBCENTER}/inbox", JOBCENTER),
        "coach inbox": (f"/v1/agencies/{COACH}/inbox", COACH),
        "jc caseload": (f"/v1/agencies/{JOBCENTER}/cases?limit=1000", JOBCENTER),
        "coach caseload": (f"/v1/agencies/{COACH}/cases?limit=1000", COACH),
        "dashboard": ("/v1/dashboard", JOBCENTER),
    }
    seen = {}
    for name, (path, agency) in paths.items():
        response = api.get(path, headers=tokens[agency])
        assert response.status_code == 200, (name, response.text)
        seen[name] = response.json()
    seen["dashboard"].pop("generated_at")  # the moment of the read
    return seen


def test_readers_see_the_same_full_views_throughout_a_rebuild(
    hub: Hub, api: TestClient, tokens: dict[str, dict[str, str]], database_url: str, tmp_path: Path
) -> None:
    before = agency_views(api, tokens)
    assert len(before["coach inbox"]["items"]) == CASES // 4  # every fourth offer open
    assert len(before["jc caseload"]["items"]) == CASES
    head = hub.app.recorder.max_notification_id()

    child = start_rebuild(database_url, tmp_path)
    differing: list[tuple[float, list[str]]] = []
    during = 0
    stop = threading.Event()

    def read_throughout() -> None:
        nonlocal during
        while not stop.is_set():
            seen = agency_views(api, tokens)
            if child.poll() is None:
                during += 1
            changed = [name for name in seen if seen[name] != before[name]]
            if changed:
                differing.append((time.monotonic(), changed))

    reader = threading.Thread(target=read_throughout, name="reader")
    reader.start()
    try:
        out = finish(child)
        time.sleep(0.3)  # and a few reads after the swap
    finally:
        stop.set()
        reader.join(timeout=30)

    applied = int(re.search(r"^applied (\d+)$", out, re.MULTILINE)[1])  # type: ignore[index]
    assert applied >= head, out  # every event, and the reads recorded meanwhile
    assert during >= 10, during  # the reads did overlap the rebuild
    assert differing == []
    assert agency_views(api, tokens) == before
    assert not {name for name in table_names(hub.view_store) if name.endswith(SHADOW)}


def test_messages_recorded_during_a_rebuild_are_read_back_at_once_and_kept_by_the_swap(
    hub: Hub, api: TestClient, tokens: dict[str, dict[str, str]], database_url: str, tmp_path: Path
) -> None:
    """Each 201 means the views show the message (read-your-writes): the next read
    finds it, whether the live tables or the swapped-in ones answer."""
    aa = bearer(hub.tokens.issue_agency_token(EMPLOYMENT_AGENCY))
    child = start_rebuild(database_url, tmp_path)
    offered: list[str] = []
    deadline = time.monotonic() + 60
    try:
        while child.poll() is None and time.monotonic() < deadline and len(offered) < 200:
            case, handover = new_id(), new_id()
            for message in (
                opened(EMPLOYMENT_AGENCY, case),
                offer(EMPLOYMENT_AGENCY, case, handover, kind="rehab_application", to=DRV),
            ):
                response = api.post("/v1/messages", json=message, headers=aa)
                assert response.status_code == 201, response.text
            inbox = api.get(f"/v1/agencies/{DRV}/inbox", headers=tokens[DRV]).json()
            ids = {item["handover_id"] for item in inbox["items"]}
            offered.append(str(handover))
            assert set(offered) <= ids, "a recorded offer vanished from the inbox"
    finally:
        finish(child)
    assert len(offered) >= 5, len(offered)  # messages did land during the rebuild

    inbox = api.get(f"/v1/agencies/{DRV}/inbox", headers=tokens[DRV]).json()
    assert {item["handover_id"] for item in inbox["items"]} == set(offered)
    hub.views.catch_up()
    newest = hub.app.recorder.max_notification_id()
    assert hub.views.positions() == dict.fromkeys(GROUPS, newest)
    live = snapshot(hub.view_store)
    ViewRunner(hub.app.recorder, hub.view_store).rebuild()
    assert snapshot(hub.view_store) == live
