"""`retention`: the one command-line entry point; the other modules of `cli` add their commands."""

from __future__ import annotations

import logging
import sys
import time
from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import typer

from cli.campaigns import app as campaigns_app
from cli.context import RetentionGroup, fail, load_context, open_engine
from cli.customers import app as customers_app
from cli.features import app as features_app
from cli.models import app as models_app
from cli.sentiment import app as sentiment_app
from cli.serve import serve
from cli.training import backtest, train
from pipelines.main_job import format_counts, simulated_line

app = typer.Typer(
    cls=RetentionGroup,  # a missing or unreachable database: one line, exit 2
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
    """Create or migrate the platform database to the newest schema (the only command that migrates)."""
    from retention.db.engine import require_database
    from retention.db.migrate import current_revision, upgrade

    settings, _ = load_context()
    require_database(settings.database_url, create=True)  # a bad URL or a server that is down: one line
    upgrade(settings.database_url)
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
    typer.echo(simulated_line(result))


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
    from pipelines.ingest.load import FORMATS
    from retention.contract import ContractError

    if format not in FORMATS:
        fail(f"--format must be one of: {', '.join(FORMATS)} (got '{format}')")
    settings, params = load_context()
    engine = open_engine(settings)
    try:
        request = IngestRequest(events, products, customers, reviews, FORMATS[format], parse_mapping(map))
        started = time.perf_counter()
        result = run_ingest(engine, request, params.ingest)
    except (IngestError, ContractError) as error:
        fail(str(error))
    finally:
        engine.dispose()
    typer.echo(
        f"load {result.load_id}: read {result.rows_read:,} rows in {time.perf_counter() - started:.1f}s; "
        f"new rows: {format_counts(result.inserted)}"
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
            assert start is not None  # `whole_period == (start is not None)` failed above
            first = datetime.combine(date.fromisoformat(start), datetime.min.time())
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
            f"{interval_start.date()} .. {interval_end.date()}: published; new or changed rows: {format_counts(changed)}"
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
    from pipelines.ingest import IngestError
    from pipelines.main_job import DATASETS, MainJobError, render, run_main_job
    from pipelines.simulate.run import SimulatorError
    from retention.contract import ContractError
    from retention.db.engine import require_database

    if dataset != "simulated" and dataset not in DATASETS:
        fail(f"--dataset must be one of: simulated, {', '.join(DATASETS)} (got '{dataset}')")
    if dataset != "simulated" and data_path is None:
        fail(f"--dataset {dataset} needs --data-path (see README: Real datasets)")
    settings, params = load_context()
    require_database(settings.database_url, create=True)  # a bad URL or a server that is down: one line
    try:
        report = run_main_job(settings, params, dataset, data_path, typer.echo)
    except (MainJobError, IngestError, ContractError, SimulatorError) as error:
        fail(str(error))
    typer.echo(render(report, settings))


app.command()(train)
app.command()(backtest)
app.command()(serve)
app.add_typer(sentiment_app, name="sentiment")
app.add_typer(features_app, name="features")
app.add_typer(models_app, name="models")
app.add_typer(campaigns_app, name="campaigns")
app.add_typer(customers_app, name="customers")


if __name__ == "__main__":
    app()
