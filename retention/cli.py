"""`retention`: the one command-line entry point. Each subcommand is a thin call into a package."""

from __future__ import annotations

import logging
import sys
import time
from datetime import datetime
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
    start: Annotated[str, typer.Option(help="First day to extract, YYYY-MM-DD.")],
    end: Annotated[
        str | None, typer.Option(help="Day after the last one, YYYY-MM-DD (default: start + 1 day).")
    ] = None,
    step_days: Annotated[
        int, typer.Option(min=1, help="Days per interval (1 = the daily DAG's batches).")
    ] = 1,
) -> None:
    """Extract, validate and publish the intervals of [start, end) into the warehouse (a backfill).

    Stops at the first quarantined interval, naming its failed expectations and Data Docs page.
    """
    from datetime import date, datetime, timedelta

    from pipelines.extract import BatchRejected, run_interval

    settings, _ = load_context()
    try:
        first = datetime.combine(date.fromisoformat(start), datetime.min.time())
        last = (
            datetime.combine(date.fromisoformat(end), datetime.min.time())
            if end
            else first + timedelta(days=1)
        )
    except ValueError as error:
        fail(f"--start/--end must be YYYY-MM-DD: {error}")
    if last <= first:
        fail(f"--end {last.date()} must be after --start {first.date()}")
    interval_start = first
    while interval_start < last:
        interval_end = min(interval_start + timedelta(days=step_days), last)
        try:
            changed = run_interval(interval_start, interval_end, settings)
        except BatchRejected as error:
            fail(str(error))
        typer.echo(
            f"{interval_start.date()} .. {interval_end.date()}: published; new or changed rows: {_counts(changed)}"
        )
        interval_start = interval_end


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
def run() -> None:
    """The main job on the embedded defaults: simulate the shop of params.yaml, then the data pipeline.

    Migrate, simulate, summarise; extract and validate the simulated period into the warehouse
    (one batch: an initial load); train the sentiment head and score reviews; validate and write
    the features to the online store. It grows into the whole pipeline (training,
    promotion, campaign).
    """
    from datetime import timedelta

    from pipelines.features import task_refresh_online, task_score_reviews

    settings, params = load_context()
    typer.echo(f"home: {settings.home}")
    init()
    simulate()
    summary(json_out=settings.home / "reports" / "shop_summary.json")
    shop = params.simulate
    end = shop.start + timedelta(days=shop.days)
    extract(start=str(shop.start), end=str(end), step_days=shop.days)
    as_of = datetime.combine(end, datetime.min.time())
    typer.echo(f"sentiment: {task_score_reviews(as_of, settings):,} reviews scored")
    typer.echo(f"online store: {task_refresh_online(as_of, settings):,} customers as of {as_of.date()}")


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
