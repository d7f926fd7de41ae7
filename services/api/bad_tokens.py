"""Clients that keep presenting bad tokens are answered 429 for a while.

Per peer address, at most ``limit`` bad tokens (unknown, expired or revoked) count
within a window of ``window`` seconds that starts with the first of them; past that,
until the window ends, a token not already known to be valid is answered 429 with
``Retry-After``, without reading the store. The table holds at most ``max_clients``
addresses, the one that failed longest ago forgotten first, so a flood from many
addresses costs bounded memory (at the price of forgetting the oldest offenders).
"""

from __future__ import annotations

import math
from collections import OrderedDict


class BadTokenLimiter:
    def __init__(self, limit: int = 20, window: float = 60.0, max_clients: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        # peer -> [start of its window, bad tokens in it]; least recently failing first.
        self._windows: OrderedDict[str, list[float]] = OrderedDict()

    def retry_after(self, peer: str, now: float) -> int:
        """Seconds ``peer`` must wait before a token of its is read again; 0: go on."""
        entry = self._windows.get(peer)
        if entry is None:
            return 0
        start, count = entry
        if now - start >= self.window:
            del self._windows[peer]
            return 0
        if count < self.limit:
            return 0
        return max(1, math.ceil(start + self.window - now))

    def failed(self, peer: str, now: float) -> None:
        """``peer`` presented a bad token at ``now``."""
        entry = self._windows.get(peer)
        if entry is None or now - entry[0] >= self.window:
            self._windows[peer] = [now, 1]
        else:
            entry[1] += 1
        self._windows.move_to_end(peer)
        while len(self._windows) > self.max_clients:
            self._windows.popitem(last=False)

    def __len__(self) -> int:
        return len(self._windows)
