"""How fast accounts may be requested: a few per minute from one address, a few more in all.

Rules: every sign-up request counts (taken or not: a typo costs one, and each costs a bcrypt
hash), over a sliding minute. Past ``signup_per_address`` requests from one client address, or
``signup_per_minute`` from everyone, the request is refused with 429 and the seconds to wait.
The client address is the one the front proxy saw (the last ``X-Forwarded-For`` entry, which it
appends; a client cannot forge it), else the TCP peer. Counts live in the API's memory: a
restart forgets them.
"""

from __future__ import annotations

import math
import time
from collections import deque

from fastapi import Request

WINDOW = 60.0
MAX_ADDRESSES = 10_000  # beyond this, the addresses with no recent request are forgotten


def client_address(request: Request) -> str:
    forwarded = request.headers.get("x-forwarded-for", "")
    last = forwarded.rsplit(",", 1)[-1].strip()
    return last or (request.client.host if request.client else "unknown")


class SignupLimit:
    def __init__(self, per_address: int, per_minute: int) -> None:
        self.per_address, self.per_minute = per_address, per_minute
        self._all: deque[float] = deque()
        self._by_address: dict[str, deque[float]] = {}

    def check(self, address: str, now: float | None = None) -> str | None:
        """Count one request from ``address``; None if it may go on, else why not."""
        now = time.monotonic() if now is None else now
        horizon = now - WINDOW
        for q in (self._all, self._by_address.get(address, deque())):
            while q and q[0] <= horizon:
                q.popleft()
        mine = self._by_address.setdefault(address, deque())
        if len(mine) >= self.per_address:
            wait = math.ceil(mine[0] - horizon)
            return (
                f"too many sign-up requests from your address ({self.per_address} a minute):"
                f" try again in {wait} s"
            )
        if len(self._all) >= self.per_minute:
            wait = math.ceil(self._all[0] - horizon)
            return f"too many sign-up requests right now: try again in {wait} s"
        mine.append(now)
        self._all.append(now)
        if len(self._by_address) > MAX_ADDRESSES:
            self._by_address = {a: q for a, q in self._by_address.items() if q and q[-1] > horizon}
        return None
