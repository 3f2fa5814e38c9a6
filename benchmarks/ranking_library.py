"""Benchmark: the protocol's ranking metrics against torchmetrics.retrieval, values and time.

On MovieLens-100K (leave-last and temporal, seen items excluded, EVALUATION.md) a popularity
ranking of the full catalogue is scored by `training.protocol.ranking_metrics` and by
torchmetrics' RetrievalRecall / RetrievalNormalizedDCG / RetrievalHitRate / RetrievalPrecision
(`top_k`), each user's truth items outside the ranked list appended below it so that recall's
denominator and the ideal DCG (over min(K, |truth|)) see them. The blend grid's hot path
(`GridMetric`: ndcg@k of a (U, n_candidates) score matrix) is timed against
RetrievalNormalizedDCG on the same matrix. Times are the median of 5 runs on the same inputs.

Usage: python benchmarks/ranking_library.py --data ../shared/data [--out benchmarks/results/ranking_library.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torchmetrics.retrieval import (
    RetrievalHitRate,
    RetrievalNormalizedDCG,
    RetrievalPrecision,
    RetrievalRecall,
)

from training.protocol import RecSplit, item_cells, ranking_metrics, recommend
from training.recommender.blend import GridMetric

KS = [10, 20, 50]
RUNS = 5
LIBRARY = {
    "recall": RetrievalRecall,
    "ndcg": RetrievalNormalizedDCG,
    "hit_rate": RetrievalHitRate,
    "precision": RetrievalPrecision,
}


def movielens(data: Path) -> pd.DataFrame:
    frame = pd.read_csv(data / "movielens-100k" / "ml-100k.inter", sep="\t")
    frame.columns = ["customer_id", "product_id", "rating", "ts"]
    return frame.astype({"customer_id": str, "product_id": str})


def make_split(history: pd.DataFrame, truth: pd.DataFrame, candidates: np.ndarray) -> RecSplit:
    """A RecSplit with seen items excluded (only what the metrics read is filled in)."""
    seen_by = history.groupby("customer_id")["product_id"].agg(set)
    truth_by = truth.groupby("customer_id")["product_id"].agg(set)
    users, truths, seens = [], [], []
    for user in sorted(truth_by.index):
        own = seen_by.get(user, set())
        items = truth_by[user] - own
        if items and own:
            users.append(user)
            truths.append(items)
            seens.append(own)
    return RecSplit("leave-last", None, candidates, np.array(users), truths, seens, True)  # type: ignore[arg-type]


def splits(events: pd.DataFrame) -> dict[str, RecSplit]:
    candidates = np.unique(events["product_id"])
    last = events.groupby("customer_id")["ts"].transform("max")
    leave_last = make_split(events[events["ts"] < last], events[events["ts"] == last], candidates)
    cut = events["ts"].quantile(0.8)
    temporal = make_split(events[events["ts"] < cut], events[events["ts"] >= cut], candidates)
    return {"ml-leave-last": leave_last, "ml-temporal": temporal}


class Popularity:
    """Scores every candidate by its purchase count in the history (same row for every user)."""

    name = "popularity"

    def __init__(self, split: RecSplit) -> None:
        counts = pd.Series([i for items in split.seen for i in items]).value_counts()
        jitter = np.random.default_rng(0).random(len(split.candidates)) * 1e-3
        self.row: np.ndarray = (
            counts.reindex(split.candidates).fillna(0).to_numpy(dtype=float) + jitter
        )  # no ties: order-independent

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.tile(self.row, (len(users), 1))


def library_inputs(
    split: RecSplit, recommendations: pd.DataFrame
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """preds, target, indexes: each user's ranked list, then the truth items it left out."""
    ranked = (
        recommendations.sort_values(["customer_id", "rank"]).groupby("customer_id")["product_id"].agg(list)
    )
    preds, target, indexes = [], [], []
    for q, (user, truth) in enumerate(zip(split.users, split.truth, strict=True)):
        top = ranked.get(user, [])
        missing = sorted(truth - set(top))
        # Positive scores for the list, 0 below it: torchmetrics' recall and precision count only
        # items scored > 0 as retrieved.
        preds += [float(len(top) + 1 - r) for r in range(1, len(top) + 1)] + [0.0] * len(missing)
        target += [item in truth for item in top] + [True] * len(missing)
        indexes += [q] * (len(top) + len(missing))
    return torch.tensor(preds), torch.tensor(target), torch.tensor(indexes)


def library_compute(
    preds: torch.Tensor, target: torch.Tensor, indexes: torch.Tensor, ks: list[int]
) -> dict[str, float]:
    return {
        f"{name}@{k}": float(metric(top_k=k)(preds, target, indexes=indexes))
        for k in ks
        for name, metric in LIBRARY.items()
    }


def library_metrics(split: RecSplit, recommendations: pd.DataFrame, ks: list[int]) -> dict[str, float]:
    """The same figures by torchmetrics (coverage has no counterpart there)."""
    return library_compute(*library_inputs(split, recommendations), ks)


def median_time(call: Callable[[], object]) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def grid_library(split: RecSplit, scores: np.ndarray, k: int) -> float:
    """RetrievalNormalizedDCG on a (U, n) score matrix, seen items masked as GridMetric does."""
    values = scores.copy()
    values[item_cells(pd.Index(split.candidates), split.seen)] = -np.inf
    truth = np.zeros_like(values, dtype=bool)
    truth[item_cells(pd.Index(split.candidates), split.truth)] = True
    rows = torch.arange(len(values)).repeat_interleave(values.shape[1])
    metric = RetrievalNormalizedDCG(top_k=k)
    return float(metric(torch.from_numpy(values).flatten(), torch.from_numpy(truth).flatten(), indexes=rows))


def compare(split: RecSplit) -> dict[str, object]:
    """Values and median times of both implementations on one split."""
    model = Popularity(split)
    recommendations = recommend(split, model, max(KS))
    ours = ranking_metrics(split, recommendations, KS)
    theirs = library_metrics(split, recommendations, KS)
    diff = max(abs(ours[key] - theirs[key]) for key in theirs)  # every K of the four metrics
    inputs = library_inputs(split, recommendations)
    scores = model.score(split.users)
    grid = GridMetric(split, split.users, 10)
    return {
        "users": len(split.users),
        "candidates": len(split.candidates),
        "mean_truth": float(np.mean([len(t) for t in split.truth])),
        "max_abs_difference": diff,
        "ndcg@10": [ours["ndcg@10"], theirs["ndcg@10"]],
        "ranking_metrics_s": median_time(lambda: ranking_metrics(split, recommendations, KS)),
        "torchmetrics_s": median_time(lambda: library_metrics(split, recommendations, KS)),
        "torchmetrics_compute_only_s": median_time(lambda: library_compute(*inputs, KS)),
        "grid_ndcg@10": [grid(scores), grid_library(split, scores, 10)],
        "grid_metric_s": median_time(lambda: grid(scores)),
        "grid_torchmetrics_s": median_time(lambda: grid_library(split, scores, 10)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    results: dict[str, object] = {"machine": platform.processor() or platform.machine(), "runs": RUNS}
    for name, split in splits(movielens(args.data)).items():
        results[name] = compare(split)
        print(name, json.dumps(results[name]))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
