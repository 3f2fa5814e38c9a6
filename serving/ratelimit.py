"""A per-client limit on failed token attempts: past `max_failures` within a sliding window, wait.

Only failures are recorded, so a client presenting correct tokens is never limited. The state is
in memory, per process: each uvicorn worker keeps its own (the effective limit is `workers` times
the setting), and a restart forgets it; enough to make guessing slow, without a shared store.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

WINDOW_SECONDS = 60.0
# Clients remembered at once: past it, clients whose failures have all expired are forgotten first,
# then the least recently failing, so a flood of addresses cannot grow the process without bound.
MAX_CLIENTS = 10_000


class FailureLimiter:
    """Counts each client's failures within the last `window_seconds` and says how long it must wait.

    Thread-safe: the API checks tokens on the event loop and in worker threads (the login form).

    Args:
        max_failures: failures a client may have within the window; at this many it must wait.
        window_seconds: how long a failure counts.
        clock: seconds from a monotonic clock (tests pass a fake one).
    """

    def __init__(
        self,
        max_failures: int,
        window_seconds: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1:
            raise ValueError(f"max_failures must be at least 1, got {max_failures}")
        if window_seconds <= 0:
            raise ValueError(f"window_seconds must be positive, got {window_seconds}")
        self.max_failures = max_failures
        self.window_seconds = window_seconds
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> int | None:
        """Whole seconds until `client` may try again, or None when it may try now."""
        with self._lock:
            now = self._clock()
            failures = self._recent(client, now)
            if failures is None or len(failures) < self.max_failures:
                return None
            return max(1, math.ceil(failures[0] + self.window_seconds - now))

    def record_failure(self, client: str) -> None:
        """Count one failed attempt of `client` now."""
        with self._lock:
            now = self._clock()
            failures = self._recent(client, now)
            if failures is None:
                if len(self._failures) >= MAX_CLIENTS:
                    self._forget_some(now)
                failures = self._failures[client] = deque()
            else:  # most recently failing last: the first ones are the first to forget
                self._failures[client] = self._failures.pop(client)
            failures.append(now)
            while len(failures) > self.max_failures:
                failures.popleft()

    def _recent(self, client: str, now: float) -> deque[float] | None:
        failures = self._failures.get(client)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window_seconds:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return None
        return failures

    def _forget_some(self, now: float) -> None:
        for client in [c for c, f in self._failures.items() if f[-1] <= now - self.window_seconds]:
            del self._failures[client]
        while len(self._failures) >= MAX_CLIENTS:
            del self._failures[next(iter(self._failures))]
