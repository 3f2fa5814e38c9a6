"""One monitoring run of the champion return model: drift, realised quality, a stored row, an MLflow run.

`monitor` reads, as of the run's as-of:
1. feature drift: the feature store's features of the current population against those of the
   population the champion was measured on at training (its run's `cutoff` tag), recomputed
   point-in-time from the warehouse (`feature_store.offline.features_at`);
2. prediction drift: the champion's P(return) now against the scores its training run logged at
   that cutoff (`backtest/churn_scores.csv`; recomputed when the artifact is missing);
3. realised quality of the newest matured campaign (`pipelines.monitoring.quality`).
The run's status is the worst of them (features count as `alert` from `alert_features` alerting
features on); `alert` means retraining is due: the monitor DAG then emits its `retrain` Asset and
an alert is sent (log + webhook, `pipelines.operations.alert`). The row is written to
`platform_monitoring` (a rerun for the same as-of replaces it) and an MLflow run (tag
role=monitoring) to the registered model's experiment (again replacing a rerun's).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from pipelines.monitoring.drift import FeatureDrift, feature_drift, prediction_drift, worst
from pipelines.monitoring.quality import logged_outcomes, matured_campaign, realised_quality
from pipelines.monitoring.store import store_run
from retention.clock import utc_now
from retention.params import FeatureParams, MonitoringParams, Params
from retention.settings import Settings

log = logging.getLogger("retention.monitoring")
FAMILY = "return"
ROLE = "monitoring"
SCORES_ARTIFACT = "backtest/churn_scores.csv"  # what `training.backtest.track` logs at the cutoff


@dataclass(frozen=True)
class MonitoringResult:
    """What one monitoring run found (JSON-ready through `as_dict`)."""

    registered_name: str
    version: str
    as_of: str
    reference_as_of: str
    status: str
    retrain: bool
    psi_max: float | None
    alerting_features: list[str] = field(default_factory=list)
    prediction_status: str = "ok"
    realised_status: str | None = None
    mlflow_run_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def drift_report(
    reference: pd.DataFrame, current: pd.DataFrame, params: MonitoringParams
) -> tuple[list[FeatureDrift], str]:
    """Per-feature drift and the features' overall status (`alert` from `alert_features` alerts on).

    Samples smaller than `min_rows` on either side are not judged: every feature's status is ok.
    """
    drifts = feature_drift(reference, current, params)
    if min(len(reference), len(current)) < params.min_rows:
        drifts = [replace(d, status="ok") for d in drifts]
    if sum(d.status == "alert" for d in drifts) >= params.alert_features:
        return drifts, "alert"
    return drifts, "warn" if any(d.status != "ok" for d in drifts) else "ok"


def monitored_features(engine: Engine, as_of: datetime, params: FeatureParams) -> pd.DataFrame:
    """The return model's tabular inputs of the population at `as_of`, read point-in-time from the warehouse.

    The feature store's features (`compute_features`, categorical ones included) and the model's own
    order features (`training.churn.dataset.EXTRA_FEATURES`: basket amounts, inter-purchase times),
    one row per customer with a purchase before `as_of`.
    """
    from feature_store.core import compute_features
    from feature_store.io import read_frames
    from training.churn.dataset import EXTRA_FEATURES, customer_inputs

    frames = read_frames(engine, as_of, params)
    features = compute_features(frames, as_of, params)
    inputs = customer_inputs(frames, as_of, params, sequence_length=1)  # only its tabular part is used
    extra = inputs.tabular[list(EXTRA_FEATURES)].assign(customer_id=inputs.customer_id)
    return features.merge(extra, on="customer_id", how="left", validate="one_to_one")


def population_drift(
    engine: Engine, reference_as_of: datetime, as_of: datetime, params: Params
) -> tuple[list[FeatureDrift], str, int, int]:
    """`drift_report` of the model inputs of the population at `as_of` against those at `reference_as_of`.

    Returns:
        The per-feature drift, its status, and the reference and current row counts.
    """
    reference = monitored_features(engine, reference_as_of, params.features)
    current = monitored_features(engine, as_of, params.features)
    drifts, status = drift_report(reference, current, params.monitoring)
    log.info(
        "drift %s -> %s: %s (%d -> %d customers)",
        reference_as_of,
        as_of,
        status,
        len(reference),
        len(current),
    )
    return drifts, status, len(reference), len(current)


def _reference_scores(settings: Settings, run_id: str) -> np.ndarray | None:
    """P(return) the training run logged at its cutoff, or None when the artifact is missing."""
    import mlflow
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as folder:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=run_id,
                artifact_path=SCORES_ARTIFACT,
                dst_path=folder,
                tracking_uri=settings.mlflow_tracking_uri,
            )
        except (MlflowException, OSError):
            return None
        return pd.read_csv(Path(path))["p_return"].to_numpy(dtype=float)


def _current_scores(model: Any, engine: Engine, as_of: datetime) -> np.ndarray:
    """The model's P(return) of every customer it scores at `as_of` (the campaigns' scoring path)."""
    from feature_store.events import read_event_log
    from training.scoring import churn_scores

    history = read_event_log(engine, "warehouse", before=as_of)
    return churn_scores(model, history, pd.Timestamp(as_of), int(model.horizon_days))["p_return"].to_numpy()


def _training_metrics(client: Any, name: str, version: str | None) -> dict[str, float]:
    """The metrics logged by the training run of a registered version ({} when unknown)."""
    if version is None:
        return {}
    try:
        return dict(client.get_run(client.get_model_version(name, version).run_id).data.metrics)
    except Exception:  # noqa: BLE001 (a deleted version or run: nothing to compare with)
        return {}


def realised_report(
    engine: Engine, client: Any, name: str, as_of: datetime, params: MonitoringParams
) -> dict[str, Any] | None:
    """Realised quality of the newest matured campaign against its predicting version's training metrics."""
    campaign = matured_campaign(engine, as_of)
    if campaign is None:
        return None
    version = (campaign["model_versions"] or {}).get(name)
    report = realised_quality(
        logged_outcomes(engine, campaign["campaign_id"]), _training_metrics(client, name, version), params
    )
    return {
        "campaign_id": campaign["campaign_id"],
        "campaign_as_of": pd.Timestamp(campaign["as_of"]).isoformat(),
        "version": version,
        **report,
    }


def run_status(drift_status: str, prediction: FeatureDrift | None, realised: dict[str, Any] | None) -> str:
    """The worst of the features', the prediction's and the realised quality's statuses."""
    return worst(
        [drift_status, prediction.status if prediction else "ok", (realised or {}).get("status", "ok")]
    )


def monitor(engine: Engine, settings: Settings, params: Params, as_of: datetime) -> MonitoringResult | None:
    """Monitor the return champion at `as_of`; store the row, log the MLflow run, alert on `alert`.

    Args:
        engine: the platform database.
        settings: the MLflow tracking URI and alert webhook.
        params: params.yaml (`monitoring` thresholds; the model's own `features` section is used).
        as_of: the point in time (naive UTC): the warehouse is read strictly before it.

    Returns:
        What was found; None when there is no champion yet (nothing is written).
    """
    from mlflow import MlflowClient

    from training.families import family
    from training.registry import CHAMPION, alias_version, load_native

    name = family(FAMILY).registered_name
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    version = alias_version(client, name, CHAMPION)
    if version is None:
        log.info("monitor: %s has no champion yet: nothing to monitor", name)
        return None
    run_id = str(client.get_model_version(name, version).run_id)
    reference_as_of = pd.Timestamp(client.get_run(run_id).data.tags["cutoff"]).to_pydatetime()
    model = load_native(settings.mlflow_tracking_uri, name, version)
    model_params = params.model_copy(update={"features": model.params.features})
    drifts, drift_status, n_reference, n_current = population_drift(
        engine, reference_as_of, as_of, model_params
    )
    log.info(
        "monitor %s v%s at %s: features %s against %s", name, version, as_of, drift_status, reference_as_of
    )

    reference_scores = _reference_scores(settings, run_id)
    if reference_scores is None:  # an older run without the artifact: score the reference again
        reference_scores = _current_scores(model, engine, reference_as_of)
    prediction = prediction_drift(reference_scores, _current_scores(model, engine, as_of), params.monitoring)
    realised = realised_report(engine, client, name, as_of, params.monitoring)
    status = run_status(drift_status, prediction, realised)
    psi_max = max((d.psi for d in drifts), default=None)
    row = {
        "registered_name": name,
        "as_of": pd.Timestamp(as_of).to_pydatetime(),
        "version": version,
        "reference_as_of": reference_as_of,
        "n_reference": n_reference,
        "n_current": n_current,
        "feature_drift": [d.as_dict() for d in drifts],
        "psi_max": psi_max,
        "prediction_drift": prediction.as_dict(),
        "realised": realised,
        "status": status,
        "retrain": status == "alert",
        "computed_at": utc_now(),
    }
    mlflow_run_id = log_monitoring_run(settings, params.monitoring, row)
    store_run(engine, {**row, "mlflow_run_id": mlflow_run_id})
    result = MonitoringResult(
        name,
        version,
        pd.Timestamp(as_of).isoformat(),
        pd.Timestamp(reference_as_of).isoformat(),
        status,
        status == "alert",
        psi_max,
        [d.feature for d in drifts if d.status == "alert"],
        prediction.status,
        (realised or {}).get("status"),
        mlflow_run_id,
    )
    log.info("monitor %s v%s at %s: %s", name, version, as_of, result.as_dict())
    if result.retrain:
        from pipelines.operations import alert

        alert(
            {"summary": f"{name} v{version} drifted at {result.as_of}: retraining due", **result.as_dict()},
            settings,
        )
    return result


def log_monitoring_run(settings: Settings, params: MonitoringParams, row: dict[str, Any]) -> str:
    """Log the row as an MLflow run (tag role=monitoring) in the model's experiment; a rerun's run is deleted.

    Returns:
        The run id.
    """
    from training.families import family
    from training.tracking import RunTags, params_hash
    from training.train import tracker_for

    tracker = tracker_for(settings)
    experiment = family(FAMILY).experiment
    as_of = pd.Timestamp(row["as_of"]).isoformat()
    identity = {"role": ROLE, "monitoring_as_of": as_of, "model_version": row["version"]}
    found = tracker.client.get_experiment_by_name(experiment)
    if found is not None:
        query = " and ".join(f"tags.{k} = '{v}'" for k, v in identity.items())
        for previous in tracker.client.search_runs([found.experiment_id], filter_string=query):
            tracker.client.delete_run(previous.info.run_id)
    tags = RunTags(
        dataset="warehouse",
        data_fingerprint="",
        cutoff=str(pd.Timestamp(row["as_of"]).date()),
        horizon_days="",
        protocol=ROLE,
        role=ROLE,
        params_hash=params_hash(params.model_dump(mode="json")),
    )
    with tracker.run(experiment, f"monitor-{row['as_of']:%Y-%m-%d}-v{row['version']}", tags) as run_id:
        tracker.mlflow.set_tags(
            {
                **identity,
                "registered_model": row["registered_name"],
                "reference_cutoff": pd.Timestamp(row["reference_as_of"]).isoformat(),
                "status": row["status"],
                "retrain": str(row["retrain"]).lower(),
            }
        )
        tracker.log_params({"monitoring": params.model_dump(mode="json")})
        realised = row["realised"] or {}
        metrics: dict[str, float] = {
            "psi_max": row["psi_max"] if row["psi_max"] is not None else float("nan"),
            "features_alert": sum(d["status"] == "alert" for d in row["feature_drift"]),
            "features_warn": sum(d["status"] == "warn" for d in row["feature_drift"]),
            "prediction_psi": row["prediction_drift"]["psi"],
            "prediction_ks_pvalue": row["prediction_drift"]["pvalue"],
            "n_reference": row["n_reference"],
            "n_current": row["n_current"],
            **{f"psi_{d['feature']}": d["psi"] for d in row["feature_drift"]},
        }
        for key, value in (realised.get("metrics") or {}).items():
            metrics[f"realised_{key}"] = value
        for key, value in (realised.get("training") or {}).items():
            if value is not None:
                metrics[f"training_{key}"] = value
        tracker.log_metrics(metrics)
    return run_id


def task_monitor(as_of: datetime | None = None, settings: Settings | None = None) -> dict[str, Any]:
    """Monitor the return champion (the monitor DAG's entry point).

    Args:
        as_of: the point in time (default: the end of the newest published warehouse interval, what
            the extraction that triggered the run published).
        settings: the deployment settings (default: from the environment).

    Returns:
        `MonitoringResult.as_dict()`, or {"status": "no_champion", "retrain": False}.
    """
    from pipelines.extract.publish import data_end
    from retention.clock import naive_utc
    from retention.context import platform_session

    with platform_session(settings) as (settings, params, engine):
        if as_of is None:
            end = data_end(engine)
            if end is None:
                return {"status": "no_data", "retrain": False}
            as_of = end.to_pydatetime()
        result = monitor(engine, settings, params, naive_utc(as_of))
    return result.as_dict() if result else {"status": "no_champion", "retrain": False}
