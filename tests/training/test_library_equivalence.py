"""Library calls that replaced hand-written formulas give the old numbers; where the hand-written
code was kept, the library's difference that justifies it (docs/architecture.md, "Hand-written vs
library") still holds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.calibration import calibration_curve
from torchmetrics.retrieval import RetrievalNormalizedDCG, RetrievalPrecision, RetrievalRecall

from training.plots import reliability_table
from training.protocol import PROBABILITY_CLIP, RecSplit, ranking_metrics, return_metrics


def _old_reliability(returned: np.ndarray, p: np.ndarray, bins: int) -> pd.DataFrame:
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    frame = pd.DataFrame({"bin": which, "p": p, "y": returned})
    table = frame.groupby("bin").agg(p_mean=("p", "mean"), observed=("y", "mean"), count=("y", "size"))
    return table.reset_index(drop=True)


@pytest.mark.parametrize("labels", ["both", "zeros", "ones"])
def test_brier_and_log_loss_equal_the_closed_forms(labels: str) -> None:
    rng = np.random.default_rng(4)
    p = np.concatenate([rng.random(200), [0.0, 1.0]])  # 0 and 1: log loss clips them
    y = {"both": (rng.random(202) < p).astype(float), "zeros": np.zeros(202), "ones": np.ones(202)}[labels]
    clipped = np.clip(p, PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
    metrics = return_metrics(y, p)
    assert metrics["brier"] == pytest.approx(np.mean((p - y) ** 2), rel=1e-12)
    closed = -np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))
    assert metrics["log_loss"] == pytest.approx(closed, rel=1e-12)
    assert metrics["log_loss"] > 0.05  # the clipped 0 or 1 is counted, not dropped


def test_reliability_table_equals_the_hand_binning_off_the_edges() -> None:
    rng = np.random.default_rng(5)
    p = rng.random(3000) ** 2
    p[:20] = 0.0  # the ends fall in the first and last bins either way
    p[20:40] = 1.0
    y = (rng.random(3000) < p).astype(float)
    table, old = reliability_table(y, p, 7), _old_reliability(y, p, 7)
    np.testing.assert_allclose(table[["p_mean", "observed"]], old[["p_mean", "observed"]], rtol=1e-12)
    assert table["count"].tolist() == old["count"].tolist() and table["count"].sum() == 3000
    observed, _ = calibration_curve(y, p, n_bins=7)
    np.testing.assert_array_equal(table["observed"], observed)


def _split(rng: np.random.Generator, users: int, items: int) -> RecSplit:
    catalogue = np.array([f"i{j:03d}" for j in range(items)])
    truth = [set(rng.choice(catalogue, size=rng.integers(1, 8), replace=False)) for _ in range(users)]
    ids = np.array([f"u{u:03d}" for u in range(users)])
    return RecSplit("leave-last", None, catalogue, ids, truth, [set() for _ in ids], False)  # type: ignore[arg-type]


def test_ranking_metrics_equal_torchmetrics_given_the_left_out_truth_and_positive_scores() -> None:
    rng = np.random.default_rng(6)
    split = _split(rng, 60, 40)
    lists = [rng.permutation(split.candidates)[:10] for _ in split.users]
    recs = pd.DataFrame(
        {
            "customer_id": np.repeat(split.users, 10),
            "rank": np.tile(np.arange(1, 11), len(split.users)),
            "product_id": np.concatenate(lists),
        }
    )
    preds, target, indexes = [], [], []
    for q, (top, truth) in enumerate(zip(lists, split.truth, strict=True)):
        missing = sorted(truth - set(top))
        preds += list(np.arange(10, 0, -1.0)) + [0.0] * len(missing)  # 0: below the list
        target += [item in truth for item in top] + [True] * len(missing)
        indexes += [q] * (10 + len(missing))
    p, t, i = torch.tensor(preds), torch.tensor(target), torch.tensor(indexes)
    ours = ranking_metrics(split, recs, [3, 10])
    for k in (3, 10):
        assert ours[f"ndcg@{k}"] == pytest.approx(
            float(RetrievalNormalizedDCG(top_k=k)(p, t, indexes=i)), abs=1e-6
        )
        assert ours[f"recall@{k}"] == pytest.approx(
            float(RetrievalRecall(top_k=k)(p, t, indexes=i)), abs=1e-6
        )
        assert ours[f"precision@{k}"] == pytest.approx(
            float(RetrievalPrecision(top_k=k)(p, t, indexes=i)), abs=1e-6
        )
    # The measured reason to keep ours: torchmetrics counts scores <= 0 as not retrieved, so a
    # model's own (here negative) scores change its recall; EVALUATION.md's recall reads ranks only.
    assert ours["recall@10"] > 0.1
    assert float(RetrievalRecall(top_k=10)(p - 100.0, t, indexes=i)) == 0.0
