"""An answer leaves the server in one write: head and body together (issue 14).

uvicorn writes a response's head and its body apart, two system calls and two TCP
segments per answer; ``services.api.server`` holds the head of an answer with a
``Content-Length`` back until its body comes. Counted at the transport uvicorn
writes to, on a real server over a real socket, keep-alive, on both stores.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest

from services.api.app import create_app
from services.api.server import HubHttpProtocol, uvicorn_options
from services.bootstrap import Hub
from tests.factories import opened
from tests.http_helpers import Tokens, demo_tokens, free_port, wait_until_up


class CountingTransport:
    """The connection's transport, counting what is written through it."""

    def __init__(self, transport: asyncio.Transport, writes: list[bytes]) -> None:
        self._transport = transport
        self._writes = writes

    def write(self, data: bytes) -> None:
        self._writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


@pytest.fixture
def tokens(hub: Hub) -> Tokens:
    return demo_tokens(hub)


@pytest.fixture
def server(hub: Hub) -> Iterator[tuple[int, list[bytes]]]:
    """The app under uvicorn with the hub's protocol; every write to a connection's
    transport recorded."""
    import uvicorn

    app = create_app(hub)
    options = {**uvicorn_options(app), "timeout_graceful_shutdown": 2}
    protocol: type[HubHttpProtocol] = options["http"]
    writes: list[bytes] = []

    class Counted(protocol):  # type: ignore[valid-type,misc]
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(CountingTransport(transport, writes))  # type: ignore[arg-type]

    options["http"] = Counted
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", **options)
    uvicorn_server = uvicorn.Server(config)
    thread = threading.Thread(target=uvicorn_server.run, name="uvicorn-test", daemon=True)
    thread.start()
    try:
        wait_until_up(f"http://127.0.0.1:{port}")
        writes.clear()
        yield port, writes
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=15)


def _ask(conn: http.client.HTTPConnection, method: str, path: str, **kw: Any) -> tuple[int, bytes]:
    conn.request(method, path, **kw)
    response = conn.getresponse()
    return response.status, response.read()


def test_each_answer_is_one_write_head_and_body_together(
    server: tuple[int, list[bytes]], tokens: Tokens
) -> None:
    port, writes = server
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {**tokens.of("jc-trier"), "Content-Type": "application/json"}
    answers = [
        _ask(conn, "GET", "/healthz"),
        _ask(
            conn,
            "POST",
            "/v1/messages",
            body=json.dumps(opened("jc-trier", uuid4())),
            headers=headers,
        ),
        _ask(conn, "POST", "/v1/messages", body=b"{", headers=headers),  # a refusal: 422
        _ask(conn, "GET", "/v1/no-such-route"),  # the router's 404
    ]
    conn.close()
    assert [status for status, _ in answers] == [200, 201, 422, 404]
    assert len(writes) == len(answers), [w[:40] for w in writes]
    for (_, body), written in zip(answers, writes, strict=True):
        assert written.startswith(b"HTTP/1.1 ")
        assert written.endswith(b"\r\n\r\n" + body)  # the whole answer in that one write


def test_a_head_request_is_answered_with_its_head_alone(
    server: tuple[int, list[bytes]],
) -> None:
    port, writes = server
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("HEAD", "/healthz")
    response = conn.getresponse()
    response.read()
    status, body = _ask(conn, "GET", "/healthz")  # the connection still serves
    conn.close()
    assert response.status in (200, 405)
    assert status == 200
    assert len(writes) == 2
    assert writes[0].endswith(b"\r\n\r\n")  # no body for a HEAD, and not held back
    assert writes[1].endswith(body)
