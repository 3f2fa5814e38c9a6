"""The campaign log: every customer a published campaign logged, with offer, propensity and outcome.

Each eligible customer of a campaign is a randomised row (pipelines/campaigns/select.py): the
offer they got, the probability they had of getting it, the features the policy saw at the
campaign's as-of (point-in-time, stored with the row), and, once the horizon has passed, whether
they returned and what they spent. These rows train and evaluate the uplift model.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import Engine, select

from retention.db.platform import Campaign, CampaignTarget

LOGGED_COLUMNS = (
    "campaign_id",
    "customer_id",
    "segment",
    "p_churn",
    "predicted_value",
    "offer",
    "policy_offer",
    "risk_offer",
    "propensity",
    "features",
    "returned",
    "revenue",
)


@dataclass(frozen=True)
class CampaignLog:
    """Measured rows of the campaign log, oldest campaign first (`as_of`, `horizon_days` added)."""

    rows: pd.DataFrame

    @property
    def campaigns(self) -> list[str]:
        """Campaign ids in as-of order."""
        return list(dict.fromkeys(self.rows["campaign_id"]))

    def fingerprint(self) -> str:
        """Hash of the rows (the training run's data version)."""
        body = self.rows.drop(columns=["features"]).to_csv(index=False).encode()
        return hashlib.sha256(body).hexdigest()[:16]


def read_campaign_log(engine: Engine, before: pd.Timestamp | None = None) -> CampaignLog:
    """Rows with a measured outcome, of campaigns whose horizon ended by `before` (all if None):
    what was known at `before`, so a rerun for an earlier date reads the same rows."""
    columns = [getattr(CampaignTarget, c) for c in LOGGED_COLUMNS]
    query = (
        select(*columns, Campaign.as_of, Campaign.horizon_days)
        .join(Campaign, Campaign.campaign_id == CampaignTarget.campaign_id)
        .where(CampaignTarget.returned.is_not(None))
        .order_by(Campaign.as_of, CampaignTarget.campaign_id, CampaignTarget.customer_id)
    )
    if before is not None:
        query = query.where(Campaign.as_of < pd.Timestamp(before).to_pydatetime())
    with engine.connect() as connection:
        rows = connection.execute(query).mappings().all()
    frame = pd.DataFrame([dict(r) for r in rows], columns=[*LOGGED_COLUMNS, "as_of", "horizon_days"])
    if before is not None and len(frame):
        ends = pd.to_datetime(frame["as_of"]) + pd.to_timedelta(frame["horizon_days"], unit="D")
        frame = frame.loc[(ends <= pd.Timestamp(before)).to_numpy()].reset_index(drop=True)
    if len(frame):
        frame = frame.astype({"returned": bool, "revenue": float, "propensity": float})
    return CampaignLog(frame)
