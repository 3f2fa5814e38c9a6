"""`retention train`: fit a model on the platform's log, evaluate it, track it and register a version.

The evaluation split follows EVALUATION.md on the data at hand: the return model trains on history
before as-of - H and is scored on the last H days (features.horizon_days); the recommender is
evaluated leave-last. The evaluated model is the one registered, so the registry's metrics
describe exactly the weights that serve.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine

from feature_store.events import Source
from retention.params import Params
from retention.paths import mlflow_artifact_root
from retention.settings import Settings
from training.backtest import protocol_fields, run_tags, track, tuning_fields, write_files
from training.families import ModelFamily, family
from training.families.base import BacktestRequest, Scored
from training.registry import set_challenger
from training.threads import configure_threads, holds_training_slot
from training.tracking import Tracker
from training.trainer import is_primary

log = logging.getLogger("retention.training")


@dataclass(frozen=True)
class TrainResult:
    """A trained, tracked and registered model."""

    model: str
    run_id: str
    registered_name: str
    version: str
    metrics: dict[str, float]
    as_of: pd.Timestamp
    folder: Path
    reused: bool = False


def tracker_for(settings: Settings) -> Tracker:
    """The MLflow service of these settings (artifacts under RETENTION_HOME/mlartifacts)."""
    return Tracker(settings.mlflow_tracking_uri, mlflow_artifact_root(settings))


@holds_training_slot
def train_model(
    engine: Engine,
    settings: Settings,
    params: Params,
    family_name: str,
    as_of: datetime | None = None,
    source: Source = "warehouse",
    before: datetime | None = None,
) -> TrainResult:
    """Fit, evaluate, track and register one model family's model.

    Args:
        engine: the platform database.
        settings: home (checkpoints, outputs) and the MLflow tracking URI.
        params: params.yaml.
        family_name: a registered model family (`training.families`).
        as_of: nothing at or after it is read (default: midnight after the last event).
        before: read only data before this (default: as_of); the as-of is then where that data
            ends (a DAG run for an interval trains on what was known at its end, so a rerun after
            later data has arrived trains the same model).
        source: "warehouse" (validated tables, what the DAG uses) or "shop".

    Returns:
        The run id, registered version and test metrics.
    """
    configure_threads(params.training)
    chosen = family(family_name)
    event_log = chosen.read(engine, source, as_of or before)
    as_of_ts = pd.Timestamp(as_of) if as_of else chosen.data_end(event_log)
    stamp = as_of_ts.strftime("%Y%m%d")
    folder = (
        settings.home / "models" / chosen.name / stamp
        if is_primary()
        else Path(tempfile.mkdtemp(prefix="rank-"))
    )
    request = chosen.holdout_request(as_of_ts, params, folder, source)
    fingerprint = event_log.fingerprint()
    work_dir = settings.home / "runs" / "train" / chosen.name / f"{stamp}-{fingerprint}"
    chosen.check(request)
    tracker = tracker_for(settings)
    registered = chosen.registered_name
    tags, _ = run_tags(request, fingerprint, params, "model")
    identity = {k: v for k, v in tags.as_dict().items() if k != "airflow_run_id"} | {"kind": "train"}
    previous = tracker.find_registered(chosen.experiment, registered, identity)
    if previous is not None:  # same data, parameters and code: training again would add nothing
        reused_run, reused_version = previous
        run = tracker.client.get_run(reused_run)
        log.info(
            "train %s: reusing run %s (%s version %s): same data and parameters",
            chosen.name,
            reused_run,
            registered,
            reused_version,
        )
        name = run.data.params["model"]
        return TrainResult(
            name,
            reused_run,
            registered,
            reused_version,
            dict(run.data.metrics),
            as_of_ts,
            folder,
            reused=True,
        )
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    split = chosen.split(event_log, request)
    model = chosen.model(params, work_dir)
    scored, figures = chosen.evaluate(split, model, folder, params)
    metrics = scored.metrics
    wrapper, example = chosen.registered_form(model, split, params)
    seconds = time.perf_counter() - started
    if not is_primary():  # another DDP rank: it trained alongside; rank 0 writes, logs and registers
        return TrainResult(model.name, "", registered, "", metrics, as_of_ts, folder)
    write_files(
        folder,
        request,
        {
            **metrics,
            **protocol_fields(request, fingerprint, params),
            "model": model.name,
            **tuning_fields(model),
        },
        scored.rows,
    )
    model_dir = folder / "model"
    model.save(model_dir)

    def log_model(tracker: Tracker) -> str:
        return tracker.log_pyfunc(wrapper, model_dir, example, registered)

    run_id, version = track(
        tracker,
        request,
        fingerprint,
        params,
        "model",
        model,
        metrics,
        folder,
        figures,
        seconds,
        kind="train",
        log_model=log_model,
    )
    baselines = baseline_runs(tracker, chosen, split, request, fingerprint, params, folder, run_id)
    log_comparison(tracker, chosen, split, {model.name: scored, **baselines}, folder, params, run_id)
    set_challenger(tracker.client, registered, str(version))
    log.info("train %s: run %s, %s version %s (alias challenger)", chosen.name, run_id, registered, version)
    return TrainResult(model.name, run_id, registered, str(version), metrics, as_of_ts, folder)


def baseline_runs(
    tracker: Tracker,
    chosen: ModelFamily,
    split: Any,
    request: BacktestRequest,
    fingerprint: str,
    params: Params,
    folder: Path,
    parent_run_id: str,
) -> dict[str, Scored]:
    """Fit and score each baseline of the family on the model's own split, each as a child run.

    The same holdout, the same metric names and the same plots as the model's run, so the runs
    table nests them under it and the compare view sets them side by side; the gate reads them
    back instead of fitting the baselines again (`training.gate.recorded_baselines`).

    Returns:
        {baseline name: its scores}.
    """
    out: dict[str, Scored] = {}
    for baseline in chosen.applicable_baselines(params, request.exclude_seen):
        started = time.perf_counter()
        where = folder / "baselines" / baseline.name
        where.mkdir(parents=True, exist_ok=True)
        scored, figures = chosen.evaluate(split, baseline, where, params)
        seconds = time.perf_counter() - started
        written = {**scored.metrics, **protocol_fields(request, fingerprint, params), "model": baseline.name}
        write_files(where, request, written, scored.rows)
        track(
            tracker,
            request,
            fingerprint,
            params,
            "baseline",
            baseline,
            scored.metrics,
            where,
            figures,
            seconds,
            kind="train",
            parent_run_id=parent_run_id,
        )
        out[baseline.name] = scored
        log.info("train %s: baseline %s on the same holdout [%.1fs]", chosen.name, baseline.name, seconds)
    return out


def log_comparison(
    tracker: Tracker,
    chosen: ModelFamily,
    split: Any,
    scored: Mapping[str, Scored],
    folder: Path,
    params: Params,
    run_id: str,
) -> list[Path]:
    """Draw the model and its baselines on the same axes and log the figures to the model's run."""
    figures = chosen.comparison_plots(split, scored, folder / "comparison", params)
    for figure in figures:
        tracker.client.log_artifact(run_id, str(figure), "plots/comparison")
    return figures
