"""The model-health page lists the latest monitoring rows behind the web login."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from fastapi.testclient import TestClient

from pipelines.monitoring.store import store_run
from tests.serving.conftest import MARKETING_TOKEN, SAME_ORIGIN, serve_copy


def _row(as_of: datetime, status: str, psi: float, realised: dict | None) -> dict:
    drift = [
        {"feature": "amount_last", "kind": "numeric", "psi": psi, "test": "ks", "statistic": 0.3,
         "pvalue": 1e-12, "reference_rows": 900, "current_rows": 1000, "status": status},
        {"feature": "recency_days", "kind": "numeric", "psi": 0.01, "test": "ks", "statistic": 0.02,
         "pvalue": 0.5, "reference_rows": 900, "current_rows": 1000, "status": "ok"},
    ]  # fmt: skip
    return {
        "registered_name": "retention-return",
        "as_of": as_of,
        "version": "3",
        "reference_as_of": datetime(2026, 3, 2),
        "n_reference": 900,
        "n_current": 1000,
        "feature_drift": drift,
        "psi_max": psi,
        "prediction_drift": {"feature": "p_return", "psi": 0.02, "status": "ok"},
        "realised": realised,
        "status": status,
        "retrain": status == "alert",
        "mlflow_run_id": None,
        "computed_at": as_of,
    }


def test_model_health_lists_runs_newest_first_with_alerting_features(
    trained_platform,  # noqa: ANN001
    tmp_path: Path,
) -> None:
    settings, engine, app = serve_copy(trained_platform, tmp_path)
    realised = {
        "campaign_id": "winback-2026-02-20",
        "metrics": {"roc_auc": 0.612, "brier": 0.231},
        "training": {"roc_auc": 0.701, "brier": 0.205, "base_rate": 0.4},
        "status": "alert",
    }
    store_run(engine, _row(datetime(2026, 4, 1), "ok", 0.04, None))
    store_run(engine, _row(datetime(2026, 4, 2), "alert", 0.48, realised))
    try:
        with TestClient(app) as client:
            assert client.get("/ui/model-health", follow_redirects=False).headers["location"] == "/ui/login"
            client.post("/ui/login", data={"token": MARKETING_TOKEN}, headers=SAME_ORIGIN)
            page = client.get("/ui/model-health")
            assert page.status_code == 200
            assert page.headers["content-security-policy"].startswith("default-src")
            html = page.text
            assert html.index("2026-04-02") < html.index("2026-04-01")  # newest first
            assert "<strong>amount_last</strong> 0.48" in html and "recency_days" not in html  # only flagged
            assert "0.612 (0.701)" in html and "no matured campaign yet" in html
            assert 'id="model-health" href="/ui/model-health"' in client.get("/ui/campaigns").text
    finally:
        engine.dispose()
