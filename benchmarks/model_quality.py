"""Benchmark: the models and every baseline on the reference splits of EVALUATION.md.

Each split runs exactly what `retention backtest` runs: the dataset is loaded with the product's
ingest into a fresh SQLite database, read back as the event log, and evaluated by
`training.backtest.run_backtest` with MLflow tracking (SQLite) on. Results go to
benchmarks/results/models.json (quoted in README.md) together with the issue's targets, training
time per epoch and the machine; backtest files stay under --work.

The repeat-purchase splits (issue 19) include seen items, so the personal buy-again baseline is
shown: MovieLens-100K leave-last, and the simulator's repeat-purchase shop (`REPEAT_SHOP`: the
default shop with consumable cycles in three categories), whose purchase log is split leave-last.

Usage: python benchmarks/model_quality.py --data ../shared/data
       [--splits cdnow,ml-leave-last,ml-temporal,ml-leave-last-seen,sim-repeat] [--devices N] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from feature_store.events import EventLog
    from retention.params import Params

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "models.json"
# EVALUATION.md reference splits: (dataset, format, files, backtest options)
SPLITS = {
    "cdnow": (
        "cdnow",
        "cdnow",
        {"events": "cdnow/CDNOW_sample.txt"},
        {"family": "return", "protocol": "temporal", "as_of": "1997-10-01", "horizon_days": 273},
    ),
    "ml-leave-last": (
        "movielens-100k",
        "movielens",
        {"events": "movielens-100k/ml-100k.inter", "products": "movielens-100k/ml-100k.item"},
        {"family": "recommender", "protocol": "leave-last", "as_of": None, "horizon_days": None},
    ),
    "ml-temporal": (
        "movielens-100k",
        "movielens",
        {"events": "movielens-100k/ml-100k.inter", "products": "movielens-100k/ml-100k.item"},
        {"family": "recommender", "protocol": "temporal", "as_of": "1998-01-01", "horizon_days": 112},
    ),
    "ml-leave-last-seen": (
        "movielens-100k",
        "movielens",
        {"events": "movielens-100k/ml-100k.inter", "products": "movielens-100k/ml-100k.item"},
        {
            "family": "recommender",
            "protocol": "leave-last",
            "as_of": None,
            "horizon_days": None,
            "exclude_seen": False,
        },
    ),
    "sim-repeat": (
        "simulated-repeat-shop",
        "simulate",
        {},
        {
            "family": "recommender",
            "protocol": "leave-last",
            "as_of": None,
            "horizon_days": None,
            "exclude_seen": False,
        },
    ),
}
# The repeat-purchase shop: params.yaml's simulate section with these repurchase settings, 180 days.
REPEAT_SHOP = {"days": {"beauty": 21, "home": 35, "sports": 28}, "habit_share": 0.9}
REPEAT_SHOP_DAYS = 180
# Issue 4's quality targets: metric -> (comparison, bound); "baselines" = not below the best baseline.
TARGETS = {
    "cdnow": {"roc_auc": (">=", 0.79), "pr_auc": (">=", 0.66), "brier": ("<", 0.16)},
    "ml-leave-last": {"ndcg@10": (">=", 0.100)},
    "ml-temporal": {"ndcg@10": (">=", "best baseline")},
    # issue 19: at least 10% above the personal buy-again baseline with seen items included
    "ml-leave-last-seen": {"ndcg@10": (">=", "1.1 x buy_again")},
    "sim-repeat": {"ndcg@10": (">=", "1.1 x buy_again")},
}


def load_split_log(name: str, data: Path, home: Path, params: Params) -> EventLog:
    """The split's dataset ingested with the product's loader into a fresh SQLite database under
    `home`, read back as the event log (exactly what `retention ingest` then `backtest` see)."""
    from feature_store.events import read_event_log
    from pipelines.ingest import IngestRequest, ingest
    from retention.db import create_db_engine, upgrade

    _, fmt, files, _ = SPLITS[name]
    home.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{home / 'shop.db'}"
    (home / "shop.db").unlink(missing_ok=True)
    upgrade(url)
    engine = create_db_engine(url)
    try:
        if fmt == "simulate":
            return repeat_shop_purchases(engine, home, params)
        ingest(engine, IngestRequest(format=fmt, **{k: data / v for k, v in files.items()}), params.ingest)
        return read_event_log(engine, "shop")
    finally:
        engine.dispose()


def repeat_shop_purchases(engine: object, home: Path, params: Params) -> EventLog:
    """The repeat-purchase shop simulated into `engine`, read back as its purchase log (an order
    log, as the grocery logs the issue names)."""
    import shutil
    from dataclasses import replace

    from feature_store.events import read_event_log
    from pipelines.simulate import simulate

    assert params.simulate.repurchase is not None
    repurchase = params.simulate.repurchase.model_copy(update=REPEAT_SHOP)
    shop = params.simulate.model_copy(update={"repurchase": repurchase})
    shutil.rmtree(home / "simulator", ignore_errors=True)
    simulate(engine, home / "simulator", shop, REPEAT_SHOP_DAYS)  # type: ignore[arg-type]
    log = read_event_log(engine, "shop")  # type: ignore[arg-type]
    purchases = log.events[log.events["event_type"] == "purchase"].reset_index(drop=True)
    return replace(log, events=purchases)


def run_split(name: str, data: Path, work: Path, devices: int) -> dict:
    """Ingest the split's dataset into a fresh database and backtest it; returns the per-model results."""
    from retention.params import load_params
    from training.backtest import BacktestRequest, run_backtest
    from training.tracking import Tracker

    dataset, _, _, options = SPLITS[name]
    home = work / name
    params = load_params(ROOT / "params.yaml")
    training = params.training.model_copy(update={"devices": devices})
    params = params.model_copy(update={"training": training})
    event_log = load_split_log(name, data, home, params)
    request = BacktestRequest(
        family=options["family"],
        protocol=options["protocol"],
        as_of=pd.Timestamp(options["as_of"]) if options["as_of"] else None,
        horizon_days=options["horizon_days"],
        exclude_seen=options.get("exclude_seen", True),
        out=home / "backtest",
        dataset=dataset,
    )
    tracker = Tracker(f"sqlite:///{home / 'mlflow.db'}", home / "mlartifacts")
    started = time.perf_counter()
    reports = run_backtest(event_log, request, params, home / "runs", tracker)
    models = {
        r.name: {
            "role": r.role,
            **r.metrics,
            "fit_seconds": round(r.fit_seconds, 1),
            "seconds_per_epoch": None if r.seconds_per_epoch is None else round(r.seconds_per_epoch, 3),
        }
        for r in reports
    }
    return {
        "dataset": dataset,
        **{k: v for k, v in options.items() if v is not None},
        **({"repurchase": REPEAT_SHOP, "days": REPEAT_SHOP_DAYS} if name == "sim-repeat" else {}),
        "devices": devices,
        "seconds": round(time.perf_counter() - started, 1),
        "models": models,
        "targets": check(name, models),
    }


def check(name: str, models: dict) -> dict:
    """Each target of the split with the model's value and whether it holds."""
    model = next(m for m in models.values() if m["role"] == "model")
    results = {}
    for metric, (op, bound) in TARGETS[name].items():
        if bound == "best baseline":
            bound = max(m[metric] for m in models.values() if m["role"] == "baseline")
        elif isinstance(bound, str) and " x " in bound:  # "1.1 x buy_again": a multiple of a baseline
            factor, baseline = bound.split(" x ")
            bound = float(factor) * models[baseline][metric]
        value = model[metric]
        holds = value >= bound if op == ">=" else value < bound
        results[metric] = {"value": round(value, 4), "target": f"{op} {bound:.4f}", "holds": bool(holds)}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with cdnow/ and movielens-100k/")
    parser.add_argument("--splits", default=",".join(SPLITS), help="comma-separated: " + ", ".join(SPLITS))
    parser.add_argument("--devices", type=int, default=1, help="training processes (2 = DDP on CPU)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-models"), help="databases, runs, files")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr
    )
    for noisy in ("alembic", "great_expectations", "mlflow", "pytorch_lightning", "lightning_fabric"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    results = json.loads(args.results.read_text()) if args.results.exists() else {"splits": {}}
    for name in args.splits.split(","):
        if name not in SPLITS:
            parser.error(f"unknown split '{name}'; choose from {', '.join(SPLITS)}")
        results["splits"][name] = run_split(name, args.data.resolve(), args.work, args.devices)
        for metric, target in results["splits"][name]["targets"].items():
            print(
                f"{name}: {metric} {target['value']} (target {target['target']}): {'OK' if target['holds'] else 'MISSED'}"
            )
    results["machine"] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    results["measured"] = time.strftime("%Y-%m-%d")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results written to {args.results}")


if __name__ == "__main__":
    main()
