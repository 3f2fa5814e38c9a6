"""A monitoring run on the trained platform: one row per as-of (replaced on rerun), an MLflow run, realised quality."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import insert

from retention.db import create_db_engine
from retention.db.platform import Campaign, CampaignTarget

# the trained platform's as-of; the champion's training cutoff is 30 days earlier
AS_OF = datetime(2026, 4, 1)


@pytest.fixture
def platform(trained_platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN001, ANN201
    """A private copy of the trained platform (both databases): monitoring writes rows and MLflow runs."""
    from tests.trained_platform import private_platform

    copy = private_platform(trained_platform, tmp_path)
    for key, value in copy.env.items():
        monkeypatch.setenv(key, value)
    return copy


def _matured_campaign(database_url: str, n: int = 400) -> None:
    """A campaign published 40 days before AS_OF (horizon 30) whose outcomes lift.py has filled in."""
    rng = np.random.default_rng(0)
    returned = rng.random(n) < 0.4
    p_return = np.where(returned, rng.beta(4, 3, n), rng.beta(3, 4, n))
    arms = np.array(["treatment", "control", "untreated", "untreated"])[np.arange(n) % 4]
    engine = create_db_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            insert(Campaign).values(
                campaign_id="winback-2026-02-20",
                name="winback",
                as_of=datetime(2026, 2, 20),
                horizon_days=30,
                published_at=datetime(2026, 2, 20),
                n_targets=n // 2,
                n_control=n // 4,
                control_share=0.5,
                segments={},
                model_versions={"retention-return": "1", "retention-recommender": "1"},
                params_hash="x",
                content_hash="x",
                funnel={},
                exports={},
                lift={"measured": True},
                policy="risk",
                summary={},
            )
        )
        connection.execute(
            insert(CampaignTarget),
            [
                {
                    "campaign_id": "winback-2026-02-20",
                    "customer_id": f"C{i:07d}",
                    "arm": arms[i],
                    "rank": i + 1,
                    "segment": "at_risk",
                    "risk_decile": 1,
                    "p_churn": float(1 - p_return[i]),
                    "predicted_value": 1.0,
                    "value_at_stake": 1.0,
                    "reasons": [],
                    "recommendations": [],
                    "returned": bool(returned[i]),
                    "revenue": 0.0,
                }
                for i in range(n)
            ],
        )
    engine.dispose()


def test_monitor_stores_a_row_logs_a_run_and_a_rerun_replaces_both(platform) -> None:  # noqa: ANN001
    from mlflow import MlflowClient

    from pipelines.monitoring import task_monitor
    from pipelines.monitoring.store import latest_runs

    _matured_campaign(platform.database_url)
    first = task_monitor(AS_OF)
    assert first["registered_name"] == "retention-return" and first["version"] == "1"
    assert first["reference_as_of"] == "2026-03-02T00:00:00"  # the training run's cutoff (as-of - H)
    assert first["status"] in ("ok", "warn", "alert") and first["retrain"] == (first["status"] == "alert")

    again = task_monitor(AS_OF)
    engine = create_db_engine(platform.database_url)
    try:
        rows = latest_runs(engine)
    finally:
        engine.dispose()
    assert len(rows) == 1  # the rerun for the same as-of replaced its row
    row = rows[0]
    assert row["as_of"] == AS_OF and row["version"] == "1" and row["status"] == again["status"]
    features = {d["feature"]: d for d in row["feature_drift"]}
    assert {"recency_days", "monetary_30d", "rfm_segment", "amount_last"} <= set(features)
    assert features["rfm_segment"]["test"] == "chi2" and features["recency_days"]["test"] == "ks"
    assert "first_order_days" not in features  # an age: excluded in params.yaml
    assert row["n_reference"] > 0 and row["n_current"] >= row["n_reference"]
    assert row["psi_max"] == max(d["psi"] for d in row["feature_drift"])
    assert math.isfinite(row["prediction_drift"]["psi"]) and row["prediction_drift"]["feature"] == "p_return"
    realised = row["realised"]
    assert realised["campaign_id"] == "winback-2026-02-20" and realised["version"] == "1"
    assert realised["n"] == 300  # control and untreated only: an offer changes who returns
    assert 0.5 < realised["metrics"]["roc_auc"] < 1 and realised["training"]["roc_auc"] is not None

    client = MlflowClient(tracking_uri=platform.tracking_uri)
    experiment = client.get_experiment_by_name("retention-return")
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.role = 'monitoring'")
    assert [r.info.run_id for r in runs] == [row["mlflow_run_id"]]  # the first run was deleted
    logged = runs[0].data
    assert logged.tags["model_version"] == "1" and logged.tags["status"] == row["status"]
    assert logged.metrics["psi_max"] == pytest.approx(row["psi_max"])
    assert logged.metrics["realised_roc_auc"] == pytest.approx(realised["metrics"]["roc_auc"])
    assert "training_roc_auc" in logged.metrics and "psi_recency_days" in logged.metrics


def test_without_data_or_champion_nothing_is_monitored_or_written(migrated_home: Path) -> None:
    from pipelines.monitoring import task_monitor
    from pipelines.monitoring.store import latest_runs
    from retention.settings import Settings

    assert task_monitor(None) == {"status": "no_data", "retrain": False}  # nothing published yet
    assert task_monitor(AS_OF) == {"status": "no_champion", "retrain": False}
    engine = create_db_engine(Settings.from_env().database_url)
    try:
        assert latest_runs(engine) == []
    finally:
        engine.dispose()
