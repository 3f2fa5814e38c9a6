"""The locust users of benchmarks/serving_load.py (run by it as `locust -f` in a process of its own).

Each user sends requests at a constant throughput (`BENCH_USER_RATE` per second, locust's
`constant_throughput`: the wait after a request is what is left of its 1/rate slot, each user at
a random phase so that arrivals spread evenly over the second), choosing the
route at random with the weights of `BENCH_MIX` (e.g. "churn=4,recommendations=4,healthz=1,hello=1").
Every request made after spawning completed is recorded raw (route, status, milliseconds; status 0:
no response) and written to `BENCH_SAMPLES_FILE` when the test stops, so the driver computes exact
percentiles and counts 503s apart from other errors (locust's own tables round the times).
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

import gevent
from locust import FastHttpUser, constant_throughput, events, task

TOKEN = os.environ.get("BENCH_TOKEN", "")
CUSTOMERS = Path(os.environ.get("BENCH_CUSTOMERS_FILE", "/dev/null")).read_text().split()
USER_RATE = float(os.environ.get("BENCH_USER_RATE", "1"))
MIX = {
    k: float(v) for k, v in (part.split("=") for part in os.environ.get("BENCH_MIX", "hello=1").split(","))
}
SAMPLES_FILE = os.environ.get("BENCH_SAMPLES_FILE", "samples.json")
AUTH = {"Authorization": f"Bearer {TOKEN}"}

samples: dict[str, list[list[float]]] = {}  # route -> [status, ms] pairs
window: dict[str, float] = {}  # when recording started and stopped (time.time)


@events.spawning_complete.add_listener
def _start_recording(**_: Any) -> None:
    samples.clear()  # the ramp-up (all users starting within a second) is not measured
    window["start"] = time.time()


@events.request.add_listener
def _record(name: str, response_time: float, response: Any = None, **_: Any) -> None:
    if "start" in window:
        status = getattr(response, "status_code", 0) or 0
        samples.setdefault(name, []).append([status, round(response_time, 3)])


@events.test_stop.add_listener
def _write(**_: Any) -> None:
    window["stop"] = time.time()
    Path(SAMPLES_FILE).write_text(json.dumps({"window": window, "samples": samples}))


class ApiUser(FastHttpUser):
    """One client of the API with one keep-alive connection; its requests are named by route."""

    wait_time = constant_throughput(USER_RATE)

    def on_start(self) -> None:
        # Locust starts every user at once: without a random phase each user's slot begins at the
        # same instant, and "200 requests/s" arrives as one burst of 200 every second.
        gevent.sleep(random.uniform(0, 1 / USER_RATE))

    @task
    def one_request(self) -> None:
        route = random.choices(list(MIX), weights=list(MIX.values()))[0]
        customer = random.choice(CUSTOMERS) if CUSTOMERS else "none"
        path, headers = {
            "churn": (f"/customers/{customer}/churn", AUTH),
            "recommendations": (f"/customers/{customer}/recommendations?k=10", AUTH),
            "healthz": ("/healthz", {}),
            "hello": ("/bench/hello", {}),
        }[route]
        self.client.get(path, name=route, headers=headers)
