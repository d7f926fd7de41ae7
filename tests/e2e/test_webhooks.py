"""Webhooks (issue 16, build 2) as an agency's receiver sees them: a loopback receiver
verifies every delivery with the reference ``standardwebhooks`` library (not the
hub's code), fails each event's first two tries, and must see each event once per
id, in order, exactly as the agency's feed shows it, and nothing else. Both stores.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.api.app import create_app
from services.bootstrap import Hub, build_hub
from services.settings import Settings
from services.webhooks.dispatcher import dispatcher_for
from tests.e2e.test_cli import hub as run_hub
from tests.e2e.test_http_authority_and_time import CLINIC, COACH, JC, Agencies, ago
from tests.e2e.test_http_feed import GAL_JC, HEALTH_NOTE, two_programmes, whole_feed
from tests.http_helpers import Tokens, assert_error, demo_tokens


@dataclass
class Receiver:
    """A loopback endpoint: verifies each delivery, answers ``answer(webhook_id,
    attempt)``; keeps what it accepted."""

    answer: Callable[[str, int], int]
    delay: float = 0.0
    secret: str = ""
    attempts: dict[str, int] = field(default_factory=dict)
    accepted: list[dict[str, Any]] = field(default_factory=list)
    forged: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        time.sleep(self.delay)
        try:
            Webhook(self.secret).verify(body, headers)
        except WebhookVerificationError:
            with self.lock:
                self.forged += 1
            return 400
        webhook_id = headers["webhook-id"]
        with self.lock:
            attempt = self.attempts[webhook_id] = self.attempts.get(webhook_id, 0) + 1
            status = self.answer(webhook_id, attempt)
            if 200 <= status < 300:
                self.accepted.append({"id": webhook_id, **json.loads(body)})
        return status


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    servers: list[ThreadingHTTPServer] = []

    def start(answer: Callable[[str, int], int], delay: float = 0.0) -> Receiver:
        receiver = Receiver(answer, delay)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = receiver.handle({k.lower(): v for k, v in self.headers.items()}, body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/hub"
        return receiver

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # Loopback receivers (tests only), quick retries, a short failure run.
    return Settings(
        database_url=database_url,
        var_dir=tmp_path / "var",
        webhooks_allow_private=True,
        webhooks_retry_base_s=0.02,
        webhooks_retry_max_s=0.1,
        webhooks_poll_interval_s=0.02,
        webhooks_max_failures=4,
        webhooks_timeout_s=3,
    )


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


@pytest.fixture
def dispatching(hub: Hub) -> Iterator[None]:
    """Deliveries running beside the API, as in ``hub serve``."""
    thread, stop = dispatcher_for(hub).start()
    yield
    stop.set()
    thread.join(timeout=10)


def register(a: Agencies, agency: str, receiver: Receiver, **body: Any) -> dict[str, Any]:
    response = a.api.post(
        f"/v1/agencies/{agency}/webhooks",
        json={"url": receiver.url, **body},
        headers=a.tokens.of(agency),
    )
    assert response.status_code == 201, response.text
    endpoint: dict[str, Any] = response.json()
    assert endpoint["secret"].startswith("whsec_")
    receiver.secret = endpoint["secret"]
    return endpoint


def until(
    condition: Callable[[], bool], seconds: float = 20.0, about: Callable[[], Any] = str
) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within the bound: {about()}"
        time.sleep(0.05)


def fails_twice(_: str, attempt: int) -> int:
    return 500 if attempt <= 2 else 204


@pytest.mark.slow
def test_receivers_get_exactly_their_feed_once_per_event_despite_failures(
    agencies: Agencies, receivers: Callable[..., Receiver], dispatching: None
) -> None:
    hooked = {agency: receivers(fails_twice) for agency in (CLINIC, JC, COACH, GAL_JC)}
    for agency, receiver in hooked.items():
        register(agencies, agency, receiver)
    kopra, gal = two_programmes(agencies)

    feeds = {
        agency: whole_feed(agencies.api, agencies.tokens.of(agency), f"/v1/agencies/{agency}/feed")
        for agency in hooked
    }

    def all_delivered() -> bool:
        return all(len(r.accepted) >= len(feeds[a]) for a, r in hooked.items())

    until(all_delivered, about=lambda: {a: len(r.accepted) for a, r in hooked.items()})
    time.sleep(0.3)  # anything more would have come by now
    for agency, receiver in hooked.items():
        feed = feeds[agency]
        assert feed, agency
        assert receiver.forged == 0
        assert [d["id"] for d in receiver.accepted] == [i["event_id"] for i in feed], agency
        assert [d["data"] for d in receiver.accepted] == feed, agency  # exactly the feed
        assert all(receiver.attempts[i["event_id"]] == 3 for i in feed)  # 2 failures, then ok
    coach = str(hooked[COACH].accepted)
    assert HEALTH_NOTE not in coach
    assert str(gal) not in coach
    assert str(kopra) not in str(hooked[GAL_JC].accepted)


@pytest.mark.slow
def test_the_delivery_log_and_a_disabled_endpoint_enabled_again(
    agencies: Agencies, receivers: Callable[..., Receiver], dispatching: None, hub: Hub
) -> None:
    down = True
    receiver = receivers(lambda _id, _n: 503 if down else 200)
    endpoint = register(agencies, JC, receiver, types=["handover.offered"])
    path = f"/v1/agencies/{JC}/webhooks/{endpoint['endpoint_id']}"
    case_id = agencies.open(CLINIC, at=ago(1))
    agencies.offer(CLINIC, case_id, JC, "discharge")

    def listed() -> dict[str, Any]:
        items = agencies.api.get(
            f"/v1/agencies/{JC}/webhooks", headers=agencies.tokens.of(JC)
        ).json()["items"]
        assert "secret" not in items[0]
        found: dict[str, Any] = items[0]
        return found

    until(lambda: not listed()["enabled"])
    assert listed()["failures"] == 4
    assert "4 failures in a row" in listed()["disabled_reason"]
    log = agencies.api.get(f"{path}/deliveries", headers=agencies.tokens.of(JC)).json()["items"]
    assert [(row["attempt"], row["status"], row["ok"]) for row in log] == [
        (n, 503, False) for n in (4, 3, 2, 1)
    ]
    time.sleep(0.3)
    assert list(receiver.attempts.values()) == [4]  # one event, four tries, then stopped

    down = False
    assert agencies.api.post(f"{path}/enable", headers=agencies.tokens.of(JC)).status_code == 200
    until(lambda: len(receiver.accepted) == 1)
    assert receiver.accepted[0]["type"] == "HandoverOffered"  # --types: only offers
    until(lambda: listed()["failures"] == 0)


@pytest.mark.slow
def test_a_slow_receiver_never_slows_recording(
    agencies: Agencies, receivers: Callable[..., Receiver], dispatching: None
) -> None:
    slow = receivers(lambda _id, _n: 200, delay=2.5)
    register(agencies, JC, slow)
    case_id = agencies.open(CLINIC, at=ago(1))
    agencies.offer(CLINIC, case_id, JC, "discharge")
    time.sleep(0.2)  # the dispatcher is now waiting on the receiver
    started = time.monotonic()
    for n in range(5):
        agencies.ok(CLINIC, "note.added", case_id, {"text": f"n{n}", "category": "notes"})
    assert time.monotonic() - started < 2.0


def test_webhook_targets_are_refused_unless_public(database_url: str, tmp_path: Path) -> None:
    strict = build_hub(Settings(database_url=database_url, var_dir=tmp_path / "strict"))
    try:
        tokens = demo_tokens(strict)
        with TestClient(create_app(strict)) as api:
            for url in [
                "http://127.0.0.1:9/hook",
                "https://127.0.0.1/hook",
                "https://localhost/hook",
                "https://10.1.2.3/hook",
                "https://169.254.169.254/latest/meta-data",
                "https://[::1]/hook",
                "https://[::ffff:192.168.0.1]/hook",
                "https://user:pw@example.org/hook",
                "ftp://example.org/hook",
            ]:
                response = api.post(
                    f"/v1/agencies/{JC}/webhooks", json={"url": url}, headers=tokens.of(JC)
                )
                assert_error(response, 422, "webhook_target_refused")
            assert_error(
                api.post(
                    f"/v1/agencies/{COACH}/webhooks",
                    json={"url": "https://example.org/"},
                    headers=tokens.of(JC),
                ),
                403,
                "forbidden",
            )
            assert api.get(f"/v1/agencies/{JC}/webhooks", headers=tokens.of(JC)).json() == {
                "items": []
            }
    finally:
        strict.close()


def test_the_webhook_commands(database_url: str, tmp_path: Path, hub: Hub) -> None:
    """``hub webhook add|list|deliveries|enable|remove`` as an operator runs them."""
    import os

    demo_tokens(hub)  # registers the agencies
    env = {
        **os.environ,
        "HUB_DATABASE_URL": database_url,
        "HUB_VAR_DIR": str(tmp_path / "var"),
        "HUB_WEBHOOKS_ALLOW_PRIVATE": "true",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    added = run_hub(
        "webhook", "add", JC, "http://127.0.0.1:9/h", "--types", "handover.offered", env=env
    )
    assert added.returncode == 0, added.stderr.decode()
    lines = added.stdout.decode().splitlines()
    assert lines[-1].startswith("whsec_")
    endpoint_id = lines[0].split()[2]
    listed = run_hub("webhook", "list", "--json", env=env).stdout.decode()
    row = json.loads(listed.splitlines()[0])
    assert row["endpoint_id"] == endpoint_id
    assert row["types"] == ["HandoverOffered"]
    assert lines[-1] not in listed  # the secret is shown once
    for command in (["deliveries", endpoint_id], ["enable", endpoint_id], ["remove", endpoint_id]):
        done = run_hub("webhook", *command, env=env)
        assert done.returncode == 0, done.stderr.decode()
    gone = run_hub("webhook", "remove", endpoint_id, env=env)
    assert gone.returncode == 1
    assert "error [webhook_not_found]" in gone.stderr.decode()
    refused = run_hub(
        "webhook",
        "add",
        JC,
        "http://127.0.0.1/h",
        env={**env, "HUB_WEBHOOKS_ALLOW_PRIVATE": "false"},
    )
    assert refused.returncode == 1
    assert "error [webhook_target_refused]" in refused.stderr.decode()
    assert "Traceback" not in refused.stderr.decode()
