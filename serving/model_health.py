"""The model-health page for reviewers: the latest monitoring runs (drift, realised quality, status).

One row per monitoring run (`platform_monitoring`, written by the monitor DAG): the model version,
its training reference, the largest feature PSI and the features in alert, the prediction's drift,
the realised ROC-AUC and Brier of its matured campaign predictions beside the training run's, and
whether retraining was requested. Same login and headers as the campaign pages (`serving.web`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from pipelines.monitoring.store import latest_runs
from serving.web import _page, _role, _to_login

MODEL_HEALTH_ROWS = 30  # the newest runs shown

model_health = APIRouter(prefix="/ui", include_in_schema=False)


def health_row(row: dict[str, Any]) -> dict[str, Any]:
    """What the page shows of one monitoring row."""
    flagged = [d for d in row["feature_drift"] if d["status"] != "ok"]
    realised = row["realised"] or {}
    return {
        **row,
        "alerting": sorted((d for d in flagged if d["status"] == "alert"), key=lambda d: -d["psi"]),
        "warning": sorted((d for d in flagged if d["status"] == "warn"), key=lambda d: -d["psi"]),
        "realised_metrics": realised.get("metrics"),
        "training_metrics": realised.get("training") or {},
    }


@model_health.get("/model-health", response_class=HTMLResponse)
def model_health_page(request: Request) -> Response:
    """The newest monitoring runs, newest first."""
    if _role(request) is None:
        return _to_login()
    rows = [health_row(r) for r in latest_runs(request.app.state.engine, MODEL_HEALTH_ROWS)]
    return _page(request, "model_health.html", {"runs": rows})
