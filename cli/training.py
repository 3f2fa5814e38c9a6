"""`retention train` and `retention backtest`: thin commands over training.train and training.backtest."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.context import fail, load_context, open_context
from training.families import FAMILY_NAMES

if TYPE_CHECKING:
    from training.train import TrainResult

DATE_FORMATS = ["%Y-%m-%d"]
SIGTERM_EXIT = 143  # 128 + SIGTERM: the shell's status of a terminated process, never a success
FAMILY_HELP = "The model family: " + " | ".join(FAMILY_NAMES)


def _check_family(name: str) -> None:
    if name not in FAMILY_NAMES:
        fail(f"--model must be one of: {', '.join(FAMILY_NAMES)} (got '{name}')")


def train(
    model: Annotated[str, typer.Option("--model", help=FAMILY_HELP)],
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
    """Train a model, evaluate it on the latest data, track it in MLflow and register a new version.

    SIGTERM stops the training at the end of the current epoch, keeps its checkpoints under
    RETENTION_HOME and exits with 143; the same command then resumes it (finished networks are
    loaded, not trained again).
    """
    from feature_store.events import SOURCES, EventLogError
    from training.protocol import ProtocolError
    from training.train import train_model
    from training.trainer import TrainingInterrupted, stop_on_sigterm, stop_requested

    _check_family(model)
    if source not in SOURCES:
        fail(f"--source must be one of: {', '.join(SOURCES)} (got '{source}')")
    settings, params, engine = open_context()
    try:
        with stop_on_sigterm():
            result = train_model(engine, settings, params, model, as_of, SOURCES[source])
    except TrainingInterrupted as error:
        typer.secho(f"interrupted: {error}; run the same command to resume", err=True)
        raise typer.Exit(code=SIGTERM_EXIT) from None
    except (EventLogError, ProtocolError) as error:
        fail(str(error))
    finally:
        engine.dispose()
    shown = ", ".join(f"{k}={v:.4f}" for k, v in result.metrics.items() if k != "n_users")
    typer.echo(f"{result.registered_name} version {result.version} (run {result.run_id}): {shown}")
    typer.echo(f"outputs in {result.folder}")
    if report_dir:
        write_report(result, report_dir)
    if stop_requested():  # SIGTERM came after the last fit: the work is saved, but it was asked to stop
        raise typer.Exit(code=SIGTERM_EXIT)


def write_report(result: TrainResult, report_dir: Path) -> None:
    """The run's metrics with its MLflow run id and version, its plots and their data, for DVC."""
    import json
    import shutil

    from retention.atomic import atomic_path

    report_dir.mkdir(parents=True, exist_ok=True)
    for stale in report_dir.glob("*.png"):
        stale.unlink()
    for figure in sorted(result.folder.glob("*.png")):
        shutil.copyfile(figure, report_dir / figure.name)
    plot_data = report_dir / "plots"  # what the comparison PNGs draw (model and baselines), for `dvc plots`
    plot_data.mkdir(exist_ok=True)
    for table in sorted((result.folder / "comparison").glob("*.csv")):
        shutil.copyfile(table, plot_data / table.name)
    figures = {
        **{k: float(v) for k, v in result.metrics.items()},
        "mlflow_run_id": result.run_id,
        "registered_version": int(result.version),
    }
    with atomic_path(report_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")


def backtest(
    model: Annotated[
        str, typer.Option("--model", "--task", help=f"{FAMILY_HELP} (`--task` is EVALUATION.md's spelling)")
    ],
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
    train_log: Annotated[
        Path | None, typer.Option("--train", help="uplift: the training campaign log (CSV).")
    ] = None,
    test_customers: Annotated[
        Path | None, typer.Option("--test", help="uplift: the customers to score (CSV: id + features).")
    ] = None,
    control: Annotated[str | None, typer.Option(help="uplift: the control arm's name in the log.")] = None,
    outcome: Annotated[str | None, typer.Option(help="uplift: the outcome column to model.")] = None,
    arm_col: Annotated[str, typer.Option("--arm-col", help="uplift: the arm column.")] = "arm",
    id_col: Annotated[str, typer.Option("--id-col", help="uplift: the customer id column.")] = "user_id",
    file_format: Annotated[
        str, typer.Option("--format", help="uplift: log (the contract's columns) | hillstrom (hillstrom.csv)")
    ] = "log",
    learner: Annotated[
        str | None, typer.Option(help="uplift: the learner (default: params.yaml uplift.learner).")
    ] = None,
) -> None:
    """Evaluate the model and its baselines by EVALUATION.md on the loaded event log; write the files.

    `--task uplift --train LOG.csv --test CUSTOMERS.csv --control NAME --outcome COL` is the files-in,
    files-out uplift backtest (EVALUATION.md task 3) instead: it needs no database.
    """
    uplift_files = (train_log, test_customers, control, outcome)
    if model == "uplift" and (any(v is not None for v in uplift_files) or model not in FAMILY_NAMES):
        _uplift_backtest(
            train_log, test_customers, control, outcome, out, arm_col, id_col, file_format, learner
        )
        return
    import pandas as pd

    from feature_store.events import EventLogError
    from training.backtest import run_backtest
    from training.families import BacktestRequest, family
    from training.protocol import SPLIT_PROTOCOLS, ProtocolError
    from training.train import tracker_for

    _check_family(model)
    if protocol not in SPLIT_PROTOCOLS:
        fail(f"--protocol must be one of: {', '.join(SPLIT_PROTOCOLS)} (got '{protocol}')")
    settings, params, engine = open_context()
    request = BacktestRequest(
        family=model,
        protocol=SPLIT_PROTOCOLS[protocol],
        as_of=pd.Timestamp(as_of) if as_of else None,
        horizon_days=horizon_days,
        exclude_seen=params.evaluation.exclude_seen if exclude_seen is None else exclude_seen,
        out=out,
        dataset=dataset,
    )
    try:
        chosen = family(model)
        chosen.check(request)
        data = chosen.read(engine, "shop", None)  # the event log; the campaign log for uplift
        tracker = tracker_for(settings) if track else None
        reports = run_backtest(data, request, params, settings.home / "runs" / "backtest", tracker)
    except (EventLogError, ProtocolError) as error:
        fail(str(error))
    finally:
        engine.dispose()
    headline = family(model).primary_metric(params)
    for report in reports:
        typer.echo(
            f"{report.role:8} {report.name:16} {headline}={report.metrics[headline]:.4f}  ({report.folder})"
        )


def _uplift_backtest(
    train_log: Path | None,
    test_customers: Path | None,
    control: str | None,
    outcome: str | None,
    out: Path,
    arm_col: str,
    id_col: str,
    file_format: str,
    learner: str | None,
) -> None:
    """Files in, files out: fit an uplift learner on a campaign log, score the customers (no database)."""
    from training.uplift.backtest import UpliftBacktestRequest, run_uplift_backtest
    from training.uplift.data import FORMATS, LogFormat, UpliftDataError

    missing = [
        flag
        for flag, value in zip(
            ("--train", "--test", "--control", "--outcome"),
            (train_log, test_customers, control, outcome),
            strict=True,
        )
        if value is None
    ]
    if missing:
        fail(f"--task uplift needs {', '.join(missing)}")
    if file_format not in FORMATS:
        fail(f"--format must be one of: {', '.join(FORMATS)} (got '{file_format}')")
    assert train_log and test_customers and control and outcome  # checked above
    fmt: LogFormat = "hillstrom" if file_format == "hillstrom" else "log"
    _, params = load_context()
    request = UpliftBacktestRequest(
        train_log, test_customers, control, outcome, out, arm_col, id_col, fmt, learner
    )
    try:
        result = run_uplift_backtest(request, params.uplift)
    except (UpliftDataError, ValueError) as error:
        fail(str(error))
    typer.echo(
        f"uplift {result.learner}: {result.n_train} logged rows, {result.n_test} customers scored, "
        f"arms {', '.join(result.treatments)} ({result.fit_seconds:.1f}s); files in {out}"
    )
