"""The one scoring path: top-k in a stable sort's order, masks never listed, p_churn = 1 - p_return."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.recommender.sequences import ItemIndex
from training.scoring import (
    HistoryScorer,
    churn_frame,
    p_churn,
    recommend_history,
    recommend_inputs,
    top_k,
)


class FixedScores:
    """A recommender whose scores are fixed per customer (the scoring path only reads these members)."""

    name = "fixed"

    def __init__(self, ids: list[str], scores: dict[str, list[float]]) -> None:
        self.index = ItemIndex.from_candidates(ids)
        self.by_customer = scores
        self.fallback = np.zeros(len(ids), dtype=np.float32)

    def history_sequences(self, history: pd.DataFrame) -> dict[str, np.ndarray]:
        return {c: self.index.codes(list(g["product_id"])) for c, g in history.groupby("customer_id")}

    def input_sequences(self, inputs: pd.DataFrame) -> list[np.ndarray]:
        return [
            self.index.codes(items.split()) if items else np.zeros(0, np.int64) for items in inputs["items"]
        ]

    def score_sequences(self, sequences: list[np.ndarray]) -> np.ndarray:
        return np.array([self._row(s) for s in sequences], dtype=np.float32).reshape(len(sequences), -1)

    def _row(self, sequence: np.ndarray) -> np.ndarray:
        key = " ".join(self.index.ids[sequence - 1]) if len(sequence) else ""
        return np.asarray(self.by_customer.get(key, self.fallback), dtype=np.float32)


@pytest.mark.parametrize(
    "scores",
    [
        [[3.0, 1.0, 3.0, 2.0, 3.0, 0.0]],  # ties inside and across the cut
        [[1.0, -np.inf, 2.0, -np.inf, -np.inf, -np.inf]],  # fewer than k entries left
        [[np.nan, 1.0, 5.0, np.nan, 1.0, 0.5]],  # NaN ranks as -inf, not first
        [[0.0, -0.0, 0.0, 1.0, 1.0, -1.0], [2.0, 2.0, 2.0, 2.0, 2.0, 2.0]],
    ],
)
@pytest.mark.parametrize("k", [0, 1, 3, 6, 9])
def test_top_k_is_a_stable_descending_sort_cut_at_k(scores: list[list[float]], k: int) -> None:
    # given scores with ties, masked (-inf) and undefined (NaN) entries
    array = np.array(scores)
    reference = np.where(np.isnan(array), -np.inf, array)
    # when the top k are taken (from numpy and float32 alike)
    columns, values = top_k(array, k)
    columns32, _ = top_k(array.astype(np.float32), k)
    # then they are a stable argsort's first k: best first, ties to the lower column
    expected = np.argsort(-reference, axis=1, kind="stable")[:, :k]
    assert np.array_equal(columns, expected) and np.array_equal(columns32, expected)
    assert np.array_equal(values, np.take_along_axis(reference, expected, axis=1))


def test_top_k_leaves_its_input_alone() -> None:
    scores = np.array([[np.nan, 2.0, 1.0]])
    top_k(scores, 2)
    assert np.isnan(scores[0, 0]) and scores[0, 1] == 2.0


def test_p_churn_is_the_complement_of_p_return_in_the_churn_frame() -> None:
    # given a return model's output with reason codes, one of them missing
    predicted = pd.DataFrame(
        {
            "customer_id": [1, 2],
            "p_return": [0.25, 0.9],
            "reason_1": ["recency_days", "frequency_90d"],
            "reason_2": ["rfm_r", None],
        }
    )
    # when it becomes churn scores
    frame = churn_frame(predicted)
    # then p_churn = 1 - p_return, ids are strings and the reasons keep their order
    assert frame["customer_id"].tolist() == ["1", "2"]
    assert frame["p_churn"].tolist() == [0.75, pytest.approx(0.1)]
    assert frame["p_churn"].tolist() == p_churn(frame["p_return"].to_numpy()).tolist()
    assert frame["reasons"].tolist() == [["recency_days", "rfm_r"], ["frequency_90d"]]
    assert churn_frame(predicted.head(0)).columns.tolist() == [
        "customer_id",
        "p_return",
        "p_churn",
        "reasons",
    ]


def test_recommendations_never_list_a_masked_product() -> None:
    # given a customer whose best products are b, then a and c tied
    model = FixedScores(["a", "b", "c", "d"], {"a": [2.0, 3.0, 2.0, 1.0]})
    history = pd.DataFrame({"customer_id": ["x"], "product_id": ["a"]})
    # when b is off sale and a is excluded for the customer
    allowed = np.array([True, False, True, True])
    top = recommend_history(model, history, np.array(["x"]), 3, allowed, (np.array([0]), np.array([0])))
    # then the rest keep their order and the list is shorter rather than padded
    assert top["product_id"].tolist() == ["c", "d"]
    assert top["rank"].tolist() == [1, 2]
    # and without masks the tie goes to the lower column
    assert recommend_history(model, history, np.array(["x"]), 3)["product_id"].tolist() == ["b", "a", "c"]


def test_serving_inputs_can_leave_out_the_listed_items() -> None:
    model = FixedScores(["a", "b", "c"], {"a b": [1.0, 3.0, 2.0]})
    inputs = pd.DataFrame({"customer_id": ["x", "y"], "items": ["a b", ""]})
    top = recommend_inputs(model, inputs, 2, exclude_seen=True)
    assert top.groupby("customer_id")["product_id"].agg(list).to_dict() == {"x": ["c"], "y": ["a", "b"]}


def test_the_history_scorer_puts_unknown_candidates_last() -> None:
    model = FixedScores(["a", "b"], {"a": [1.0, 2.0]})
    history = pd.DataFrame({"customer_id": ["x"], "product_id": ["a"]})
    scores = HistoryScorer(model, history, np.array(["a", "b", "new"])).score(np.array(["x", "ghost"]))
    lowest = np.finfo(np.float32).min
    assert scores.tolist() == [[1.0, 2.0, lowest], [0.0, 0.0, lowest]]
