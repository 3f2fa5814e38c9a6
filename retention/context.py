"""What every command and task opens: settings, validated params and a database at the code's schema.

Migrations run once, by `retention init` (the main job and the deployment's init service call
it), never as a side effect of another command or task: a database behind the code's schema
is refused with one line that says what to run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine

from retention.db.engine import create_db_engine, require_database
from retention.db.migrate import current_revision, head_revision
from retention.params import Params, load_params
from retention.paths import adopt_home
from retention.settings import Settings, redact_url


class SchemaBehind(RuntimeError):
    """The platform database is not at the schema revision this code needs."""


def require_current_schema(settings: Settings) -> None:
    """Raise SchemaBehind unless the database is migrated to the code's newest revision (and
    DatabaseUnavailable, creating nothing, when there is no database to look at)."""
    require_database(settings.database_url)
    at, wanted = current_revision(settings.database_url), head_revision()
    if at != wanted:
        found = f"revision {at}" if at else "no platform schema"
        raise SchemaBehind(
            f"the database {redact_url(settings.database_url)} has {found}, this code needs "
            f"revision {wanted}: run `retention init`"
        )


def open_platform_engine(settings: Settings) -> Engine:
    """The platform database, checked to be at the code's schema (raises SchemaBehind)."""
    require_current_schema(settings)
    adopt_home(settings)  # a moved or copied RETENTION_HOME: MLflow's stored artifact URIs follow it
    return create_db_engine(settings.database_url)


@contextmanager
def platform_session(settings: Settings | None = None) -> Iterator[tuple[Settings, Params, Engine]]:
    """Settings (from the environment unless given), validated params and the checked database."""
    settings = settings or Settings.from_env()
    params = load_params(settings.params_path)
    engine = open_platform_engine(settings)
    try:
        yield settings, params, engine
    finally:
        engine.dispose()
