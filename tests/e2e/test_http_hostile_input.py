"""The HTTP surface against a hostile or careless client (issue 13, "bounded input
everywhere" and "never a 500 for a duplicate").

Written as the attacker would: raw sockets for what an HTTP library will not send
(heads that never end, bodies dropped half-way), ``hub serve`` in its own process
where the server's own limits and its log are the subject, the app in a test client
for the answers themselves. On SQLite and PostgreSQL where a store is involved.
"""

from __future__ import annotations

import http.client
import json
import socket
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.bootstrap import Hub, build_hub
from services.demo import demo_id, load_demo
from services.settings import Settings
from tests.factories import message, opened
from tests.http_helpers import (
    ServedProcess,
    Tokens,
    assert_error,
    bearer,
    demo_tokens,
    hub_serve,
)

S3 = demo_id("s3/case")  # Trier coaching: jc-trier and coach-trier; closed (moved away)
S4 = demo_id("s4/case")  # Erzgebirge: clinic, Jobcenter and KoPrA; open
OUTSIDER = "jc-aachen"  # registered, involved in neither

MiB = 1024 * 1024


# ---- fixtures and small tools ------------------------------------------------------------


@pytest.fixture
def tokens(hub: Hub) -> Tokens:
    issued = demo_tokens(hub)
    list(load_demo(hub.registry, hub.messages))
    hub.views.catch_up()
    return issued


@pytest.fixture
def api(hub: Hub, tokens: Tokens) -> Iterator[TestClient]:
    with TestClient(create_app(hub)) as client:
        yield client


@pytest.fixture
def served_sqlite(tmp_path: Path) -> Iterator[ServedProcess]:
    """``hub serve --demo`` on SQLite, logging at INFO (JSON lines on its stderr)."""
    with hub_serve(
        f"sqlite:///{tmp_path / 'hub.db'}", tmp_path / "var", log_level="INFO"
    ) as served:
        yield served


def _address(base_url: str) -> tuple[str, int]:
    host, port = base_url.removeprefix("http://").split(":")
    return host, int(port)


def _connect(base_url: str, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(_address(base_url), timeout=timeout)


def _answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """The next HTTP answer on ``sock``: status, headers (lower-case names), body."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    body = response.read()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def _error_of(body: bytes) -> dict[str, Any]:
    parsed = json.loads(body)
    assert list(parsed) == ["error"], parsed
    assert set(parsed["error"]) == {"code", "message", "details"}, parsed
    return parsed["error"]


def _metric(base_url: str, route: str, status: str) -> float:
    text = http.client.HTTPConnection(*_address(base_url), timeout=10)
    text.request("GET", "/metrics")
    body = text.getresponse().read().decode()
    text.close()
    wanted = f'hub_http_requests_total{{route="{route}",status="{status}"}} '
    for line in body.splitlines():
        if line.startswith(wanted):
            return float(line.removeprefix(wanted))
    return 0.0


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _without(case_id: UUID, error: dict[str, Any]) -> dict[str, Any]:
    """The error with the case id it names replaced, so two answers can be compared."""
    return {**error, "message": error["message"].replace(str(case_id), "{case}")}


# ---- header size: 431 before the head is read, bounded memory ------------------------------


def test_an_oversized_header_is_refused_with_431_in_the_error_shape(
    served_sqlite: ServedProcess,
) -> None:
    """Sent in pieces, reading in between: the answer comes once the head passed the
    limit, long before the 1 MiB header ends."""
    sock = _connect(served_sqlite.base_url)
    sock.sendall(b"GET /v1/dashboard HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ")
    sent = 0
    sock.settimeout(0.2)
    answered = b""
    while sent < MiB and not answered:
        try:
            sock.sendall(b"x" * 4096)
            sent += 4096
            answered = sock.recv(65536, socket.MSG_PEEK)
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
    sock.settimeout(10)
    status, headers, body = _answer(sock)
    sock.close()
    assert status == 431
    assert headers["content-type"].startswith("application/json")
    assert headers["x-content-type-options"] == "nosniff"
    assert _error_of(body)["code"] == "header_too_large"
    assert sent <= 128 * 1024, f"the server read {sent} bytes of header before refusing"
    assert _metric(served_sqlite.base_url, "unmatched", "431") >= 1


@pytest.mark.slow
def test_unfinished_huge_headers_do_not_grow_the_servers_memory(
    served_sqlite: ServedProcess,
) -> None:
    """Issue 13: four connections each sending an unfinished 64 MiB header raised RSS
    from 108 to 386 MB. Here four send 16 MiB each and never end the head."""
    pid = served_sqlite.process.pid
    before = _rss_kib(pid)
    header = b"GET /v1/dashboard HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Junk: "

    def flood() -> None:
        sock = _connect(served_sqlite.base_url)
        try:
            sock.sendall(header)
            for _ in range(16 * 16):
                sock.sendall(b"y" * (64 * 1024))
        except OSError:
            pass  # the server gave up on us: what we want
        finally:
            time.sleep(0.5)  # hold the connection while memory is measured
            sock.close()

    floods = [threading.Thread(target=flood) for _ in range(4)]
    for thread in floods:
        thread.start()
    peak = before
    while any(thread.is_alive() for thread in floods):
        peak = max(peak, _rss_kib(pid))
        time.sleep(0.02)
    for thread in floods:
        thread.join(timeout=60)
    assert peak - before < 24 * 1024, f"RSS grew from {before} KiB to {peak} KiB"
    # And the server still answers.
    health = http.client.HTTPConnection(*_address(served_sqlite.base_url), timeout=10)
    health.request("GET", "/healthz")
    assert health.getresponse().status == 200
    health.close()


def test_a_head_that_never_ends_is_answered_408_after_the_read_timeout(
    tmp_path: Path,
) -> None:
    with hub_serve(
        f"sqlite:///{tmp_path / 'hub.db'}",
        tmp_path / "var",
        demo=False,
        extra_args=["--read-timeout", "1"],
    ) as served:
        sock = _connect(served.base_url)
        sock.sendall(b"GET /v1/dashboard HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        began = time.monotonic()
        sock.settimeout(10)
        status, _, body = _answer(sock)
        waited = time.monotonic() - began
        sock.close()
        assert status == 408
        assert _error_of(body)["code"] == "request_timeout"
        assert 0.5 < waited < 5, waited
        # A connection that sends nothing at all is closed too.
        idle = _connect(served.base_url)
        idle.settimeout(10)
        assert idle.recv(1) == b""
        idle.close()


def test_a_body_that_stops_arriving_is_answered_408(tmp_path: Path) -> None:
    with hub_serve(
        f"sqlite:///{tmp_path / 'hub.db'}",
        tmp_path / "var",
        extra_args=["--read-timeout", "1"],
    ) as served:
        sock = _connect(served.base_url)
        sock.sendall(
            b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer " + served.tokens["jc-trier"].encode() + b"\r\n"
            b'Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{"type": '
        )
        sock.settimeout(10)
        status, _, body = _answer(sock)
        sock.close()
        assert status == 408
        assert _error_of(body)["code"] == "request_timeout"


def test_a_content_length_over_the_total_limit_is_413_on_any_route(
    served_sqlite: ServedProcess,
) -> None:
    sock = _connect(served_sqlite.base_url)
    sock.sendall(
        b"GET /v1/dashboard HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1073741824\r\n\r\n"
    )
    status, _, body = _answer(sock)
    sock.close()
    assert status == 413
    assert _error_of(body)["code"] == "too_large"


def test_an_http_request_the_parser_refuses_is_a_400_in_the_error_shape(
    served_sqlite: ServedProcess,
) -> None:
    sock = _connect(served_sqlite.base_url)
    sock.sendall(b"GET /v1/dashboard HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n")
    status, _, body = _answer(sock)
    sock.close()
    assert status == 400
    assert _error_of(body)["code"] == "malformed_request"


# ---- a client dropping mid-body is not the server's failure --------------------------------


def test_a_client_dropping_mid_body_is_logged_as_such_and_not_counted_as_a_500(
    served_sqlite: ServedProcess,
) -> None:
    base = served_sqlite.base_url
    for _ in range(3):
        sock = _connect(base)
        sock.sendall(
            b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer " + served_sqlite.tokens["jc-trier"].encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: 2000\r\n\r\n"
            b'{"message_id": "'
        )
        time.sleep(0.2)
        sock.close()
    deadline = time.monotonic() + 10
    while _metric(base, "/v1/messages", "499") < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _metric(base, "/v1/messages", "499") == 3
    assert _metric(base, "/v1/messages", "500") == 0
    lines = [json.loads(line) for line in served_sqlite.logs().splitlines() if line.startswith("{")]
    dropped = [line for line in lines if line.get("event") == "client_disconnected"]
    assert len(dropped) == 3, lines
    assert all(line["level"] in {"info", "warning"} for line in dropped)
    assert not [line for line in lines if line.get("level") in {"error", "critical"}], lines
    assert "Traceback" not in served_sqlite.logs()


# ---- content type, as_of, 405, redirects ---------------------------------------------------


def _note(agency: str, case_id: UUID) -> dict[str, Any]:
    return message("note.added", agency, case_id, {"text": "Rückruf", "category": "notes"})


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/xml", "multipart/form-data; boundary=x", "application/jsonx"],
)
def test_a_post_that_is_not_application_json_is_415(
    api: TestClient, hub: Hub, tokens: Tokens, content_type: str | None
) -> None:
    head = hub.app.recorder.max_notification_id()
    headers = tokens.of("jc-trier")
    if content_type is not None:
        headers["Content-Type"] = content_type
    body = json.dumps(_note("jc-trier", demo_id("s2/case")))
    response = api.post("/v1/messages", content=body, headers=headers)
    assert_error(response, 415, "unsupported_media_type")
    assert hub.app.recorder.max_notification_id() == head


def test_application_json_with_a_charset_is_json(api: TestClient, tokens: Tokens) -> None:
    body = json.dumps(_note("jc-trier", demo_id("s2/case")))
    headers = {**tokens.of("jc-trier"), "Content-Type": "Application/JSON; charset=utf-8"}
    response = api.post("/v1/messages", content=body, headers=headers)
    assert response.status_code in {201, 202}, response.text


@pytest.mark.parametrize(
    "as_of", ["1700000000", "1700000000.5", "-1", "0", "2026-12-01", "1e9", "20261201"]
)
def test_as_of_is_iso_8601_only(api: TestClient, tokens: Tokens, as_of: str) -> None:
    response = api.get(f"/v1/cases/{S4}/history", params={"as_of": as_of}, headers=tokens.audit())
    error = assert_error(response, 422, "invalid_request")
    assert any(d["path"].endswith("as_of") for d in error["details"]), error


@pytest.mark.parametrize("as_of", ["2026-12-01T00:00:00Z", "2026-12-01T01:00:00+01:00"])
def test_as_of_in_iso_8601_is_read(api: TestClient, tokens: Tokens, as_of: str) -> None:
    response = api.get(f"/v1/cases/{S4}/history", params={"as_of": as_of}, headers=tokens.audit())
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/v1/messages", {"POST"}),
        ("DELETE", "/v1/messages", {"POST"}),
        ("PUT", "/v1/dashboard", {"GET"}),
        ("POST", f"/v1/cases/{S4}", {"GET"}),
    ],
)
def test_405_names_the_allowed_methods(
    api: TestClient, tokens: Tokens, method: str, path: str, allowed: set[str]
) -> None:
    response = api.request(method, path, headers=tokens.audit())
    assert_error(response, 405, "method_not_allowed")
    assert {m.strip() for m in response.headers["allow"].split(",")} >= allowed


@pytest.mark.parametrize("path", ["/v1/dashboard/", "/dashboard/", "/healthz/", f"/v1/cases/{S4}/"])
def test_a_trailing_slash_is_404_and_no_redirect_built_from_the_host_header(
    api: TestClient, tokens: Tokens, path: str
) -> None:
    response = api.get(
        path, headers={**tokens.audit(), "Host": "evil.example"}, follow_redirects=False
    )
    assert_error(response, 404, "not_found")
    assert "location" not in response.headers


# ---- security headers ------------------------------------------------------------------------


def test_every_html_answer_carries_the_security_headers(api: TestClient) -> None:
    page = api.get("/dashboard")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    directives = {d.strip().split()[0]: d.strip() for d in csp.split(";") if d.strip()}
    assert directives["default-src"] == "default-src 'none'"
    assert "'unsafe-inline'" not in csp
    assert directives["frame-ancestors"] == "frame-ancestors 'none'"
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    # The CSP allows no inline code, so the page carries none.
    assert "<script>" not in page.text
    assert "<style>" not in page.text
    for asset in ("/static/dashboard.js", "/static/dashboard.css"):
        assert asset in page.text
        served = api.get(asset)
        assert served.status_code == 200, asset
        assert served.headers["x-content-type-options"] == "nosniff"


def test_json_answers_carry_nosniff(api: TestClient, tokens: Tokens) -> None:
    for response in (
        api.get("/v1/dashboard", headers=tokens.audit()),
        api.get("/v1/dashboard"),
        api.get("/healthz"),
        api.get("/openapi.json"),
    ):
        assert response.headers["x-content-type-options"] == "nosniff"


def test_no_page_loads_code_from_elsewhere(api: TestClient) -> None:
    """FastAPI's /docs and /redoc pull JavaScript from a CDN into the hub's origin,
    where tokens are typed: they are off (the schema stays at /openapi.json)."""
    for path in ("/docs", "/redoc"):
        assert_error(api.get(path), 404, "not_found")
    assert api.get("/openapi.json").status_code == 200


# ---- unknown and uninvolved look alike to an agency ---------------------------------------


def test_reading_a_case_one_is_not_involved_in_answers_as_for_an_unknown_case(
    api: TestClient, tokens: Tokens
) -> None:
    unknown = uuid4()
    for suffix in ("", "/history"):
        hidden = api.get(f"/v1/cases/{S4}{suffix}", headers=tokens.of(OUTSIDER))
        absent = api.get(f"/v1/cases/{unknown}{suffix}", headers=tokens.of(OUTSIDER))
        assert hidden.status_code == absent.status_code == 404, (hidden.text, absent.text)
        assert _without(S4, assert_error(hidden, 404, "case_not_found")) == _without(
            unknown, assert_error(absent, 404, "case_not_found")
        )


@pytest.mark.parametrize("case", [S4, S3], ids=["open", "closed"])
def test_writing_to_a_case_one_is_not_involved_in_answers_as_for_an_unknown_case(
    api: TestClient, hub: Hub, tokens: Tokens, case: UUID
) -> None:
    head = hub.app.recorder.max_notification_id()
    unknown = uuid4()
    hidden = api.post("/v1/messages", json=_note(OUTSIDER, case), headers=tokens.of(OUTSIDER))
    absent = api.post("/v1/messages", json=_note(OUTSIDER, unknown), headers=tokens.of(OUTSIDER))
    assert _without(case, assert_error(hidden, 404, "case_not_found")) == _without(
        unknown, assert_error(absent, 404, "case_not_found")
    )
    assert hub.app.recorder.max_notification_id() == head


def test_the_lead_still_hears_that_a_transfer_target_is_not_involved(
    api: TestClient, tokens: Tokens
) -> None:
    """The sender is involved: the rule's own answer tells it nothing it may not know."""
    body = message("lead.transferred", "jc-erzgebirge", S4, {"to_agency": OUTSIDER, "reason": "x"})
    body["occurred_at"] = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    response = api.post("/v1/messages", json=body, headers=tokens.of("jc-erzgebirge"))
    assert_error(response, 409, "not_involved")


def test_an_auditor_gets_404_only_for_an_unknown_case(api: TestClient, tokens: Tokens) -> None:
    assert api.get(f"/v1/cases/{S4}", headers=tokens.audit()).status_code == 200
    assert_error(api.get(f"/v1/cases/{uuid4()}", headers=tokens.audit()), 404, "case_not_found")


# ---- concurrency: one message id at once, sixteen writers on one case ----------------------


def _post_raw(conn: http.client.HTTPConnection, body: bytes, token: str) -> tuple[int, bytes]:
    conn.request(
        "POST",
        "/v1/messages",
        body=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    response = conn.getresponse()
    return response.status, response.read()


def _in_threads(count: int, work: Any) -> list[Any]:
    results: list[Any] = [None] * count
    start = threading.Barrier(count)

    def run(i: int) -> None:
        start.wait()
        results[i] = work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    return results


@pytest.fixture
def served_store(database_url: str, tmp_path: Path) -> Iterator[ServedProcess]:
    """``hub serve --demo`` on each store."""
    with hub_serve(database_url, tmp_path / "var") as served:
        yield served


@pytest.mark.slow
def test_one_message_id_sent_at_once_from_many_clients_is_recorded_once(
    served_store: ServedProcess, database_url: str, tmp_path: Path
) -> None:
    base, token = served_store.base_url, served_store.tokens["jc-trier"]
    case_id = uuid4()
    conn = http.client.HTTPConnection(*_address(base), timeout=60)
    assert _post_raw(conn, json.dumps(opened("jc-trier", case_id)).encode(), token)[0] == 201
    conn.close()
    for _ in range(5):
        body = json.dumps(_note("jc-trier", case_id)).encode()

        def send(_: int, body: bytes = body) -> tuple[int, float, dict[str, Any]]:
            client = http.client.HTTPConnection(*_address(base), timeout=60)
            began = time.perf_counter()
            status, raw = _post_raw(client, body, token)
            client.close()
            return status, time.perf_counter() - began, json.loads(raw)

        answers = _in_threads(8, send)
        statuses = Counter(status for status, _, _ in answers)
        assert statuses[201] + statuses[202] == 1, answers
        assert statuses[200] == 7, answers
        assert len({answer["position"] for _, _, answer in answers}) == 1, answers
        # Bounded (no deadlock); the store-level proof of "no retry pause" is
        # tests/integration/test_store_errors.py.
        assert max(seconds for _, seconds, _ in answers) < 30, answers
    hub = build_hub(Settings(database_url=database_url, var_dir=tmp_path / "var"))
    try:
        assert len(hub.app.store.select_case_events(case_id)) == 1 + 5
    finally:
        hub.close()


WRITERS = 16
NOTES_EACH = 20


@pytest.mark.slow
def test_sixteen_writers_on_one_case_get_no_conflict_from_one_server_process(
    served_store: ServedProcess, database_url: str, tmp_path: Path
) -> None:
    base, token = served_store.base_url, served_store.tokens["jc-trier"]
    case_id = uuid4()
    first = http.client.HTTPConnection(*_address(base), timeout=60)
    assert _post_raw(first, json.dumps(opened("jc-trier", case_id)).encode(), token)[0] == 201
    first.close()

    def writer(_: int) -> list[tuple[int, float]]:
        conn = http.client.HTTPConnection(*_address(base), timeout=60)
        answers = []
        for _ in range(NOTES_EACH):
            began = time.perf_counter()
            status, _raw = _post_raw(conn, json.dumps(_note("jc-trier", case_id)).encode(), token)
            answers.append((status, time.perf_counter() - began))
        conn.close()
        return answers

    answers = [answer for answers in _in_threads(WRITERS, writer) for answer in answers]
    statuses = Counter(status for status, _ in answers)
    latencies = sorted(seconds for _, seconds in answers)
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    print(
        f"\n{WRITERS} writers x {NOTES_EACH}: {dict(statuses)} p50 {p50 * 1000:.0f} ms "
        f"p99 {p99 * 1000:.0f} ms"
    )
    assert statuses[409] == 0, statuses
    assert statuses[201] + statuses[202] == WRITERS * NOTES_EACH, statuses
    hub = build_hub(Settings(database_url=database_url, var_dir=tmp_path / "var"))
    try:
        assert len(hub.app.store.select_case_events(case_id)) == 1 + WRITERS * NOTES_EACH
    finally:
        hub.close()


def test_an_agencys_own_token_still_reads_its_case(api: TestClient, tokens: Tokens) -> None:
    """The uninvolved answer changed; the involved one did not."""
    own = api.get(f"/v1/cases/{S4}", headers=bearer(tokens.agencies["jc-erzgebirge"]))
    assert own.status_code == 200, own.text
