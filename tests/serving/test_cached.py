"""`serving.results.Cached`: the first read computes; past its age the value is recomputed in the background."""

from __future__ import annotations

import threading
import time

from serving.results import Cached


def test_a_stale_value_is_served_while_it_is_recomputed_and_a_failure_keeps_it() -> None:
    # given a cached value whose recomputation blocks until released, then fails once
    release = threading.Event()
    calls: list[int] = []

    def compute() -> int:
        calls.append(len(calls))
        if len(calls) == 2:
            release.wait(30)
        if len(calls) == 3:
            raise RuntimeError("the database is away")
        return len(calls)

    cached = Cached(compute, seconds=0.05)
    assert cached.get() == 1
    # when it is read past its age while the recomputation has not finished
    time.sleep(0.1)
    started = time.monotonic()
    assert cached.get() == 1
    assert time.monotonic() - started < 1.0
    # then the new value arrives once computed
    release.set()
    deadline = time.monotonic() + 10
    while cached.get() != 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cached.get() == 2
    # and a failing recomputation keeps the last value; the next one replaces it
    time.sleep(0.1)
    assert cached.get() == 2
    deadline = time.monotonic() + 10
    while cached.get() != 4 and time.monotonic() < deadline:
        time.sleep(0.06)
    assert cached.get() == 4


def test_an_age_of_zero_recomputes_on_every_read() -> None:
    values = iter(range(10))
    cached = Cached(lambda: next(values), seconds=0)
    assert [cached.get() for _ in range(3)] == [0, 1, 2]
