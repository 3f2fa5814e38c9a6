"""Benchmark: latency of GET /customers/{id}/recommendations?k=10 at a fixed request rate, over HTTP.

A platform like the test fixture (tests/trained_platform.py: 300 customers over 90 days, both
models trained and promoted) is built once under --cache; a rerun only measures. The API runs in
a uvicorn subprocess on a free loopback port (as `retention serve` runs it) and is loaded
open-loop: request i leaves at start + i / rate whatever the earlier ones' state, and its latency
is counted from that scheduled time, so queueing behind a slow request counts (no coordinated
omission). Customers are drawn at random (fixed seed) from the online store. Each run's p50/p99
is computed; the median over --repeats runs is reported. Each run is preceded by the baselines
(below), so that both see the same load of this shared machine.

Baselines in the same script, on the same customers and machine: the raw in-process model call
(`serving.customers.recommend`: the champion's scores from the customer's history, the inactive
products masked, the top 10) and the in-process handler (the same plus the warehouse reads), so
the HTTP figure splits into model, database and HTTP/server overhead.
Results go to benchmarks/results/serving.json.

Usage: python benchmarks/serving_latency.py [--rate 20] [--seconds 20] [--repeats 3] [--cache DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the platform builder lives with the tests (tests/trained_platform.py)

from feature_store.events import read_customer_log  # noqa: E402
from pipelines.campaigns.score import active_products  # noqa: E402
from retention.db import create_db_engine  # noqa: E402
from retention.settings import Settings  # noqa: E402
from serving.customers import recommend  # noqa: E402
from serving.models import ChampionModels  # noqa: E402
from tests.trained_platform import AS_OF, TrainedPlatform, build_platform  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "serving.json"
K = 10
TOKEN = "benchmark-marketing-token"
SEED = 7
STARTUP_SECONDS = 120  # the server loads both champions before it answers
BASELINE_CALLS = 400  # in-process calls per baseline
WARMUP_REQUESTS = 20
PERCENTILES = (50, 99)


def platform_at(cache: Path) -> TrainedPlatform:
    """The fixture-like platform under `cache`, built on first use."""
    marker = cache / "built"  # written last: a half-built cache is rebuilt
    if marker.exists():
        return TrainedPlatform(cache / "home", cache / "params.yaml", AS_OF)
    print(f"building the platform under {cache} (about a minute) ...", flush=True)
    built = build_platform(cache)
    # The builder's CLI runs bound log handlers to streams it has closed since; log to stderr again.
    logging.basicConfig(force=True, level=logging.WARNING)
    marker.write_text(f"{built.home}\n")
    return built


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(built: TrainedPlatform, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        **built.env,
        "RETENTION_API_MARKETING_TOKEN": TOKEN,
        "RETENTION_API_ADMIN_TOKEN": TOKEN + "-admin",
    }
    command = [sys.executable, "-m", "uvicorn", "serving.app:create_app", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"]
    server = subprocess.Popen(command, env=env, cwd=ROOT)
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if server.poll() is not None:
            raise RuntimeError(f"the API exited with {server.returncode}")
        time.sleep(0.5)
    server.kill()
    raise RuntimeError(f"the API did not answer within {STARTUP_SECONDS}s")


def summary(milliseconds: list[float]) -> dict[str, float]:
    values = np.asarray(milliseconds)
    return {f"p{q}_ms": round(float(np.percentile(values, q)), 2) for q in PERCENTILES} | {
        "max_ms": round(float(values.max()), 2),
        "n": len(values),
    }


async def open_loop(base_url: str, customers: list[str], rate: float, seconds: float) -> dict:
    """Send rate x seconds requests at fixed times; latency from each request's scheduled time."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=30) as client:
        for customer in customers[:WARMUP_REQUESTS]:
            await client.get(f"/customers/{customer}/recommendations", params={"k": K})

        async def one(customer: str, scheduled: float) -> None:
            nonlocal errors
            response = await client.get(f"/customers/{customer}/recommendations", params={"k": K})
            if response.status_code != 200:
                errors += 1
            latencies.append(1000 * (time.perf_counter() - scheduled))

        total = int(rate * seconds)
        start = time.perf_counter() + 0.1
        tasks = []
        for i in range(total):
            scheduled = start + i / rate
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            tasks.append(asyncio.create_task(one(customers[i % len(customers)], scheduled)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return summary(latencies) | {"errors": errors, "achieved_rate": round(total / elapsed, 2)}


def in_process(built: TrainedPlatform, customers: list[str]) -> dict[str, dict]:
    """The raw model call and the in-process handler, timed per call on the same customers."""
    settings = Settings.from_env(built.env)
    engine = create_db_engine(settings.database_url)
    model = ChampionModels(settings.mlflow_tracking_uri, refresh_seconds=3600).get("recommender").model
    active = active_products(engine)
    sample = customers[:BASELINE_CALLS]
    histories = {c: read_customer_log(engine, c) for c in sample}
    model_ms, handler_ms = [], []
    for customer in sample:
        started = time.perf_counter()
        recommend(model, histories[customer], customer, K, active, exclude_purchased=False)
        model_ms.append(1000 * (time.perf_counter() - started))
    for customer in sample:
        started = time.perf_counter()
        history = read_customer_log(engine, customer)
        recommend(model, history, customer, K, active_products(engine), exclude_purchased=False)
        handler_ms.append(1000 * (time.perf_counter() - started))
    engine.dispose()
    return {"model_call": summary(model_ms), "handler": summary(handler_ms)}


def online_customers(built: TrainedPlatform, n: int) -> list[str]:
    from sqlalchemy import text

    engine = create_db_engine(built.database_url)
    with engine.connect() as connection:
        ids = [r[0] for r in connection.execute(text("SELECT customer_id FROM online_features"))]
    engine.dispose()
    return [str(c) for c in np.random.default_rng(SEED).choice(ids, n)]


def median_of(runs: list[dict], key: str) -> float:
    return round(statistics.median(r[key] for r in runs), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second (open loop)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of one run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=ROOT / "var" / "bench" / "serving")
    args = parser.parse_args()

    built = platform_at(args.cache)
    load_before = round(os.getloadavg()[0], 2)
    customers = online_customers(built, max(int(args.rate * args.seconds), BASELINE_CALLS))
    port = free_port()
    server = start_server(built, port)
    runs, baselines = [], []
    try:
        for run in range(args.repeats):  # baselines and HTTP alternate: both see the same machine load
            print(f"run {run + 1}/{args.repeats}: in-process baselines ...", flush=True)
            baselines.append(in_process(built, customers))
            print(f"run {run + 1}/{args.repeats}: {args.rate:g} req/s for {args.seconds:g}s ...", flush=True)
            runs.append(
                asyncio.run(open_loop(f"http://127.0.0.1:{port}", customers, args.rate, args.seconds))
            )
            print(f"  p50 {runs[-1]['p50_ms']} ms, p99 {runs[-1]['p99_ms']} ms", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    model = [b["model_call"] for b in baselines]
    handler = [b["handler"] for b in baselines]
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            # the machine is shared: other work running meanwhile shows here and in the p99
            "load_average_1min": {"before": load_before, "after": round(os.getloadavg()[0], 2)},
        },
        "platform": "tests/trained_platform.py: 300 customers x 90 days, 400 products, both models promoted",
        "request": f"GET /customers/{{id}}/recommendations?k={K}",
        "load": {"rate_per_second": args.rate, "seconds_per_run": args.seconds, "repeats": args.repeats},
        "http": {
            "p50_ms_median": median_of(runs, "p50_ms"),
            "p99_ms_median": median_of(runs, "p99_ms"),
            "runs": runs,
        },
        "baseline_model_call": {
            "p50_ms_median": median_of(model, "p50_ms"),
            "p99_ms_median": median_of(model, "p99_ms"),
            "runs": model,
        },
        "in_process_handler": {
            "p50_ms_median": median_of(handler, "p50_ms"),
            "p99_ms_median": median_of(handler, "p99_ms"),
            "runs": handler,
        },
    }
    report["ratio_http_to_model_call_p50"] = round(
        report["http"]["p50_ms_median"] / report["baseline_model_call"]["p50_ms_median"], 1
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(
        json.dumps({k: v for k, v in report.items() if not isinstance(v, dict) or "runs" not in v}, indent=2)
    )
    for name in ("http", "baseline_model_call", "in_process_handler"):
        print(f"{name}: p50 {report[name]['p50_ms_median']} ms, p99 {report[name]['p99_ms_median']} ms")


if __name__ == "__main__":
    main()
