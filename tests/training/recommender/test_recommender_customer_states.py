"""Materialised customer states: the fused product gives SASRec's blended scores, and refreshes reuse rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.training.recommender.conftest import log_from_sequences, pattern_sequences, small_params
from training.recommender.customer_states import CustomerStates, refresh_states
from training.recommender.sasrec.recommender import SASRecRecommender
from training.scoring import StateScorer

AS_OF = pd.Timestamp("2024-06-01")
BLENDS = {
    "sasrec alone": {"mf_weight": 0.0},
    "sasrec + als": {"mf_weight": 0.5},
    "every part": {"mf_weight": 0.5, "popularity_weight": 0.5, "knn_weight": 1.0},
}


@pytest.fixture(scope="module", params=list(BLENDS))
def fitted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> SASRecRecommender:
    log = log_from_sequences(pattern_sequences(40, seed=3))
    model = SASRecRecommender(
        small_params(max_epochs=3, **BLENDS[request.param]), tmp_path_factory.mktemp("run")
    )
    model.fit(log, np.unique(log.products["product_id"].to_numpy(dtype=str)))
    return model


def dense_scores(model: SASRecRecommender, states: CustomerStates) -> np.ndarray:
    """Every score of the fused product (state vectors x item matrix), kNN part included, in float64."""
    return model.fused_scores()(states.vectors.astype(np.float64), states.tails)


def test_the_fused_product_equals_the_blended_scores(fitted: SASRecRecommender) -> None:
    # given every fitted customer's states, plus one without history
    sequences = dict(fitted.sequences)
    sequences["nobody"] = np.zeros(0, dtype=np.int64)
    states, computed = refresh_states(fitted, "m/1", sequences, AS_OF, 0, "")
    # when the states are multiplied by the item matrix
    fused = dense_scores(fitted, states)
    # then the scores are score_sequences' own, row for row
    direct = fitted.score_sequences([sequences[c] for c in states.customer_ids])
    assert computed == len(sequences)
    assert np.allclose(fused, direct, atol=1e-4, rtol=1e-4)


def test_top_k_from_states_follows_the_blended_ranking(fitted: SASRecRecommender) -> None:
    # given the states and a mask of one product per customer
    states, _ = refresh_states(fitted, "m/1", fitted.sequences, AS_OF, 0, "")
    direct = fitted.score_sequences([fitted.sequences[c] for c in states.customer_ids])
    banned = np.argmax(direct, axis=1)
    rows = np.arange(len(states.customer_ids))
    # when the scorer takes the top 5
    columns, finite = StateScorer(fitted).top_k(states.vectors, states.tails, 5, (rows, banned))
    # then they are the top 5 of the blended scores without the masked product
    direct[rows, banned] = -np.inf
    expected = np.argsort(-direct, axis=1, kind="stable")[:, :5]
    assert finite.all()
    assert np.allclose(
        np.take_along_axis(direct, columns, 1), np.take_along_axis(direct, expected, 1), atol=1e-4
    )
    assert not np.any(columns == banned[:, None])


def test_inactive_products_are_never_recommended(fitted: SASRecRecommender) -> None:
    # given a catalogue with only three products on sale
    states, _ = refresh_states(fitted, "m/1", fitted.sequences, AS_OF, 0, "")
    allowed = np.zeros(fitted.index.size, dtype=bool)
    allowed[[0, 2, 4]] = True
    # when ten products are asked for
    columns, finite = StateScorer(fitted, allowed).top_k(states.vectors, states.tails, 10, None)
    # then each customer gets the three, nothing else
    assert columns.shape == (len(states.customer_ids), 3) and finite.all()
    assert set(np.unique(columns)) == {0, 2, 4}


def test_a_refresh_recomputes_only_customers_whose_tail_changed(
    fitted: SASRecRecommender, tmp_path: Path
) -> None:
    # given saved states, then one customer buys something new and a new customer arrives
    states, _ = refresh_states(fitted, "m/1", fitted.sequences, AS_OF, 100, "t1")
    states.save(tmp_path / "states.npz")
    previous = CustomerStates.load(tmp_path / "states.npz")
    sequences = dict(fitted.sequences)
    first = states.customer_ids[0]
    sequences[first] = np.r_[sequences[first], 1]
    sequences["newcomer"] = np.array([2, 3])
    # when the states are refreshed from the saved ones
    refreshed, computed = refresh_states(
        fitted, "m/1", sequences, AS_OF + pd.Timedelta(days=1), 102, "t2", previous
    )
    # then two customers are recomputed and every vector equals a full recomputation
    full, _ = refresh_states(fitted, "m/1", sequences, AS_OF + pd.Timedelta(days=1), 102, "t2")
    assert computed == 2
    assert np.array_equal(refreshed.customer_ids, full.customer_ids)
    assert np.allclose(refreshed.vectors, full.vectors, atol=1e-6)
    # and states of another model version are never reused
    assert refresh_states(fitted, "m/2", sequences, AS_OF, 102, "t2", previous)[1] == len(sequences)
    assert refreshed.is_current("m/1", 102, "t2")
    assert not refreshed.is_current("m/1", 103, "t2") and not refreshed.is_current("m/2", 102, "t2")
