"""Accepted events -> the source tables (group commit) and the customers' online state (their lists).

`EventWriter` stores the events of concurrent `POST /events` requests together: one thread takes
every request waiting and writes them in one transaction (`pipelines.ingest.store_event_rows`),
then answers each, so at a high event rate a request waits for one commit, not for a queue of
them. `EventApplier` then updates the customers' recommendation lists in another thread: it
extends each stored tail of items with the new ones and rescores the lists of all customers of a
pass together (`pipelines.materialise.extended_lists`: one batch of state vectors, one multiply,
no history read). A customer without a current list (none yet, another champion or catalogue, an
event not later than the list's last) gets theirs from their whole source-table log
(`customer_list`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Any

import pandas as pd
from sqlalchemy import Engine

from feature_store.online_store import Documents
from pipelines.ingest import store_event_rows
from pipelines.materialise import RECOMMENDATIONS, ListContext, customer_list, extended_lists
from serving.models import NoChampion
from serving.results import ServedResults
from training.scoring import StateScorer

log = logging.getLogger("retention.serving")
MAX_BATCH = 256  # queued submissions applied in one pass
# The applier waits this long after an event for others to join its pass: a pass costs about the
# same for one customer as for fifty (one batch of states, one write: ~35 ms for ten, profiled), and
# it shares the process's one interpreter lock with the requests, so fewer passes leave more of it to
# them; 1 s is the budget from acceptance to the updated list.
GATHER_SECONDS = 0.2
LAGS_KEPT = 10_000  # acceptance -> list written, most recent ones
# The writer's commits and the applier's document writes take turns on this lock: on SQLite (the
# embedded default, one writer at a time) a write that finds the other's transaction open would
# sleep in SQLite's busy handler, up to 100 ms a try, instead of starting as soon as it is free.
DATABASE_WRITES = threading.Lock()


class _BatchingThread:
    """One daemon thread that takes queued items in batches of at most MAX_BATCH and hands them to `_handle`.

    Started by the first `_put`, stopped by `close` after what is queued (a later `_put` starts a
    new one: the app may be started again). After the first item it waits up to `gather_seconds`
    for more to join the batch.
    """

    thread_name = "batching"
    gather_seconds = 0.0

    def __init__(self) -> None:
        self._queue: queue.Queue[Any] = queue.Queue()
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None

    def _put(self, item: Any) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
                self._thread.start()
        self._queue.put(item)

    def close(self) -> None:
        """Stop the thread after the queued items."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self.gather_seconds
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(item)
            self._handle(batch)

    def _handle(self, batch: list[Any]) -> None:
        raise NotImplementedError


class EventApplier(_BatchingThread):
    """Applies accepted events to the customers' recommendation lists in one background thread.

    Args:
        engine: the platform database (the source tables, for a customer without a current list).
        documents: the online store's documents.
        results: the served answers (the champion and its list context).
    """

    thread_name = "event-applier"
    gather_seconds = GATHER_SECONDS

    def __init__(self, engine: Engine, documents: Documents, results: ServedResults) -> None:
        super().__init__()
        self.engine, self.documents, self.results = engine, documents, results
        self.lags: deque[float] = deque(maxlen=LAGS_KEPT)
        self._pending = 0
        self._scorer: tuple[tuple[str, str, str], StateScorer] | None = None

    def submit(self, events: list[dict[str, Any]], accepted_at: float | None = None) -> None:
        """Queue stored event rows (customer_id, product_id, event_type, ts, ...) for their customers' lists."""
        with self._lock:
            self._pending += 1
        self._put((time.monotonic() if accepted_at is None else accepted_at, events))

    def wait(self, timeout: float) -> bool:
        """Wait until every submitted event is applied; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: self._pending == 0, timeout)

    def _handle(self, batch: list[tuple[float, list[dict[str, Any]]]]) -> None:
        try:
            self._apply(pd.DataFrame([row for _, rows in batch for row in rows]))
            done = time.monotonic()
            self.lags.extend(done - accepted for accepted, _ in batch)
        except Exception:  # one bad batch must not stop real time for everyone; the events are stored
            log.exception("could not apply %d event submission(s) to the online state", len(batch))
        finally:
            with self._lock:
                self._pending -= len(batch)
                self._lock.notify_all()

    def _scorer_for(self, model: Any, context: ListContext) -> StateScorer:
        key = (context.name, context.version, context.catalogue)
        if self._scorer is None or self._scorer[0] != key:
            self._scorer = (key, StateScorer(model, context.allowed))
        return self._scorer[1]

    def _apply(self, events: pd.DataFrame) -> None:
        try:
            served = self.results.models.get("recommender")
        except NoChampion:
            return  # nothing is served yet: the events wait in the tables for the first materialisation
        context = self.results.list_context(served)
        scorer = self._scorer_for(served.model, context)
        customers = sorted(events["customer_id"].astype(str).unique())
        stored = {
            c: d
            for c, d in self.documents.get_many(RECOMMENDATIONS, customers).items()
            if context.is_fresh(d)
        }
        updated = extended_lists(served.model, context, stored, events, scorer)
        for customer in customers:
            if customer not in updated:
                updated[customer] = customer_list(self.engine, served.model, context, customer, scorer)
        with DATABASE_WRITES:
            self.documents.put_many(RECOMMENDATIONS, updated)


class EventWriter(_BatchingThread):
    """Stores the event rows of concurrent requests in one transaction per pass, in one thread.

    Args:
        engine: the platform database (the source tables).
    """

    thread_name = "event-writer"

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine

    def submit(self, rows: list[dict[str, Any]]) -> Future[int]:
        """Queue one request's rows; the future gives how many were new once they are committed."""
        future: Future[int] = Future()
        self._put((rows, future))
        return future

    def _handle(self, group: list[tuple[list[dict[str, Any]], Future[int]]]) -> None:
        try:
            with DATABASE_WRITES:
                counts = store_event_rows(self.engine, [rows for rows, _ in group])
        except Exception as error:  # every request of the group is told; none of its rows is stored
            log.exception("could not store %d event request(s)", len(group))
            for _, future in group:
                future.set_exception(error)
            return
        for (_, future), count in zip(group, counts, strict=True):
            future.set_result(count)
