"""The bad-token limiter's arithmetic (HTTP behaviour: tests/e2e/test_http_tokens.py)."""

from __future__ import annotations

from services.api.bad_tokens import BadTokenLimiter


def test_past_the_limit_a_client_waits_until_its_window_ends() -> None:
    limiter = BadTokenLimiter(limit=3, window=60.0, max_clients=10)
    for second in (0.0, 1.0, 2.0):
        assert limiter.retry_after("a", second) == 0
        limiter.failed("a", second)
    assert limiter.retry_after("a", 2.5) == 58  # rounded up: never "0 s"
    assert limiter.retry_after("a", 59.9) == 1
    assert limiter.retry_after("b", 2.5) == 0
    assert limiter.retry_after("a", 60.0) == 0  # a new window
    assert len(limiter) == 0
    limiter.failed("a", 61.0)
    assert limiter.retry_after("a", 61.0) == 0


def test_the_table_forgets_the_client_that_failed_longest_ago() -> None:
    limiter = BadTokenLimiter(limit=1, window=60.0, max_clients=3)
    for n, peer in enumerate(["a", "b", "c"]):
        limiter.failed(peer, float(n))
    limiter.failed("a", 3.0)  # a failed again: b is now the oldest
    limiter.failed("d", 4.0)
    assert len(limiter) == 3
    assert limiter.retry_after("b", 5.0) == 0
    assert all(limiter.retry_after(peer, 5.0) > 0 for peer in ("a", "c", "d"))
    for n in range(10_000):
        limiter.failed(f"10.{n}", 6.0)
    assert len(limiter) == 3
