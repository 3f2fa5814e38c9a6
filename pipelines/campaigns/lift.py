"""Campaign lift once the horizon has passed: per arm, per offer, and the value of other policies.

A logged customer "returned" when they purchased within [as-of, as-of + horizon); their revenue
is what they spent then. Both are stored on the campaign's rows (the uplift model's training data).
- The policy's lift: return rate of its contacts minus that of its random hold-outs (drawn per
  risk decile), with the normal (Wald) interval of a difference of two proportions
  (statsmodels' `confint_proportions_2indep`).
- Lift per offer: inverse-propensity-weighted (Hajek) mean outcome of the customers who got the
  offer minus that of those who got no contact, over every logged customer; unbiased because
  every offer had a known, positive probability (select.py).
- Off-policy values (training.uplift.evaluation): what the policy used, the risk ranking, a random
  choice at the same contact rate and contacting nobody would each have achieved per customer.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, and_, bindparam, func, select, update

from pipelines.campaigns.select import CONTROL, TREATMENT, offer_eligibility
from pipelines.campaigns.store import campaign_targets, get_campaign, list_campaigns, set_lift
from pipelines.extract.publish import data_end
from retention.db.platform import CampaignTarget
from retention.db.warehouse import WAREHOUSE
from retention.params import NO_OFFER, CampaignParams
from retention.paths import mlflow_artifact_root
from retention.settings import Settings

if TYPE_CHECKING:  # mlflow is imported lazily: it is slow to import
    from mlflow.entities import Metric, Param

log = logging.getLogger("retention.campaigns")
CAMPAIGN_EXPERIMENT = "retention-campaigns"  # MLflow experiment of the measured lifts


def lift_estimate(treated: np.ndarray, control: np.ndarray, confidence: float) -> dict[str, Any]:
    """Return rates of both arms, their difference and its confidence interval.

    Args:
        treated: 0/1 returned flags of the treatment arm.
        control: 0/1 returned flags of the control arm.
        confidence: e.g. 0.95.

    Returns:
        n and rate of each arm, lift (difference of rates), ci_low, ci_high, relative_lift,
        confidence; undefined values (an empty arm) are None.
    """
    # Lazily: about 1 s to import. No type stubs (pyproject's ignore_missing_imports list lacks it).
    from statsmodels.stats.proportion import confint_proportions_2indep  # type: ignore[import-untyped]

    n_t, n_c = len(treated), len(control)
    rate_t = float(np.mean(treated)) if n_t else float("nan")
    rate_c = float(np.mean(control)) if n_c else float("nan")
    lift = rate_t - rate_c
    if n_t and n_c:
        low, high = (
            float(bound)
            for bound in confint_proportions_2indep(
                int(np.sum(treated)),
                n_t,
                int(np.sum(control)),
                n_c,
                method="wald",
                compare="diff",
                alpha=1 - confidence,
            )
        )
    else:
        low = high = float("nan")
    estimate = {
        "n_treatment": n_t,
        "n_control": n_c,
        "return_rate_treatment": rate_t,
        "return_rate_control": rate_c,
        "lift": lift,
        "ci_low": low,
        "ci_high": high,
        "relative_lift": lift / rate_c if n_c and rate_c > 0 else float("nan"),
        "confidence": confidence,
    }
    # Undefined values are null, not NaN: NaN is not JSON (PostgreSQL's json type rejects it).
    return {k: None if isinstance(v, float) and not np.isfinite(v) else v for k, v in estimate.items()}


def customer_outcomes(engine: Engine, start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
    """Revenue per customer with a purchase in [start, end) in the warehouse (index customer_id)."""
    events = WAREHOUSE["events"]
    spend = func.sum(func.coalesce(events.c.price, 0.0) * events.c.quantity)
    with engine.connect() as connection:
        rows = connection.execute(
            select(events.c.customer_id, spend)
            .where(events.c.event_type == "purchase", events.c.ts >= start, events.c.ts < end)
            .group_by(events.c.customer_id)
        ).all()
    return pd.Series({customer: float(value or 0.0) for customer, value in rows}, dtype=float)


def store_outcomes(engine: Engine, campaign_id: str, outcomes: pd.DataFrame) -> None:
    """Write returned / revenue onto the campaign's logged rows (one transaction)."""
    table = CampaignTarget.__table__
    statement = (
        update(table)
        .where(and_(table.c.campaign_id == bindparam("c_id"), table.c.customer_id == bindparam("u_id")))
        .values(returned=bindparam("r"), revenue=bindparam("v"))
    )
    rows = [
        {"c_id": campaign_id, "u_id": c, "r": bool(r), "v": float(v)}
        for c, r, v in outcomes[["customer_id", "returned", "revenue"]].itertuples(index=False)
    ]
    if rows:
        with engine.begin() as connection:
            connection.execute(statement, rows)


def _finite(values: dict[str, Any]) -> dict[str, Any]:
    # Undefined values are null, not NaN: NaN is not JSON (PostgreSQL's json type rejects it).
    return {k: None if isinstance(v, float) and not np.isfinite(v) else v for k, v in values.items()}


def offer_lifts(logged: pd.DataFrame, offers: list[str], confidence: float) -> dict[str, dict[str, Any]]:
    """Per offer: IPW lift vs no contact on return and on revenue, with intervals (see module doc)."""
    from training.uplift.evaluation import weighted_difference

    lifts: dict[str, dict[str, Any]] = {}
    for offer in offers:
        lifts[offer] = {
            outcome: _finite(
                weighted_difference(
                    logged[outcome].to_numpy(dtype=float),
                    logged["offer"].to_numpy(),
                    logged["propensity"].to_numpy(dtype=float),
                    offer,
                    NO_OFFER,
                    confidence,
                )
            )
            for outcome in ("returned", "revenue")
        }
        lifts[offer]["n"] = {"rows": int((logged["offer"] == offer).sum())}
    return lifts


def policy_values(logged: pd.DataFrame, params: CampaignParams, confidence: float) -> dict[str, Any]:
    """IPW value per customer (return rate and revenue) of the used, risk, random and no-contact policies."""
    from training.uplift.evaluation import ipw_value

    allowed = offer_eligibility(logged, params).to_numpy()
    names = np.array(list(params.offers), dtype=object)
    contact_rate = float((logged["policy_offer"] != NO_OFFER).mean()) if len(logged) else 0.0
    offer, propensity = logged["offer"].to_numpy(), logged["propensity"].to_numpy(dtype=float)
    # The random policy contacts the same share, with an offer drawn among the allowed ones.
    random_prob = np.where(
        offer == NO_OFFER,
        1.0 - contact_rate,
        contact_rate
        * np.array([a[names == o].any() for a, o in zip(allowed, offer, strict=True)])
        / np.maximum(allowed.sum(axis=1), 1),
    )
    chosen = {
        "policy": (logged["policy_offer"] == logged["offer"]).to_numpy(dtype=float),
        "risk": (logged["risk_offer"] == logged["offer"]).to_numpy(dtype=float),
        "random": random_prob,
        "nobody": (logged["offer"] == NO_OFFER).to_numpy(dtype=float),
    }
    return {
        name: {
            outcome: _finite(
                ipw_value(logged[outcome].to_numpy(dtype=float), weight, propensity, confidence).to_dict()
            )
            for outcome in ("returned", "revenue")
        }
        for name, weight in chosen.items()
    }


def measure_lift(engine: Engine, campaign_id: str, params: CampaignParams) -> dict[str, Any] | None:
    """Measure and store a campaign's outcomes and lifts once its horizon has passed (None before)."""
    campaign = get_campaign(engine, campaign_id)
    start = pd.Timestamp(campaign["as_of"])
    end = start + pd.Timedelta(days=campaign["horizon_days"])
    complete = data_end(engine)
    if complete is None or complete < end:
        log.info("%s: horizon ends %s, data complete up to %s: not yet", campaign_id, end.date(), complete)
        return None
    targets = campaign_targets(engine, campaign_id)
    spend = customer_outcomes(engine, start, end)
    targets["returned"] = targets["customer_id"].isin(spend.index)
    targets["revenue"] = targets["customer_id"].map(spend).fillna(0.0).astype(float)
    store_outcomes(engine, campaign_id, targets)
    confidence = params.lift_confidence
    policy_rows = targets.loc[(targets["policy_offer"] != NO_OFFER) & ~targets["explored"].astype(bool)]
    returned = policy_rows["returned"].to_numpy(dtype=int)
    arm = policy_rows["arm"].to_numpy()
    lift = lift_estimate(returned[arm == TREATMENT], returned[arm == CONTROL], confidence)
    lift["measured_over"] = [start.isoformat(), end.isoformat()]
    offers = sorted(set(targets["offer"]) - {NO_OFFER})
    lift["per_offer"] = offer_lifts(targets, offers, confidence)
    lift["policy_values"] = policy_values(targets, params, confidence)
    set_lift(engine, campaign_id, lift)
    return lift


def log_lift(settings: Settings, campaign: dict[str, Any], lift: dict[str, Any]) -> str:
    """Log a measured lift as a run of the `retention-campaigns` experiment (once per campaign)."""
    from training.tracking import Tracker

    tracker = Tracker(settings.mlflow_tracking_uri, mlflow_artifact_root(settings))
    experiment = tracker.experiment_id(CAMPAIGN_EXPERIMENT)
    found = tracker.client.search_runs(
        [experiment], filter_string=f"tags.campaign_id = '{campaign['campaign_id']}'", max_results=1
    )
    if found:
        return found[0].info.run_id
    metrics = {k: float(v) for k, v in lift.items() if isinstance(v, int | float)}
    for offer, figures in lift.get("per_offer", {}).items():
        for outcome in ("returned", "revenue"):
            if figures[outcome].get("lift") is not None:
                metrics[f"lift_{outcome}.{offer}"] = float(figures[outcome]["lift"])
    for policy, figures in lift.get("policy_values", {}).items():
        for outcome in ("returned", "revenue"):
            if figures[outcome].get("value") is not None:
                metrics[f"value_{outcome}.{policy}"] = float(figures[outcome]["value"])
    tags = {
        "campaign_id": campaign["campaign_id"],
        "as_of": pd.Timestamp(campaign["as_of"]).isoformat(),
        "params_hash": campaign["params_hash"],
        **{f"model.{name}": version for name, version in campaign["model_versions"].items()},
    }
    run = tracker.client.create_run(experiment, run_name=f"lift {campaign['campaign_id']}", tags=tags)
    tracker.client.log_batch(
        run.info.run_id,
        metrics=[_metric(k, v) for k, v in metrics.items()],
        params=[_param("horizon_days", campaign["horizon_days"]), _param("n_targets", campaign["n_targets"])],
    )
    tracker.client.set_terminated(run.info.run_id)
    log.info("%s: lift logged to MLflow experiment %s", campaign["campaign_id"], CAMPAIGN_EXPERIMENT)
    return run.info.run_id


def _metric(key: str, value: float) -> Metric:
    import time

    from mlflow.entities import Metric

    return Metric(key, value, int(time.time() * 1000), 0)


def _param(key: str, value: object) -> Param:
    from mlflow.entities import Param

    return Param(key, str(value))


def measure_due(engine: Engine, settings: Settings, params: CampaignParams) -> list[str]:
    """Measure every campaign whose horizon has passed and whose lift is not known yet."""
    measured = []
    for campaign in list_campaigns(engine):
        if campaign["lift"] is not None:
            continue
        lift = measure_lift(engine, campaign["campaign_id"], params)
        if lift is not None:
            log_lift(settings, campaign, lift)
            measured.append(campaign["campaign_id"])
    return measured
