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
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from sqlalchemy import Engine

from retention.params import Params
from retention.settings import Settings
from training.backtest import (
    BacktestRequest,
    evaluate_rec,
    evaluate_return,
    make_split,
    protocol_fields,
    run_tags,
    track,
    tuning_fields,
    write_files,
)
from training.data import EventLog, Source, read_event_log
from training.registry import REGISTERED_NAMES, set_challenger
from training.tracking import Tracker
from training.trainer import is_primary

log = logging.getLogger("retention.training")
ModelKind = Literal["return", "recommender"]
INPUT_EXAMPLE_ROWS = 5


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


def default_as_of(last_event: pd.Timestamp) -> pd.Timestamp:
    """Midnight after the last event: the log is complete up to there."""
    return last_event.normalize() + pd.Timedelta(days=1)


def holdout_end(event_log: EventLog, as_of: datetime | None) -> pd.Timestamp:
    """The end of the evaluation window: `as_of`, or midnight after the log's last event."""
    return pd.Timestamp(as_of) if as_of else default_as_of(event_log.events["ts"].max())


def holdout_request(
    kind: str,
    event_log: EventLog,
    params: Params,
    as_of: datetime | None,
    out: Path,
    source: Source = "warehouse",
) -> BacktestRequest:
    """The most recent evaluation window of a model kind (used by `train` and by the promotion gate).

    The return model is scored at as-of - H on the last H days (features.horizon_days); the
    recommender leave-last with the configured `exclude_seen`.
    """
    end = holdout_end(event_log, as_of)
    if kind == "return":
        horizon = params.features.horizon_days
        return BacktestRequest(
            "return", "temporal", end - pd.Timedelta(days=horizon), horizon, False, out, source
        )
    return BacktestRequest("rec", "leave-last", None, None, params.evaluation.exclude_seen, out, source)


def tracker_for(settings: Settings) -> Tracker:
    """The MLflow service of these settings (artifacts under RETENTION_HOME/mlartifacts)."""
    return Tracker(settings.mlflow_tracking_uri, settings.home / "mlartifacts")


def train_model(
    engine: Engine,
    settings: Settings,
    params: Params,
    kind: ModelKind,
    as_of: datetime | None = None,
    source: Source = "warehouse",
) -> TrainResult:
    """Fit, evaluate, track and register one model.

    Args:
        engine: the platform database.
        settings: home (checkpoints, outputs) and the MLflow tracking URI.
        params: params.yaml.
        kind: "return" or "recommender".
        as_of: nothing at or after it is read (default: midnight after the last event).
        source: "warehouse" (validated tables, what the DAG uses) or "shop".

    Returns:
        The run id, registered version and test metrics.
    """
    from training.churn import ReturnModel
    from training.pyfunc import RecommenderPyfunc, ReturnPyfunc
    from training.recommender import SASRecRecommender

    event_log = read_event_log(engine, source, before=as_of)
    as_of_ts = holdout_end(event_log, as_of)
    stamp = as_of_ts.strftime("%Y%m%d")
    folder = (
        settings.home / "models" / kind / stamp if is_primary() else Path(tempfile.mkdtemp(prefix="rank-"))
    )
    request = holdout_request(kind, event_log, params, as_of_ts, folder, source)
    fingerprint = event_log.fingerprint()
    work_dir = settings.home / "runs" / "train" / kind / f"{stamp}-{fingerprint}"
    request.check()
    tracker = tracker_for(settings)
    registered = REGISTERED_NAMES[kind]
    tags, _ = run_tags(request, fingerprint, params, "model")
    identity = {k: v for k, v in tags.as_dict().items() if k != "airflow_run_id"} | {"kind": "train"}
    previous = tracker.find_registered(request.task, registered, identity)
    if previous is not None:  # same data, parameters and code: training again would add nothing
        run_id, version = previous
        metrics = dict(tracker.client.get_run(run_id).data.metrics)
        log.info(
            "train %s: reusing run %s (%s version %s): same data and parameters",
            kind,
            run_id,
            registered,
            version,
        )
        name = ReturnModel.name if kind == "return" else SASRecRecommender.name
        return TrainResult(name, run_id, registered, version, metrics, as_of_ts, folder, reused=True)
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model: Any
    split: Any = make_split(event_log, request)
    if kind == "return":
        model = ReturnModel(params, work_dir)
        metrics, frame, figures = evaluate_return(split, model, folder)
        example = model.inputs(split.history, split.as_of).head(INPUT_EXAMPLE_ROWS)
        wrapper: Any = ReturnPyfunc(model)
    else:
        model = SASRecRecommender(params, work_dir)
        metrics, frame, figures = evaluate_rec(split, model, folder, params.evaluation.ks)
        example = model.inputs(split.history, split.users[:INPUT_EXAMPLE_ROWS])
        wrapper = RecommenderPyfunc(model, k=max(params.evaluation.ks))
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
        frame,
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
    set_challenger(tracker.client, registered, str(version))
    log.info("train %s: run %s, %s version %s (alias challenger)", kind, run_id, registered, version)
    return TrainResult(model.name, run_id, registered, str(version), metrics, as_of_ts, folder)
