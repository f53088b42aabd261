"""Retries with backoff and a circuit breaker for calls to an upstream LLM server."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

from ..errors import CircuitOpenError


@dataclass
class CircuitBreaker:
    """Closed: calls go through. After `threshold` consecutive failures it opens for `cooldown_s`
    (calls fail at once); then one trial call is let through (half-open) and its outcome decides."""

    threshold: int = 5
    cooldown_s: float = 30.0
    clock: Callable[[], float] = time.monotonic  # injectable, so tests need not sleep

    def __post_init__(self) -> None:
        if self.threshold < 1:
            raise ValueError(f"threshold must be greater than 0, got {self.threshold}")
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> str:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            return "half-open" if self.clock() - self._opened_at >= self.cooldown_s else "open"

    def before_call(self) -> None:
        with self._lock:
            if self._opened_at is None:
                return
            if self.clock() - self._opened_at < self.cooldown_s or self._trial_running:
                raise CircuitOpenError(f"LLM server failed {self._failures} times in a row; "
                                       f"not calling it for up to {self.cooldown_s:g}s")
            self._trial_running = True

    def abandon(self) -> None:
        """A call that ended with neither outcome (cancelled): free the half-open trial slot."""
        with self._lock:
            self._trial_running = False

    def record_success(self) -> None:
        with self._lock:
            self._failures, self._opened_at, self._trial_running = 0, None, False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            self._trial_running = False
            if self._failures >= self.threshold:
                self._opened_at = self.clock()


def retry_delay(attempt: int, retry_after: str | None, base_s: float = 0.25, cap_s: float = 4.0) -> float:
    """Exponential backoff (0.25 s, 0.5 s, 1 s, ...), or the server's Retry-After when it sends one."""
    if retry_after:
        try:
            return min(max(float(retry_after), 0.0), cap_s)
        except ValueError:
            pass
    return min(base_s * 2 ** attempt, cap_s)


RETRYABLE_STATUS = {429, 500, 502, 503, 504}
