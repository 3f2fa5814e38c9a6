"""Overload control: the in-flight bound answers 503 + Retry-After, /healthz answers while the workers are
saturated (from the cached database check of `serving.health`), requests over their time budget or whose
client left are abandoned and free their slot; `retention serve`'s worker count is a setting.

The guard runs in real uvicorn on loopback (a thread of the test process) in front of small apps whose
handlers block until the test lets them go, so "saturated" is a state the test controls, not a race.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import create_engine

from serving.app import create_app
from serving.health import DatabaseProbe
from serving.overload import RETRY_AFTER_SECONDS, OverloadGuard
from serving.settings import ServingSettings, ServingSettingsError
from tests.serving.conftest import ADMIN_TOKEN, MARKETING_TOKEN, Served

WAIT = 10.0  # seconds a blocked handler or a test waits at most (never reached when the guard works)


@dataclass
class Gate:
    """Handlers wait on `release`; `entered` counts the ones that started, `finished` those that ended."""

    release: threading.Event = field(default_factory=threading.Event)
    entered: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    finished: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)

    def wait_entered(self, n: int = 1) -> None:
        for _ in range(n):
            assert self.entered.acquire(timeout=WAIT), "the handler never started"


def blocking(gate: Gate) -> Callable[[], dict[str, str]]:
    """A sync handler (run in the threadpool like the API's routes) that blocks until the gate opens."""

    def block() -> dict[str, str]:
        gate.entered.release()
        gate.release.wait(WAIT)
        gate.finished.append("block")
        return {"done": "block"}

    return block


def blocking_app(gate: Gate) -> FastAPI:
    """Sync and async routes that block on the gate, a fast route and a trivial async /healthz."""
    app = FastAPI()
    app.add_api_route("/block", blocking(gate))

    @app.get("/block-async")
    async def block_async() -> dict[str, str]:
        gate.entered.release()
        try:
            while not gate.release.is_set():
                await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            gate.cancelled.append("block-async")
            raise
        gate.finished.append("block-async")
        return {"done": "block-async"}

    @app.get("/fast")
    def fast() -> dict[str, str]:
        return {"done": "fast"}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def eventually(condition: Callable[[], bool]) -> bool:
    """Whether `condition` holds within WAIT seconds (the server finishes a request just after its reply)."""
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@contextmanager
def running(app: object) -> Iterator[str]:
    """The app under uvicorn on a free loopback port; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(WAIT)


@contextmanager
def in_background(url: str, **kwargs: object) -> Iterator[list[httpx.Response]]:
    """GET `url` in a thread; the list holds its response once the block exits."""
    responses: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: responses.append(httpx.get(url, timeout=WAIT, **kwargs)))  # type: ignore[arg-type]
    thread.start()
    try:
        yield responses
    finally:
        thread.join(WAIT)


@contextmanager
def guarded(
    max_concurrency: int = 1, timeout_seconds: float = WAIT
) -> Iterator[tuple[str, Gate, OverloadGuard]]:
    gate = Gate()
    guard = OverloadGuard(blocking_app(gate), max_concurrency, timeout_seconds)
    try:
        with running(guard) as url:
            yield url, gate, guard
    finally:
        gate.release.set()  # let any handler still blocked end, so the server stops


def test_a_full_worker_refuses_at_once_with_503_and_retry_after() -> None:
    with guarded(max_concurrency=2) as (url, gate, guard):
        # given both slots taken by blocked handlers
        with in_background(f"{url}/block") as first, in_background(f"{url}/block") as second:
            gate.wait_entered(2)
            # when a third request comes
            refused = httpx.get(f"{url}/fast", timeout=WAIT)
            # then it is refused without waiting for a slot, and says when to come back
            assert refused.status_code == 503
            assert refused.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
            assert "capacity" in refused.json()["detail"]
            assert not gate.finished  # nothing was released: the 503 did not wait for them
            gate.release.set()
        # and the admitted ones complete normally, after which the slots are free again
        assert [r.status_code for r in first + second] == [200, 200]
        assert guard.refused == 1 and eventually(lambda: guard.in_flight == 0)
        assert httpx.get(f"{url}/fast", timeout=WAIT).status_code == 200


def test_healthz_answers_while_every_slot_and_thread_is_busy() -> None:
    with guarded(max_concurrency=1) as (url, gate, _), in_background(f"{url}/block"):
        gate.wait_entered()
        assert httpx.get(f"{url}/fast", timeout=WAIT).status_code == 503  # saturated
        # /healthz is exempt from the bound: answered while the handler is still blocked
        health = httpx.get(f"{url}/healthz", timeout=WAIT)
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        assert not gate.finished
        gate.release.set()


def test_a_request_over_its_budget_gets_503_its_slot_is_freed_and_its_late_result_dropped() -> None:
    with guarded(max_concurrency=1, timeout_seconds=0.3) as (url, gate, guard):
        # given a sync handler that blocks past the budget
        started = time.monotonic()
        timed_out = httpx.get(f"{url}/block", timeout=WAIT)
        # then the client gets 503 at the budget, not when the handler ends
        assert timed_out.status_code == 503
        assert timed_out.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
        assert "budget" in timed_out.json()["detail"]
        assert time.monotonic() - started < WAIT / 2 and not gate.finished
        # and its slot is free although its thread still runs
        assert guard.abandoned == 1 and eventually(lambda: guard.in_flight == 0)
        assert httpx.get(f"{url}/fast", timeout=WAIT).status_code == 200 and not gate.finished
        # when the abandoned handler ends, its result goes nowhere and the server is fine
        gate.release.set()
        assert eventually(lambda: gate.finished == ["block"])
        assert httpx.get(f"{url}/fast", timeout=WAIT).status_code == 200


def test_awaiting_work_over_its_budget_is_cancelled() -> None:
    with guarded(max_concurrency=1, timeout_seconds=0.3) as (url, gate, guard):
        assert httpx.get(f"{url}/block-async", timeout=WAIT).status_code == 503
        # the handler was cancelled, not left running: it never finishes even once released
        assert eventually(lambda: gate.cancelled == ["block-async"])
        gate.release.set()
        time.sleep(0.1)
        assert gate.finished == [] and eventually(lambda: guard.in_flight == 0)


def test_a_request_whose_client_left_is_cancelled_and_frees_its_slot() -> None:
    with guarded(max_concurrency=1, timeout_seconds=6 * WAIT) as (url, gate, guard):
        # given a client that sends a request and hangs up while it is being handled
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=WAIT) as client:
            client.sendall(b"GET /block-async HTTP/1.1\r\nHost: test\r\n\r\n")
            gate.wait_entered()
        # then the handler is cancelled and the slot freed, long before the budget
        assert eventually(lambda: gate.cancelled == ["block-async"])
        assert guard.abandoned == 1 and eventually(lambda: guard.in_flight == 0)
        assert httpx.get(f"{url}/fast", timeout=WAIT).status_code == 200


def test_a_client_that_never_sends_its_body_gets_503_at_the_budget_and_frees_its_slot() -> None:
    with guarded(max_concurrency=1, timeout_seconds=0.3) as (url, _, guard):
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=WAIT) as client:
            # given a request announcing a body that never comes
            client.sendall(b"POST /fast HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\n")
            # then it is answered 503 once the budget is spent, and its slot is freed
            answer = client.recv(4096).decode()
        assert answer.startswith("HTTP/1.1 503") and "retry-after" in answer.lower()
        assert eventually(lambda: guard.in_flight == 0)
        assert httpx.get(f"{url}/fast", timeout=WAIT).status_code == 200


def test_the_api_app_is_guarded_and_its_healthz_exempt(served: Served) -> None:
    # given the real API with one slot and a blocking route added for the test
    gate = Gate()
    app = create_app(
        served.settings,
        ServingSettings(
            marketing_token=MARKETING_TOKEN,
            admin_token=ADMIN_TOKEN,
            max_concurrency=1,
            request_timeout_seconds=WAIT,
        ),
    )
    app.add_api_route("/test/block", blocking(gate))
    try:
        with running(app) as url, in_background(f"{url}/test/block"):
            gate.wait_entered()
            # when the only slot is taken, a customer route is refused and /healthz still answers
            refused = httpx.get(f"{url}/campaigns", headers={"Authorization": f"Bearer {MARKETING_TOKEN}"})
            assert refused.status_code == 503 and refused.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
            health = httpx.get(f"{url}/healthz", timeout=WAIT)
            assert health.status_code == 200 and health.json()["status"] == "ok"
            gate.release.set()
    finally:
        gate.release.set()


def test_worker_and_overload_settings_come_from_the_environment() -> None:
    env = {
        "RETENTION_API_WORKERS": "4",
        "RETENTION_API_MAX_CONCURRENCY": "16",
        "RETENTION_API_REQUEST_TIMEOUT_SECONDS": "2.5",
    }
    settings = ServingSettings.from_env(env)
    assert (settings.workers, settings.max_concurrency, settings.request_timeout_seconds) == (4, 16, 2.5)
    for name, bad in [
        ("RETENTION_API_WORKERS", "0"),
        ("RETENTION_API_MAX_CONCURRENCY", "1.5"),
        ("RETENTION_API_REQUEST_TIMEOUT_SECONDS", "0"),
        ("RETENTION_API_MAX_CONCURRENCY", "many"),
    ]:
        with pytest.raises(ServingSettingsError, match=name):
            ServingSettings.from_env({name: bad})


def test_the_guard_refuses_a_bound_below_one() -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        OverloadGuard(FastAPI(), max_concurrency=0, timeout_seconds=1)


def test_the_health_probe_caches_the_database_answer_and_expires_it(tmp_path: Path) -> None:
    # given a probe on a database that answers, checked in the background every 50 ms
    probe = DatabaseProbe(create_engine(f"sqlite:///{tmp_path / 'ok.db'}"), interval_seconds=0.05)
    probe.start()
    try:
        assert probe.healthy
    finally:
        probe.stop()
    # when the checks stop, the last answer expires after a few intervals
    assert eventually(lambda: not probe.healthy)
    # and a database that does not answer is reported at once
    broken = DatabaseProbe(create_engine(f"sqlite:///{tmp_path / 'missing' / 'x.db'}"), interval_seconds=60)
    assert broken.check() is False and not broken.healthy
