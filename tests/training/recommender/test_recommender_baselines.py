"""Popularity, item-kNN and ALS matrix factorisation on tiny interaction logs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from feature_store.events import event_log_from_frames
from retention.params import Params
from tests.training.recommender.conftest import log_from_sequences, small_params
from training.protocol import leave_last_split, ranking_metrics, recommend
from training.recommender import ItemKNN, MatrixFactorisation, Popularity
from training.recommender.baselines import interactions, item_similarity
from training.recommender.mf import als_half_step, fold_in

MODELS = (Popularity, ItemKNN, MatrixFactorisation)


@pytest.fixture
def params() -> Params:
    params = small_params()
    recommender = params.recommender
    # twenty customers need far less shrinkage than the default, which is set for real catalogues
    mf = recommender.mf.model_copy(update={"regularisation": 0.1})
    return params.model_copy(update={"recommender": recommender.model_copy(update={"mf": mf})})


def two_tastes() -> dict[str, list[str]]:
    """Ten customers like x1..x4, ten like y1..y4; x0 is the most popular item of all."""
    out = {}
    for i in range(10):
        out[f"x{i}"] = ["x0", *[f"x{1 + (i + j) % 4}" for j in range(3)]]
        out[f"y{i}"] = ["x0", *[f"y{1 + (i + j) % 4}" for j in range(3)]]
    return out


def test_interactions_count_events_per_customer_and_candidate(params: Params) -> None:
    # given a customer who viewed then bought p1, and an event on a product outside the candidates
    events = pd.DataFrame(
        {
            "customer_id": ["c1", "c1", "c2", "c2"],
            "product_id": ["p1", "p1", "p2", "zz"],
            "event_type": ["view", "purchase", "purchase", "purchase"],
        }
    )
    # when the interaction matrix is built over candidates p1, p2, p3
    built = interactions(events, np.array(["p1", "p2", "p3"]), params.recommender.event_types)
    # then rows are sorted customers, columns the candidates, cells the event counts
    assert built.users.tolist() == ["c1", "c2"]
    assert built.matrix.toarray().tolist() == [[2, 0, 0], [0, 1, 0]]
    assert built.rows(np.array(["c2", "c9"])).tolist() == [1, -1]


@pytest.mark.parametrize("model_class", MODELS)
def test_every_model_scores_every_candidate_finitely_for_known_and_unknown_users(
    model_class: type, params: Params
) -> None:
    # given a log and a catalogue with one product nobody interacted with
    log = log_from_sequences(two_tastes())
    candidates = np.sort(np.append(log.products["product_id"].to_numpy(dtype=str), "never"))
    model = model_class(params)
    # when the model is fitted and scores a known and an unknown customer
    model.fit(log, candidates)
    scores = model.score(np.array(["x1", "stranger"]))
    # then the matrix covers every candidate, is finite, and the stranger gets popularity
    assert scores.shape == (2, len(candidates)) and scores.dtype == np.float32
    assert np.isfinite(scores).all()
    assert candidates[np.argmax(scores[1])] == "x0"


def test_popularity_counts_distinct_customers(params: Params) -> None:
    # given p1 bought three times by one customer and p2 once each by two customers
    log = log_from_sequences({"a": ["p1", "p1", "p1", "p2"], "b": ["p2"]})
    model = Popularity(params)
    # when it is fitted
    model.fit(log, np.array(["p1", "p2"]))
    # then p2 (two customers) outranks p1 (one), for everyone alike
    assert model.score(np.array(["a", "b"])).tolist() == [[1.0, 2.0], [1.0, 2.0]]


@pytest.mark.parametrize("model_class", (ItemKNN, MatrixFactorisation))
def test_personal_models_recommend_within_the_customers_taste(model_class: type, params: Params) -> None:
    # given two groups of customers with disjoint tastes
    log = log_from_sequences(two_tastes())
    candidates = np.unique(log.products["product_id"].to_numpy(dtype=str))
    model = model_class(params)
    model.fit(log, candidates)
    # when a customer of each group is scored
    scores = pd.DataFrame(model.score(np.array(["x0", "y0"])), columns=candidates, index=["x0", "y0"])
    # then each group's own unseen item beats every item of the other taste
    assert scores.loc["x0", "x4"] > scores.loc["x0", [f"y{i}" for i in range(1, 5)]].max()
    assert scores.loc["y0", "y4"] > scores.loc["y0", [f"x{i}" for i in range(1, 5)]].max()


def test_item_similarity_keeps_the_nearest_neighbours_without_self_similarity(
    params: Params,
) -> None:
    # given items 0 and 1 always bought together, item 2 once with item 0
    log = log_from_sequences({"a": ["i0", "i1"], "b": ["i0", "i1"], "c": ["i0", "i2"]})
    matrix = interactions(log.events, np.array(["i0", "i1", "i2"]), params.recommender.event_types).matrix
    knn = params.recommender.item_knn.model_copy(update={"neighbours": 1, "shrinkage": 0.0})
    # when one neighbour per item is kept
    similarity = item_similarity(matrix, knn).toarray()
    # then item 0's neighbour is item 1, no item is its own neighbour, and cosine values are right
    assert np.flatnonzero(similarity[0]).tolist() == [1]
    assert np.allclose(np.diag(similarity), 0)
    assert similarity[0, 1] == pytest.approx(2 / np.sqrt(3 * 2))


def test_baselines_run_through_the_protocol_and_beat_nothing_by_chance(params: Params) -> None:
    # given two tastes, where each customer's last basket is one more item of their taste
    sequences = {u: items + [f"{u[0]}{1 + (int(u[1]) + 3) % 4}"] for u, items in two_tastes().items()}
    events = log_from_sequences(sequences).events
    split = leave_last_split(event_log_from_frames(events), exclude_seen=True)
    model = ItemKNN(params)
    model.fit(split.history, split.candidates)
    # when the protocol ranks and measures
    metrics = ranking_metrics(split, recommend(split, model, k=10), ks=[1])
    # then item-kNN finds the held-out item of the customer's own taste first
    assert metrics["hit_rate@1"] == 1.0


def test_fold_in_gives_a_known_customer_the_factors_training_gave_them(params: Params) -> None:
    # given a factorisation fitted on two tastes
    log = log_from_sequences(two_tastes())
    candidates = np.unique(log.products["product_id"].to_numpy(dtype=str))
    model = MatrixFactorisation(params)
    model.fit(log, candidates)
    # when a customer's factors are folded in from their items alone
    row = model.history.rows(np.array(["x3"]))[0]
    columns = model.history.matrix[row].indices
    mf = params.recommender.mf
    folded = fold_in(model.item_factors, [columns, np.zeros(0, dtype=np.int64)], mf.alpha, mf.regularisation)
    # then they solve the same regression as a customer sweep against the final item factors,
    # are close to the fitted ones (computed one item sweep earlier), and no items give zeros
    sweep = als_half_step((model.history.matrix * mf.alpha).tocsr(), model.item_factors, mf.regularisation)
    np.testing.assert_allclose(folded[0], sweep[row], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(folded[0], model.user_factors[row], atol=0.02)
    assert not folded[1].any()


def test_batched_fold_in_solves_each_customers_own_regression(monkeypatch: pytest.MonkeyPatch) -> None:
    # given item factors and customers with repeated items, empty histories, over several batches
    monkeypatch.setattr("training.recommender.mf.FOLD_IN_BATCH", 4)
    rng = np.random.default_rng(0)
    item_factors = rng.normal(size=(30, 6)).astype(np.float32)
    columns = [rng.integers(0, 30, size=n) for n in (0, 1, 5, 12, 3, 0, 7, 2, 9, 4, 1)]
    # when they are folded in
    folded = fold_in(item_factors, columns, 2.0, 0.5)
    # then each row is the per-customer ridge regression of ALS (counts as confidence)
    rows = np.repeat(np.arange(len(columns)), [len(c) for c in columns])
    counts = pd.DataFrame({"r": rows, "c": np.concatenate(columns)}).value_counts()
    matrix = sparse.csr_matrix(
        (counts.to_numpy() * 2.0, (counts.index.get_level_values(0), counts.index.get_level_values(1))),
        shape=(len(columns), 30),
    )
    expected = als_half_step(matrix, item_factors.astype(np.float64), 0.5)
    np.testing.assert_allclose(folded, expected, rtol=1e-4, atol=1e-5)
    assert not folded[0].any() and not folded[5].any()
