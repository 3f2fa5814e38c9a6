"""Migrations: same schema on SQLite and PostgreSQL, in sync with the models, reversible."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from retention.db import Base, create_db_engine, upgrade
from retention.db.migrate import current_revision, downgrade, head_revision

TABLES = {
    "customers",
    "products",
    "events",
    "orders",
    "reviews",
    "platform_loads",
    "wh_events",
    "platform_batches",
    "platform_quarantine",
    "review_sentiment",
    "online_features",
}


def test_upgrade_creates_the_schema_and_is_idempotent(database_url: str) -> None:
    upgrade(database_url)
    upgrade(database_url)  # a second run changes nothing
    assert current_revision(database_url) == head_revision()
    engine = create_db_engine(database_url)
    try:
        assert set(inspect(engine).get_table_names()) >= TABLES
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert diff == [], f"models and migrations differ: {diff}"
    finally:
        engine.dispose()


def test_downgrade_removes_the_schema(database_url: str) -> None:
    upgrade(database_url)
    downgrade(database_url, "base")
    engine = create_db_engine(database_url)
    try:
        assert not TABLES & set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert current_revision(database_url) is None
