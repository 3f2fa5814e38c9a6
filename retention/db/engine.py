"""Engine creation for SQLite and PostgreSQL with the settings both need."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry

SQLITE_CACHE_KIB = 256 * 1024  # page cache per connection (SQLite's default is 2 MiB)


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


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    # WAL lets readers (Airflow tasks, the API) work while a load writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")  # bulk loads touch many index pages
    cursor.close()
