"""Serving fixtures: one API app per test module on a private copy of the trained platform's database,
with three synthetic published campaigns and fixed tokens.

The campaign rows are written here, independent of target selection: `CAMPAIGN_ID` has every
column of an offer campaign (offers, hold-outs, untreated rows, uplift, features, a summary),
`EMPTY_CAMPAIGN_ID` has no rows and a measured lift, `OLD_CAMPAIGN_ID` looks like a campaign
published before offers (offer "none" on contacts, no features, summary {}, lift null) whose
outcomes were measured.

The app gets its settings explicitly (not from the environment), so a module-scoped app is safe
beside the per-test `isolated_env`. The shared MLflow registry is only read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from pipelines.campaigns.store import write_campaign
from retention.db import create_db_engine
from retention.db.platform import CampaignTarget
from retention.db.warehouse import WAREHOUSE
from retention.settings import Settings
from serving.app import create_app
from serving.settings import ServingSettings
from tests.trained_platform import TrainedPlatform, copy_database

MARKETING_TOKEN = "marketing-test-token-0123456789"
ADMIN_TOKEN = "admin-test-token-9876543210"
# What a browser sends with a form post from one of our own pages (TestClient's host is "testserver").
SAME_ORIGIN = {"Origin": "http://testserver"}
CAMPAIGN_ID = "winback-2026-04-01"
EMPTY_CAMPAIGN_ID = "empty-2026-03-01"
OLD_CAMPAIGN_ID = "winback-2026-02-01"
CAMPAIGN_TARGETS = 40  # rows of the synthetic campaign
OLD_CAMPAIGN_TARGETS = 8
OFFERS = ("reminder", "coupon_10", "free_shipping")
SUMMARY = {  # the shape of pipelines.campaigns.summary.summarise
    "policy": "risk",
    "policy_reason": "cold start: 0 of 400 mature outcomes; the risk rule chooses",
    "exploration_share": 0.3,
    "offer_mix": {"coupon_10": 9, "free_shipping": 8, "reminder": 9},
    "arms": {"treatment": 26, "control": 10, "untreated": 4},
    "hold_out_note": "customers marked 'hold out' are the randomised control group: do not contact them",
    "budget": 100.0,
    "budget_note": "26 customers chosen by the risk policy within a budget of 70.00.",
    "expected_cost": 12.5,
    "incremental_returns": 1.8,
    "incremental_returns_interval": [0.2, 3.4],
    "incremental_profit": 30.25,
    "incremental_profit_interval": [10.5, 50.0],
    "interval_note": "outcome noise around the model's expectations",
    "offers": {"reminder": {"fixed_cost": 0.1}, "none": None},
    "cold_start": True,
}


def auth(token: str) -> dict[str, str]:
    """The Authorization header of a token."""
    return {"Authorization": f"Bearer {token}"}


def customer_ids(engine: Engine) -> list[str]:
    """Every warehouse customer id, sorted."""
    customers = WAREHOUSE["customers"]
    with engine.connect() as connection:
        return sorted(r.customer_id for r in connection.execute(select(customers.c.customer_id)))


def with_defaults(targets: pd.DataFrame) -> pd.DataFrame:
    """Target rows with every other `platform_campaign_targets` column at its default (None if it has
    none), so fixtures keep working when columns are added."""
    for column in CampaignTarget.__table__.columns:
        if column.name not in targets:
            default = column.default
            value = None if default is None else default.arg(None) if default.is_callable else default.arg
            targets[column.name] = [value] * len(targets)
    return targets


def product_ids(engine: Engine, n: int = 3) -> list[str]:
    """The first `n` warehouse product ids."""
    products = WAREHOUSE["products"]
    with engine.connect() as connection:
        rows = connection.execute(select(products.c.product_id).order_by(products.c.product_id).limit(n))
        return [r.product_id for r in rows]


def synthetic_campaign(
    campaign_id: str,
    as_of: datetime,
    customers: list[str],
    lift: dict | None = None,
    products: list[str] | None = None,
    offers: bool = True,
) -> tuple[dict, pd.DataFrame]:
    """A campaign row and its targets: every 4th is control, every 10th (from the 9th) untreated, the
    others contacted with the offers in turn; scores decrease with rank.

    With `offers=False` it looks like a campaign published before offers: no untreated rows,
    offer "none" everywhere, no uplift or features, outcomes measured, summary {}.
    """
    n = len(customers)
    position = np.arange(n)
    arm = np.where(position % 4 == 3, "control", "treatment")
    if offers:
        arm = np.where(position % 10 == 8, "untreated", arm)
    offer = np.where(arm == "treatment", np.array(OFFERS, dtype=object)[position % len(OFFERS)], "none")
    policy_offer = np.where(arm == "control", "reminder", offer)
    uplift = np.linspace(0.08, 0.01, n) if n else np.zeros(0)
    measured = not offers
    segments = np.array(["at_risk", "cant_lose", "hibernating"])[np.arange(n) % 3]
    p_churn = np.linspace(0.9, 0.5, n) if n else np.zeros(0)
    value = np.linspace(200.0, 50.0, n) if n else np.zeros(0)
    targets = pd.DataFrame(
        {
            "campaign_id": campaign_id,
            "customer_id": customers,
            "arm": arm,
            "rank": np.arange(1, n + 1),
            "segment": segments,
            "risk_decile": 10 - np.arange(n) % 10,
            "p_churn": p_churn,
            "predicted_value": value,
            "value_at_stake": p_churn * value,
            "reasons": [["recency_days", "monetary_90d"]] * n,
            "recommendations": [list(products or ["P0000001", "P0000002", "P0000003"])] * n,
            "offer": offer if offers else "none",
            "policy_offer": policy_offer if offers else "none",
            "propensity": 0.7,
            "explored": position % 7 == 0,
            "uplift_return": uplift if offers else None,
            "uplift_revenue": uplift * 100 if offers else None,
            "expected_profit": uplift * 30 - 0.5 if offers else None,
            "features": [
                {
                    "recency_days": 40.0 + i,
                    "ipt_mean_days": 21.0,
                    "tenure_days": 400.0,
                    "monetary_90d": 35.0,
                    "monetary_365d": 395.0,
                }
                if offers
                else {}
                for i in range(n)
            ],
            "returned": (position % 2 == 0) if measured else None,
            "revenue": np.where(position % 2 == 0, 42.0, 0.0) if measured else None,
        }
    )
    campaign = {
        "campaign_id": campaign_id,
        "name": campaign_id.rsplit("-", 3)[0],
        "as_of": as_of,
        "horizon_days": 30,
        "published_at": datetime(2026, 4, 1, 6, 0),
        "n_targets": n,
        "n_control": int((arm == "control").sum()),
        "control_share": float((arm == "control").mean()) if n else 0.0,
        "segments": {str(k): int(v) for k, v in pd.Series(segments).value_counts().items()},
        "model_versions": {"retention-return": "1", "retention-recommender": "1"},
        "params_hash": "p" * 64,
        "content_hash": "c" * 64,
        "funnel": {
            "scored": 151,
            "excluded": {"no_consent": 40, "cooldown": 0},
            "eligible": 111,
            "selected": n,
        },
        "exports": {},
        "lift": lift,
        "policy": "risk",
        "summary": SUMMARY if offers and n else {},
    }
    return campaign, with_defaults(targets)


@dataclass(frozen=True)
class Served:
    """A served copy of the trained platform."""

    platform: TrainedPlatform
    settings: Settings
    engine: Engine
    app: FastAPI
    client: TestClient


def serve_copy(
    platform: TrainedPlatform, folder: Path, refresh_seconds: float = 0.0, tracking_uri: str | None = None
) -> tuple[Settings, Engine, FastAPI]:
    """An app on a private copy of the platform database, with the synthetic campaigns published."""
    folder.mkdir(parents=True, exist_ok=True)
    env = platform.env | {
        "RETENTION_HOME": str(folder / "home"),
        "RETENTION_DATABASE_URL": copy_database(platform, folder),
    }
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    settings = Settings.from_env(env)
    engine = create_db_engine(settings.database_url)
    customers, products = customer_ids(engine), product_ids(engine)
    write_campaign(
        engine,
        *synthetic_campaign(CAMPAIGN_ID, platform.as_of, customers[:CAMPAIGN_TARGETS], products=products),
    )
    lift = {"lift": 0.042, "ci_low": -0.01, "ci_high": 0.094}
    write_campaign(engine, *synthetic_campaign(EMPTY_CAMPAIGN_ID, datetime(2026, 3, 1), [], lift))
    old = synthetic_campaign(
        OLD_CAMPAIGN_ID,
        datetime(2026, 2, 1),
        customers[:OLD_CAMPAIGN_TARGETS],
        products=products,
        offers=False,
    )
    write_campaign(engine, *old)
    serving = ServingSettings(
        marketing_token=MARKETING_TOKEN, admin_token=ADMIN_TOKEN, model_refresh_seconds=refresh_seconds
    )
    return settings, engine, create_app(settings, serving)


@pytest.fixture(scope="module")
def served(trained_platform: TrainedPlatform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The API on a private copy of the trained platform (module-wide; tests must not write to it)."""
    settings, engine, app = serve_copy(trained_platform, tmp_path_factory.mktemp("served"))
    with TestClient(app) as client:  # runs the lifespan: the champions load once here
        yield Served(trained_platform, settings, engine, app, client)
    engine.dispose()
