"""Campaign lift: return rate of the treated arm minus that of the control arm, with an interval.

A target "returned" when they purchased within [as-of, as-of + horizon). Because the control arm
was drawn at random per risk decile, the difference in return rates estimates the campaign's
effect; the interval is the normal (Wald) interval of a difference of two proportions.
"""

from __future__ import annotations

import logging
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select

from pipelines.campaigns.select import CONTROL, TREATMENT
from pipelines.campaigns.store import campaign_targets, get_campaign, list_campaigns, set_lift
from pipelines.extract.publish import data_end
from retention.db.warehouse import WAREHOUSE
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
    n_t, n_c = len(treated), len(control)
    rate_t = float(np.mean(treated)) if n_t else float("nan")
    rate_c = float(np.mean(control)) if n_c else float("nan")
    lift = rate_t - rate_c
    if n_t and n_c:
        se = float(np.sqrt(rate_t * (1 - rate_t) / n_t + rate_c * (1 - rate_c) / n_c))
        z = NormalDist().inv_cdf(0.5 + confidence / 2)
        low, high = lift - z * se, lift + z * se
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


def returned_customers(engine: Engine, start: pd.Timestamp, end: pd.Timestamp) -> set[str]:
    """Customers with a purchase in [start, end) in the warehouse."""
    events = WAREHOUSE["events"]
    with engine.connect() as connection:
        rows = connection.execute(
            select(events.c.customer_id)
            .where(events.c.event_type == "purchase", events.c.ts >= start, events.c.ts < end)
            .distinct()
        ).scalars()
        return set(rows)


def measure_lift(engine: Engine, campaign_id: str, confidence: float) -> dict[str, Any] | None:
    """Measure and store a campaign's lift once its horizon has passed (None before that)."""
    campaign = get_campaign(engine, campaign_id)
    start = pd.Timestamp(campaign["as_of"])
    end = start + pd.Timedelta(days=campaign["horizon_days"])
    complete = data_end(engine)
    if complete is None or complete < end:
        log.info("%s: horizon ends %s, data complete up to %s: not yet", campaign_id, end.date(), complete)
        return None
    targets = campaign_targets(engine, campaign_id)
    returned = targets["customer_id"].isin(returned_customers(engine, start, end)).to_numpy(dtype=int)
    arm = targets["arm"].to_numpy()
    lift = lift_estimate(returned[arm == TREATMENT], returned[arm == CONTROL], confidence)
    lift["measured_over"] = [start.isoformat(), end.isoformat()]
    set_lift(engine, campaign_id, lift)
    return lift


def log_lift(settings: Settings, campaign: dict[str, Any], lift: dict[str, Any]) -> str:
    """Log a measured lift as a run of the `retention-campaigns` experiment (once per campaign)."""
    from training.tracking import Tracker

    tracker = Tracker(settings.mlflow_tracking_uri, settings.home / "mlartifacts")
    experiment = tracker.experiment_id(CAMPAIGN_EXPERIMENT)
    found = tracker.client.search_runs(
        [experiment], filter_string=f"tags.campaign_id = '{campaign['campaign_id']}'", max_results=1
    )
    if found:
        return found[0].info.run_id
    metrics = {k: float(v) for k, v in lift.items() if isinstance(v, int | float)}
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


def measure_due(engine: Engine, settings: Settings, confidence: float) -> list[str]:
    """Measure every campaign whose horizon has passed and whose lift is not known yet."""
    measured = []
    for campaign in list_campaigns(engine):
        if campaign["lift"] is not None:
            continue
        lift = measure_lift(engine, campaign["campaign_id"], confidence)
        if lift is not None:
            log_lift(settings, campaign, lift)
            measured.append(campaign["campaign_id"])
    return measured
