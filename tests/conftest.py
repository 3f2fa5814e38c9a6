"""Shared fixtures: isolated settings, and a fresh database on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from retention.db import create_db_engine, upgrade
from retention.db.scratch import private_schema

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
POSTGRES_URL = os.environ.get(
    "RETENTION_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own RETENTION_HOME; nothing leaks into ./var."""
    home = tmp_path / "home"
    monkeypatch.setenv("RETENTION_HOME", str(home))
    monkeypatch.setenv("RETENTION_PARAMS", str(ROOT / "params.yaml"))
    for name in ("RETENTION_DATABASE_URL", "MLFLOW_TRACKING_URI", "AIRFLOW_HOME"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def migrated_home(isolated_env: Path) -> Path:
    """The isolated RETENTION_HOME with its default database migrated, as `retention init` leaves it."""
    from retention.settings import Settings

    upgrade(Settings.from_env().database_url)
    return isolated_env


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL whose connections use a fresh, private schema of the test PostgreSQL database."""
    try:
        with private_schema(POSTGRES_URL, prefix="test") as url:
            yield url
    except OperationalError as error:  # a clear failure, not a skip: the data layer must run on PostgreSQL
        pytest.fail(f"PostgreSQL at {POSTGRES_URL} is needed for this test: {error}")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database URL, once for SQLite and once for PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'retention.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def engine(database_url: str, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """A migrated database on each backend, also exported to the CLI's environment."""
    monkeypatch.setenv("RETENTION_DATABASE_URL", database_url)
    upgrade(database_url)
    engine = create_db_engine(database_url)
    yield engine
    engine.dispose()


def table_counts(engine) -> dict[str, int]:  # noqa: ANN001
    """Row counts of the shop tables."""
    with engine.connect() as connection:
        return {
            t: connection.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
            for t in ("customers", "products", "events", "orders", "reviews")
        }


@pytest.fixture(scope="session")
def trained_platform(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """A small shop with both models trained and promoted (see tests/trained_platform.py); read only."""
    from tests.trained_platform import build_platform

    return build_platform(tmp_path_factory.mktemp("trained-platform"))


@pytest.fixture
def on_trained_platform(trained_platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN001, ANN201
    """The environment points at the trained platform, with a private copy of its database."""
    from tests.trained_platform import copy_database

    for key, value in trained_platform.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("RETENTION_HOME", str(tmp_path / "home"))  # exports and GX results stay private
    monkeypatch.setenv("RETENTION_DATABASE_URL", copy_database(trained_platform, tmp_path))
    return trained_platform
