"""Benchmark: the API under load, per route, at fixed request rates, with overload control (supersedes
serving_latency.py).

A platform like the test fixture (tests/trained_platform.py: 300 customers over 90 days, both models
trained and promoted) is built once under --cache; a rerun only measures. The API runs under uvicorn
in its own process(es) on a free loopback port, as `retention serve` runs it (factory, --workers,
the RETENTION_API_* overload settings), with one addition: `/bench/hello`, a hello-world route
through the same middleware and threadpool (benchmarks/serving_load_app.py), the ceiling. Locust
runs headless in another process (benchmarks/serving_load_locust.py): rate / 10 users, each at ten
requests per second (constant throughput, random phase), pick a route by the --mix weights; the ramp-up is not
measured. For each rate: p50/p99 per route, requests, 503s, other errors, the achieved rate, the
load average of this shared machine before and after; then, one second after the load stopped,
one /healthz and one churn request (a backlog left behind would show here). Targets of issue 16
are checked: at 200 requests/s churn and recommendations p50 < 10 ms, p99 < 25 ms, no error; at
1,000 requests/s no 5xx but 503 and /healthz p99 < 100 ms.

Results: benchmarks/results/serving_load.json and .md; a development run shorter than 60 s per rate
(--seconds 10) writes var/bench/serving_load_dev.json and .md instead, leaving the committed ones.

Usage: python benchmarks/serving_load.py [--rates 200,1000] [--seconds 60] [--workers 1]
    [--max-concurrency N] [--timeout S] [--mix churn=4,recommendations=4,healthz=1,hello=1] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the platform builder lives with the tests (tests/trained_platform.py)

from api_server import free_port, start_uvicorn  # noqa: E402  (benchmarks/, the script's folder)
from report import write_report  # noqa: E402

from retention.db import create_db_engine  # noqa: E402
from serving.settings import (  # noqa: E402
    ENV_MAX_CONCURRENCY,
    ENV_REQUEST_TIMEOUT,
    ENV_WORKERS,
    ServingSettings,
)
from tests.trained_platform import AS_OF, TrainedPlatform, build_platform  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "serving_load"
DEV_RESULTS = ROOT / "var" / "bench" / "serving_load_dev"  # runs shorter than COMMITTED_SECONDS go here
COMMITTED_SECONDS = 60.0
LOCUSTFILE = ROOT / "benchmarks" / "serving_load_locust.py"
TOKEN = "benchmark-marketing-token"
SEED = 7
CUSTOMER_SAMPLE = 64  # customers drawn from the online store, kept if their churn route answers 200
WARMUP_PER_ROUTE = 10
ROUTES = ("churn", "recommendations", "healthz", "hello")
DEFAULT_MIX = "churn=4,recommendations=4,healthz=1,hello=1"
TARGET_RATE, OVERLOAD_RATE = 200, 1000
TARGET_P50_MS, TARGET_P99_MS, HEALTH_P99_MS = 10.0, 25.0, 100.0


def platform_at(cache: Path) -> TrainedPlatform:
    """The fixture-like platform under `cache`, built on first use."""
    marker = cache / "built"  # written last: a half-built cache is rebuilt
    if marker.exists():
        return TrainedPlatform(cache / "home", cache / "params.yaml", AS_OF)
    print(f"building the platform under {cache} (a few minutes) ...", flush=True)
    built = build_platform(cache)
    # The builder's CLI runs bound log handlers to streams it has closed since; log to stderr again.
    logging.basicConfig(force=True, level=logging.WARNING)
    marker.write_text(f"{built.home}\n")
    return built


def materialise(built: TrainedPlatform) -> dict[str, int] | None:
    """The champions' per-customer results written to the online store, as the DAGs do (idempotent:
    unchanged documents are not rewritten); None where this code has no materialisation step."""
    try:
        from pipelines.materialise import task_materialise
    except ImportError:  # the routes compute every answer on request
        return None
    from retention.settings import Settings

    return task_materialise(AS_OF, settings=Settings.from_env(built.env))


def start_server(built: TrainedPlatform, port: int, serving: ServingSettings) -> subprocess.Popen:
    """uvicorn on 127.0.0.1:port with the benchmark's app; returns once /healthz answers 200."""
    env = {
        **os.environ,
        **built.env,
        "RETENTION_API_MARKETING_TOKEN": TOKEN,
        "RETENTION_API_ADMIN_TOKEN": TOKEN + "-admin",
        ENV_WORKERS: str(serving.workers),
        ENV_MAX_CONCURRENCY: str(serving.max_concurrency),
        ENV_REQUEST_TIMEOUT: str(serving.request_timeout_seconds),
    }
    options = ("--app-dir", str(ROOT / "benchmarks"), "--workers", str(serving.workers))
    return start_uvicorn("serving_load_app:bench_app", env, port, *options)


def scored_customers(built: TrainedPlatform, base_url: str) -> list[str]:
    """Customers from the online store whose churn route answers 200 (others would count as errors)."""
    from sqlalchemy import text

    engine = create_db_engine(built.database_url)
    with engine.connect() as connection:
        ids = sorted(str(r[0]) for r in connection.execute(text("SELECT customer_id FROM online_features")))
    engine.dispose()
    sample = [
        str(c) for c in np.random.default_rng(SEED).choice(ids, min(CUSTOMER_SAMPLE, len(ids)), replace=False)
    ]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with (
        httpx.Client(base_url=base_url, headers=headers, timeout=60) as client,
        ThreadPoolExecutor(4) as pool,
    ):
        answers = list(pool.map(lambda c: client.get(f"/customers/{c}/churn"), sample))
    kept = [c for c, answer in zip(sample, answers, strict=True) if answer.status_code == 200]
    if not kept:
        raise RuntimeError(f"no sampled customer has a churn score; the first answer: {answers[0].text}")
    return kept


def warm_up(base_url: str, customers: list[str]) -> None:
    """A few sequential requests per route: first-call costs (imports, caches) are not measured."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
        for customer in customers[:WARMUP_PER_ROUTE]:
            for path in (f"/customers/{customer}/churn", f"/customers/{customer}/recommendations?k=10"):
                client.get(path)
            client.get("/healthz")
            client.get("/bench/hello")


REQUESTS_PER_USER = 10  # per second


def run_locust(
    base_url: str, rate: int, seconds: float, mix: str, customers_file: Path, folder: Path
) -> dict:
    """Locust headless at `rate` requests/s for `seconds`; the raw samples it wrote."""
    samples_file = folder / f"samples_{rate}.json"
    # Locust's own latency grows with its number of users (hello route, 50 requests/s: p50 18 ms
    # from 50 users at 1/s, 3 ms from 5 users at 10/s, 2 ms from 50 plain threads), so few users
    # each at a higher rate; a stall of over 1/USER_RATE s then lowers the achieved rate (reported).
    users = max(1, round(rate / REQUESTS_PER_USER))
    env = {
        **os.environ,
        "BENCH_TOKEN": TOKEN,
        "BENCH_CUSTOMERS_FILE": str(customers_file),
        "BENCH_USER_RATE": f"{rate / users:g}",
        "BENCH_MIX": mix,
        "BENCH_SAMPLES_FILE": str(samples_file),
    }
    command = [str(Path(sys.executable).with_name("locust")), "-f", str(LOCUSTFILE), "--headless"]
    command += ["-u", str(users), "-r", str(users), "--run-time", f"{seconds:g}s", "--host", base_url]
    command += ["--only-summary", "--stop-timeout", "0", "--loglevel", "WARNING"]
    # locust exits 1 when any request failed (503s included): the samples say what happened
    finished = subprocess.run(command, env=env, cwd=folder, capture_output=True, text=True, check=False)
    if not samples_file.exists():
        raise RuntimeError(
            f"locust wrote no samples (exit {finished.returncode}):\n{finished.stderr[-3000:]}"
        )
    return json.loads(samples_file.read_text())


def route_figures(pairs: list[list[float]], seconds: float) -> dict[str, Any]:
    """p50/p99 over every answered request (503s are answers too), requests, 503s, other errors."""
    status = np.asarray([p[0] for p in pairs], dtype=int)
    ms = np.asarray([p[1] for p in pairs], dtype=float)
    ok_ms = ms[status == 200]
    figures: dict[str, Any] = {
        "requests": len(pairs),
        "per_second": round(len(pairs) / seconds, 1),
        "ok": int((status == 200).sum()),
        "status_503": int((status == 503).sum()),
        "other_errors": int(((status != 200) & (status != 503)).sum()),
        "other_statuses": sorted({int(s) for s in status if s not in (200, 503)}),
    }
    for name, values in (("all", ms), ("ok", ok_ms)):
        for q in (50, 99):
            figures[f"p{q}_ms_{name}"] = round(float(np.percentile(values, q)), 2) if len(values) else None
    figures["max_ms"] = round(float(ms.max()), 2) if len(ms) else None
    return figures


def after_load(base_url: str, customer: str) -> dict[str, Any]:
    """One /healthz and one churn request a second after the load stopped: status and milliseconds."""
    time.sleep(1.0)
    probes = {}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for name, path in (("healthz", "/healthz"), ("churn", f"/customers/{customer}/churn")):
        started = time.perf_counter()
        response = httpx.get(base_url + path, headers=headers, timeout=60)
        probes[name] = {
            "status": response.status_code,
            "ms": round(1000 * (time.perf_counter() - started), 1),
        }
    return probes


def targets(runs: dict[str, dict]) -> dict[str, Any]:
    """Issue 16's targets, each with the figure it was checked on."""
    checks: dict[str, Any] = {}
    normal = runs.get(str(TARGET_RATE))
    if normal:
        for route in ("churn", "recommendations"):
            r = normal["routes"].get(route)
            if r:
                checks[f"{TARGET_RATE}/s {route} p50 < {TARGET_P50_MS:g} ms"] = _check(
                    r["p50_ms_all"], TARGET_P50_MS
                )
                checks[f"{TARGET_RATE}/s {route} p99 < {TARGET_P99_MS:g} ms"] = _check(
                    r["p99_ms_all"], TARGET_P99_MS
                )
                errors = r["status_503"] + r["other_errors"]
                checks[f"{TARGET_RATE}/s {route} no error"] = {"value": errors, "met": errors == 0}
    overload = runs.get(str(OVERLOAD_RATE))
    if overload:
        other = sum(r["other_errors"] for r in overload["routes"].values())
        checks[f"{OVERLOAD_RATE}/s no 5xx but 503 (no other error)"] = {"value": other, "met": other == 0}
        health = overload["routes"].get("healthz")
        if health:
            checks[f"{OVERLOAD_RATE}/s healthz p99 < {HEALTH_P99_MS:g} ms"] = _check(
                health["p99_ms_all"], HEALTH_P99_MS
            )
    return checks


def _check(value: float | None, limit: float) -> dict[str, Any]:
    return {"value": value, "met": value is not None and value < limit}


def markdown(report: dict[str, Any]) -> str:
    """The report as a page: the settings, one table per rate, the targets."""
    server = report["server"]
    lines = [
        "# Serving under load",
        "",
        f"Generated by `python benchmarks/serving_load.py {report['arguments']}`. Platform: {report['platform']}.",
        f"Server: uvicorn, {server['workers']} worker(s), at most {server['max_concurrency']} requests in flight "
        f"per worker, {server['request_timeout_seconds']:g} s budget; load: locust in another process, "
        f"route mix {report['mix']}, {report['seconds_per_rate']:g} s per rate. Machine: "
        f"{report['machine']['cpus']} CPUs shared with other work (see the load averages); latencies are "
        "locust's, from sending a request to its last byte, over every answered request (503s included). "
        "`hello` is the ceiling: a hello-world route through the same middleware and threadpool. "
        + (
            f"Materialised results in the online store: {report['materialised_documents']}."
            if report["materialised_documents"] is not None
            else "No materialisation step in this code: every answer is computed on request."
        ),
        "",
    ]
    for rate, run in report["runs"].items():
        load = run["load_average_1min"]
        lines += [
            f"## {rate} requests/s (achieved {run['achieved_per_second']}/s; load average {load['before']} -> "
            f"{load['after']})",
            "",
            "| route | requests | per s | p50 ms | p99 ms | p99 ms (200s) | 503 | other errors |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for route, r in run["routes"].items():
            lines.append(
                f"| {route} | {r['requests']} | {r['per_second']} | {r['p50_ms_all']} | {r['p99_ms_all']} | "
                f"{r['p99_ms_ok']} | {r['status_503']} | {r['other_errors']} |"
            )
        probes = run["after_load"]
        lines += [
            "",
            f"One second after the load stopped: /healthz {probes['healthz']['status']} in "
            f"{probes['healthz']['ms']} ms, churn {probes['churn']['status']} in {probes['churn']['ms']} ms.",
            "",
        ]
    lines += ["## Targets (issue 16)", ""]
    if not report["targets"]:
        lines.append(f"None checked: the targets are set at {TARGET_RATE} and {OVERLOAD_RATE} requests/s.")
    else:
        lines += ["| target | value | met |", "|---|---|---|"]
    for name, check in report["targets"].items():
        lines.append(f"| {name} | {check['value']} | {'yes' if check['met'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rates", default=f"{TARGET_RATE},{OVERLOAD_RATE}", help="requests/s, comma-separated"
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each rate's run")
    parser.add_argument("--workers", type=int, default=None, help="uvicorn workers (default: the setting's)")
    parser.add_argument(
        "--max-concurrency", type=int, default=None, help="per worker (default: the setting's)"
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="request budget, s (default: the setting's)"
    )
    parser.add_argument("--mix", default=DEFAULT_MIX, help=f"route weights over {', '.join(ROUTES)}")
    parser.add_argument("--cache", type=Path, default=ROOT / "var" / "bench" / "serving")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    mix = {k: float(v) for k, v in (part.split("=") for part in args.mix.split(","))}
    if not set(mix) <= set(ROUTES):
        parser.error(f"--mix routes must be among {', '.join(ROUTES)}, got {', '.join(mix)}")
    defaults = ServingSettings.from_env()
    serving = ServingSettings(
        workers=args.workers or defaults.workers,
        max_concurrency=args.max_concurrency or defaults.max_concurrency,
        request_timeout_seconds=args.timeout or defaults.request_timeout_seconds,
    )

    built = platform_at(args.cache)
    print("materialising the champions' results ...", flush=True)
    try:
        materialised = materialise(built)
    except Exception as error:  # a cache built by older code (schema, stores): build it anew, once
        print(f"the cached platform does not fit this code ({error}); rebuilding it ...", flush=True)
        shutil.rmtree(args.cache)
        built = platform_at(args.cache)
        materialised = materialise(built)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    print(f"starting the API ({serving.workers} worker(s)) on {base_url} ...", flush=True)
    server = start_server(built, port, serving)
    runs: dict[str, dict] = {}
    try:
        customers = scored_customers(built, base_url)
        warm_up(base_url, customers)
        with tempfile.TemporaryDirectory(prefix="serving_load_") as tmp:
            folder = Path(tmp)
            customers_file = folder / "customers.txt"
            customers_file.write_text("\n".join(customers) + "\n")
            for rate in rates:
                print(f"{rate} requests/s for {args.seconds:g}s ...", flush=True)
                before = round(os.getloadavg()[0], 2)
                recorded = run_locust(base_url, rate, args.seconds, args.mix, customers_file, folder)
                after = round(os.getloadavg()[0], 2)
                seconds = recorded["window"]["stop"] - recorded["window"]["start"]
                routes = {
                    r: route_figures(recorded["samples"][r], seconds)
                    for r in ROUTES
                    if r in recorded["samples"]
                }
                runs[str(rate)] = {
                    "achieved_per_second": round(sum(r["requests"] for r in routes.values()) / seconds, 1),
                    "measured_seconds": round(seconds, 1),
                    "load_average_1min": {"before": before, "after": after},
                    "routes": routes,
                    "after_load": after_load(base_url, customers[0]),
                }
                for route, r in routes.items():
                    print(
                        f"  {route:>15}: {r['requests']:6d} req, p50 {r['p50_ms_all']} ms, p99 {r['p99_ms_all']} ms, "
                        f"503 {r['status_503']}, other errors {r['other_errors']}",
                        flush=True,
                    )
                time.sleep(2)  # let the server drain before the next rate
    finally:
        server.terminate()
        server.wait(timeout=30)

    report = {
        "arguments": " ".join(sys.argv[1:]) or "(defaults)",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "note": "shared machine: the load generator, the server and other work share these CPUs",
        },
        "platform": "tests/trained_platform.py: 300 customers x 90 days, 400 products, both models promoted",
        "server": {
            "workers": serving.workers,
            "max_concurrency": serving.max_concurrency,
            "request_timeout_seconds": serving.request_timeout_seconds,
        },
        "mix": args.mix,
        "seconds_per_rate": args.seconds,
        "customers": len(customers),
        "materialised_documents": materialised,
        "runs": runs,
    }
    report["targets"] = targets(runs)
    write_report(RESULTS if args.seconds >= COMMITTED_SECONDS else DEV_RESULTS, report, markdown(report))


if __name__ == "__main__":
    main()
