"""Realised quality: the return model's past campaign predictions against what the customers then did.

A published campaign logs every eligible customer's P(churn) with the model versions and as-of
(`platform_campaign_targets`); once its horizon has passed, `pipelines/campaigns/lift.py` fills
`returned`. P(return) = 1 - p_churn is then scored with the training protocol's own metrics
(`training.protocol.return_metrics`: scikit-learn's ROC-AUC, Brier, log loss), so they compare
one for one with the metrics the version's training run logged in MLflow. Only customers the
campaign did not contact count (control and untreated arms): an offer changes whether a customer
returns, so the treated arm's outcomes no longer measure the model's prediction.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select

from retention.db.platform import Campaign, CampaignTarget
from retention.params import MonitoringParams

log = logging.getLogger("retention.monitoring")
TREATMENT = "treatment"


def matured_campaign(engine: Engine, as_of: datetime) -> dict[str, Any] | None:
    """The newest campaign whose horizon has passed by `as_of` and whose outcomes are recorded.

    Returns:
        campaign_id, as_of, horizon_days and model_versions ({registered model: version}), or None.
    """
    columns = (Campaign.campaign_id, Campaign.as_of, Campaign.horizon_days, Campaign.model_versions)
    with engine.connect() as connection:
        rows = connection.execute(
            select(*columns).where(Campaign.as_of < as_of).order_by(Campaign.as_of.desc())
        ).all()
        for row in rows:
            ends = pd.Timestamp(row.as_of) + pd.Timedelta(days=row.horizon_days)
            if ends > pd.Timestamp(as_of):
                continue
            labelled = connection.execute(
                select(CampaignTarget.customer_id)
                .where(CampaignTarget.campaign_id == row.campaign_id, CampaignTarget.returned.is_not(None))
                .limit(1)
            ).first()
            if labelled is not None:
                return dict(row._mapping)
    return None


def logged_outcomes(engine: Engine, campaign_id: str) -> pd.DataFrame:
    """p_churn and returned of a campaign's uncontacted, labelled customers (no ids kept)."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(CampaignTarget.p_churn, CampaignTarget.returned).where(
                CampaignTarget.campaign_id == campaign_id,
                CampaignTarget.arm != TREATMENT,
                CampaignTarget.returned.is_not(None),
            )
        ).all()
    return pd.DataFrame(rows, columns=["p_churn", "returned"])


def realised_quality(
    outcomes: pd.DataFrame, training: dict[str, float], params: MonitoringParams
) -> dict[str, Any]:
    """Realised ROC-AUC, Brier and calibration of P(return) against the training run's metrics.

    Args:
        outcomes: p_churn and returned (0/1) per customer.
        training: the metrics the predicting version's training run logged (roc_auc, brier, base_rate).
        params: thresholds (`max_auc_drop`, `max_brier_rise`, `min_rows`).

    Returns:
        n, metrics (roc_auc, brier, log_loss, base_rate, mean_p_return), the training values, and
        status: alert when ROC-AUC fell or Brier rose past its threshold; ok with too few rows.
    """
    from training.protocol import return_metrics

    y = outcomes["returned"].to_numpy(dtype=float)
    p = 1.0 - outcomes["p_churn"].to_numpy(dtype=float)
    result: dict[str, Any] = {
        "n": len(y),
        "training": {k: training.get(k) for k in ("roc_auc", "brier", "base_rate")},
    }
    if len(y) < params.min_rows:
        return {**result, "status": "ok", "note": f"fewer than {params.min_rows} labelled rows: not judged"}
    metrics = return_metrics(y, p)
    metrics["mean_p_return"] = float(np.mean(p))  # vs base_rate: calibration in the large
    reasons = []
    auc, trained_auc = metrics["roc_auc"], training.get("roc_auc")
    if trained_auc is not None and np.isfinite(auc) and trained_auc - auc > params.max_auc_drop:
        reasons.append(f"roc_auc {auc:.3f} vs {trained_auc:.3f} at training")
    trained_brier = training.get("brier")
    if trained_brier is not None and metrics["brier"] - trained_brier > params.max_brier_rise:
        reasons.append(f"brier {metrics['brier']:.3f} vs {trained_brier:.3f} at training")
    return {**result, "metrics": metrics, "status": "alert" if reasons else "ok", "reasons": reasons}
