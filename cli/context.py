"""What every `retention` subcommand shares: settings and parameters, the database, clear failures."""

from __future__ import annotations

from typing import NoReturn

import typer
from sqlalchemy import Engine

from retention.params import Params, ParamsError, load_params
from retention.settings import Settings


def fail(message: str) -> NoReturn:
    """Print `error: message` to stderr and exit with code 2 (bad input or a refused operation)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def load_context() -> tuple[Settings, Params]:
    """Settings from the environment and the validated params.yaml (a bad file exits with 2)."""
    settings = Settings.from_env()
    try:
        return settings, load_params(settings.params_path)
    except ParamsError as error:
        fail(str(error))


def open_engine(settings: Settings) -> Engine:
    """The platform database; one that is behind the code's schema exits with 2 and says so."""
    from retention.context import SchemaBehind, open_platform_engine

    try:
        return open_platform_engine(settings)
    except SchemaBehind as error:
        fail(str(error))


def open_context() -> tuple[Settings, Params, Engine]:
    """Settings, params and the checked database; the caller disposes of the engine."""
    settings, params = load_context()
    return settings, params, open_engine(settings)
