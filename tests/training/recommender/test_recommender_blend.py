"""SASRec's blend weights: chosen from the grid on an inner split of the history only, and recorded."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feature_store.events import EventLog, event_log_from_frames
from tests.training.recommender.conftest import DAY0, log_from_sequences, pattern_sequences, small_params
from training.backtest import BacktestRequest, run_backtest
from training.protocol import ProtocolError, leave_last_split, temporal_split
from training.recommender.blend import BlendParts, blend_grid, choose_weights, validation_split
from training.recommender.sasrec import SASRecRecommender

GRID = {"mf_weights": [0.0, 0.5], "popularity_weights": [0.0, 1.0], "knn_weights": [0.0, 1.0]}


def log_with_a_test_window(as_of: pd.Timestamp) -> EventLog:
    """Pattern histories, an item every 3 days up to `as_of`, then items `late*` seen only after it."""
    rows = [
        {"customer_id": customer, "product_id": item, "ts": as_of - pd.Timedelta(days=3 * (len(items) - day))}
        for customer, items in pattern_sequences(60, seed=1).items()
        for day, item in enumerate(items)
    ]
    rows += [
        {"customer_id": f"u{c:03d}", "product_id": f"late{c % 5}", "ts": as_of + pd.Timedelta(days=c % 7)}
        for c in range(60)
    ]
    return event_log_from_frames(pd.DataFrame(rows))


def test_the_temporal_validation_split_lies_inside_the_history() -> None:
    # given a temporal split at T whose test window holds items never seen before T
    as_of = DAY0 + pd.Timedelta(days=100)
    split = temporal_split(log_with_a_test_window(as_of), as_of, 7, exclude_seen=True)
    # when the protocol is applied again inside its history
    inner = validation_split(split)
    # then every inner event is before T, the window ends at T, and no test-window item appears
    assert inner.history.events["ts"].max() < inner.as_of < as_of
    assert inner.as_of + pd.Timedelta(days=inner.horizon_days) == as_of
    assert not any(item.startswith("late") for truth in inner.truth for item in truth)
    assert not inner.history.events["product_id"].astype(str).str.startswith("late").any()
    assert set(inner.users) <= set(split.history.events["customer_id"].astype(str))


def test_a_short_history_shrinks_the_inner_horizon_to_half_its_span() -> None:
    # given a history of about 36 days and a horizon of 30 days (shorter than two horizons)
    as_of = DAY0 + pd.Timedelta(days=100)
    split = temporal_split(log_with_a_test_window(as_of), as_of, 30, exclude_seen=True)
    # when the validation split is built
    inner = validation_split(split)
    # then its horizon is half the history's span, still ending at T
    span = (as_of - split.history.events["ts"].min()).days
    assert inner.horizon_days == span // 2
    assert inner.as_of + pd.Timedelta(days=inner.horizon_days) == as_of


def test_the_leave_last_validation_split_never_uses_the_held_out_baskets() -> None:
    # given a leave-last split
    log = log_from_sequences(pattern_sequences(30, seed=2))
    split = leave_last_split(log, exclude_seen=False)
    # when the protocol is applied again inside its history
    inner = validation_split(split)
    # then each inner truth is the user's last item of the history, not of the whole log
    last_in_history = split.history.events.sort_values("ts").groupby("customer_id")["product_id"].last()
    for user, truth in zip(inner.users, inner.truth, strict=True):
        assert truth == {last_in_history[user]}
    assert len(inner.history.events) == len(split.history.events) - len(inner.users)


def test_a_history_of_one_day_has_no_validation_split() -> None:
    # given a temporal split whose history spans a single day
    log = log_from_sequences({"u1": ["a", "b"], "u2": ["b", "c"]})
    split = temporal_split(log, DAY0 + pd.Timedelta(days=1), 5, exclude_seen=True)
    # when / then the inner split cannot be built
    with pytest.raises(ProtocolError):
        validation_split(split)


def test_the_grid_winner_is_the_best_pair_and_the_first_one_on_ties() -> None:
    # given two users, where only the popularity part ranks their truth first
    as_of = DAY0 + pd.Timedelta(days=100)
    split = temporal_split(log_with_a_test_window(as_of), as_of, 7, exclude_seen=False)
    users, n = split.users[:2], len(split.candidates)
    target = [int(np.searchsorted(split.candidates, sorted(t)[0])) for t in split.truth[:2]]
    popularity = np.zeros((1, n))
    popularity[0, target] = 10.0
    zeros = np.zeros((2, n))
    parts = BlendParts(users, zeros, zeros, zeros, popularity, np.array([True, True]))
    sub = replace(split, users=users, truth=split.truth[:2], seen=split.seen[:2])
    # when the grid is scored
    grid = [(0.0, 0.0, 0.0, 0.0), (1.0, 0.0, 1.0, 0.0), (0.0, 1.0, 0.0, 0.0), (0.0, 2.0, 0.0, 0.0)]
    choice = choose_weights(sub, parts, grid, k=10)
    # then the first triple with popularity wins, and every triple's score is kept
    assert (choice["mf_weight"], choice["popularity_weight"], choice["knn_weight"]) == (0.0, 1.0, 0.0)
    assert [g["ndcg@10"] for g in choice["grid"]][2] == choice["best"] > choice["grid"][0]["ndcg@10"]
    assert len(choice["grid"]) == 4


def test_the_grid_falls_back_to_the_fixed_weights() -> None:
    # given params without grids
    config = small_params(
        mf_weights=[],
        popularity_weights=[],
        knn_weights=[],
        mf_weight=0.3,
        popularity_weight=0.1,
        knn_weight=0.2,
    )
    # then the only tuple is the configured one (no buy-again part while seen items are excluded)
    assert blend_grid(config.recommender.sasrec) == [(0.3, 0.1, 0.2, 0.0)]
    assert len(blend_grid(small_params(**GRID).recommender.sasrec)) == 8


def test_the_backtest_chooses_the_blend_on_history_and_records_it(tmp_path: Path) -> None:
    # given a temporal backtest of SASRec alone with a small grid
    as_of = DAY0 + pd.Timedelta(days=100)
    log = log_with_a_test_window(as_of)
    params = small_params(max_epochs=8, **GRID)
    request = BacktestRequest("recommender", "temporal", as_of, 7, True, tmp_path / "out")

    def sasrec_only(params_: object, work_dir: Path) -> list[tuple[str, object]]:
        return [("model", SASRecRecommender(params, work_dir / "sasrec"))]

    # when it runs
    reports = run_backtest(log, request, params, tmp_path / "work", models=sasrec_only)
    # then the chosen weights come from the grid, were scored on the inner split, and are written
    written = json.loads((tmp_path / "out" / "metrics.json").read_text())
    tuning = written["tuning"]
    assert tuning["mf_weight"] in GRID["mf_weights"]
    assert tuning["popularity_weight"] in GRID["popularity_weights"]
    assert tuning["knn_weight"] in GRID["knn_weights"]
    assert len(tuning["grid"]) == 8 and tuning["metric"] == "ndcg@10"
    assert tuning["best"] == max(g["ndcg@10"] for g in tuning["grid"])
    assert pd.Timestamp(tuning["as_of"]) < as_of
    assert reports[0].metrics["n_users"] > 0


def test_a_model_with_every_blend_part_saves_and_loads(tmp_path: Path) -> None:
    # given a model fitted with all three parts of the blend
    log = log_from_sequences(pattern_sequences(40, seed=3))
    params = small_params(max_epochs=5, mf_weight=0.5, popularity_weight=0.5, knn_weight=1.0)
    model = SASRecRecommender(params, tmp_path / "run")
    model.fit(log, np.unique(log.products["product_id"].to_numpy(dtype=str)))
    # when it is saved and loaded
    model.save(tmp_path / "model")
    loaded = SASRecRecommender.load(tmp_path / "model")
    # then the blend and its parts come back and the scores are the same
    assert loaded.blend == model.blend and loaded.blend.knn_weight == 1.0
    users = np.array(["u000", "u001", "nobody"])
    assert np.allclose(
        loaded.score_sequences([model.sequences.get(u, np.zeros(0, dtype=np.int64)) for u in users]),
        model.score(users),
        atol=1e-5,
    )


@pytest.mark.parametrize("exclude_seen", [True, False])
def test_the_grid_metric_is_the_protocols_ndcg_to_the_last_bit(exclude_seen: bool) -> None:
    """`GridMetric` is a vectorised copy of `recommend` + `ranking_metrics` for the grid: it must not drift."""
    from training.protocol import ranking_metrics, recommend
    from training.recommender.blend import FixedScores, GridMetric

    # given a split and score matrices with many ties (rounded) and missing values, rows shuffled
    as_of = DAY0 + pd.Timedelta(days=100)
    split = temporal_split(log_with_a_test_window(as_of), as_of, 7, exclude_seen=exclude_seen)
    rng = np.random.default_rng(3)
    users = rng.permutation(np.asarray(split.users, dtype=str))
    for trial in range(5):
        scores = np.round(rng.normal(size=(len(users), len(split.candidates))), 1).astype(np.float32)
        scores[rng.random(scores.shape) < 0.05] = np.nan if trial % 2 else -np.inf
        # when both compute ndcg@10
        expected = ranking_metrics(split, recommend(split, FixedScores(users, scores), 10), [10])["ndcg@10"]
        # then they agree exactly
        assert GridMetric(split, users, 10)(scores) == expected
