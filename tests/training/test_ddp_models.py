"""Both models on the multi-device path: 2 CPU processes (ddp_spawn, gloo) match 1 process within noise."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from feature_store.events import event_log_from_frames
from retention.params import Params
from tests.training.churn.shop import AS_OF, HORIZON, fast_params, tiny_events
from training.churn import ReturnModel
from training.protocol import aligned_scores, return_metrics, return_split

AUC_NOISE = 0.08  # seed-to-seed spread of ROC-AUC on this 200-customer shop is about 0.03


def _on_devices(params: Params, devices: int) -> Params:
    training = params.training.model_copy(
        update={"devices": devices, "strategy": "ddp_spawn" if devices > 1 else "auto"}
    )
    return params.model_copy(update={"training": training})


@pytest.mark.slow
def test_return_model_on_two_processes_matches_one(tmp_path: Path) -> None:
    # given a shop whose label window is observed, and the same params on 1 and on 2 processes
    log = event_log_from_frames(tiny_events(customers=200, days=160))
    cutoff = AS_OF - pd.Timedelta(days=HORIZON)
    split = return_split(log, cutoff, HORIZON)
    params = fast_params(ensemble=1)
    params = params.model_copy(
        update={"training": params.training.model_copy(update={"max_epochs": 6, "patience": 3})}
    )
    quality = {}
    for devices in (1, 2):
        model = ReturnModel(_on_devices(params, devices), tmp_path / f"d{devices}")
        # when each fits and scores the population
        model.fit(split.history, cutoff, HORIZON)
        scores = model.predict(split.history, cutoff, HORIZON)
        quality[devices] = return_metrics(split.returned, aligned_scores(split, scores))
        assert model.fit_result.devices == devices
    # then both learnt the signal, equally well within noise
    assert quality[1]["roc_auc"] > 0.7 and quality[2]["roc_auc"] > 0.7, quality
    assert abs(quality[1]["roc_auc"] - quality[2]["roc_auc"]) < AUC_NOISE, quality
    assert abs(quality[1]["brier"] - quality[2]["brier"]) < 0.05, quality


@pytest.mark.slow
def test_sasrec_on_two_processes_matches_one(tmp_path: Path) -> None:
    # given customers whose histories always go a -> b and c -> d, split leave-last
    from tests.training.recommender.conftest import log_from_sequences, pattern_sequences, small_params
    from training.protocol import leave_last_split, ranking_metrics, recommend
    from training.recommender import SASRecRecommender

    split = leave_last_split(log_from_sequences(pattern_sequences(120, seed=5)), exclude_seen=False)
    params = small_params(max_epochs=25, mf_weight=0.0)
    quality = {}
    for devices in (1, 2):
        model = SASRecRecommender(_on_devices(params, devices), tmp_path / f"d{devices}")
        # when each fits and ranks the catalogue
        model.fit(split.history, split.candidates)
        quality[devices] = ranking_metrics(split, recommend(split, model, 10), [10])
        assert model.fit_result.devices == devices
    # then both beat chance (a random top 10 of 24 items hits 0.42) clearly, and equally within noise
    assert quality[1]["hit_rate@10"] > 0.5 and quality[2]["hit_rate@10"] > 0.5, quality
    assert abs(quality[1]["ndcg@10"] - quality[2]["ndcg@10"]) < 0.1, quality
