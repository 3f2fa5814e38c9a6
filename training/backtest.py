"""`retention backtest`: EVALUATION.md end to end for a family's model and every baseline on one split.

The model's files go to the top of the output folder, each baseline's to `baselines/<name>/`,
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
from typing import Any

import pandas as pd

from feature_store.events import EventLog
from retention.atomic import atomic_path
from retention.params import Params, params_sections
from training import plots
from training.families import FAMILIES, BacktestRequest, ModelFamily, family
from training.families.base import Scored
from training.threads import configure_threads
from training.tracking import RunTags, Tracker, params_hash
from training.trainer import is_primary

log = logging.getLogger("retention.training")


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
    """The split's description in metrics.json (the same keys for every family)."""
    return {
        "task": request.family,
        "protocol": request.protocol,
        "as_of": None if request.as_of is None else str(request.as_of.date()),
        "horizon_days": request.horizon_days,
        "exclude_seen": None,
        "ks": None,
        **family(request.family).request_fields(request, params),
        "dataset": request.dataset,
        "dataset_fingerprint": fingerprint,
    }


def write_files(
    folder: Path, request: BacktestRequest, metrics: dict[str, Any], scores: pd.DataFrame
) -> None:
    """The protocol files: metrics.json and every family's scores file (the others with a header only)."""
    for other in FAMILIES.values():
        columns = list(other.score_columns)
        own = other.name == request.family  # its rows may carry more columns (uplift_<offer>)
        _write_csv(scores if own else pd.DataFrame(columns=columns), folder / other.scores_file)
    _write_json(metrics, folder / "metrics.json")


def tuning_fields(model: Any) -> dict[str, Any]:
    """What a model's `tune` chose on history, for metrics.json (empty for models without tuning)."""
    tuning = getattr(model, "tuning", None)
    return {"tuning": tuning} if isinstance(tuning, dict) else {}


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
        request: family, protocol, cutoff, horizon, exclude_seen, output folder.
        params: params.yaml (model, trainer and evaluation sections).
        work_dir: checkpoints of the deep models (a killed backtest resumes from them).
        tracker: MLflow, or None to write files only.
        models: override the (role, model) list (tests); by default the family's model and baselines.

    Returns:
        One report per model, the model first.
    """
    # one model at a time, alone in its process: params' concurrent_trainings describes the DAG's workers
    configure_threads(params.training, concurrent_trainings=1)
    chosen_family = family(request.family)
    chosen_family.check(request)
    fingerprint = log_.fingerprint()
    split = chosen_family.split(log_, request)
    key = f"{request.family}-{request.protocol}-{fingerprint}-{request.as_of}-{request.horizon_days}"
    chosen: list[tuple[str, Any]] = (
        models(params, work_dir / key)
        if models is not None
        else list(chosen_family.models(params, work_dir / key, request.exclude_seen))
    )
    fields = protocol_fields(request, fingerprint, params)
    reports: list[ModelReport] = []
    scored_by_name: dict[str, Scored] = {}
    for role, model in chosen:
        folder = request.out if role == "model" else request.out / "baselines" / model.name
        if not is_primary():  # plots of other DDP ranks go nowhere that matters
            folder = Path(tempfile.mkdtemp(prefix="rank-"))
        folder.mkdir(parents=True, exist_ok=True)
        log.info("backtest: fitting %s", model.name)
        started = time.perf_counter()
        scored, figures = chosen_family.evaluate(split, model, folder, params)
        metrics = scored.metrics
        scored_by_name[model.name] = scored
        seconds = time.perf_counter() - started
        fit_result = getattr(model, "fit_result", None)
        per_epoch = fit_result.seconds_per_epoch if fit_result else None
        if not is_primary():  # other DDP ranks only took part in the fits
            continue
        written = {**metrics, **fields, "model": model.name, "role": role, "fit_seconds": round(seconds, 2)}
        written |= tuning_fields(model)
        if fit_result is not None:
            written |= {
                "seconds_per_epoch": round(fit_result.seconds_per_epoch, 3),
                "epochs": fit_result.epochs,
            }
        write_files(folder, request, written, scored.rows)
        run_id = None
        if tracker is not None:  # baselines are child runs of the model's run (the model comes first)
            parent = next((r.run_id for r in reports if r.role == "model"), None)
            run_id, _ = track(
                tracker,
                request,
                fingerprint,
                params,
                role,
                model,
                metrics,
                folder,
                figures,
                seconds,
                parent_run_id=parent if role == "baseline" else None,
            )
        shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k != "n_users")
        log.info("backtest: %s (%s) %s [%.1fs]", model.name, role, shown, seconds)
        reports.append(ModelReport(model.name, role, folder, metrics, seconds, per_epoch, run_id))
    if not reports:
        return reports
    comparison_figures = chosen_family.comparison_plots(
        split, scored_by_name, request.out / "comparison", params
    )
    model_run = next((r.run_id for r in reports if r.role == "model"), None)
    if tracker is not None and model_run is not None:  # beside the model's own plots in its run
        for figure in comparison_figures:
            tracker.client.log_artifact(model_run, str(figure), "plots/comparison")
    comparison = pd.DataFrame(
        [{"model": r.name, "role": r.role, **r.metrics, "fit_seconds": r.fit_seconds} for r in reports]
    )
    _write_csv(comparison, request.out / "comparison.csv")
    return reports


def data_windows(request: BacktestRequest) -> dict[str, str]:
    """What the training and holdout parts of a split hold (EVALUATION.md), for the run's dataset inputs."""
    if request.protocol == "temporal" and request.as_of is not None and request.horizon_days is not None:
        end = request.as_of + pd.Timedelta(days=request.horizon_days)
        return {
            "training": f"events before {request.as_of:%Y-%m-%d}",
            "holdout": f"outcomes in [{request.as_of:%Y-%m-%d}, {end:%Y-%m-%d})",
        }
    return {"training": "every event but each customer's last", "holdout": "each customer's last event"}


def run_tags(
    request: BacktestRequest, fingerprint: str, params: Params, role: str
) -> tuple[RunTags, dict[str, Any]]:
    """The comparable tags of a run, and the parameter sections it used (hashed into the tags)."""
    used = params_sections(params, family(request.family).params_sections)
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
    parent_run_id: str | None = None,
) -> tuple[str, str | None]:
    """One MLflow run: tags, params, metrics, per-epoch history, plots, files, and the model if asked.

    Returns:
        The run id and the registered model version (None when no model is logged).
    """
    tags, used = run_tags(request, fingerprint, params, role)
    chosen_family: ModelFamily = family(request.family)
    version = None
    with tracker.run(chosen_family.experiment, f"{kind}-{model.name}", tags, parent_run_id) as run_id:
        tracker.mlflow.set_tag("kind", kind)
        tracker.log_datasets(
            request.dataset,
            fingerprint,
            data_windows(request),
            {"dataset": request.dataset, "task": request.family, "protocol": request.protocol},
        )
        tracker.log_params({"model": model.name, "exclude_seen": request.exclude_seen, **used})
        tracker.log_metrics({**metrics, "fit_seconds": seconds})
        tuning = tuning_fields(model).get("tuning")
        if tuning is not None:  # the weights chosen on history, and their inner-validation score
            tracker.log_params({f"tuning.{k}": v for k, v in tuning.items() if k != "grid"})
            tracker.log_metrics({f"tuning_{tuning['metric']}": tuning["best"]})
        privacy = getattr(model, "privacy", None)
        if privacy:  # DP-SGD's budget: epsilon spent, delta, clipping norm, noise (training/churn/privacy.py)
            tracker.log_metrics({f"dp.{k}": v for k, v in privacy.items()})
        fit_result = getattr(model, "fit_result", None)
        if fit_result is not None:
            tracker.log_history(fit_result.history)
            figures.append(plots.training_curves_plot(fit_result.history, folder / "training_curves.png"))
            tracker.log_metrics(
                {"seconds_per_epoch": fit_result.seconds_per_epoch, "epochs": fit_result.epochs}
            )
        for figure in figures:
            tracker.mlflow.log_artifact(str(figure), artifact_path="plots")
        for name in ("metrics.json", chosen_family.scores_file):
            tracker.mlflow.log_artifact(str(folder / name), artifact_path="backtest")
        if log_model is not None:
            version = log_model(tracker)
    return run_id, version
