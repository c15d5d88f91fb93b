"""A sliding-window rate limit per key (client IP and role) for what hands out tokens.

In memory, per process: the embedded platform and each service replica count their own
callers. That bounds guessing at one door; a deployment with many replicas behind a
gateway also limits at the gateway.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Hashable

from fastapi import HTTPException, Request, status


class RateLimiter:
    def __init__(self, limit: int, window_seconds: float, *, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window = window_seconds
        self._clock = clock
        self._hits: dict[Hashable, deque[float]] = {}
        # Bounded memory: a flood from many addresses cannot grow the table without end.
        self._max_keys = max_keys

    def hit(self, key: Hashable) -> float:
        """Count one request for ``key``; 0.0 when allowed, else the seconds until one is."""
        if self.limit <= 0:
            return 0.0
        now = self._clock()
        hits = self._hits.get(key)
        if hits is None:
            if len(self._hits) >= self._max_keys:
                self._forget_idle(now)
            hits = self._hits[key] = deque()
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            return max(hits[0] + self.window - now, 0.001)
        hits.append(now)
        return 0.0

    def _forget_idle(self, now: float) -> None:
        for key in [k for k, hits in self._hits.items() if not hits or hits[-1] <= now - self.window]:
            del self._hits[key]
        if len(self._hits) >= self._max_keys:  # all busy: drop the oldest half rather than grow
            for key in list(self._hits)[: self._max_keys // 2]:
                del self._hits[key]


def client_ip(request: Request) -> str:
    # The peer address: uvicorn already replaces it with X-Forwarded-For from trusted proxies only,
    # so a caller cannot pick a fresh address per request by sending the header itself.
    return request.client.host if request.client else "unknown"


def login_limiter(request: Request) -> RateLimiter:
    """The app's limiter for token-issuing endpoints, built from its settings on first use."""
    state = request.app.state
    limiter = getattr(state, "login_limiter", None)
    if limiter is None:
        settings = state.settings
        limiter = state.login_limiter = RateLimiter(settings.login_rate_limit, settings.login_rate_window_seconds)
    return limiter


def check_login_rate(request: Request, *parts: str) -> None:
    """429 with Retry-After when this client IP (and ``parts``, e.g. the role asked for) asked too often."""
    limiter = login_limiter(request)
    wait = limiter.hit((client_ip(request), *parts))
    if wait:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                            f"登录过于频繁，请 {math.ceil(wait)} 秒后再试 (too many logins; retry in "
                            f"{math.ceil(wait)} s)",
                            headers={"Retry-After": str(math.ceil(wait))})
