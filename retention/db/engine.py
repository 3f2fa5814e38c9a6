"""Engine creation for SQLite and PostgreSQL with the settings both need, and the check that a
database is there before anything but `retention init` uses it."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import URL, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import ConnectionPoolEntry, NullPool

from retention.settings import ENV_DATABASE_URL, redact_url

SQLITE_CACHE_KIB = 256 * 1024  # page cache per connection (SQLite's default is 2 MiB)
CONNECT_TIMEOUT_SECONDS = 10  # the reachability check: libpq would otherwise wait for the OS (minutes)
URL_FORMS = "sqlite:////PATH/retention.db or postgresql+psycopg2://USER:PASSWORD@HOST:PORT/DATABASE"


class DatabaseUnavailable(RuntimeError):
    """The database URL does not parse, names no existing database, or its server does not answer."""


def create_db_engine(url: str) -> Engine:
    """Create an engine; for SQLite, create its folder and enforce foreign keys.

    Args:
        url: SQLAlchemy database URL (`sqlite:///...` or `postgresql+psycopg2://...`).

    Returns:
        The engine. Nothing is connected until first use.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def parse_db_url(url: str) -> URL:
    """The parsed URL of a database this code can talk to.

    Raises:
        DatabaseUnavailable: the URL does not parse, or names an unknown dialect or driver.
    """
    try:
        parsed = make_url(url)
        parsed.get_dialect()  # an unknown scheme (`postgres://`, a typo) fails here, not on first use
    except (ArgumentError, ValueError) as error:
        raise DatabaseUnavailable(
            f"{ENV_DATABASE_URL} {redact_url(url)!r} is not a database URL ({error}); expected {URL_FORMS}"
        ) from None
    return parsed


def require_database(url: str, *, create: bool = False) -> None:
    """Check that the database at `url` exists and answers, without creating anything.

    Args:
        url: the database URL.
        create: a missing SQLite file is fine (`retention init` and the main job create it).

    Raises:
        DatabaseUnavailable: one line naming the URL (password masked) and what to do.
    """
    parsed = parse_db_url(url)
    shown = parsed.render_as_string(hide_password=True)
    sqlite = parsed.get_backend_name() == "sqlite"
    file = Path(parsed.database) if sqlite and parsed.database not in (None, "", ":memory:") else None
    if file is not None and not file.is_file():
        if create:
            return
        # the file is never created here: a mistyped path must not become a new, empty platform
        raise DatabaseUnavailable(
            f"no platform database at {shown} (no such file, so it has no platform schema): "
            f"run `retention init`, or set {ENV_DATABASE_URL} to the platform's database"
        )
    connect_args = {} if sqlite else {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    probe = create_engine(parsed, poolclass=NullPool, connect_args=connect_args)
    try:
        with probe.connect() as connection:
            # SQLite opens any file; reading the schema version is what fails on one that is not a database
            connection.exec_driver_sql("PRAGMA schema_version" if sqlite else "SELECT 1")
    except DBAPIError as error:
        reason = str(error.orig).strip().splitlines()[0] if str(error.orig).strip() else type(error).__name__
        if parsed.password:
            reason = reason.replace(str(parsed.password), "***")
        raise DatabaseUnavailable(
            f"cannot use the database at {shown}: {reason} (check {ENV_DATABASE_URL} and that the server is running)"
        ) from None
    finally:
        probe.dispose()


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    # WAL lets readers (Airflow tasks, the API) work while a load writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")  # bulk loads touch many index pages
    cursor.close()
