"""Benchmark: shop-simulator throughput (events per second), generation alone and stored.

Generation is measured on a 100k-customer shop (median of repeated runs); storing is measured in
the same script on SQLite and PostgreSQL, so the ratio generation : storage is machine-independent.
Results go to benchmarks/results/simulator.json (quoted in README.md).

Usage: python benchmarks/simulator_throughput.py [--customers N] [--days D] [--repeats R]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from pipelines.simulate import build_world, simulate, simulate_days
from retention.db import create_db_engine, upgrade
from retention.db.scratch import private_schema
from retention.params import load_params

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "simulator.json"
POSTGRES_URL = os.environ.get(
    "RETENTION_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)
TARGET_EVENTS_PER_SECOND = 200_000  # issue 2: a 1M-customer shop in minutes


def generation(params, days: int, repeats: int) -> dict:  # noqa: ANN001
    rates, events = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        world = build_world(params, days)
        events = sum(len(day.events) for day in simulate_days(world, 0, days))
        rates.append(events / (time.perf_counter() - started))
    return {"events": events, "events_per_second_median": round(statistics.median(rates)), "runs": len(rates)}


def stored(url: str, params, days: int) -> dict:  # noqa: ANN001
    upgrade(url)
    engine = create_db_engine(url)
    try:
        with tempfile.TemporaryDirectory() as state:
            result = simulate(engine, Path(state), params, days)
    finally:
        engine.dispose()
    events = result.generated["events"]
    return {
        "events": events,
        "seconds": round(result.seconds, 2),
        "events_per_second": round(events / result.seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--store-customers", type=int, default=20_000, help="shop size for the storage runs")
    args = parser.parse_args()
    base = load_params(ROOT / "params.yaml").simulate
    big = base.model_copy(update={"customers": args.customers})
    small = base.model_copy(update={"customers": args.store_customers})

    print(f"generating {args.customers:,} customers x {args.days} days, {args.repeats} runs ...", flush=True)
    gen = generation(big, args.days, args.repeats)
    print(f"  median {gen['events_per_second_median']:,} events/s", flush=True)
    small_gen = generation(small, args.days, args.repeats)
    with tempfile.TemporaryDirectory() as folder:
        print("storing into SQLite ...", flush=True)
        sqlite = stored(f"sqlite:///{folder}/bench.db", small, args.days)
    print("storing into PostgreSQL ...", flush=True)
    with private_schema(POSTGRES_URL, prefix="bench") as url:
        postgres = stored(url, small, args.days)
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "generation": {"customers": args.customers, "days": args.days, **gen},
        "generation_small": {"customers": args.store_customers, "days": args.days, **small_gen},
        "stored_sqlite": {"customers": args.store_customers, "days": args.days, **sqlite},
        "stored_postgresql": {"customers": args.store_customers, "days": args.days, **postgres},
        "ratio_generation_to_target": round(gen["events_per_second_median"] / TARGET_EVENTS_PER_SECOND, 2),
        "ratio_generation_to_sqlite_store": round(
            small_gen["events_per_second_median"] / sqlite["events_per_second"], 1
        ),
        "ratio_generation_to_postgresql_store": round(
            small_gen["events_per_second_median"] / postgres["events_per_second"], 1
        ),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
