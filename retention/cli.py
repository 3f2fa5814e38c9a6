"""`retention`: the one command-line entry point. Each subcommand is a thin call into a package."""

from __future__ import annotations

import logging
import sys
import time
from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import typer

from retention.cli_context import fail, load_context, open_engine

app = typer.Typer(
    help="MLOps platform for e-commerce customer retention.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
log = logging.getLogger("retention")


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False) -> None:
    """Settings come from RETENTION_* environment variables; parameters from params.yaml."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    for routine in ("alembic", "great_expectations"):  # migrations and GX internals are not news
        logging.getLogger(routine).setLevel(logging.WARNING)


@app.command()
def init() -> None:
    """Create or migrate the platform database to the newest schema."""
    from retention.db.migrate import current_revision

    settings, _ = load_context()
    open_engine(settings).dispose()
    typer.echo(f"database at revision {current_revision(settings.database_url)}")


@app.command()
def config() -> None:
    """Print the resolved settings (passwords masked) and validate params.yaml."""
    settings, params = load_context()
    for name, value in settings.describe().items():
        typer.echo(f"{name}={value}")
    typer.echo(f"params.yaml: valid ({', '.join(type(params).model_fields)})")


@app.command()
def simulate(
    customers: Annotated[int | None, typer.Option(min=1, help="Customers (default: params.yaml).")] = None,
    days: Annotated[int | None, typer.Option(min=1, help="Days to generate (default: params.yaml).")] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Random seed (default: params.yaml).")] = None,
    start: Annotated[str | None, typer.Option(help="First day, YYYY-MM-DD (default: params.yaml).")] = None,
    append: Annotated[
        bool, typer.Option("--append", help="Extend the stored shop by --days more days.")
    ] = False,
) -> None:
    """Simulate a realistic shop into the source database (deterministic per seed)."""
    from pipelines.simulate import simulate as run_simulation
    from pipelines.simulate.run import SimulatorError

    settings, params = load_context()
    overrides = {
        k: v for k, v in {"customers": customers, "seed": seed, "start": start}.items() if v is not None
    }
    if append and overrides:
        fail("--append continues the stored shop with its own parameters: drop --customers/--seed/--start")
    try:
        shop = params.simulate.model_validate({**params.simulate.model_dump(), **overrides})
    except ValueError as error:
        fail(f"invalid option: {error}")
    engine = open_engine(settings)
    try:
        result = run_simulation(engine, settings.simulator_dir, shop, days or shop.days, append=append)
    except SimulatorError as error:
        fail(str(error))
    finally:
        engine.dispose()
    events = result.generated["events"]
    typer.echo(
        f"simulated {result.first_date} .. {result.last_date}: {events:,} events "
        f"({events / max(result.seconds, 1e-9):,.0f}/s end to end); new rows: {_counts(result.inserted)}"
    )


@app.command()
def ingest(
    events: Annotated[
        Path, typer.Option(help="Event log: CSV/Parquet in the contract schema, or --format's file.")
    ],
    products: Annotated[
        Path | None, typer.Option(help="Products file (contract schema; ml-100k.item for movielens).")
    ] = None,
    customers: Annotated[Path | None, typer.Option(help="Customers file (contract schema).")] = None,
    reviews: Annotated[Path | None, typer.Option(help="Reviews file (contract schema).")] = None,
    format: Annotated[str, typer.Option("--format", help="contract | cdnow | movielens")] = "contract",
    map: Annotated[
        str | None, typer.Option("--map", help="Column mapping: user_id=CustomerID,ts=InvoiceDate,...")
    ] = None,
) -> None:
    """Validate files against the event-data contract and load them; all or nothing, idempotent."""
    from pipelines.ingest import IngestError, IngestRequest, parse_mapping
    from pipelines.ingest import ingest as run_ingest
    from retention.contract import ContractError

    if format not in ("contract", "cdnow", "movielens"):
        fail(f"--format must be one of: contract, cdnow, movielens (got '{format}')")
    settings, params = load_context()
    engine = open_engine(settings)
    try:
        request = IngestRequest(events, products, customers, reviews, format, parse_mapping(map))  # type: ignore[arg-type]
        started = time.perf_counter()
        result = run_ingest(engine, request, params.ingest)
    except (IngestError, ContractError) as error:
        fail(str(error))
    finally:
        engine.dispose()
    typer.echo(
        f"load {result.load_id}: read {result.rows_read:,} rows in {time.perf_counter() - started:.1f}s; "
        f"new rows: {_counts(result.inserted)}"
    )


@app.command()
def summary(
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the figures as JSON (DVC metrics).")
    ] = None,
) -> None:
    """Print what the source database holds: table sizes, period, funnel and repeat rates."""
    import json

    from pipelines.summary import shop_summary
    from retention.atomic import atomic_path

    settings, _ = load_context()
    engine = open_engine(settings)
    try:
        report = shop_summary(engine)
    finally:
        engine.dispose()
    typer.echo(report.render())
    if json_out:
        with atomic_path(json_out) as tmp:
            tmp.write_text(json.dumps(report.metrics(), indent=2, sort_keys=True) + "\n")


@app.command()
def extract(
    start: Annotated[str | None, typer.Option(help="First day to extract, YYYY-MM-DD.")] = None,
    end: Annotated[
        str | None, typer.Option(help="Day after the last one, YYYY-MM-DD (default: start + 1 day).")
    ] = None,
    step_days: Annotated[
        int, typer.Option(min=1, help="Days per interval (1 = the daily DAG's batches).")
    ] = 1,
    whole_period: Annotated[
        bool,
        typer.Option(
            "--whole-period", help="The shop's whole period (first to last event) as one initial-load batch."
        ),
    ] = False,
    report: Annotated[
        Path | None, typer.Option("--report", help="Also write what was published as JSON (DVC metrics).")
    ] = None,
) -> None:
    """Extract, validate and publish the intervals of [start, end) into the warehouse (a backfill).

    Stops at the first quarantined interval, naming its failed expectations and Data Docs page.
    """
    import json
    from datetime import timedelta

    from pipelines.extract import BatchRejected, run_interval
    from pipelines.main_job import MainJobError, shop_period
    from retention.atomic import atomic_path

    settings, _ = load_context()
    if whole_period == (start is not None):
        fail("give either --start (and --end) or --whole-period")
    try:
        if whole_period:
            engine = open_engine(settings)
            try:
                first_day, last_day = shop_period(engine)
            finally:
                engine.dispose()
            first = datetime.combine(first_day, datetime.min.time())
            last = datetime.combine(last_day, datetime.min.time())
            step_days = (last - first).days
        else:
            first = datetime.combine(date.fromisoformat(start), datetime.min.time())  # type: ignore[arg-type]
            last = (
                datetime.combine(date.fromisoformat(end), datetime.min.time())
                if end
                else first + timedelta(days=1)
            )
    except ValueError as error:
        fail(f"--start/--end must be YYYY-MM-DD: {error}")
    except MainJobError as error:
        fail(str(error))
    if last <= first:
        fail(f"--end {last.date()} must be after --start {first.date()}")
    interval_start, published = first, []
    while interval_start < last:
        interval_end = min(interval_start + timedelta(days=step_days), last)
        try:
            changed = run_interval(interval_start, interval_end, settings)
        except BatchRejected as error:
            fail(str(error))
        typer.echo(
            f"{interval_start.date()} .. {interval_end.date()}: published; new or changed rows: {_counts(changed)}"
        )
        published.append({"start": str(interval_start.date()), "end": str(interval_end.date())})
        interval_start = interval_end
    if report:
        from pipelines.summary import warehouse_counts

        engine = open_engine(settings)
        try:
            figures = {"intervals": len(published), "end": str(last.date()), **warehouse_counts(engine)}
        finally:
            engine.dispose()
        with atomic_path(report) as tmp:
            tmp.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")


@app.command()
def suites(
    check: Annotated[
        bool, typer.Option("--check", help="Fail if the committed suites differ from the code's.")
    ] = False,
) -> None:
    """Write the Great Expectations suites (generated from code) into great_expectations/."""
    from feature_store import feature_suites
    from pipelines.campaigns.suite import campaign_suites
    from pipelines.extract import build_suites
    from retention.quality import QualityService

    settings, params = load_context()
    quality = QualityService(settings.gx_dir)
    wanted = {**build_suites(), **feature_suites(params.features), **campaign_suites()}
    if check:
        stale = quality.stale_suites(wanted)
        if stale:
            fail(f"GX suites out of date: {', '.join(stale)}; run `retention suites`")
        typer.echo(f"{len(wanted)} suites up to date")
        return
    changed = quality.write_suites(wanted)
    typer.echo(f"{len(changed)} of {len(wanted)} suites written to {quality.suites_root}")


@app.command()
def run(
    dataset: Annotated[
        str, typer.Option(help="simulated (the shop of params.yaml) | cdnow | movielens (needs --data-path)")
    ] = "simulated",
    data_path: Annotated[
        Path | None,
        typer.Option(
            help="Folder of the dataset's files (CDNOW_sample.txt; ml-100k.inter and ml-100k.item)."
        ),
    ] = None,
) -> None:
    """The main job: a shop through the real Airflow DAGs, from extraction to the campaign, then a summary.

    Migrates the database and Airflow's metadata, simulates the shop of params.yaml (or ingests a
    real dataset), then runs through Airflow: extraction and validation of the whole period as
    one initial load with the features, training and gating of both models (MLflow), and the
    campaign as of the period's end. Idempotent: a second run changes nothing.
    """
    import json

    import pandas as pd

    from pipelines.campaigns.select import campaign_id
    from pipelines.campaigns.store import CampaignNotFound, get_campaign
    from pipelines.extract.publish import data_end
    from pipelines.main_job import (
        DATASETS,
        MainJobError,
        MainJobReport,
        dag_test,
        model_summaries,
        render,
        require,
        run_airflow,
        shop_period,
        timed,
    )

    if dataset != "simulated" and dataset not in DATASETS:
        fail(f"--dataset must be one of: simulated, {', '.join(DATASETS)} (got '{dataset}')")
    if dataset != "simulated" and data_path is None:
        fail(f"--dataset {dataset} needs --data-path (see README: Real datasets)")
    settings, params = load_context()
    typer.echo(f"home: {settings.home}")
    report = MainJobReport(settings.home, (date.min, date.min), logs=settings.home / "logs")

    def migrate() -> None:
        init()
        run_airflow(["db", "migrate"], settings, "airflow-db-migrate")

    def load() -> None:
        if dataset == "simulated":
            simulate()
            return
        fmt, files = DATASETS[dataset]
        missing = [name for name in files.values() if not (data_path / name).exists()]  # type: ignore[operator]
        if missing:
            fail(f"--data-path {data_path} lacks {', '.join(missing)}")
        ingest(
            events=data_path / files["events"],
            products=data_path / files["products"] if "products" in files else None,
            format=fmt,
        )  # type: ignore[operator]

    try:
        timed(report, "migrate the platform database and Airflow's metadata", migrate, typer.echo)
        timed(report, f"load the shop ({dataset})", load, typer.echo)
        summary(json_out=settings.home / "reports" / "shop_summary.json")
        engine = open_engine(settings)
        start, end = report.period = shop_period(engine)
        conf = json.dumps({"start": start.isoformat()})
        timed(
            report,
            f"DAG shop_extract: {start} .. {end} as one initial load (GX, publish, sentiment, online features)",
            lambda: dag_test("shop_extract", end, settings, conf),
            typer.echo,
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
            typer.echo,
        )
        report.models = model_summaries(engine, settings)
        require(any(m["decision"] for m in report.models), "train_models gated no model", settings)
        if all(m["champion"] for m in report.models):
            timed(
                report,
                f"DAG retention_campaign as of {end}",
                lambda: dag_test("retention_campaign", end, settings),
                typer.echo,
            )
            published = campaign_id(params.campaign.name, datetime.combine(end, datetime.min.time()))
            try:
                report.campaign = get_campaign(engine, published)
            except CampaignNotFound:
                require(False, f"retention_campaign did not publish {published}", settings)
        else:
            typer.echo(
                "    a model has no champion (rejected by the gate, or not trained on this data): no campaign"
            )
        engine.dispose()
    except MainJobError as error:
        fail(str(error))
    typer.echo(render(report, settings))


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{table} {n:,}" for table, n in counts.items())


from training.cli import backtest, train  # noqa: E402 (commands of other packages after this module's)

app.command()(train)
app.command()(backtest)
from serving.cli import serve  # noqa: E402

app.command()(serve)
from feature_store.sentiment_cli import app as sentiment_app  # noqa: E402 (sub-apps after the commands)

app.add_typer(sentiment_app, name="sentiment")
from feature_store.cli import app as features_app  # noqa: E402

app.add_typer(features_app, name="features")
from training.models_cli import app as models_app  # noqa: E402

app.add_typer(models_app, name="models")
from pipelines.campaigns.cli import app as campaigns_app  # noqa: E402

app.add_typer(campaigns_app, name="campaigns")


if __name__ == "__main__":
    app()
