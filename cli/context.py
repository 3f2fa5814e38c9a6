"""What every `retention` subcommand shares: settings and parameters, the database, clear failures."""

from __future__ import annotations

from typing import Any, NoReturn

import typer
from sqlalchemy import Engine
from typer.core import TyperGroup

from retention.context import SchemaBehind
from retention.db.engine import DatabaseUnavailable
from retention.params import Params, ParamsError, load_params
from retention.settings import Settings

# A platform database that is missing, unreachable, unparsable or behind the code's schema: one line, exit 2
DATABASE_ERRORS = (DatabaseUnavailable, SchemaBehind)


def fail(message: str) -> NoReturn:
    """Print `error: message` to stderr and exit with code 2 (bad input or a refused operation)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


class RetentionGroup(TyperGroup):
    """The root command: whichever subcommand (or pipeline it calls) meets `DATABASE_ERRORS` ends
    with their one line and exit code 2, not a traceback."""

    def invoke(self, ctx: Any) -> Any:  # typer's own (vendored) click.Context
        try:
            return super().invoke(ctx)
        except DATABASE_ERRORS as error:
            fail(str(error))


def load_context() -> tuple[Settings, Params]:
    """Settings from the environment and the validated params.yaml (a bad file exits with 2)."""
    settings = Settings.from_env()
    try:
        return settings, load_params(settings.params_path)
    except ParamsError as error:
        fail(str(error))


def open_engine(settings: Settings) -> Engine:
    """The platform database; one that is missing, unreachable or behind the code's schema exits with 2."""
    from retention.context import open_platform_engine

    try:
        return open_platform_engine(settings)
    except DATABASE_ERRORS as error:
        fail(str(error))


def open_context() -> tuple[Settings, Params, Engine]:
    """Settings, params and the checked database; the caller disposes of the engine."""
    settings, params = load_context()
    return settings, params, open_engine(settings)
