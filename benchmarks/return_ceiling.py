"""Benchmark: how far the return target can go on CDNOW, from models fitted to the test window itself.

The question it answers: is ROC-AUC 0.79 / PR-AUC 0.66 on the CDNOW split (T = 1997-10-01,
H = 273) within reach of the information the log holds before T? It builds the return model's
own tabular inputs at T (the feature store's features and the inter-purchase features) plus
exponentially decayed purchase counts, then fits "oracles" on the split's **test labels** with
5-fold cross-fitting (each customer is scored by models that never saw that customer's label,
but did see the very window and horizon being scored, which no honest model can). The best of a
grid of logistic regressions, spline logistic regressions and gradient-boosted trees is reported
as the ceiling, an optimistic one (the grid's maximum is itself chosen on the test labels),
beside the return model's figures from benchmarks/results/models.json.

Usage: python benchmarks/return_ceiling.py --data ../shared/data [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from model_quality import RESULTS, ROOT, SPLITS, TARGETS, load_split_log
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import SplineTransformer, StandardScaler

OUT = ROOT / "benchmarks" / "results" / "return_ceiling.json"
SPLIT = "cdnow"
DECAY_DAYS = (30, 60, 90, 180, 365)  # time constants of the decayed purchase counts
FOLDS = 5
SEEDS = (0, 1, 2)  # fold assignments; each oracle's figure is the mean over them
LOGISTIC_C = (0.01, 0.1, 1.0, 10.0)
SPLINE_KNOTS = (4, 6)
BOOSTING = [  # (max_depth, learning_rate, iterations)
    (depth, rate, iterations) for depth in (1, 2, 3) for rate in (0.02, 0.05) for iterations in (100, 300)
]
# the few columns of the spline oracles (log-scaled): recency, frequency, tenure, spend, decay
SPLINE_COLUMNS = ("recency_days", "orders_total", "first_order_days", "amount_mean", "decayed_90d")


def oracle_inputs(data: Path, work: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """The return model's tabular inputs at T plus decayed purchase counts, and the test labels."""
    from feature_store.frames import PURCHASE
    from retention.params import load_params
    from training.churn.dataset import customer_inputs
    from training.protocol import return_split

    params = load_params(ROOT / "params.yaml")
    options = SPLITS[SPLIT][3]
    event_log = load_split_log(SPLIT, data, work / SPLIT, params)
    split = return_split(event_log, pd.Timestamp(options["as_of"]), options["horizon_days"])
    inputs = customer_inputs(
        split.history.frames(), split.as_of, params.features, params.return_.sequence_length
    )
    tabular = inputs.tabular.set_axis(inputs.customer_id.astype(str)).reindex(split.population)
    events = split.history.events
    bought = events.loc[events["event_type"] == PURCHASE]
    age_days = (split.as_of - pd.to_datetime(bought["ts"])) / pd.Timedelta(days=1)
    owner = bought["customer_id"].astype(str)
    for tau in DECAY_DAYS:
        decayed = np.exp(-age_days / tau).groupby(owner).sum()
        tabular[f"decayed_{tau}d"] = decayed.reindex(split.population).fillna(0.0).to_numpy()
    informative = [c for c in tabular.columns if tabular[c].nunique(dropna=True) > 1]  # CDNOW has no reviews
    return tabular[informative].reset_index(drop=True), split.returned.astype(int)


def cross_fitted(estimator: Any, features: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Mean ROC-AUC / PR-AUC over `SEEDS` of out-of-fold scores fitted on the test labels."""
    rocs, prs = [], []
    for seed in SEEDS:
        folds = StratifiedKFold(FOLDS, shuffle=True, random_state=seed)
        scores = cross_val_predict(estimator, features, labels, cv=folds, method="predict_proba")[:, 1]
        rocs.append(roc_auc_score(labels, scores))
        prs.append(average_precision_score(labels, scores))
    return {"roc_auc": float(np.mean(rocs)), "pr_auc": float(np.mean(prs))}


def oracles(tabular: pd.DataFrame, labels: np.ndarray) -> list[dict]:
    """Every oracle of the grid with its cross-fitted figures."""
    filled = tabular.fillna(tabular.median()).fillna(0.0).to_numpy()
    logged = np.log1p(tabular[list(SPLINE_COLUMNS)].clip(lower=0).fillna(0.0)).to_numpy()
    grid = [
        (f"logistic C={c}", make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000)), filled)
        for c in LOGISTIC_C
    ]
    grid += [
        (
            f"spline logistic C={c} knots={k}",
            make_pipeline(
                StandardScaler(), SplineTransformer(n_knots=k), LogisticRegression(C=c, max_iter=5000)
            ),
            logged,
        )
        for c in LOGISTIC_C
        for k in SPLINE_KNOTS
    ]
    grid += [
        (
            f"boosting depth={d} lr={r} trees={n}",
            HistGradientBoostingClassifier(max_depth=d, learning_rate=r, max_iter=n, min_samples_leaf=50),
            tabular.to_numpy(),  # NaN handled natively
        )
        for d, r, n in BOOSTING
    ]
    results = []
    for number, (name, estimator, features) in enumerate(grid, start=1):
        results.append({"oracle": name, **cross_fitted(estimator, features, labels)})
        logging.info("oracle %d/%d %s: ROC-AUC %.4f", number, len(grid), name, results[-1]["roc_auc"])
    return results


def single_features(tabular: pd.DataFrame, labels: np.ndarray) -> list[dict]:
    """Each column's ROC-AUC as a score on its own (the better sign), best first."""
    rows = []
    for column in tabular.columns:
        values = tabular[column].fillna(tabular[column].min() - 1).to_numpy()
        if np.ptp(values) == 0:
            continue
        roc = roc_auc_score(labels, values)
        rows.append({"feature": column, "roc_auc": float(max(roc, 1 - roc))})
    return sorted(rows, key=lambda row: -row["roc_auc"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with cdnow/")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-ceiling"), help="its database")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    started = time.perf_counter()
    tabular, labels = oracle_inputs(args.data.resolve(), args.work)
    grid = oracles(tabular, labels)
    best = {metric: max(grid, key=lambda row: row[metric]) for metric in ("roc_auc", "pr_auc")}
    models = json.loads(RESULTS.read_text())["splits"][SPLIT]["models"] if RESULTS.exists() else {}
    model = next(({"model": k, **v} for k, v in models.items() if v["role"] == "model"), None)
    results = {
        "split": {"dataset": SPLITS[SPLIT][0], **SPLITS[SPLIT][3], "customers": len(labels)},
        "targets": {metric: f"{op} {bound}" for metric, (op, bound) in TARGETS[SPLIT].items()},
        "ceiling": {
            metric: {"value": round(row[metric], 4), "oracle": row["oracle"]} for metric, row in best.items()
        },
        "return_model": None
        if model is None
        else {"roc_auc": round(model["roc_auc"], 4), "pr_auc": round(model["pr_auc"], 4)},
        "best_single_features": [
            {"feature": r["feature"], "roc_auc": round(r["roc_auc"], 4)}
            for r in single_features(tabular, labels)[:5]
        ],
        "oracles": [{k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()} for row in grid],
        "folds": FOLDS,
        "fold_seeds": len(SEEDS),
        "seconds": round(time.perf_counter() - started, 1),
        "measured": time.strftime("%Y-%m-%d"),
    }
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    for metric, row in results["ceiling"].items():
        print(f"ceiling {metric}: {row['value']} ({row['oracle']}); target {results['targets'][metric]}")
    if results["return_model"]:
        print(f"return model: {results['return_model']}")
    print(f"results written to {OUT}")


if __name__ == "__main__":
    main()
