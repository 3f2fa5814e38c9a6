"""The main job: a shop (simulated, or a bundled-format real dataset) through the real Airflow DAGs.

Steps: migrate the platform database and Airflow's metadata; simulate the shop of params.yaml (or
ingest CDNOW / MovieLens from a path); then, through `airflow dags test` (the real DAGs, tasks and
XComs, without a scheduler): the extraction DAG over the whole period as one initial-load batch
(GX validation, publish, review sentiment, online features), the training DAG (both models
tracked in MLflow, registered, gated), and the campaign DAG as of the period's end. It ends with a
summary of what was built. Every step is idempotent, so running the job again changes nothing.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, func, select

from pipelines.airflow_config import write_airflow_config
from retention.params import Params
from retention.paths import resolved_paths
from retention.settings import (
    ENV_AIRFLOW_HOME,
    ENV_DATABASE_URL,
    ENV_HOME,
    ENV_MLFLOW_URI,
    ENV_PARAMS,
    Settings,
)

if TYPE_CHECKING:
    from pipelines.ingest.load import Format
    from pipelines.simulate.run import SimulationResult

log = logging.getLogger("retention.main_job")
ROOT = Path(__file__).resolve().parents[1]
DAGS = ROOT / "dags"
DATASETS: dict[
    str, tuple[Format, dict[str, str]]
] = {  # --dataset -> (ingest format, files under --data-path)
    "cdnow": ("cdnow", {"events": "CDNOW_sample.txt"}),
    "movielens": ("movielens", {"events": "ml-100k.inter", "products": "ml-100k.item"}),
}
AIRFLOW_TIMEOUT_SECONDS = 3600  # one DAG run of the main job; the default shop needs about two minutes
LOG_TAIL_CHARS = 4000  # of a failed DAG run's output, shown in the error


class MainJobError(RuntimeError):
    """A step of the main job failed; the message says which and where its full log is."""


@dataclass
class MainJobReport:
    """What the main job built, for the summary."""

    home: Path
    period: tuple[date, date]
    steps: list[tuple[str, float]] = field(default_factory=list)
    models: list[dict[str, Any]] = field(default_factory=list)
    campaign: dict[str, Any] | None = None
    weeks: list[Any] = field(default_factory=list)  # the weekly loop's WeekReports
    logs: Path | None = None


def airflow_environment(settings: Settings) -> dict[str, str]:
    """The environment of the Airflow CLI: the project's DAGs, metadata under AIRFLOW_HOME, the same settings.

    Paths are set here or derived by Airflow from AIRFLOW_HOME, never kept in `airflow.cfg`
    (`pipelines.airflow_config`), so a moved RETENTION_HOME takes its Airflow state along.
    """
    return {
        **os.environ,
        ENV_HOME: str(settings.home),
        ENV_DATABASE_URL: settings.database_url,
        ENV_MLFLOW_URI: settings.mlflow_tracking_uri,
        ENV_PARAMS: str(settings.params_path),
        ENV_AIRFLOW_HOME: str(settings.airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }


def run_airflow(args: list[str], settings: Settings, log_name: str) -> None:
    """Run an `airflow` CLI command; its output goes to RETENTION_HOME/logs/<log_name>.log.

    Raises:
        MainJobError: the command failed (the message quotes the end of its output).
    """
    logs = settings.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    target = logs / f"{log_name}.log"
    write_airflow_config(settings.airflow_home)  # before Airflow writes its own, full of absolute paths
    airflow = Path(sys.executable).parent / "airflow"
    with target.open("w") as out:
        result = subprocess.run(
            [str(airflow), *args],
            env=airflow_environment(settings),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=AIRFLOW_TIMEOUT_SECONDS,
        )
    output = target.read_text(errors="replace")
    failed = result.returncode != 0 or "state=failed" in output or "DagRunState.FAILED" in output
    if failed:
        raise MainJobError(
            f"`airflow {' '.join(args)}` failed; full log: {target}\n...{output[-LOG_TAIL_CHARS:]}"
        )


def dag_test(dag_id: str, logical_date: date, settings: Settings, conf: str | None = None) -> None:
    """One real run of a DAG for the interval ending at `logical_date` (`airflow dags test`)."""
    args = ["dags", "test", dag_id, logical_date.isoformat()]
    if conf:
        args += ["--conf", conf]
    run_airflow(args, settings, f"{dag_id}-{logical_date.isoformat()}")


def require(condition: bool, what: str, settings: Settings) -> None:
    """A DAG run that reported success must also have done its work (a run for a logical date the
    DAG does not cover succeeds without running any task)."""
    if not condition:
        raise MainJobError(f"{what}; see the DAG logs in {settings.home / 'logs'}")


def shop_period(engine: Engine) -> tuple[date, date]:
    """First day with an event, and the day after the last one (the period to extract)."""
    from retention.db.models import Event

    with engine.connect() as connection:
        first, last = connection.execute(select(func.min(Event.ts), func.max(Event.ts))).one()
    if first is None:
        raise MainJobError("the shop has no events: nothing to run the pipeline on")
    return first.date(), last.date() + timedelta(days=1)


def timed(report: MainJobReport, name: str, step: Callable[[], Any], echo: Callable[[str], None]) -> Any:
    """Run a step, print it with its duration, and record it."""
    echo(f"[{len(report.steps) + 1}] {name} ...")
    started = time.perf_counter()
    result = step()
    seconds = time.perf_counter() - started
    report.steps.append((name, seconds))
    echo(f"    done in {seconds:.0f} s")
    return result


def model_summaries(engine: Engine, settings: Settings, params: Params) -> list[dict[str, Any]]:
    """Per registered model: the champion, and the last gate decision with both sides' metrics."""
    from mlflow import MlflowClient

    from training.families import FAMILIES
    from training.registry import CHAMPION, alias_version, history

    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    out = []
    for kind, chosen in FAMILIES.items():
        name = chosen.registered_name
        decisions = history(engine, name)
        last = decisions[-1] if decisions else None
        out.append(
            {
                "kind": kind,
                "campaign_requires": chosen.campaign_requires,
                "primary_metric": chosen.primary_metric(params),
                "name": name,
                "champion": alias_version(client, name, CHAMPION),
                "decision": last["action"] if last else None,
                "reason": last["reason"] if last else None,
                "metrics": (last or {}).get("metrics") or {},
            }
        )
    return out


def render(report: MainJobReport, settings: Settings) -> str:
    """The summary printed at the end: models beside baselines, champions, campaign, next commands."""
    lines = [
        "",
        f"main job done in {sum(s for _, s in report.steps):.0f} s; shop period "
        f"{report.period[0]} .. {report.period[1]}; state in {report.home}",
        "",
        "models (most recent holdout window; the gate's decision):",
    ]
    for model in report.models:
        metric = model["primary_metric"]
        metrics = model["metrics"]
        mine = (metrics.get("challenger") or {}).get(metric)
        decision = model["decision"] or "not trained on this data (see the train_models log)"
        parts = [f"  {model['name']}: champion v{model['champion'] or '-'}; {decision}"]
        if mine is not None:
            parts.append(f"{metric} {mine:.4f}")
        baselines = {
            k[len("baseline_") :]: v.get(metric) for k, v in metrics.items() if k.startswith("baseline_")
        }
        if baselines:
            parts.append(
                "baselines " + ", ".join(f"{k} {v:.4f}" for k, v in baselines.items() if v is not None)
            )
        champion = (metrics.get("champion") or {}).get(metric)
        if champion is not None:
            parts.append(f"champion {champion:.4f}")
        lines.append("; ".join(parts))
        if model["reason"]:
            lines.append(f"    reason: {model['reason']}")
    lines.append("")
    if report.weeks:
        lines.append("weekly loop (customers respond to the offers; lifts measured after the horizon):")
        lines += [f"  {week.line()}" for week in report.weeks]
        lines.append("")
    if report.campaign:
        c = report.campaign
        summary = c.get("summary") or {}
        lines.append(
            f"campaign {c['campaign_id']}: {c['n_targets']:,} listed ({c['n_control']:,} held out, "
            f"{c['control_share']:.1%}); export: {resolved_paths(settings.home, c['exports']).get('csv')}"
        )
        if summary:
            lines.append(
                f"    {summary['policy']} policy ({summary['policy_reason']}); offers {summary['offer_mix']}; "
                f"expected cost {summary['expected_cost']}, incremental profit "
                f"{summary.get('incremental_profit')} {summary.get('incremental_profit_interval', '')}"
            )
    else:
        lines.append("campaign: none (it needs a champion of both models; see above)")
    env = f"RETENTION_HOME={settings.home}"
    lines += [
        "",
        "next:",
        f"  MLflow UI:  .venv/bin/mlflow ui --backend-store-uri {settings.mlflow_tracking_uri} --port 5000",
        f"  Airflow UI: AIRFLOW_HOME={settings.airflow_home} AIRFLOW__CORE__DAGS_FOLDER={DAGS} "
        ".venv/bin/airflow standalone   (http://127.0.0.1:8080)",
        f"  API:        {env} .venv/bin/retention serve   (http://127.0.0.1:8000/ui/campaigns)",
        f"  campaigns:  {env} .venv/bin/retention campaigns list",
        f"  logs:       {report.logs}",
    ]
    return "\n".join(lines)


def format_counts(counts: dict[str, int]) -> str:
    """Row counts per table on one line (`events 1,234, orders 56`)."""
    return ", ".join(f"{table} {n:,}" for table, n in counts.items())


def simulated_line(result: SimulationResult) -> str:
    """What a simulation stored, on one line."""
    events = result.generated["events"]
    return (
        f"simulated {result.first_date} .. {result.last_date}: {events:,} events "
        f"({events / max(result.seconds, 1e-9):,.0f}/s end to end); new rows: {format_counts(result.inserted)}"
    )


def initial_days(params: Params) -> int:
    """Days simulated before the weekly loop (the loop runs the last `campaign.loop_weeks` weeks)."""
    days = params.simulate.days - 7 * params.campaign.loop_weeks
    if days < params.features.horizon_days * 2:
        raise MainJobError(
            f"simulate.days {params.simulate.days} leaves {days} days before the "
            f"{params.campaign.loop_weeks}-week loop: too few to train on (lower campaign.loop_weeks)"
        )
    return days


def run_loop(
    engine: Engine, settings: Settings, params: Params, start: date, echo: Callable[[str], None]
) -> list[Any]:
    """The weekly loop after the first campaign (pipelines.weekly_loop), one line per week."""
    from pipelines.simulate import simulate
    from pipelines.weekly_loop import run_week

    shop = params.simulate
    first_day = (start - shop.start).days
    reports = []
    for week in range(1, params.campaign.loop_weeks + 1):
        day = first_day + 7 * (week - 1)

        def simulate_week(day: int = day) -> None:
            simulate(engine, settings.simulator_dir, shop, 7, first_day=day)

        begin = datetime.combine(start + timedelta(days=7 * (week - 1)), datetime.min.time())
        report = run_week(week, begin, settings, simulate_week)
        echo(f"    {report.line()}")
        reports.append(report)
    return reports


def load_shop(
    engine: Engine, settings: Settings, params: Params, dataset: str, data_path: Path | None
) -> str:
    """Simulate the shop of params.yaml, or ingest a bundled-format dataset; returns what was stored.

    Raises:
        MainJobError: an unknown dataset, or a data folder that lacks the dataset's files.
    """
    if dataset == "simulated":
        from pipelines.simulate import simulate

        shop = params.simulate
        return simulated_line(simulate(engine, settings.simulator_dir, shop, initial_days(params)))
    from pipelines.ingest import IngestRequest, ingest

    if dataset not in DATASETS or data_path is None:
        raise MainJobError(f"dataset {dataset!r} needs one of {', '.join(DATASETS)} and a data folder")
    fmt, files = DATASETS[dataset]
    missing = [name for name in files.values() if not (data_path / name).exists()]
    if missing:
        raise MainJobError(f"--data-path {data_path} lacks {', '.join(missing)}")
    products = data_path / files["products"] if "products" in files else None
    loaded = ingest(engine, IngestRequest(data_path / files["events"], products, format=fmt), params.ingest)
    return (
        f"load {loaded.load_id}: read {loaded.rows_read:,} rows; new rows: {format_counts(loaded.inserted)}"
    )


def run_main_job(
    settings: Settings,
    params: Params,
    dataset: str,
    data_path: Path | None,
    echo: Callable[[str], None],
) -> MainJobReport:
    """The main job, step by step, one line per step (see the module docstring).

    Raises:
        MainJobError: a step failed; the message names it and where its log is.
    """
    import json

    import pandas as pd

    from pipelines.campaigns.select import campaign_id
    from pipelines.campaigns.store import CampaignNotFound, get_campaign
    from pipelines.extract.publish import data_end
    from pipelines.summary import shop_summary
    from retention.atomic import atomic_path
    from retention.db import create_db_engine, upgrade

    echo(f"home: {settings.home}")
    report = MainJobReport(settings.home, (date.min, date.min), logs=settings.home / "logs")

    def migrate() -> None:
        upgrade(settings.database_url)  # what `retention init` does
        run_airflow(["db", "migrate"], settings, "airflow-db-migrate")

    timed(report, "migrate the platform database and Airflow's metadata", migrate, echo)
    engine = create_db_engine(settings.database_url)
    try:
        timed(
            report,
            f"load the shop ({dataset})",
            lambda: echo(load_shop(engine, settings, params, dataset, data_path)),
            echo,
        )
        summary = shop_summary(engine)
        echo(summary.render())
        with atomic_path(settings.home / "reports" / "shop_summary.json") as tmp:
            tmp.write_text(json.dumps(summary.metrics(), indent=2, sort_keys=True) + "\n")
        start, end = report.period = shop_period(engine)
        if dataset == "simulated":  # a rerun finds the loop's weeks too: the initial period is fixed
            end = params.simulate.start + timedelta(days=initial_days(params))
            report.period = (start, end + timedelta(days=7 * params.campaign.loop_weeks))
        conf = json.dumps({"start": start.isoformat()})
        timed(
            report,
            f"DAG shop_extract: {start} .. {end} as one initial load (GX, publish, sentiment, online features)",
            lambda: dag_test("shop_extract", end, settings, conf),
            echo,
        )
        require(
            (data_end(engine) or pd.Timestamp.min) >= pd.Timestamp(end),
            f"shop_extract did not publish the period up to {end}",
            settings,
        )
        timed(
            report,
            "DAG train_models: train, track, register and gate both models",
            lambda: dag_test("train_models", end, settings),
            echo,
        )
        report.models = model_summaries(engine, settings, params)
        require(any(m["decision"] for m in report.models), "train_models gated no model", settings)
        if not all(m["champion"] for m in report.models if m["campaign_requires"]):
            echo(
                "    a model has no champion (rejected by the gate, or not trained on this data): no campaign"
            )
            return report
        timed(
            report,
            f"DAG retention_campaign as of {end}",
            lambda: dag_test("retention_campaign", end, settings),
            echo,
        )
        published = campaign_id(params.campaign.name, pd.Timestamp(end))
        try:
            report.campaign = get_campaign(engine, published)
        except CampaignNotFound:
            require(False, f"retention_campaign did not publish {published}", settings)
        if dataset == "simulated" and params.campaign.loop_weeks:
            weeks = params.campaign.loop_weeks
            report.weeks = timed(
                report,
                f"weekly loop: {weeks} weeks of simulate -> extract -> measure lifts -> train uplift -> campaign",
                lambda: run_loop(engine, settings, params, end, echo),
                echo,
            )
            report.models = model_summaries(engine, settings, params)
            report.campaign = report.weeks[-1].campaign if report.weeks else report.campaign
        return report
    finally:
        engine.dispose()
