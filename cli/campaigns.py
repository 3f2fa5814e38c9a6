"""`retention campaigns`: build, list, show, export and measure retention campaigns."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from cli.context import fail, open_context

app = typer.Typer(
    help="Retention-campaign target lists: run, list, show, export, lift; customer states.",
    no_args_is_help=True,
)


@app.command()
def run(
    as_of: Annotated[
        datetime, typer.Option("--as-of", formats=["%Y-%m-%d"], help="The campaign's as-of date (UTC).")
    ],
) -> None:
    """Build, validate and publish the campaign as of a date (what the weekly DAG runs)."""
    from pipelines.campaigns.run import CampaignRejected, run_campaign
    from pipelines.campaigns.score import CampaignError
    from retention.paths import resolved_paths
    from retention.settings import Settings

    try:
        published = run_campaign(as_of)
    except (CampaignError, CampaignRejected) as error:
        fail(str(error))
    summary = published.get("summary") or {}
    typer.echo(
        f"{published['campaign_id']}: {published['policy']} policy; {published['n_targets']:,} listed "
        f"({published['n_control']:,} held out); offers {summary.get('offer_mix', {})}; "
        f"exports: {resolved_paths(Settings.from_env().home, published['exports']).get('csv')}"
    )
    if summary.get("policy_reason"):
        typer.echo(f"  why: {summary['policy_reason']}")


@app.command()
def states(
    as_of: Annotated[
        datetime, typer.Option("--as-of", formats=["%Y-%m-%d"], help="History before this date (UTC).")
    ],
) -> None:
    """Bring the champion recommender's customer states up to a date (what shop_extract runs)."""
    from pipelines.campaigns.state_cache import task_refresh_states

    kept = task_refresh_states(as_of)
    if kept == 0:
        typer.echo("no champion recommender yet: nothing to materialise")
    else:
        typer.echo(f"customer states of {kept:,} customers are current as of {as_of:%Y-%m-%d}")


@app.command("list")
def list_() -> None:
    """Published campaigns, newest first."""
    from pipelines.campaigns.store import list_campaigns

    _, _, engine = open_context()
    try:
        campaigns = list_campaigns(engine)
    finally:
        engine.dispose()
    if not campaigns:
        typer.echo("no campaigns published yet (run `retention campaigns run --as-of DATE`)")
    for c in campaigns:
        measured = (c["lift"] or {}).get("lift")
        lift = "pending" if c["lift"] is None else "n/a" if measured is None else f"{measured:+.3f}"
        typer.echo(
            f"{c['campaign_id']:<28} {c['policy']:<7} listed {c['n_targets']:>6,}  "
            f"control {c['control_share']:.1%}  lift {lift}"
        )


@app.command()
def show(campaign_id: Annotated[str, typer.Argument(help="e.g. winback-2026-05-04")]) -> None:
    """One campaign's details (JSON): size, segments, funnel, model versions, lift, exports."""
    from pipelines.campaigns.store import CampaignNotFound, get_campaign
    from retention.paths import resolved_paths

    settings, _, engine = open_context()
    try:
        campaign = get_campaign(engine, campaign_id)
    except CampaignNotFound as error:
        fail(str(error))
    finally:
        engine.dispose()
    campaign["exports"] = resolved_paths(settings.home, campaign["exports"] or {})
    typer.echo(json.dumps(campaign, indent=2, default=str))


@app.command()
def export(
    campaign_id: Annotated[str, typer.Argument(help="e.g. winback-2026-05-04")],
    fmt: Annotated[str, typer.Option("--format", help="csv | parquet")] = "csv",
    out: Annotated[
        Path | None, typer.Option("--out", help="File to write (default: ./<id>.<format>).")
    ] = None,
) -> None:
    """Export a campaign's list for marketing (e-mail only for consenting customers of the treatment arm)."""
    from pipelines.campaigns.run import EXPORT_FORMATS
    from pipelines.campaigns.run import export as export_campaign
    from pipelines.campaigns.store import CampaignNotFound

    if fmt not in EXPORT_FORMATS:
        fail(f"--format must be one of: {', '.join(EXPORT_FORMATS)} (got '{fmt}')")
    target = out or Path(f"{campaign_id}.{fmt}")
    try:
        written = export_campaign(campaign_id, fmt, target)
    except CampaignNotFound as error:
        fail(str(error))
    typer.echo(f"{campaign_id} -> {written}")


@app.command()
def lift() -> None:
    """Measure the lift of every campaign whose horizon has passed (logged to MLflow)."""
    from pipelines.campaigns.run import measure_lifts

    measured = measure_lifts()
    typer.echo(f"lift measured for {len(measured)} campaign(s): {', '.join(measured) or '-'}")
