"""The evaluation protocol on hand-checked logs: splits, metric formulas, seen-item masking."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from feature_store.events import event_log_from_frames
from training.protocol import (
    ProtocolError,
    leave_last_split,
    ranking_metrics,
    recommend,
    return_metrics,
    return_split,
    temporal_split,
)


def _log(rows: list[tuple], products: list[str] | None = None):  # noqa: ANN202
    events = pd.DataFrame(rows, columns=["customer_id", "product_id", "ts", "event_type", "order_id"])
    events["ts"] = pd.to_datetime(events["ts"])
    catalogue = None if products is None else pd.DataFrame({"product_id": products})
    return event_log_from_frames(events, products=catalogue)


LOG = _log(
    [
        ("u1", "a", "2024-01-01", "purchase", "o1"),
        ("u1", "b", "2024-01-01", "purchase", "o1"),
        ("u1", "c", "2024-02-10", "purchase", "o2"),  # returns inside [T, T+30)
        ("u2", "a", "2024-01-05", "view", None),
        ("u2", "b", "2024-01-06", "purchase", "o3"),
        ("u2", "c", "2024-03-20", "purchase", "o4"),  # after the window
        ("u3", "c", "2024-01-20", "view", None),  # never bought before T: not in the population
        ("u3", "c", "2024-02-05", "purchase", "o5"),
        ("u4", "a", "2024-01-03", "purchase", "o6"),
        ("u4", "a", "2024-02-03", "view", None),  # a view is not a return
    ],
    products=["a", "b", "c", "d"],
)
T = pd.Timestamp("2024-02-01")


def test_return_split_population_and_labels() -> None:
    split = return_split(LOG, T, horizon_days=30)
    assert list(split.population) == ["u1", "u2", "u4"]
    assert list(split.returned) == [1, 0, 0]
    assert split.history.events["ts"].max() < T


def test_return_split_refuses_a_window_past_the_log() -> None:
    with pytest.raises(ProtocolError, match="before the label window"):
        return_split(LOG, T, horizon_days=365)


def test_return_metrics_match_hand_computation() -> None:
    y = np.array([1, 0, 0, 1])
    p = np.array([0.9, 0.2, 0.6, 0.4])
    metrics = return_metrics(y, p)
    assert metrics["roc_auc"] == pytest.approx(0.75)  # 3 of 4 positive/negative pairs ordered
    assert metrics["pr_auc"] == pytest.approx((1.0 + 2 / 3) / 2)
    assert metrics["brier"] == pytest.approx((0.01 + 0.04 + 0.36 + 0.36) / 4)
    expected_log_loss = -(math.log(0.9) + math.log(0.8) + math.log(0.4) + math.log(0.4)) / 4
    assert metrics["log_loss"] == pytest.approx(expected_log_loss)
    assert metrics["base_rate"] == 0.5 and metrics["n_users"] == 4


def test_return_metrics_reject_out_of_range_probabilities() -> None:
    with pytest.raises(ProtocolError, match="probabilities"):
        return_metrics(np.array([0, 1]), np.array([0.5, 1.2]))


def test_temporal_split_truth_and_seen() -> None:
    split = temporal_split(LOG, T, horizon_days=30, exclude_seen=True)
    # u1 bought c (unseen) in the window; u3 bought c but had viewed it (seen) -> dropped; u4 re-viewed a (seen).
    assert list(split.users) == ["u1"]
    assert split.truth == [{"c"}]
    assert list(split.candidates) == ["a", "b", "c", "d"]  # history items plus the catalogue
    kept = temporal_split(LOG, T, horizon_days=30, exclude_seen=False)
    assert list(kept.users) == ["u1", "u3", "u4"]
    assert kept.truth[1] == {"c"}


def test_leave_last_uses_orders_then_timestamps() -> None:
    split = leave_last_split(LOG, exclude_seen=False)
    users = dict(zip(split.users, split.truth, strict=True))
    assert users["u1"] == {"c"}  # last order o2; o1's two lines stay in history
    assert users["u2"] == {"c"}
    assert users["u4"] == {"a"}  # the view basket (by timestamp) is the last
    history = split.history.events
    assert not ((history["customer_id"] == "u1") & (history["product_id"] == "c")).any()
    assert ((history["customer_id"] == "u1") & (history["order_id"] == "o1")).sum() == 2
    masked = leave_last_split(LOG, exclude_seen=True)
    assert "u4" not in masked.users  # its last item was seen before


class FixedScores:
    """Scores items in a fixed order for everyone: d > c > b > a."""

    name = "fixed"

    def fit(self, history, candidates):  # noqa: ANN001, ANN201
        self.candidates = candidates

    def score(self, users):  # noqa: ANN001, ANN201
        order = {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4}
        return np.tile([order[i] for i in self.candidates], (len(users), 1))


def test_recommend_masks_seen_items_only_when_asked() -> None:
    split = temporal_split(LOG, T, horizon_days=30, exclude_seen=True)
    model = FixedScores()
    model.fit(split.history, split.candidates)
    recs = recommend(split, model, k=3)
    assert list(recs["product_id"]) == ["d", "c"]  # a and b were u1's purchases before T
    assert list(recs["rank"]) == [1, 2]
    unmasked = temporal_split(LOG, T, horizon_days=30, exclude_seen=False)
    assert list(recommend(unmasked, model, k=3).query("customer_id == 'u1'")["product_id"]) == ["d", "c", "b"]


def test_ranking_metrics_formulas() -> None:
    split = temporal_split(LOG, T, horizon_days=30, exclude_seen=False)
    recs = pd.DataFrame(
        {
            "customer_id": ["u1", "u1", "u3", "u3", "u4", "u4"],
            "rank": [1, 2, 1, 2, 1, 2],
            "product_id": ["d", "c", "c", "a", "b", "d"],
            "score": [2.0, 1.0, 2.0, 1.0, 2.0, 1.0],
        }
    )
    metrics = ranking_metrics(split, recs, [1, 2])
    assert metrics["recall@2"] == pytest.approx(2 / 3)  # u1 and u3 hit their single truth item
    assert metrics["ndcg@2"] == pytest.approx((1 / math.log2(3) + 1.0 + 0.0) / 3)
    assert metrics["hit_rate@1"] == pytest.approx(1 / 3)
    assert metrics["precision@2"] == pytest.approx((0.5 + 0.5 + 0) / 3)
    assert metrics["coverage@2"] == pytest.approx(4 / 4)
    assert metrics["coverage@1"] == pytest.approx(3 / 4)
    assert metrics["n_users"] == 3
