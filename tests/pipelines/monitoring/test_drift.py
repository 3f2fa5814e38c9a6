"""Drift statistics on small frames: PSI and the tests agree on a shift, stay quiet on resamples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.monitoring.drift import (
    binned_shares,
    categorical_drift,
    feature_drift,
    numeric_drift,
    prediction_drift,
    psi,
    quantile_edges,
    worst,
)
from pipelines.monitoring.quality import realised_quality
from pipelines.monitoring.run import drift_report
from retention.params import MonitoringParams

PARAMS = MonitoringParams()


def test_psi_is_zero_for_equal_shares_and_matches_its_formula() -> None:
    shares = np.array([0.2, 0.3, 0.5])
    assert psi(shares, shares) == 0.0
    moved = np.array([0.1, 0.3, 0.6])
    expected = (0.1 - 0.2) * np.log(0.1 / 0.2) + (0.6 - 0.5) * np.log(0.6 / 0.5)
    assert psi(shares, moved) == pytest.approx(expected)


def test_bins_come_from_the_reference_quantiles_and_missing_values_have_their_own() -> None:
    reference = np.arange(100, dtype=float)
    edges = quantile_edges(reference, 4)
    assert edges.tolist() == pytest.approx([24.75, 49.5, 74.25])
    shares = binned_shares(np.array([0.0, 30.0, 60.0, 99.0, np.nan]), edges)
    assert shares.tolist() == [0.2, 0.2, 0.2, 0.2, 0.2]
    # a discrete feature has fewer distinct edges than bins
    discrete = np.array([0.0] * 90 + [1.0] * 10)
    assert len(quantile_edges(discrete, 10)) == 2
    assert binned_shares(discrete, quantile_edges(discrete, 10)).tolist() == [0.9, 0.0, 0.1, 0.0]


def test_a_shifted_numeric_feature_alerts_and_a_resample_does_not() -> None:
    rng = np.random.default_rng(0)
    reference = pd.Series(rng.lognormal(3, 0.5, 3000))
    same = numeric_drift("spend", reference, pd.Series(rng.lognormal(3, 0.5, 3000)), PARAMS)
    shifted = numeric_drift("spend", reference, pd.Series(rng.lognormal(3, 0.5, 3000) * 1.5), PARAMS)
    assert same.status == "ok" and same.psi < PARAMS.psi_warn and same.pvalue > PARAMS.pvalue
    assert shifted.status == "alert" and shifted.psi > PARAMS.psi_alert and shifted.pvalue < 1e-10
    assert shifted.test == "ks" and shifted.statistic > 0.2


def test_a_large_psi_on_a_few_rows_is_not_called_drift_without_the_test() -> None:
    reference, current = pd.Series([1.0, 2.0, 3.0, 4.0]), pd.Series([4.0, 4.0, 5.0, 5.0])
    drift = numeric_drift("x", reference, current, PARAMS)
    assert drift.psi > PARAMS.psi_alert and drift.pvalue > PARAMS.pvalue and drift.status == "ok"


def test_a_new_category_share_is_categorical_drift() -> None:
    reference = pd.Series(["loyal"] * 600 + ["lapsed"] * 400, dtype="string")
    current = pd.Series(["loyal"] * 400 + ["lapsed"] * 300 + ["bargain"] * 300, dtype="string")
    drift = categorical_drift("segment", reference, current, PARAMS)
    assert drift.test == "chi2" and drift.status == "alert" and drift.psi > 1.0
    same = categorical_drift("segment", reference, reference.sample(frac=1, random_state=1), PARAMS)
    assert same.psi == 0.0 and same.status == "ok"


def test_feature_drift_covers_the_shared_feature_columns_only() -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "customer_id": [f"C{i}" for i in range(500)],
            "recency_days": rng.exponential(20, 500),
            "frequency_30d": rng.poisson(2, 500),
            "rfm_segment": rng.choice(["a", "b"], 500),
        }
    )
    drifts = feature_drift(frame, frame.drop(columns="frequency_30d"), PARAMS)
    assert [(d.feature, d.kind) for d in drifts] == [
        ("recency_days", "numeric"),
        ("rfm_segment", "categorical"),
    ]
    excluded = feature_drift(frame, frame, MonitoringParams(exclude_features=["recency_days"]))
    assert [d.feature for d in excluded] == ["frequency_30d", "rfm_segment"]


def test_the_run_status_needs_alert_features_and_enough_rows() -> None:
    rng = np.random.default_rng(2)
    reference = pd.DataFrame({"a": rng.normal(0, 1, 1000), "b": rng.normal(0, 1, 1000)})
    current = pd.DataFrame({"a": rng.normal(2, 1, 1000), "b": rng.normal(0, 1, 1000)})
    assert drift_report(reference, current, PARAMS)[1] == "alert"
    assert drift_report(reference, current, MonitoringParams(alert_features=2))[1] == "warn"
    assert drift_report(reference.head(50), current.head(50), PARAMS)[1] == "ok"  # below min_rows
    assert worst(["ok", "warn"]) == "warn" and worst([]) == "ok"


def test_prediction_drift_is_the_psi_of_p_return() -> None:
    rng = np.random.default_rng(3)
    reference = rng.beta(2, 5, 2000)
    assert prediction_drift(reference, rng.beta(2, 5, 2000), PARAMS).status == "ok"
    assert prediction_drift(reference, rng.beta(5, 2, 2000), PARAMS).status == "alert"
    assert prediction_drift(reference[:100], rng.beta(5, 2, 100), PARAMS).status == "ok"  # min_rows


def test_realised_quality_alerts_when_the_auc_falls_below_training() -> None:
    rng = np.random.default_rng(4)
    returned = rng.random(1000) < 0.4
    good = np.where(returned, rng.beta(5, 3, 1000), rng.beta(3, 5, 1000))  # P(return) that ranks well
    training = {"roc_auc": 0.75, "brier": 0.2, "base_rate": 0.4}
    fine = realised_quality(pd.DataFrame({"p_churn": 1 - good, "returned": returned}), training, PARAMS)
    assert fine["status"] == "ok" and fine["metrics"]["roc_auc"] > 0.7 and fine["n"] == 1000
    noise = rng.random(1000)
    bad = realised_quality(pd.DataFrame({"p_churn": noise, "returned": returned}), training, PARAMS)
    assert bad["status"] == "alert" and "roc_auc" in bad["reasons"][0]
    few = realised_quality(pd.DataFrame({"p_churn": noise[:10], "returned": returned[:10]}), training, PARAMS)
    assert few["status"] == "ok" and "metrics" not in few
