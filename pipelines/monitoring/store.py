"""The `platform_monitoring` table: write a run's row (replacing a rerun's) and read the latest rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, delete, insert, select

from retention.db.platform import MonitoringRun

COLUMNS = tuple(c.name for c in MonitoringRun.__table__.columns)


def store_run(engine: Engine, row: dict[str, Any]) -> None:
    """Write one monitoring row; a row of the same model and as-of is replaced in the same transaction."""
    with engine.begin() as connection:
        connection.execute(
            delete(MonitoringRun).where(
                MonitoringRun.registered_name == row["registered_name"], MonitoringRun.as_of == row["as_of"]
            )
        )
        connection.execute(insert(MonitoringRun).values(**{k: row[k] for k in COLUMNS}))


def latest_runs(engine: Engine, limit: int = 30) -> list[dict[str, Any]]:
    """The newest monitoring rows (by as-of, then model), as dictionaries."""
    table = MonitoringRun.__table__
    with engine.connect() as connection:
        rows = connection.execute(
            select(table).order_by(table.c.as_of.desc(), table.c.registered_name).limit(limit)
        ).all()
    return [dict(r._mapping) for r in rows]
