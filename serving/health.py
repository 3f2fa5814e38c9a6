"""The database check behind `/healthz`, run in a thread of its own so that liveness never waits on it.

`/healthz` must answer in milliseconds while every worker thread is busy, so it reads the last
result instead of querying: a daemon thread runs `SELECT 1` every `interval_seconds`. A result
older than three intervals (the check itself hangs) counts as the database not answering.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import Engine, text

log = logging.getLogger("retention.serving")

HEALTH_CHECK_SECONDS = 5.0  # how stale /healthz's view of the database may be
STALE_AFTER_CHECKS = 3


class DatabaseProbe:
    """The database's last answer to `SELECT 1`, refreshed in the background.

    Args:
        engine: the database.
        interval_seconds: time between two checks.
    """

    def __init__(self, engine: Engine, interval_seconds: float = HEALTH_CHECK_SECONDS) -> None:
        self.engine = engine
        self.interval_seconds = interval_seconds
        self._answered_at: float | None = None  # monotonic time of the last successful check
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Check once now, then every interval in a daemon thread until `stop`."""
        self.check()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="database-probe", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background checks (waits at most one interval for the thread)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_seconds)
            self._thread = None

    def check(self) -> bool:
        """Query the database now and record the answer; True when it answered."""
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception:  # the probe's whole purpose is to report this, not to raise it
            log.exception("health check: the database does not answer")
            self._answered_at = None
            return False
        self._answered_at = time.monotonic()
        return True

    @property
    def healthy(self) -> bool:
        """Whether the database answered within the last few intervals (no query: a cached value)."""
        answered = self._answered_at
        return (
            answered is not None and time.monotonic() - answered <= STALE_AFTER_CHECKS * self.interval_seconds
        )

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            self.check()
