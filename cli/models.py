"""`retention models`: the registry for people (list, gate, promote, rollback, history), all audited."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.context import fail, open_context

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from sqlalchemy import Engine

    from retention.params import Params
    from retention.settings import Settings
from cli.training import FAMILY_HELP

app = typer.Typer(help="Registered models: champion/challenger aliases, the gate, promotion and rollback.")

Model = Annotated[str, typer.Option("--model", help=FAMILY_HELP)]


def _client_and_name(model: str) -> tuple[Settings, Params, Engine, MlflowClient, str]:
    from mlflow import MlflowClient

    from training.families import UnknownFamily, family

    settings, params, engine = open_context()
    try:
        name = family(model).registered_name
    except UnknownFamily as error:
        engine.dispose()
        fail(str(error))
    return settings, params, engine, MlflowClient(tracking_uri=settings.mlflow_tracking_uri), name


@app.command("list")
def list_versions(model: Model) -> None:
    """Every version with its aliases and gate decision."""
    from training.registry import versions

    _, _, engine, client, name = _client_and_name(model)
    engine.dispose()
    rows = versions(client, name)
    if not rows:
        typer.echo(f"{name}: no versions registered (run `retention train --model {model}`)")
        return
    for row in rows:
        aliases = ",".join(row["aliases"]) or "-"
        typer.echo(f"{name} v{row['version']:<4} {aliases:<20} {row['decision'] or '-':<15} {row['reason']}")


@app.command()
def gate(
    model: Model,
    version: Annotated[
        str | None, typer.Argument(help="Version to decide on (default: the challenger).")
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Also write the decision and both sides' metrics as JSON.")
    ] = None,
) -> None:
    """Score challenger and champion on the latest holdout window; promote the challenger if it is better."""
    from training.gate import GateError, run_gate
    from training.protocol import ProtocolError
    from training.registry import RegistryError

    settings, params, engine, _, name = _client_and_name(model)
    try:
        decision = run_gate(engine, settings, params, model, version)
    except (GateError, RegistryError, ProtocolError) as error:
        fail(str(error))
    finally:
        engine.dispose()
    typer.echo(f"{name} version {decision.version}: {decision.action}: {decision.reason}")
    typer.echo(f"champion: {decision.champion_after or 'none'}")
    if report:
        from retention.atomic import atomic_path
        from training.registry import decision_dict

        report.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(report) as tmp:
            tmp.write_text(json.dumps(decision_dict(decision), indent=2, sort_keys=True, default=str) + "\n")


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="The version to make champion.")],
    model: Model,
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in the audit).")],
) -> None:
    """Make a version the champion by hand (audited)."""
    from training.registry import RegistryError
    from training.registry import promote as promote_version

    _, _, engine, client, name = _client_and_name(model)
    try:
        decision = promote_version(engine, client, name, version, reason, getpass.getuser())
    except RegistryError as error:
        fail(str(error))
    finally:
        engine.dispose()
    typer.echo(f"{name}: champion {decision.champion_before or 'none'} -> {decision.champion_after}")


@app.command()
def rollback(
    model: Model,
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in the audit).")] = "rollback",
) -> None:
    """Give the champion alias back to the version the current champion replaced (audited)."""
    from training.registry import RegistryError
    from training.registry import rollback as rollback_champion

    _, _, engine, client, name = _client_and_name(model)
    try:
        decision = rollback_champion(engine, client, name, reason, getpass.getuser())
    except RegistryError as error:
        fail(str(error))
    finally:
        engine.dispose()
    typer.echo(f"{name}: champion {decision.champion_before} -> {decision.champion_after} (rolled back)")


@app.command()
def audit(model: Model) -> None:
    """The audit trail of a model: every decision, oldest first (JSON lines)."""
    from training.registry import history

    _, _, engine, _, name = _client_and_name(model)
    try:
        for row in history(engine, name):
            typer.echo(json.dumps(row, default=str))
    finally:
        engine.dispose()
