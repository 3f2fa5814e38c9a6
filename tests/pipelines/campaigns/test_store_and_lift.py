"""Campaign storage and lift on SQLite and PostgreSQL: atomic replace, consent-only exports, and a
lift measured on a simulated campaign whose true effect is known."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from sqlalchemy import insert

from pipelines.campaigns.lift import lift_estimate, log_lift, measure_lift
from pipelines.campaigns.store import (
    CampaignNotFound,
    campaign_targets,
    export_frame,
    get_campaign,
    list_campaigns,
    write_campaign,
)
from retention.db.models import Customer
from retention.db.warehouse import WAREHOUSE, Batch
from retention.params import load_params
from retention.settings import Settings
from tests.conftest import ROOT

CAMPAIGN = load_params(ROOT / "params.yaml").campaign

AS_OF = datetime(2026, 5, 4)
HORIZON = 30


def campaign_row(campaign_id: str, n: int, n_control: int) -> dict:
    return {
        "campaign_id": campaign_id,
        "name": "winback",
        "as_of": AS_OF,
        "horizon_days": HORIZON,
        "published_at": datetime(2026, 5, 4, 6),
        "n_targets": n,
        "n_control": n_control,
        "control_share": n_control / n,
        "segments": {"at_risk": n},
        "model_versions": {"retention-return": "3", "retention-recommender": "2"},
        "params_hash": "p" * 16,
        "content_hash": "c" * 16,
        "funnel": {"scored": n},
        "exports": {},
        "lift": None,
        "policy": "risk",
        "summary": {},
    }


def targets_frame(
    campaign_id: str, arms: list[str], offers: list[str] | None = None, propensity: list[float] | None = None
) -> pd.DataFrame:
    n = len(arms)
    offers = offers or ["reminder" if a == "treatment" else "none" for a in arms]
    return pd.DataFrame(
        {
            "campaign_id": campaign_id,
            "customer_id": [f"C{i:06d}" for i in range(n)],
            "arm": arms,
            "rank": np.arange(1, n + 1),
            "segment": "at_risk",
            "risk_decile": (np.arange(n) % 10) + 1,
            "p_churn": 0.6,
            "predicted_value": 10.0,
            "value_at_stake": 6.0,
            "reasons": [["recency_days", "frequency_365d"]] * n,
            "recommendations": [["P1", "P2"]] * n,
            "offer": offers,
            "policy_offer": ["reminder" if a != "untreated" else "none" for a in arms],
            "risk_offer": "reminder",
            "propensity": propensity or [0.9 if a == "treatment" else 0.1 for a in arms],
            "explored": False,
            "uplift_return": None,
            "uplift_revenue": None,
            "expected_profit": None,
            "features": [{"recency_days": 10.0}] * n,
            "returned": None,
            "revenue": None,
        }
    )


def add_customers(engine, ids: list[str], consent: list[bool]) -> None:  # noqa: ANN001
    rows = [
        {
            "customer_id": c,
            "signup_date": None,
            "country": "DE",
            "marketing_consent": ok,
            "email": f"{c.lower()}@example.org",
            "updated_at": AS_OF,
            "batch_id": "b0",
        }
        for c, ok in zip(ids, consent, strict=True)
    ]
    with engine.begin() as connection:  # e-mail lives only in the shop table; the warehouse has none
        connection.execute(insert(Customer.__table__), [without(r, "batch_id") for r in rows])
        connection.execute(insert(WAREHOUSE["customers"]), [without(r, "email") for r in rows])


def without(row: dict, column: str) -> dict:
    return {k: v for k, v in row.items() if k != column}


def test_a_rewrite_replaces_the_campaign_and_reads_back(engine) -> None:  # noqa: ANN001
    write_campaign(
        engine,
        campaign_row("winback-2026-05-04", 4, 1),
        targets_frame("winback-2026-05-04", ["treatment"] * 3 + ["control"]),
    )
    write_campaign(
        engine,
        campaign_row("winback-2026-05-04", 2, 1),
        targets_frame("winback-2026-05-04", ["treatment", "control"]),
    )
    assert [c["campaign_id"] for c in list_campaigns(engine)] == ["winback-2026-05-04"]
    assert get_campaign(engine, "winback-2026-05-04")["n_targets"] == 2
    targets = campaign_targets(engine, "winback-2026-05-04")
    assert targets["customer_id"].tolist() == ["C000000", "C000001"]  # the old rows are gone
    assert targets["reasons"].iloc[0] == ["recency_days", "frequency_365d"]
    with pytest.raises(CampaignNotFound, match="no published campaign 'nope'"):
        get_campaign(engine, "nope")


def test_a_failed_write_leaves_the_published_list_untouched(engine) -> None:  # noqa: ANN001
    write_campaign(engine, campaign_row("c", 2, 1), targets_frame("c", ["treatment", "control"]))
    broken = targets_frame("c", ["treatment", "treatment", "control"])
    broken.loc[2, "customer_id"] = broken.loc[1, "customer_id"]  # primary-key violation mid-write
    with pytest.raises(Exception):  # noqa: B017 (the driver's integrity error)
        write_campaign(engine, campaign_row("c", 3, 1), broken)
    assert get_campaign(engine, "c")["n_targets"] == 2
    assert len(campaign_targets(engine, "c")) == 2


def test_exports_carry_email_only_for_consenting_treated_customers(engine) -> None:  # noqa: ANN001
    arms = ["treatment", "treatment", "control", "control"]
    write_campaign(engine, campaign_row("c", 4, 2), targets_frame("c", arms))
    add_customers(engine, ["C000000", "C000001", "C000002", "C000003"], [True, False, True, False])
    export = export_frame(engine, "c")
    assert export["email"].tolist()[0] == "c000000@example.org"
    assert export["email"].iloc[1:].isna().all()  # no consent (now), or control: never contacted
    assert export["recommended_product_ids"].iloc[0] == "P1 P2"


def _purchases(engine, buyers: list[str], start: datetime) -> None:  # noqa: ANN001
    rows = [
        {
            "event_id": f"e{start:%Y%m%d}-{i}",
            "customer_id": c,
            "product_id": "P1",
            "event_type": "purchase",
            "ts": start + timedelta(days=i % HORIZON, hours=1),
            "quantity": 1,
            "price": 10.0,
            "order_id": f"o{start:%Y%m%d}-{i}",
            "session_id": None,
            "updated_at": start,
            "batch_id": "b1",
        }
        for i, c in enumerate(buyers)
    ]
    with engine.begin() as connection:
        if rows:
            connection.execute(insert(WAREHOUSE["events"]), rows)


def _published_until(engine, end: datetime) -> None:  # noqa: ANN001
    with engine.begin() as connection:
        connection.execute(
            insert(Batch),
            [
                {
                    "batch_id": f"b-{end:%Y%m%d}",
                    "interval_start": end - timedelta(days=1),
                    "interval_end": end,
                    "status": "published",
                    "attempts": 1,
                    "finished_at": end,
                    "interval_events": 0,
                    "rows_read": {},
                    "rows_changed": {},
                    "failed": [],
                    "warnings": [],
                    "docs_url": None,
                }
            ],
        )


def test_lift_of_a_simulated_campaign_recovers_its_true_effect(engine, tmp_path: Path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(7)
    n, share, base, effect = 4000, 0.5, 0.30, 0.10
    arms = np.where(rng.random(n) < share, "control", "treatment")
    write_campaign(
        engine, campaign_row("sim", n, int((arms == "control").sum())), targets_frame("sim", list(arms))
    )
    returned = rng.random(n) < np.where(arms == "treatment", base + effect, base)
    ids = [f"C{i:06d}" for i in range(n)]
    _purchases(engine, [c for c, r in zip(ids, returned, strict=True) if r], AS_OF)
    # Purchases before as-of or after the horizon do not count as returns.
    _purchases(engine, ids[:50], AS_OF - timedelta(days=HORIZON))
    _published_until(engine, AS_OF + timedelta(days=HORIZON - 1))
    assert measure_lift(engine, "sim", CAMPAIGN) is None  # the horizon has not passed in the data yet
    _published_until(engine, AS_OF + timedelta(days=HORIZON))
    lift = measure_lift(engine, "sim", CAMPAIGN)
    assert lift is not None
    observed_t = returned[arms == "treatment"].mean()
    observed_c = returned[arms == "control"].mean()
    assert lift["return_rate_treatment"] == pytest.approx(observed_t)
    assert lift["return_rate_control"] == pytest.approx(observed_c)
    assert lift["ci_low"] < effect < lift["ci_high"]  # the interval covers the true effect
    assert lift["ci_low"] > 0  # and excludes "no effect" at this size
    assert get_campaign(engine, "sim")["lift"]["lift"] == pytest.approx(observed_t - observed_c)
    settings = Settings.from_env()
    run_id = log_lift(settings, get_campaign(engine, "sim"), lift)
    assert log_lift(settings, get_campaign(engine, "sim"), lift) == run_id  # logged once
    logged = mlflow.MlflowClient(tracking_uri=settings.mlflow_tracking_uri).get_run(run_id)
    assert logged.data.metrics["lift"] == pytest.approx(lift["lift"])
    assert logged.data.tags["model.retention-return"] == "3"


def test_lift_intervals_cover_the_truth_at_their_confidence() -> None:
    rng = np.random.default_rng(11)
    covered = 0
    trials = 400
    for _ in range(trials):
        treated = (rng.random(900) < 0.42).astype(int)
        control = (rng.random(100) < 0.35).astype(int)
        lift = lift_estimate(treated, control, 0.95)
        covered += lift["ci_low"] <= 0.07 <= lift["ci_high"]
    assert 0.91 <= covered / trials <= 0.98
    empty = lift_estimate(np.array([1, 0]), np.array([], dtype=int), 0.95)
    assert empty["ci_low"] is None and empty["lift"] is None and empty["n_control"] == 0


def test_lift_per_offer_and_policy_values_recover_known_effects(engine) -> None:  # noqa: ANN001
    """Offers logged with unequal, known propensities: the weighted estimates find the true effects,
    the outcomes are stored on the rows, and the policy values match their known answers."""
    rng = np.random.default_rng(3)
    n = 6000
    offers = np.array(["none", "reminder", "coupon_10"])
    probs = np.array([0.5, 0.3, 0.2])
    given = offers[rng.choice(3, n, p=probs)]
    base, effect = 0.3, {"none": 0.0, "reminder": 0.05, "coupon_10": 0.15}
    returned = rng.random(n) < base + np.vectorize(effect.get)(given)
    arms = np.where(given == "none", "control", "treatment")
    propensity = [float(probs[list(offers).index(g)]) for g in given]
    frame = targets_frame("multi", list(arms), list(given), propensity)
    frame["policy_offer"] = "coupon_10"
    frame["risk_offer"] = "reminder"
    frame["predicted_value"] = 50.0
    write_campaign(engine, campaign_row("multi", n, int((arms == "control").sum())), frame)
    ids = frame["customer_id"].tolist()
    _purchases(engine, [c for c, r in zip(ids, returned, strict=True) if r], AS_OF)
    _published_until(engine, AS_OF + timedelta(days=HORIZON))
    lift = measure_lift(engine, "multi", CAMPAIGN)
    assert lift is not None
    for offer in ("reminder", "coupon_10"):
        figures = lift["per_offer"][offer]["returned"]
        assert figures["low"] < effect[offer] < figures["high"], offer
    values = lift["policy_values"]
    # coupon to everyone: 0.45; reminder to everyone: 0.35; nobody: 0.30 (each within its interval)
    for name, truth in (("policy", 0.45), ("risk", 0.35), ("nobody", 0.30)):
        assert values[name]["returned"]["low"] < truth < values[name]["returned"]["high"], name
    stored = campaign_targets(engine, "multi")
    assert stored["returned"].astype(bool).tolist() == list(returned)
    assert (stored.loc[stored["returned"].astype(bool), "revenue"] > 0).all()
