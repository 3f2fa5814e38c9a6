"""`retention train` and `retention backtest`: thin commands over training.train and training.backtest."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from retention.cli_context import fail, open_context

DATE_FORMATS = ["%Y-%m-%d"]


def train(
    model: Annotated[str, typer.Option("--model", help="return | recommender")],
    as_of: Annotated[
        datetime | None,
        typer.Option("--as-of", formats=DATE_FORMATS, help="Use only data before this date (default: all)."),
    ] = None,
    source: Annotated[
        str, typer.Option(help="warehouse (validated tables) | shop (loaded tables)")
    ] = "warehouse",
    report_dir: Annotated[
        Path | None,
        typer.Option(
            "--report-dir",
            help="Also copy the run's metrics (as logged to MLflow) and plots here (DVC metrics and plots).",
        ),
    ] = None,
) -> None:
    """Train a model, evaluate it on the latest data, track it in MLflow and register a new version."""
    from training.data import EventLogError
    from training.protocol import ProtocolError
    from training.train import train_model

    if model not in ("return", "recommender"):
        fail(f"--model must be one of: return, recommender (got '{model}')")
    if source not in ("warehouse", "shop"):
        fail(f"--source must be one of: warehouse, shop (got '{source}')")
    settings, params, engine = open_context()
    try:
        result = train_model(engine, settings, params, model, as_of, source)  # type: ignore[arg-type]
    except (EventLogError, ProtocolError) as error:
        fail(str(error))
    finally:
        engine.dispose()
    shown = ", ".join(f"{k}={v:.4f}" for k, v in result.metrics.items() if k != "n_users")
    typer.echo(f"{result.registered_name} version {result.version} (run {result.run_id}): {shown}")
    typer.echo(f"outputs in {result.folder}")
    if report_dir:
        write_report(result, report_dir)


def write_report(result, report_dir: Path) -> None:  # noqa: ANN001 (a training.train.TrainResult)
    """The run's metrics with its MLflow run id and version, and its plots, for DVC (replaced atomically)."""
    import json
    import shutil

    from retention.atomic import atomic_path

    report_dir.mkdir(parents=True, exist_ok=True)
    for stale in report_dir.glob("*.png"):
        stale.unlink()
    for figure in sorted(result.folder.glob("*.png")):
        shutil.copyfile(figure, report_dir / figure.name)
    figures = {
        **{k: float(v) for k, v in result.metrics.items()},
        "mlflow_run_id": result.run_id,
        "registered_version": int(result.version),
    }
    with atomic_path(report_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")


def backtest(
    task: Annotated[str, typer.Option("--task", help="return | rec")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (model files on top, baselines/ below).")],
    protocol: Annotated[str, typer.Option(help="temporal | leave-last")] = "temporal",
    as_of: Annotated[
        datetime | None, typer.Option("--as-of", formats=DATE_FORMATS, help="Cutoff T (temporal).")
    ] = None,
    horizon_days: Annotated[
        int | None, typer.Option("--horizon-days", help="Horizon H in days (temporal).")
    ] = None,
    exclude_seen: Annotated[
        bool | None,
        typer.Option(
            "--exclude-seen/--include-seen", help="Drop the user's own history items (default: params.yaml)."
        ),
    ] = None,
    dataset: Annotated[str, typer.Option(help="Dataset name recorded in metrics.json and MLflow.")] = "shop",
    track: Annotated[
        bool, typer.Option("--track/--no-track", help="Log every model as an MLflow run.")
    ] = True,
) -> None:
    """Evaluate the model and its baselines by EVALUATION.md on the loaded event log; write the files."""
    import pandas as pd

    from training.backtest import BacktestRequest, run_backtest
    from training.data import EventLogError, read_event_log
    from training.protocol import ProtocolError
    from training.train import tracker_for

    if task not in ("return", "rec"):
        fail(f"--task must be one of: return, rec (got '{task}')")
    if protocol not in ("temporal", "leave-last"):
        fail(f"--protocol must be one of: temporal, leave-last (got '{protocol}')")
    settings, params, engine = open_context()
    request = BacktestRequest(
        task=task,  # type: ignore[arg-type]
        protocol=protocol,  # type: ignore[arg-type]
        as_of=pd.Timestamp(as_of) if as_of else None,
        horizon_days=horizon_days,
        exclude_seen=params.evaluation.exclude_seen if exclude_seen is None else exclude_seen,
        out=out,
        dataset=dataset,
    )
    try:
        request.check()
        event_log = read_event_log(engine, "shop")
        tracker = tracker_for(settings) if track else None
        reports = run_backtest(event_log, request, params, settings.home / "runs" / "backtest", tracker)
    except (EventLogError, ProtocolError) as error:
        fail(str(error))
    finally:
        engine.dispose()
    headline = "roc_auc" if task == "return" else f"ndcg@{min(params.evaluation.ks)}"
    for report in reports:
        typer.echo(
            f"{report.role:8} {report.name:16} {headline}={report.metrics[headline]:.4f}  ({report.folder})"
        )
