"""Per-client rate limiting (token bucket, 429 + Retry-After) and load shedding (503 + Retry-After)
for the API routes, so overload is refused quickly instead of queueing without bound.

The client is `scope["client"]`: the TCP peer, or the address a trusted proxy forwarded (see
proxies.ClientAddress); a client cannot pick its own bucket by sending X-Forwarded-For."""
from __future__ import annotations

import math
import time
from typing import Callable

from .limits import send_error

API_PREFIXES = ("/ask", "/search", "/documents", "/v1/")


class TokenBucket:
    __slots__ = ("tokens", "stamp")

    def __init__(self, burst: int, now: float):
        self.tokens = float(burst)
        self.stamp = now


class InFlight:
    """How many API requests are being served now: counted by the guard, read by routes that do
    their work on the event loop when theirs is the only one (server/query_api.py)."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


class Guard:
    def __init__(self, app, *, rate: float, burst: int, max_inflight: int, metrics=None,
                 clock: Callable[[], float] = time.monotonic, inflight: InFlight | None = None):
        self.app = app
        self.clock = clock
        self.rate, self.burst, self.max_inflight = rate, burst, max_inflight
        self.metrics = metrics
        self.buckets: dict[str, TokenBucket] = {}
        self.counter = inflight or InFlight()
        self._last_prune = clock()

    @property
    def inflight(self) -> int:
        return self.counter.count

    def _take(self, client: str) -> float:
        """0 when the client may go ahead, else seconds until it may."""
        now = self.clock()
        bucket = self.buckets.get(client)
        if bucket is None:
            bucket = self.buckets[client] = TokenBucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        if now - self._last_prune > 60:  # forget clients whose bucket has refilled
            self._last_prune = now
            full = [k for k, b in self.buckets.items() if b.tokens + (now - b.stamp) * self.rate >= self.burst]
            for k in full:
                if k != client:
                    del self.buckets[k]
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate

    async def __call__(self, scope, receive, send):
        if (scope["type"] != "http" or scope["method"] == "OPTIONS"
                or not scope["path"].startswith(API_PREFIXES)):
            return await self.app(scope, receive, send)
        if self.rate > 0:
            client = (scope.get("client") or ("unknown", 0))[0]
            wait = self._take(client)
            if wait > 0:
                return await self._refuse(scope, send, 429, "rate limited: too many requests from this client",
                                          math.ceil(wait), "rate_limited")
        counter = self.counter
        if counter.count >= self.max_inflight:
            return await self._refuse(scope, send, 503, "server is overloaded; retry shortly", 1, "overloaded")
        counter.count += 1
        try:
            await self.app(scope, receive, send)
        finally:
            counter.count -= 1

    async def _refuse(self, scope, send, status: int, detail: str, retry_after: int, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.rejected.labels(reason).inc()
        await send_error(send, scope["path"], status, detail, [(b"retry-after", str(max(1, retry_after)).encode())])
