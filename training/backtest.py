"""`retention backtest`: EVALUATION.md end to end for the model and every baseline on one split.

The model's three files go to the top of the output folder, each baseline's to `baselines/<name>/`,
and `comparison.csv` puts them side by side. With a tracker, each is also an MLflow run of the
family's experiment with the same tags, so reviewers compare them in the UI.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from retention.atomic import atomic_path
from retention.params import Params
from training import plots
from training.data import EventLog
from training.protocol import (
    ProtocolError,
    RecSplit,
    ReturnSplit,
    aligned_scores,
    leave_last_split,
    ranking_metrics,
    recommend,
    return_metrics,
    return_split,
    temporal_split,
)
from training.tracking import RunTags, Tracker, params_hash
from training.trainer import is_primary

log = logging.getLogger("retention.training")
Task = Literal["return", "rec"]
CHURN_COLUMNS = ["user_id", "p_return"]
RECOMMENDATION_COLUMNS = ["user_id", "rank", "item_id", "score"]


@dataclass(frozen=True)
class BacktestRequest:
    """What to evaluate (the options of `retention backtest`)."""

    task: Task
    protocol: Literal["temporal", "leave-last"]
    as_of: pd.Timestamp | None
    horizon_days: int | None
    exclude_seen: bool
    out: Path
    dataset: str = "shop"

    def check(self) -> None:
        """Raise ProtocolError naming the option that does not fit the task and protocol."""
        if self.task == "return" and self.protocol != "temporal":
            raise ProtocolError("--task return uses --protocol temporal (a cutoff and a horizon)")
        if self.protocol == "temporal" and (self.as_of is None or self.horizon_days is None):
            raise ProtocolError("--protocol temporal needs --as-of and --horizon-days")
        if self.protocol == "leave-last" and (self.as_of is not None or self.horizon_days is not None):
            raise ProtocolError("--protocol leave-last takes no --as-of or --horizon-days")
        if self.horizon_days is not None and self.horizon_days < 1:
            raise ProtocolError("--horizon-days must be at least 1")


@dataclass(frozen=True)
class ModelReport:
    """One evaluated model or baseline."""

    name: str
    role: str  # model | baseline
    folder: Path
    metrics: dict[str, float]
    fit_seconds: float
    seconds_per_epoch: float | None = None
    run_id: str | None = None


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def _write_json(values: dict[str, Any], path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(values, indent=2, default=str) + "\n")


def protocol_fields(request: BacktestRequest, fingerprint: str, params: Params) -> dict[str, Any]:
    return {
        "task": request.task,
        "protocol": request.protocol,
        "as_of": None if request.as_of is None else str(request.as_of.date()),
        "horizon_days": request.horizon_days,
        "exclude_seen": request.exclude_seen if request.task == "rec" else None,
        "ks": params.evaluation.ks if request.task == "rec" else None,
        "dataset": request.dataset,
        "dataset_fingerprint": fingerprint,
    }


def write_files(
    folder: Path, request: BacktestRequest, metrics: dict[str, Any], scores: pd.DataFrame
) -> None:
    """The three protocol files; the other task's file is written with its header only."""
    churn = scores if request.task == "return" else pd.DataFrame(columns=CHURN_COLUMNS)
    recs = scores if request.task == "rec" else pd.DataFrame(columns=RECOMMENDATION_COLUMNS)
    _write_csv(churn[CHURN_COLUMNS], folder / "churn_scores.csv")
    _write_csv(recs[RECOMMENDATION_COLUMNS], folder / "recommendations.csv")
    _write_json(metrics, folder / "metrics.json")


def return_models(params: Params, work_dir: Path) -> list[tuple[str, Any]]:
    """The return model first, then the baselines: (role, scorer)."""
    from training.churn import FrequencyBaseline, RecencyBaseline, ReturnModel, RfmBoostingBaseline

    return [
        ("model", ReturnModel(params, work_dir / "return_model")),
        ("baseline", RecencyBaseline(params)),
        ("baseline", FrequencyBaseline(params)),
        ("baseline", RfmBoostingBaseline(params)),
    ]


def rec_models(params: Params, work_dir: Path) -> list[tuple[str, Any]]:
    """SASRec first, then the baselines: (role, recommender)."""
    from training.recommender import ItemKNN, MatrixFactorisation, Popularity, SASRecRecommender

    return [
        ("model", SASRecRecommender(params, work_dir / "sasrec")),
        ("baseline", Popularity(params)),
        ("baseline", ItemKNN(params)),
        ("baseline", MatrixFactorisation(params)),
    ]


def _return_plots(split: ReturnSplit, p: np.ndarray, model: Any, folder: Path) -> list[Path]:
    y = split.returned
    figures = [
        plots.roc_plot(y, p, folder / "roc.png"),
        plots.pr_plot(y, p, folder / "pr.png"),
        plots.reliability_plot(
            plots.reliability_table(y, p), folder / "reliability.png", "Reliability (test window)"
        ),
        plots.lift_gain_plot(plots.decile_table(y, p), folder / "lift_gain.png"),
    ]
    importance = getattr(model, "feature_importance", None)
    if isinstance(importance, pd.DataFrame) and len(importance):
        figures.append(plots.importance_plot(importance, folder / "feature_importance.png"))
    validation = getattr(model, "validation", None)
    if isinstance(validation, dict) and isinstance(validation.get("reliability"), pd.DataFrame):
        title = f"Reliability (validation, h={validation.get('horizon_days')}d)"
        figures.append(
            plots.reliability_plot(validation["reliability"], folder / "reliability_validation.png", title)
        )
    return figures


def _recall_curve(split: RecSplit, recommendations: pd.DataFrame, k_max: int) -> pd.DataFrame:
    ks = list(range(1, k_max + 1))
    recall = [
        ranking_metrics(split, recommendations[recommendations["rank"] <= k], [k])[f"recall@{k}"] for k in ks
    ]
    return pd.DataFrame({"k": ks, "recall": recall})


def evaluate_return(
    split: ReturnSplit, model: Any, folder: Path
) -> tuple[dict[str, float], pd.DataFrame, list[Path]]:
    model.fit(split.history, split.as_of, split.horizon_days)
    scores = model.predict(split.history, split.as_of, split.horizon_days)
    p = aligned_scores(split, scores)
    metrics = return_metrics(split.returned, p)
    frame = pd.DataFrame({"user_id": split.population, "p_return": p})
    return metrics, frame, _return_plots(split, p, model, folder)


def tune_on_history(split: RecSplit, model: Any, ks: list[int]) -> None:
    """Let a model with a `tune(validation, ks)` method choose its settings on history only.

    The validation split is the split's own protocol applied inside `split.history`
    (`validation_split`), so nothing at or after the cutoff, nor the split's truth, is used
    (EVALUATION.md). Baselines have no `tune` and are left as they are.
    """
    from training.recommender.blend import validation_split

    tune = getattr(model, "tune", None)
    if not callable(tune):
        return
    try:
        validation = validation_split(split)
    except ProtocolError as error:
        log.warning("%s: no inner validation split (%s); keeping the configured settings", model.name, error)
        return
    tune(validation, ks)


def tuning_fields(model: Any) -> dict[str, Any]:
    """What `tune` chose on history, for metrics.json (empty for models without tuning)."""
    tuning = getattr(model, "tuning", None)
    return {"tuning": tuning} if isinstance(tuning, dict) else {}


def evaluate_rec(
    split: RecSplit, model: Any, folder: Path, ks: list[int]
) -> tuple[dict[str, float], pd.DataFrame, list[Path]]:
    tune_on_history(split, model, ks)
    model.fit(split.history, split.candidates)
    recommendations = recommend(split, model, max(ks))
    metrics = ranking_metrics(split, recommendations, ks)
    curve = _recall_curve(split, recommendations, max(ks))
    figures = [plots.recall_at_k_plot(curve, folder / "recall_at_k.png")]
    frame = recommendations.rename(columns={"customer_id": "user_id", "product_id": "item_id"})
    return metrics, frame, figures


def make_split(log_: EventLog, request: BacktestRequest) -> ReturnSplit | RecSplit:
    """The request's split of the log (EVALUATION.md), with one log line on its size."""
    if request.task == "return":
        split = return_split(log_, request.as_of, request.horizon_days)  # type: ignore[arg-type]
        log.info(
            "return split at %s, H=%sd: %d users, base rate %.3f",
            request.as_of.date(),  # type: ignore[union-attr]
            request.horizon_days,
            len(split.population),
            split.returned.mean(),
        )
        return split
    if request.protocol == "temporal":
        rec = temporal_split(log_, request.as_of, request.horizon_days, request.exclude_seen)  # type: ignore[arg-type]
    else:
        rec = leave_last_split(log_, request.exclude_seen)
    log.info("%s split: %d test users, %d candidates", request.protocol, len(rec.users), len(rec.candidates))
    return rec


def run_backtest(
    log_: EventLog,
    request: BacktestRequest,
    params: Params,
    work_dir: Path,
    tracker: Tracker | None = None,
    models: Callable[[Params, Path], list[tuple[str, Any]]] | None = None,
) -> list[ModelReport]:
    """Evaluate the model and each baseline on the request's split and write their files.

    Args:
        log_: the whole event log (the split cuts it).
        request: task, protocol, cutoff, horizon, exclude_seen, output folder.
        params: params.yaml (model, trainer and evaluation sections).
        work_dir: checkpoints of the deep models (a killed backtest resumes from them).
        tracker: MLflow, or None to write files only.
        models: override the (role, model) list (tests); by default the task's model and baselines.

    Returns:
        One report per model, the model first.
    """
    request.check()
    fingerprint = log_.fingerprint()
    split = make_split(log_, request)
    key = f"{request.task}-{request.protocol}-{fingerprint}-{request.as_of}-{request.horizon_days}"
    chosen = (models or (return_models if request.task == "return" else rec_models))(params, work_dir / key)
    fields = protocol_fields(request, fingerprint, params)
    reports = []
    for role, model in chosen:
        folder = request.out if role == "model" else request.out / "baselines" / model.name
        if not is_primary():  # plots of other DDP ranks go nowhere that matters
            folder = Path(tempfile.mkdtemp(prefix="rank-"))
        folder.mkdir(parents=True, exist_ok=True)
        log.info("backtest: fitting %s", model.name)
        started = time.perf_counter()
        if request.task == "return":
            metrics, frame, figures = evaluate_return(split, model, folder)
        else:
            metrics, frame, figures = evaluate_rec(split, model, folder, params.evaluation.ks)
        seconds = time.perf_counter() - started
        fit_result = getattr(model, "fit_result", None)
        per_epoch = fit_result.seconds_per_epoch if fit_result else None
        if not is_primary():  # other DDP ranks only took part in the fits
            continue
        written = {**metrics, **fields, "model": model.name, "role": role, "fit_seconds": round(seconds, 2)}
        written |= tuning_fields(model)
        if per_epoch is not None:
            written |= {"seconds_per_epoch": round(per_epoch, 3), "epochs": fit_result.epochs}
        write_files(folder, request, written, frame)
        run_id = None
        if tracker is not None:
            run_id, _ = track(
                tracker, request, fingerprint, params, role, model, metrics, folder, figures, seconds
            )
        shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k != "n_users")
        log.info("backtest: %s (%s) %s [%.1fs]", model.name, role, shown, seconds)
        reports.append(ModelReport(model.name, role, folder, metrics, seconds, per_epoch, run_id))
    if not reports:
        return reports
    comparison = pd.DataFrame(
        [{"model": r.name, "role": r.role, **r.metrics, "fit_seconds": r.fit_seconds} for r in reports]
    )
    _write_csv(comparison, request.out / "comparison.csv")
    return reports


def run_tags(
    request: BacktestRequest, fingerprint: str, params: Params, role: str
) -> tuple[RunTags, dict[str, Any]]:
    """The comparable tags of a run, and the parameter sections it used (hashed into the tags)."""
    sections = (
        {"training", "return_model", "features"}
        if request.task == "return"
        else {"training", "recommender", "evaluation"}
    )
    used = params.model_dump(include=sections)
    tags = RunTags(
        dataset=request.dataset,
        data_fingerprint=fingerprint,
        cutoff=str(request.as_of.date()) if request.as_of is not None else "leave-last",
        horizon_days=str(request.horizon_days),
        protocol=request.protocol,
        role=role,
        params_hash=params_hash(used),
    )
    return tags, used


def track(
    tracker: Tracker,
    request: BacktestRequest,
    fingerprint: str,
    params: Params,
    role: str,
    model: Any,
    metrics: dict[str, float],
    folder: Path,
    figures: list[Path],
    seconds: float,
    kind: str = "backtest",
    log_model: Callable[[Tracker], str] | None = None,
) -> tuple[str, str | None]:
    """One MLflow run: tags, params, metrics, per-epoch history, plots, files, and the model if asked.

    Returns:
        The run id and the registered model version (None when no model is logged).
    """
    tags, used = run_tags(request, fingerprint, params, role)
    family = request.task
    version = None
    with tracker.run(family, f"{kind}-{model.name}", tags) as run_id:
        tracker.mlflow.set_tag("kind", kind)
        tracker.log_params({"model": model.name, "exclude_seen": request.exclude_seen, **used})
        tracker.log_metrics({**metrics, "fit_seconds": seconds})
        tuning = tuning_fields(model).get("tuning")
        if tuning is not None:  # the weights chosen on history, and their inner-validation score
            tracker.log_params({f"tuning.{k}": v for k, v in tuning.items() if k != "grid"})
            tracker.log_metrics({f"tuning_{tuning['metric']}": tuning["best"]})
        fit_result = getattr(model, "fit_result", None)
        if fit_result is not None:
            tracker.log_history(fit_result.history)
            figures.append(plots.training_curves_plot(fit_result.history, folder / "training_curves.png"))
            tracker.log_metrics(
                {"seconds_per_epoch": fit_result.seconds_per_epoch, "epochs": fit_result.epochs}
            )
        for figure in figures:
            tracker.mlflow.log_artifact(str(figure), artifact_path="plots")
        for name in ("metrics.json", "churn_scores.csv" if family == "return" else "recommendations.csv"):
            tracker.mlflow.log_artifact(str(folder / name), artifact_path="backtest")
        if log_model is not None:
            version = log_model(tracker)
    return run_id, version
