"""Benchmark: per-request latency of /churn and /recommendations before and after materialisation, and
the latency from an accepted event to the updated recommendations.

A platform like the test fixture (tests/trained_platform.py: 300 customers over 90 days, both
models trained and promoted) is built once under --cache. One uvicorn server on a free loopback
port (as `retention serve` runs it) answers every phase, so both sides of the comparison see the
same process and machine:
1. before: the online store holds no materialised result, so every answer is computed on demand
   (the champion runs on the customer's rows: the request path before materialisation); the
   compute budget is raised so that nothing is refused;
2. after: `task_materialise` (what the DAGs run) writes the answers; the same requests read them;
3. events: per customer, `POST /events` (a view after their last event), then
   `GET /recommendations` is polled every --poll-ms until the list changes: the time from the
   event's acceptance (its 202) to the first updated answer. Last, `POST /events` alone at
   each of --event-rates per second, open loop (latency from each request's scheduled time).
Requests of phases 1-2 are sequential (one at a time: service time, not queueing), over the same
customers drawn at random (fixed seed) from the online store, after a warm-up. Results go to
benchmarks/results/serving_materialised.json (with the machine's load: it is shared).

Usage: python benchmarks/serving_materialised.py [--requests 200] [--events 50] [--event-rates 50 200]
       [--event-seconds 5] [--online-store redis://127.0.0.1:6379/14] [--cache DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the platform builder lives with the tests (tests/trained_platform.py)

from api_server import free_port, start_uvicorn  # noqa: E402  (benchmarks/, the script's folder)

from retention.db import create_db_engine, upgrade  # noqa: E402
from retention.settings import Settings  # noqa: E402
from tests.trained_platform import AS_OF, TrainedPlatform, build_platform  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "serving_materialised.json"
TOKEN, EVENTS_TOKEN = "benchmark-marketing-token", "benchmark-events-token"
SEED = 11
K = 10
WARMUP = 10
PERCENTILES = (50, 90, 99)


def platform_at(cache: Path) -> TrainedPlatform:
    """The fixture-like platform under `cache`, built on first use; a fresh copy of its database per run."""
    marker = cache / "built"
    if not marker.exists():
        print(f"building the platform under {cache} (a few minutes) ...", flush=True)
        build_platform(cache)
        logging.basicConfig(force=True, level=logging.WARNING)
        shutil.copyfile(cache / "home" / "retention.db", cache / "pristine.db")
        marker.write_text("built\n")
    # every run starts from the trained platform without materialised results or posted events
    shutil.copyfile(cache / "pristine.db", cache / "home" / "retention.db")
    built = TrainedPlatform(cache / "home", cache / "params.yaml", AS_OF)
    upgrade(built.database_url)  # a cache built before the online-results table
    return built


def start_server(env: dict[str, str], port: int) -> subprocess.Popen:
    return start_uvicorn("serving.app:create_app", env, port)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summary(seconds: list[float]) -> dict[str, float]:
    ms = 1000 * np.asarray(seconds)
    return {f"p{q}_ms": round(float(np.percentile(ms, q)), 2) for q in PERCENTILES} | {
        "max_ms": round(float(ms.max()), 2),
        "n": len(ms),
    }


def timed_gets(client: httpx.Client, paths: list[str]) -> tuple[dict, int]:
    """Sequential GETs after a warm-up; (latency summary, non-200 answers)."""
    for path in paths[:WARMUP]:
        client.get(path)
    latencies, errors = [], 0
    for path in paths:
        started = time.perf_counter()
        response = client.get(path)
        latencies.append(time.perf_counter() - started)
        errors += response.status_code != 200
    return summary(latencies), errors


def event_to_update(
    client: httpx.Client, customers: list[str], last_events: dict[str, str], poll_ms: float
) -> dict:
    """Per customer: POST one view, then poll the recommendations until they change."""
    events_headers = {"Authorization": f"Bearer {EVENTS_TOKEN}"}
    lags, posts, unchanged = [], [], 0
    for i, customer in enumerate(customers):
        path = f"/customers/{customer}/recommendations"
        before = client.get(path, params={"k": K}).json()["recommendations"]
        product = before[-1]["product_id"]  # a product they are likely not to have just touched
        when = pd.Timestamp(last_events[customer]) + timedelta(hours=1, seconds=i)
        event = {"user_id": customer, "item_id": product, "ts": when.isoformat(), "event_type": "view"}
        started = time.perf_counter()
        response = client.post("/events", json={"events": [event]}, headers=events_headers)
        accepted = time.perf_counter()
        posts.append(accepted - started)
        if response.status_code != 202:
            raise RuntimeError(f"POST /events answered {response.status_code}: {response.text}")
        deadline = accepted + 10.0
        while True:
            after = client.get(path, params={"k": K}).json()["recommendations"]
            if after != before:
                lags.append(time.perf_counter() - accepted)
                break
            if time.perf_counter() > deadline:
                unchanged += 1
                break
            time.sleep(poll_ms / 1000)
    return {
        "event_to_updated_recommendations": summary(lags),
        "post_events": summary(posts),
        "unchanged": unchanged,
    }


async def post_open_loop(
    base_url: str, customers: list[str], products: list[str], rate: float, seconds: float, start_day: int = 0
) -> dict:
    """POST /events at a fixed rate (one view each, customers in turn); latency from the scheduled time."""
    headers = {"Authorization": f"Bearer {EVENTS_TOKEN}"}
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    base = pd.Timestamp("2026-06-01") + timedelta(days=start_day)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=30) as client:

        async def one(i: int, scheduled: float) -> None:
            event = {
                "user_id": customers[i % len(customers)],
                "item_id": products[i % len(products)],
                "ts": (base + timedelta(seconds=i)).isoformat(),
                "event_type": "view",
            }
            try:
                response = await client.post("/events", json={"events": [event]})
                code = str(response.status_code)
            except httpx.TransportError as error:  # the server dropped the connection: an error, counted
                code = type(error).__name__
            if code != "202":
                errors[code] = errors.get(code, 0) + 1
            latencies.append(time.perf_counter() - scheduled)

        total = int(rate * seconds)
        start = time.perf_counter() + 0.1
        tasks = []
        for i in range(total):
            scheduled = start + i / rate
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            tasks.append(asyncio.create_task(one(i, scheduled)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return summary(latencies) | {"errors": errors, "achieved_rate": round(total / elapsed, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="sequential requests per route and phase")
    parser.add_argument("--events", type=int, default=50, help="customers sent one event each (phase 3)")
    parser.add_argument("--poll-ms", type=float, default=5.0)
    parser.add_argument(
        "--event-rates",
        type=float,
        nargs="+",
        default=[50.0, 200.0],
        help="POST /events per second (open loop)",
    )
    parser.add_argument("--event-seconds", type=float, default=5.0)
    parser.add_argument("--max-concurrency", type=int, default=64, help="RETENTION_API_MAX_CONCURRENCY")
    parser.add_argument("--online-store", default=None, help="RETENTION_ONLINE_STORE (default: the database)")
    parser.add_argument("--cache", type=Path, default=ROOT / "var" / "bench" / "serving-materialised")
    args = parser.parse_args()

    built = platform_at(args.cache)
    env = {
        **os.environ,
        **built.env,
        "RETENTION_API_MARKETING_TOKEN": TOKEN,
        "RETENTION_API_ADMIN_TOKEN": TOKEN + "-admin",
        "RETENTION_API_EVENTS_TOKEN": EVENTS_TOKEN,
        "RETENTION_API_COMPUTE_BUDGET_SECONDS": "60",  # phase 1 computes every answer: refuse none
        "RETENTION_API_MODEL_REFRESH_SECONDS": "30",
        # POST /events awaits a group commit without holding a thread: more may be in flight at once
        "RETENTION_API_MAX_CONCURRENCY": str(args.max_concurrency),
    }
    if args.online_store:
        import redis

        redis.Redis.from_url(args.online_store).flushdb()
        env["RETENTION_ONLINE_STORE"] = args.online_store
    settings = Settings.from_env(env)
    engine = create_db_engine(built.database_url)
    online = (
        pd.read_sql("SELECT customer_id FROM online_features", engine)["customer_id"].astype(str).tolist()
    )
    rng = np.random.default_rng(SEED)
    sample = [str(c) for c in rng.choice(online, args.requests)]
    churn_paths = [f"/customers/{c}/churn" for c in sample]
    rec_paths = [f"/customers/{c}/recommendations?k={K}" for c in sample]
    load_before = round(os.getloadavg()[0], 2)
    port = free_port()
    server = start_server(env, port)
    report: dict = {}
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120
        ) as client:
            print("phase 1: on demand (nothing materialised) ...", flush=True)
            churn_before, churn_before_errors = timed_gets(client, churn_paths)
            recs_before, recs_before_errors = timed_gets(client, rec_paths)
            print("materialising ...", flush=True)
            from pipelines.materialise import task_materialise

            started = time.perf_counter()
            written = task_materialise(AS_OF, settings=settings)
            materialise_seconds = time.perf_counter() - started
            print("phase 2: materialised ...", flush=True)
            churn_after, churn_after_errors = timed_gets(client, churn_paths)
            recs_after, recs_after_errors = timed_gets(client, rec_paths)
            print("phase 3: events ...", flush=True)
            from feature_store.online_store import open_documents
            from pipelines.materialise import RECOMMENDATIONS

            documents = open_documents(settings.online_store_url, engine)
            movers = [str(c) for c in rng.choice(online, args.events, replace=False)]
            last = {
                c: d["last_event"] or AS_OF.isoformat()
                for c, d in documents.get_many(RECOMMENDATIONS, movers).items()
            }
            documents.close()
            events = event_to_update(client, movers, last, args.poll_ms)
            products = (
                pd.read_sql("SELECT product_id FROM wh_products", engine)["product_id"].astype(str).tolist()
            )
        open_loops = []
        for n, rate in enumerate(args.event_rates):  # each run's events are later than the previous run's
            print(f"POST /events at {rate:g}/s for {args.event_seconds:g}s ...", flush=True)
            cpu_before = cpu_seconds(server.pid)
            result = asyncio.run(
                post_open_loop(
                    f"http://127.0.0.1:{port}", online, products, rate, args.event_seconds, start_day=n
                )
            )
            time.sleep(2.0)  # the state updates of the last events finish
            # the server's CPU per event (HTTP, group commits, state updates): 1000 / it = the events
            # one core sustains, whatever else the machine runs
            cpu_ms = 1000 * (cpu_seconds(server.pid) - cpu_before) / result["n"]
            open_loops.append(
                {"rate_per_second": rate} | result | {"server_cpu_ms_per_event": round(cpu_ms, 2)}
            )
    finally:
        server.terminate()
        server.wait(timeout=30)
        engine.dispose()

    def ratio(before: dict, after: dict) -> float:
        return round(before["p50_ms"] / after["p50_ms"], 1)

    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            # the machine is shared with other work: its load shows here and in the tails
            "load_average_1min": {"before": load_before, "after": round(os.getloadavg()[0], 2)},
        },
        "platform": "tests/trained_platform.py: 300 customers x 90 days, 400 products, both models promoted",
        "online_store": "redis" if args.online_store else "platform database (SQLite)",
        "sequential_requests_per_phase": args.requests,
        "churn": {
            "on_demand": churn_before | {"errors": churn_before_errors},
            "materialised": churn_after | {"errors": churn_after_errors},
            "speedup_p50": ratio(churn_before, churn_after),
        },
        "recommendations": {
            "on_demand": recs_before | {"errors": recs_before_errors},
            "materialised": recs_after | {"errors": recs_after_errors},
            "speedup_p50": ratio(recs_before, recs_after),
        },
        "materialise": {"seconds": round(materialise_seconds, 1), "documents_written": written},
        "events": events | {"poll_ms": args.poll_ms, "customers": args.events},
        "post_events_open_loop": {
            "seconds_per_rate": args.event_seconds,
            "max_concurrency": args.max_concurrency,
            "runs": open_loops,
        },
    }
    suffix = "_redis" if args.online_store else ""
    path = RESULTS.with_name(RESULTS.stem + suffix + RESULTS.suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
