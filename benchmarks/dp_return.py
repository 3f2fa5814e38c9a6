"""Benchmark: the quality cost of training the return model with DP-SGD, on the CDNOW split.

The split, data path and evaluation are `model_quality.py`'s (EVALUATION.md task 1: T = 1997-10-01,
H = 273 days, the product's ingest into a fresh SQLite database, `training.backtest.run_backtest`
with MLflow tracking): the non-private return model and its baselines first, then the same model
(same seeds, same rows) with params.yaml `return.dp` enabled at each target epsilon. Each row
reports the backtest's own figures of the ensemble (the networks' averaged hazard, calibrated),
the fit time (fit and scoring, as the backtest measures it) and, for the private models, the
epsilon spent, delta and noise multiplier that their MLflow runs log as `dp.*`.
Results: benchmarks/results/dp_return.{json,md} (`report.write_report`).

Usage: python benchmarks/dp_return.py --data ../shared/data [--epsilons 1,3,8] [--max-epochs N]
       [--ensemble N] [--max-examples N] [--work DIR]
`--max-epochs` / `--ensemble` / `--max-examples` shorten every model alike (the private ones plan
their noise for them); the defaults are params.yaml's.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from model_quality import ROOT, SPLITS, load_split_log
from report import write_report

OUT = ROOT / "benchmarks" / "results" / "dp_return"
SPLIT = "cdnow"
METRICS = ("roc_auc", "pr_auc", "brier")


def variant_params(params: Any, epsilon: float | None, cuts: dict[str, int | None]) -> Any:
    """params.yaml with the benchmark's cuts (max_epochs, ensemble, max_examples; None keeps
    params.yaml's), and DP at `epsilon` (None: non-private)."""
    epochs = cuts["max_epochs"] or params.training.max_epochs
    training = params.training.model_copy(update={"max_epochs": epochs})
    dp = params.return_.dp.model_copy(
        update={"enabled": epsilon is not None, "target_epsilon": epsilon or 1.0}
    )
    kept = {k: v for k, v in cuts.items() if k in ("ensemble", "max_examples") and v is not None}
    model = params.return_.model_copy(update={"dp": dp} | kept)
    return params.model_copy(update={"training": training, "return_": model})


def model_only(fitted: list[Any]) -> Callable[[Any, Path], list[tuple[str, Any]]]:
    """`run_backtest`'s model list without the baselines; the model is also appended to `fitted`."""
    from training.churn import ReturnModel

    def models(params: Any, folder: Path) -> list[tuple[str, Any]]:
        fitted.append(ReturnModel(params, folder / "return_model"))
        return [("model", fitted[-1])]

    return models


def run(data: Path, work: Path, epsilons: list[float], cuts: dict[str, int | None]) -> dict:
    """Backtest the non-private model with its baselines, then the private model at each epsilon."""
    from retention.params import load_params
    from training.backtest import BacktestRequest, run_backtest
    from training.churn import ReturnModel
    from training.tracking import Tracker

    dataset, _, _, options = SPLITS[SPLIT]
    base = load_params(ROOT / "params.yaml")
    event_log = load_split_log(SPLIT, data, work / SPLIT, base)
    tracker = Tracker(f"sqlite:///{work / 'mlflow.db'}", work / "mlartifacts")
    rows: list[dict[str, Any]] = []
    for epsilon in [None, *epsilons]:
        name = "non-private" if epsilon is None else f"epsilon={epsilon:g}"
        params = variant_params(base, epsilon, cuts)
        request = BacktestRequest(
            family="return",
            protocol="temporal",
            as_of=pd.Timestamp(options["as_of"]),
            horizon_days=options["horizon_days"],
            exclude_seen=True,
            out=work / "backtest" / name,
            dataset=dataset,
        )
        fitted: list[ReturnModel] = []
        chosen = None if epsilon is None else model_only(fitted)  # the baselines once, non-privately
        reports = run_backtest(event_log, request, params, work / "runs" / name, tracker, chosen)
        for report in reports:
            privacy = fitted[0].privacy if fitted and report.role == "model" else {}
            rows.append(
                {
                    "model": report.name if report.role == "baseline" else f"return_model ({name})",
                    "role": report.role,
                    "target_epsilon": epsilon,
                    **{metric: round(report.metrics[metric], 4) for metric in METRICS},
                    "fit_seconds": round(report.fit_seconds, 1),
                    "epsilon_spent": round(privacy["epsilon"], 3) if privacy else None,
                    "delta": privacy.get("delta"),
                    "noise_multiplier": round(privacy["noise_multiplier"], 3) if privacy else None,
                    "examples_per_customer_max": privacy.get("examples_per_customer_max"),
                    "mlflow_run_id": report.run_id,
                }
            )
    return {
        "split": {"dataset": dataset, **options},
        "max_epochs": cuts["max_epochs"] or base.training.max_epochs,
        "ensemble": cuts["ensemble"] or base.return_.ensemble,
        "max_examples": cuts["max_examples"] or base.return_.max_examples,
        "max_grad_norm": base.return_.dp.max_grad_norm,
        "rows": rows,
    }


def markdown(report: dict) -> str:
    """The results as a Markdown table."""
    lines = [
        f"CDNOW split (T = {report['split']['as_of']}, H = {report['split']['horizon_days']} days), "
        f"{report['ensemble']} network(s) of at most {report['max_epochs']} epochs on at most "
        f"{report['max_examples']:,} examples, "
        f"C = {report['max_grad_norm']}; measured {report['measured']} on {report['machine']['cpus']} CPUs.",
        "",
        "| model | ROC-AUC | PR-AUC | Brier | fit s | epsilon spent | delta | noise multiplier |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        spent = "" if row["epsilon_spent"] is None else f"{row['epsilon_spent']:.2f}"
        delta = "" if row["delta"] is None else f"{row['delta']:.1e}"
        noise = "" if row["noise_multiplier"] is None else f"{row['noise_multiplier']:.2f}"
        lines.append(
            f"| {row['model']} | {row['roc_auc']:.4f} | {row['pr_auc']:.4f} | {row['brier']:.4f} "
            f"| {row['fit_seconds']:.0f} | {spent} | {delta} | {noise} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with cdnow/")
    parser.add_argument("--epsilons", default="1,3,8", help="comma-separated target epsilons")
    parser.add_argument(
        "--max-epochs", type=int, default=None, help="epochs per network (default: params.yaml)"
    )
    parser.add_argument("--ensemble", type=int, default=None, help="networks (default: params.yaml)")
    parser.add_argument(
        "--max-examples", type=int, default=None, help="(customer, cutoff) examples (default: params.yaml)"
    )
    parser.add_argument(
        "--work", type=Path, default=Path("/tmp/bench-dp-return"), help="databases, runs, files"
    )
    parser.add_argument("--out", type=Path, default=OUT, help="results stem (.json and .md)")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr
    )
    for noisy in ("alembic", "great_expectations", "mlflow", "pytorch_lightning", "lightning_fabric"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    started = time.perf_counter()
    epsilons = [float(e) for e in args.epsilons.split(",")]
    cuts = {"max_epochs": args.max_epochs, "ensemble": args.ensemble, "max_examples": args.max_examples}
    report = run(args.data.resolve(), args.work, epsilons, cuts)
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["machine"] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    report["measured"] = time.strftime("%Y-%m-%d")
    write_report(args.out, report, markdown(report))


if __name__ == "__main__":
    main()
