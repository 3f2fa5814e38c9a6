"""Benchmark: materialise every customer feature from the warehouse, at 1M and 10M simulated events.

For each size the script simulates a shop (SQLite), copies it into the warehouse tables and into a
PostgreSQL schema, then times `feature_store.features_at` in fresh subprocesses (median of
--repeats runs), with each run's peak resident memory. As a same-machine baseline it also times
reading the raw rows alone, so the ratio total / read says what feature computation adds.
Shops are cached under --cache (SQLite files) and in PostgreSQL schemas `bench_features_<size>`,
so a rerun only measures. Results go to benchmarks/results/features.json (quoted in README.md).

Usage: python benchmarks/feature_materialisation.py [--sizes 1M,10M] [--repeats 3] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "features.json"
POSTGRES_URL = os.environ.get(
    "RETENTION_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)
# Simulated shops: customers x days giving about 1M and 10M events with the default behaviour.
SIZES = {"1M": (10_000, 340), "10M": (100_000, 340)}
TABLES = ("customers", "products", "orders", "events", "reviews")
TARGET_SECONDS, TARGET_GB = 120, 4.0  # issue 3: 100k customers / 10M events on 2 cores

MEASURE = """
import json, sys, time
from datetime import datetime
from retention.db import create_db_engine
from retention.params import load_params
from feature_store import features_at, read_frames
url, as_of, mode = sys.argv[1], datetime.fromisoformat(sys.argv[2]), sys.argv[3]
params = load_params(sys.argv[4]).features
engine = create_db_engine(url)
started = time.perf_counter()
result = read_frames(engine, as_of, params) if mode == "read" else features_at(engine, as_of, params)
seconds = time.perf_counter() - started
rows = len(result.events) if mode == "read" else len(result)
# VmHWM belongs to this process image; ru_maxrss would carry the parent's peak across exec.
status = open("/proc/self/status").read().split("VmHWM:")[1].split()
peak_gb = int(status[0]) / 1024**2
print(json.dumps({"seconds": seconds, "rows": rows, "peak_gb": peak_gb}))
"""


def prepare(label: str, cache: Path) -> tuple[str, str, str]:
    """The SQLite and PostgreSQL URLs of the size's warehouse (built if missing) and its as-of."""
    customers, days = SIZES[label]
    home = cache / label
    sqlite_path = home / "retention.db"
    schema = f"bench_features_{label.lower()}"
    env = {**os.environ, "RETENTION_HOME": str(home)}
    env.pop("RETENTION_DATABASE_URL", None)
    if not sqlite_path.exists():
        print(f"[{label}] simulating {customers:,} customers x {days} days ...", flush=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "cli.main",
                "simulate",
                "--customers",
                str(customers),
                "--days",
                str(days),
            ],
            env=env,
            check=True,
        )
        copy = "; ".join(f"INSERT INTO wh_{t} SELECT *, 'bench' FROM {t}" for t in TABLES)
        subprocess.run(["sqlite3", str(sqlite_path), copy], check=True)
    admin = create_engine(POSTGRES_URL)
    with admin.connect() as connection:
        present = connection.execute(
            text(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = :s AND table_name = 'wh_events'"
            ),
            {"s": schema},
        ).scalar_one()
    pg_url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    pg_url = pg_url.render_as_string(hide_password=False)
    if not present:
        print(f"[{label}] copying the warehouse into PostgreSQL schema {schema} ...", flush=True)
        from retention.db import upgrade

        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE; CREATE SCHEMA "{schema}"'))
        upgrade(pg_url)
        raw = admin.raw_connection()
        try:
            for table in TABLES:
                dump = subprocess.run(
                    ["sqlite3", "-csv", str(sqlite_path), f"SELECT * FROM wh_{table}"],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                import io

                with raw.cursor() as cursor:
                    cursor.execute(f'SET search_path = "{schema}"')
                    cursor.copy_expert(f"COPY wh_{table} FROM STDIN WITH (FORMAT csv)", io.StringIO(dump))
            raw.commit()
            with raw.cursor() as cursor:
                cursor.execute(f'SET search_path = "{schema}"; ANALYZE')
            raw.commit()
        finally:
            raw.close()
    with admin.connect() as connection:
        last = connection.execute(text(f'SELECT max(ts) FROM "{schema}".wh_events')).scalar_one()
    admin.dispose()
    as_of = (last.replace(hour=0, minute=0, second=0, microsecond=0)).isoformat()
    return f"sqlite:///{sqlite_path}", pg_url, as_of


def measure(url: str, as_of: str, mode: str) -> dict:
    """One run in a fresh process, so its peak memory is its own."""
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, url, as_of, mode, str(ROOT / "params.yaml")],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1M,10M", help=f"comma-separated, of {', '.join(SIZES)}")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--cache", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "bench-features"
    )
    args = parser.parse_args()
    results: dict = {}
    for label in args.sizes.split(","):
        sqlite_url, pg_url, as_of = prepare(label, args.cache)
        for backend, url in (("sqlite", sqlite_url), ("postgresql", pg_url)):
            reads = [measure(url, as_of, "read") for _ in range(args.repeats)]
            runs = [measure(url, as_of, "features") for _ in range(args.repeats)]
            total = statistics.median(r["seconds"] for r in runs)
            read = statistics.median(r["seconds"] for r in reads)
            entry = {
                "as_of": as_of,
                "customers": runs[0]["rows"],
                "events_read": reads[0]["rows"],
                "seconds_median": round(total, 1),
                "seconds_runs": [round(r["seconds"], 1) for r in runs],
                "read_only_seconds_median": round(read, 1),
                "total_to_read_ratio": round(total / read, 2),
                "peak_gb_max": round(max(r["peak_gb"] for r in runs), 2),
            }
            results[f"{label}/{backend}"] = entry
            print(f"[{label}/{backend}] {json.dumps(entry)}", flush=True)
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "targets": {"seconds": TARGET_SECONDS, "peak_gb": TARGET_GB, "size": "10M events, 100k customers"},
        "shops": {label: {"customers": c, "days": d} for label, (c, d) in SIZES.items()},
        "results": results,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
