"""Benchmark: training time and peak memory of both model families against shop size (issue 16).

For each size a shop of N customers x D days is simulated once into SQLite (cached under
var/bench/training_scaling/<N>x<D>d-<hash of params.yaml simulate:>/, reused on a rerun). Each family ("return", "recommender") is
then trained in a fresh subprocess the way `retention train` fits it (`training.families`: read the
shop's event log, the holdout split, the family's `fit`), so its peak memory is that training's
alone. Measured per training:

- load seconds: reading the event log from SQLite and splitting it;
- fit seconds: the family's `fit` (return model: examples, the ensemble's fits, calibration,
  validation rollout and feature importance; recommender: the blend tuning (an inner SASRec fit
  plus the weight grid, reported separately as tune seconds), the final SASRec fit, ALS and kNN);
- peak RSS: VmHWM of the training process (/proc/self/status at its end: load, split and fit),
  with its RSS before loading (the interpreter with torch and Lightning imported) for reference.

Every fit runs a FIXED number of epochs (--epochs; training.max_epochs, training.patience and
recommender.sasrec.max_epochs set to it, so early stopping never ends a fit sooner): the curve is
the cost per epoch budget, not of convergence (that is the quality benchmarks'). Everything else,
thread settings included, is params.yaml's. The growth exponent b of cost = a * events^b is fitted
by least squares on log-log over all sizes and over the two largest; the target (at most linear in
events) holds where b <= 1.0.

Results: benchmarks/results/training_scaling.json and .md; a development run with other sizes, days or
families writes var/bench/training_scaling_dev.json and .md instead, leaving the committed ones.

Usage: python benchmarks/training_scaling.py [--customers 2000,20000,200000] [--days 120] [--epochs 2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from report import write_report  # benchmarks/, the script's folder

if TYPE_CHECKING:
    from retention.params import Params

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the project's packages come from the repository
RESULTS = ROOT / "benchmarks" / "results" / "training_scaling"
DEV_RESULTS = ROOT / "var" / "bench" / "training_scaling_dev"
CACHE = ROOT / "var" / "bench" / "training_scaling"
DEFAULT_CUSTOMERS, DEFAULT_DAYS = (2_000, 20_000, 200_000), 120
FAMILIES = ("return", "recommender")
SHOP_FILE = "shop.json"  # written last: a shop folder without it is an interrupted simulation
# log lines of the fits whose numbers say how much was trained (the models keep no count)
COUNTED = {
    "return model: %d examples": ("examples", "cutoffs"),
    "sasrec: %d training and": ("train_sequences", "val_sequences", "items"),
}


def db_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'retention.db'}"


def fixed_epochs(params: Params, epochs: int) -> Params:
    """params with every fit running exactly `epochs` epochs (patience = epochs: no early stop)."""
    training = params.training.model_copy(update={"max_epochs": epochs, "patience": epochs})
    sasrec = params.recommender.sasrec.model_copy(update={"max_epochs": epochs})
    recommender = params.recommender.model_copy(update={"sasrec": sasrec})
    return params.model_copy(update={"training": training, "recommender": recommender})


def memory_mb(field: str = "VmHWM") -> float:
    """This process's peak (VmHWM) or current (VmRSS) resident memory. VmHWM belongs to the process
    image: ru_maxrss of an exec'd child can carry its parent's peak across a vfork/exec."""
    status = Path("/proc/self/status").read_text().split(f"{field}:")[1].split()
    return round(int(status[0]) / 1024, 1)


# -- child processes ----------------------------------------------------------------------------


def child_simulate(folder: Path, customers: int, days: int) -> dict[str, Any]:
    """Simulate the shop into folder/retention.db (the `retention simulate` path)."""
    from pipelines.simulate import simulate
    from retention.db import create_db_engine, upgrade
    from retention.params import load_params

    shop = load_params(ROOT / "params.yaml").simulate.model_copy(update={"customers": customers})
    upgrade(db_url(folder))
    engine = create_db_engine(db_url(folder))
    try:
        result = simulate(engine, folder / "simulator", shop, days)
    finally:
        engine.dispose()
    return {"generated": result.generated, "seconds": round(result.seconds, 1)}


class Counts(logging.Handler):
    """Keeps the numbers of the `COUNTED` log lines (the last line of each kind wins)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.values: dict[str, Any] = {}

    def emit(self, record: logging.LogRecord) -> None:
        for prefix, names in COUNTED.items():
            if isinstance(record.msg, str) and record.msg.startswith(prefix):
                self.values.update(zip(names, tuple(record.args or ()), strict=False))


def child_train(folder: Path, name: str, epochs: int) -> dict[str, Any]:
    """Read, split and fit one family as `training.train.train_model` does, without tracking."""
    from retention.db import create_db_engine
    from retention.params import load_params
    from training.families import family
    from training.threads import configure_threads

    params = fixed_epochs(load_params(ROOT / "params.yaml"), epochs)
    threads = configure_threads(params.training)
    counts = Counts()
    logging.getLogger("retention.training").addHandler(counts)
    chosen, engine = family(name), create_db_engine(db_url(folder))
    with tempfile.TemporaryDirectory(dir=folder) as work:  # fresh: the Trainer resumes old checkpoints
        model = chosen.model(params, Path(work))  # imports torch and Lightning before the clock starts
        started, rss_before = time.perf_counter(), memory_mb("VmRSS")
        event_log = chosen.read(engine, "shop", None)
        engine.dispose()
        request = chosen.holdout_request(chosen.data_end(event_log), params, Path(work), "shop")
        chosen.check(request)
        split = chosen.split(event_log, request)
        loaded = time.perf_counter()
        chosen.fit(split, model, params)
        fitted = time.perf_counter()
    if name == "return":  # the ensemble's members, each a fit of its own
        epochs_run = "+".join(str(r.epochs) for r in model.fit_results)
    else:  # the blend tuning's inner fit, then the final fit
        tuning = model.tuning or {}
        epochs_run = f"{tuning.get('epochs', 0)}+{model.fit_result.epochs}"
        counts.values["tune_seconds"] = tuning.get("seconds", 0.0)
    return {
        "events": len(event_log.events),
        "history_events": len(split.history.events),
        "customers_with_events": int(event_log.events["customer_id"].nunique()),
        "products": len(event_log.products),
        "load_seconds": round(loaded - started, 2),
        "fit_seconds": round(fitted - loaded, 2),
        "peak_rss_mb": memory_mb(),
        "rss_before_load_mb": rss_before,
        "epochs": epochs_run,
        "threads": threads.intra_op,
        **counts.values,
    }


def child(args: list[str]) -> None:
    """Entry point of the subprocesses: print one JSON line (logs go to stderr)."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its plugin lines are not news
    kind, folder = args[0], Path(args[1])
    if kind == "simulate":
        result = child_simulate(folder, int(args[2]), int(args[3]))
    else:
        result = child_train(folder, args[2], int(args[3]))
    print(json.dumps(result))


def run_child(log_file: Path, *args: str) -> dict[str, Any]:
    """This script in a fresh interpreter; its stderr (the training log) goes to `log_file`."""
    with log_file.open("w") as err:
        out = subprocess.run(
            [sys.executable, __file__, "--child", *args],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=ROOT,
        )
    if out.returncode:
        raise SystemExit(f"{' '.join(args[:1] + args[2:])} failed (exit {out.returncode}); see {log_file}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- the benchmark ------------------------------------------------------------------------------


def shop_folder(cache: Path, customers: int, days: int) -> Path:
    """The shop's cache folder, named by the simulator's params too: a changed params.yaml
    `simulate:` section simulates afresh instead of reusing a different shop."""
    from retention.params import load_params

    simulate = load_params(ROOT / "params.yaml").simulate.model_dump_json()
    return cache / f"{customers}x{days}d-{hashlib.sha256(simulate.encode()).hexdigest()[:8]}"


def shop(folder: Path, customers: int, days: int, clock: float) -> dict[str, Any]:
    """The cached shop's simulation summary, simulating it first if missing."""
    if (folder / SHOP_FILE).exists():
        return json.loads((folder / SHOP_FILE).read_text())
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    print(f"[{customers:,} customers] simulating {days} days ... ({elapsed(clock)})", flush=True)
    summary = run_child(folder / "simulate.log", "simulate", str(folder), str(customers), str(days))
    (folder / SHOP_FILE).write_text(json.dumps(summary) + "\n")
    return summary


def elapsed(clock: float) -> str:
    seconds = int(time.perf_counter() - clock)
    return f"elapsed {seconds // 60}m{seconds % 60:02d}s"


def exponent(x: list[float], y: list[float]) -> float | None:
    """b of y = a * x^b, least squares on log-log (None with fewer than two distinct x)."""
    if len(set(x)) < 2:
        return None
    return round(float(np.polyfit(np.log(x), np.log(y), 1)[0]), 2)


def exponents(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per measure: b over all sizes and over the two largest, and whether b <= 1 (no tolerance)."""
    rows = sorted(rows, key=lambda r: r["events"])
    out: dict[str, Any] = {}
    for measure in ("fit_seconds", "peak_rss_mb", "load_seconds"):
        x, y = [r["events"] for r in rows], [max(r[measure], 1e-3) for r in rows]
        b_all, b_top = exponent(x, y), exponent(x[-2:], y[-2:])
        out[measure] = {
            "b_all_sizes": b_all,
            "holds_all_sizes": None if b_all is None else b_all <= 1.0,
            "b_two_largest": b_top,
            "holds_two_largest": None if b_top is None else b_top <= 1.0,
        }
    return out


def markdown(report: dict[str, Any]) -> str:
    machine, load = report["machine"], report["load_average"]
    lines = [
        "# Training scaling (issue 16)",
        "",
        f"Generated by `{report['command']}` on {report['measured']}. Machine: {machine['cpus']} CPUs "
        f"({machine['affinity']} usable), {machine['memory_gb']} GB RAM, load average "
        f"{load['before']} -> {load['after']}. Shops: {report['days']} days of params.yaml's simulator; "
        f"every fit runs exactly {report['epochs']} epoch(s) (no early stopping), so the curve is the "
        "cost per epoch budget. Peak RSS: VmHWM of the training subprocess (load + split + fit; "
        f"about {report['rss_before_load_mb']} MB of it is there before loading: the interpreter, torch "
        f"and Lightning). Torch threads per training: {', '.join(map(str, report['threads']))} (params.yaml training.threads).",
    ]
    for name, entry in report["families"].items():
        lines += ["", f"## {name}", ""]
        lines += [
            "| customers | events | products | trained | load s | fit s | tune s | peak RSS MB | epochs |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in entry["sizes"]:
            trained = r.get("examples", r.get("train_sequences", ""))
            lines.append(
                f"| {r['customers']:,} | {r['events']:,} | {r['products']} | {trained:,} | "
                f"{r['load_seconds']} | {r['fit_seconds']} | {r.get('tune_seconds', '')} | "
                f"{r['peak_rss_mb']} | {r['epochs']} |"
            )
        lines += [
            "",
            "| events^b of | b (all sizes) | b <= 1 | b (two largest) | b <= 1 |",
            "|---|---|---|---|---|",
        ]
        for measure, b in entry["exponents"].items():
            lines.append(
                f"| {measure} | {b['b_all_sizes']} | {b['holds_all_sizes']} | {b['b_two_largest']} | "
                f"{b['holds_two_largest']} |"
            )
    lines += [
        "",
        "customers: simulated (those with events are in the JSON). trained: return = (customer, cutoff) "
        "examples after the max_examples sample; recommender = the final fit's training sequences. "
        "epochs: return = each ensemble member's fit; recommender = the blend tuning's inner fit + "
        "the final fit. tune s (part of fit s): the inner fit and the weight grid.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", default=",".join(map(str, DEFAULT_CUSTOMERS)))
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS)
    parser.add_argument("--epochs", type=int, default=2, help="epochs of every fit (fixed)")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--cache", type=Path, default=CACHE, help="simulated shops (reused)")
    args = parser.parse_args()
    sizes = sorted(int(c) for c in args.customers.split(","))
    families = args.families.split(",")
    committed = tuple(sizes) == DEFAULT_CUSTOMERS and args.days == DEFAULT_DAYS and families == list(FAMILIES)
    clock, load_before = time.perf_counter(), os.getloadavg()
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in families}
    shops = {}
    for customers in sizes:
        folder = shop_folder(args.cache, customers, args.days)
        shops[customers] = shop(folder, customers, args.days, clock)
        for name in families:
            print(f"[{customers:,} customers] training {name} ... ({elapsed(clock)})", flush=True)
            row = run_child(folder / f"{name}.log", "train", str(folder), name, str(args.epochs))
            rows[name].append({"customers": customers, **row})
            print(
                f"[{customers:,} customers] {name}: {row['events']:,} events, load {row['load_seconds']}s, "
                f"fit {row['fit_seconds']}s, peak {row['peak_rss_mb']:.0f} MB ({elapsed(clock)})",
                flush=True,
            )
    report = {
        "command": "python benchmarks/training_scaling.py " + " ".join(sys.argv[1:]),
        "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "days": args.days,
        "epochs": args.epochs,
        "target": "b <= 1.0 for fit seconds and peak RSS against events (issue 16: at most linear)",
        "shops": {str(c): s for c, s in shops.items()},
        "families": {name: {"sizes": r, "exponents": exponents(r)} for name, r in rows.items()},
        "threads": sorted({r["threads"] for r in sum(rows.values(), [])}),
        "rss_before_load_mb": min(r["rss_before_load_mb"] for r in sum(rows.values(), [])),
        "load_average": {
            "before": [round(x, 2) for x in load_before],
            "after": [round(x, 2) for x in os.getloadavg()],
        },
        "machine": {
            "cpus": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "total_seconds": round(time.perf_counter() - clock, 1),
    }
    write_report(RESULTS if committed else DEV_RESULTS, report, markdown(report))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
    else:
        main()
