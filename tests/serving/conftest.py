"""Serving fixtures: one API app per test module on a private copy of the trained platform's database,
with two synthetic published campaigns and fixed tokens.

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
from retention.db.warehouse import WAREHOUSE
from retention.settings import Settings
from serving.app import create_app
from serving.settings import ServingSettings
from tests.trained_platform import TrainedPlatform, copy_database

MARKETING_TOKEN = "marketing-test-token-0123456789"
ADMIN_TOKEN = "admin-test-token-9876543210"
CAMPAIGN_ID = "winback-2026-04-01"
EMPTY_CAMPAIGN_ID = "empty-2026-03-01"
CAMPAIGN_TARGETS = 40  # rows of the synthetic campaign


def auth(token: str) -> dict[str, str]:
    """The Authorization header of a token."""
    return {"Authorization": f"Bearer {token}"}


def customer_ids(engine: Engine) -> list[str]:
    """Every warehouse customer id, sorted."""
    customers = WAREHOUSE["customers"]
    with engine.connect() as connection:
        return sorted(r.customer_id for r in connection.execute(select(customers.c.customer_id)))


def synthetic_campaign(
    campaign_id: str, as_of: datetime, customers: list[str], lift: dict | None = None
) -> tuple[dict, pd.DataFrame]:
    """A campaign row and its targets: arms alternate (every 4th is control), scores decrease with rank."""
    n = len(customers)
    arm = np.where(np.arange(n) % 4 == 3, "control", "treatment")
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
            "reasons": [["recency_days", "frequency_90d"]] * n,
            "recommendations": [["P0000001", "P0000002", "P0000003"]] * n,
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
    }
    return campaign, targets


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
    customers = customer_ids(engine)
    write_campaign(engine, *synthetic_campaign(CAMPAIGN_ID, platform.as_of, customers[:CAMPAIGN_TARGETS]))
    lift = {"lift": 0.042, "ci_low": -0.01, "ci_high": 0.094}
    write_campaign(engine, *synthetic_campaign(EMPTY_CAMPAIGN_ID, datetime(2026, 3, 1), [], lift))
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
