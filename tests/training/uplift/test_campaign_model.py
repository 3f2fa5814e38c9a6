"""The uplift family on a synthetic campaign log with a known, heterogeneous effect."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feature_store.campaign_log import CampaignLog
from retention.params import load_params
from tests.conftest import ROOT
from training.families import family
from training.protocol import ProtocolError
from training.uplift.campaign_model import CampaignUplift

PARAMS = load_params(ROOT / "params.yaml")
OFFERS = list(PARAMS.campaign.offers)


def campaign_log(campaigns: int, per_campaign: int, seed: int = 0) -> CampaignLog:
    """Recent customers are persuadable by the coupon; long-gone ones are sleeping dogs."""
    rng = np.random.default_rng(seed)
    frames = []
    for c in range(campaigns):
        n = per_campaign
        recency = rng.uniform(1, 120, n)
        p_churn = rng.uniform(0.2, 0.9, n)
        offer = rng.choice(["none", *OFFERS], n, p=[0.4, 0.2, 0.2, 0.2])
        effect = np.where(offer == "coupon_10", np.where(recency < 60, 0.25, -0.10), 0.0)
        base = 1.0 - p_churn
        returned = rng.random(n) < np.clip(base + effect, 0, 1)
        frames.append(
            pd.DataFrame(
                {
                    "campaign_id": f"winback-{c}",
                    "customer_id": [f"C{c}-{i}" for i in range(n)],
                    "segment": "at_risk",
                    "p_churn": p_churn,
                    "predicted_value": 50.0,
                    "offer": offer,
                    "policy_offer": "none",
                    "risk_offer": "reminder",
                    "propensity": np.where(offer == "none", 0.4, 0.2),
                    "features": [{"recency_days": r, "frequency_365d": 3.0} for r in recency],
                    "returned": returned,
                    "revenue": returned * rng.uniform(20, 80, n),
                    "as_of": pd.Timestamp("2026-03-02") + pd.Timedelta(days=7 * c),
                    "horizon_days": 30,
                }
            )
        )
    return CampaignLog(pd.concat(frames, ignore_index=True))


def test_the_model_finds_who_the_coupon_persuades_and_beats_its_baselines(tmp_path: Path) -> None:
    uplift = family("uplift")
    data = campaign_log(3, 3000)
    request = uplift.holdout_request(uplift.data_end(data), PARAMS, tmp_path)
    split = uplift.split(data, request)
    assert split.holdout["campaign_id"].unique().tolist() == ["winback-2"]
    scores, scored_by_name = {}, {}
    for role, model in uplift.models(PARAMS, tmp_path):
        scored, plots = uplift.evaluate(split, model, tmp_path / model.name, PARAMS)
        scores[model.name], scored_by_name[model.name] = scored.metrics, scored
        if role == "model":
            assert any(p.name == "qini_coupon_10.png" for p in plots)
            estimates = model.predict_offers(split.holdout)
            recent = split.holdout["features"].map(lambda f: f["recency_days"] < 60).to_numpy()
            coupon = estimates["uplift_return_coupon_10"].to_numpy()
            assert coupon[recent].mean() > 0.15 and coupon[~recent].mean() < 0.0
            assert abs(estimates["uplift_return_reminder"].mean()) < 0.05
    # the model and its baselines drawn on the same Qini axes, one figure per offer
    compared = uplift.comparison_plots(split, scored_by_name, tmp_path / "comparison", PARAMS)
    assert sorted(p.name for p in compared) == [
        "qini_coupon_10.png",
        "qini_free_shipping.png",
        "qini_reminder.png",
    ]
    assert all(p.stat().st_size > 0 for p in compared)
    model_qini = scores[PARAMS.uplift.learner]["qini.coupon_10"]
    for baseline in ("random", "response", "risk"):
        assert model_qini > scores[baseline]["qini.coupon_10"], baseline
    # the learned policy is worth more than a random one (IPW on the holdout)
    assert scores[PARAMS.uplift.learner]["policy_value_returned"] > scores["random"]["policy_value_returned"]


def test_the_model_survives_a_save_and_load(tmp_path: Path) -> None:
    data = campaign_log(2, 800, seed=1).rows
    model = CampaignUplift(PARAMS.uplift.learner, PARAMS.uplift, OFFERS).fit(data)
    model.save(tmp_path / "m")
    again = CampaignUplift.load(tmp_path / "m")
    pd.testing.assert_frame_equal(model.predict_offers(data.head(50)), again.predict_offers(data.head(50)))


def test_too_little_history_is_a_protocol_error_naming_the_cold_start(tmp_path: Path) -> None:
    uplift = family("uplift")
    with pytest.raises(ProtocolError, match="cold-start"):
        uplift.data_end(CampaignLog(campaign_log(1, 10).rows.head(0)))
    one = campaign_log(1, 100)
    with pytest.raises(ProtocolError, match="at least two measured campaigns"):
        uplift.split(one, uplift.holdout_request(uplift.data_end(one), PARAMS, tmp_path))


def test_the_weighted_qini_is_sklifts_with_equal_weights_and_removes_selection_with_propensities() -> None:
    from sklift.metrics import qini_auc_score

    from training.uplift.campaign_metrics import weighted_qini

    rng = np.random.default_rng(4)
    n = 20_000
    x = rng.random(n)
    treated = (rng.random(n) < 0.5).astype(float)
    y = (rng.random(n) < 0.2 + 0.3 * x * treated).astype(float)  # the effect grows with x
    assert weighted_qini(y, x, treated, np.ones(n)) == pytest.approx(
        qini_auc_score(y, x, treated, negative_effect=True)
    )
    # A policy treats the high-risk customers (low base rate, no effect): unweighted, a risk score
    # looks like uplift; with the logging propensities it does not.
    risk = rng.random(n)
    p_treat = np.where(risk > 0.5, 0.9, 0.1)
    t = (rng.random(n) < p_treat).astype(float)
    y = (rng.random(n) < 0.6 - 0.5 * risk).astype(float)  # nobody responds to treatment
    weight = 1 / np.where(t == 1, p_treat, 1 - p_treat)
    naive = qini_auc_score(y, -risk, t, negative_effect=True)
    assert abs(weighted_qini(y, -risk, t, weight)) < 0.5 * abs(naive)


def test_a_log_too_small_to_learn_from_is_a_protocol_error_and_thin_offers_keep_no_effect(
    tmp_path: Path,
) -> None:
    uplift = family("uplift")
    data = campaign_log(3, 400, seed=2)
    rows = data.rows
    thin = rows["offer"] == "free_shipping"
    rows.loc[thin, "returned"] = False  # one outcome only: nothing to learn about this offer
    split = uplift.split(CampaignLog(rows), uplift.holdout_request(uplift.data_end(data), PARAMS, tmp_path))
    model = uplift.model(PARAMS, tmp_path)
    uplift.fit(split, model, PARAMS)
    estimates = model.predict_offers(split.holdout)
    assert (estimates["uplift_return_free_shipping"] == 0).all()
    assert estimates["uplift_return_coupon_10"].std() > 0
    tiny = CampaignLog(rows.groupby("campaign_id").head(15).reset_index(drop=True))
    tiny_split = uplift.split(tiny, uplift.holdout_request(uplift.data_end(tiny), PARAMS, tmp_path))
    with pytest.raises(ProtocolError, match="cannot learn from this log yet"):
        uplift.fit(tiny_split, uplift.model(PARAMS, tmp_path), PARAMS)
