"""How much a client may send, and how slowly: one value object for the HTTP server
(``server``: the request head) and the app (``messages``: the body)."""

from __future__ import annotations

from dataclasses import dataclass

from services.messages import MAX_MESSAGE_BYTES


@dataclass(frozen=True)
class HttpLimits:
    # The request line and every header together. A bearer token is 47 bytes; 16 KiB
    # is what h11 allows by default and more than any honest client sends.
    max_head_bytes: int = 16 * 1024
    # No route takes a body larger than one message (``Content-Length`` beyond it is
    # refused before the body is read; a chunked body is counted as it arrives).
    max_body_bytes: int = MAX_MESSAGE_BYTES
    # Seconds a client has to send a request's head, and, separately, its body.
    read_timeout: float = 30.0
