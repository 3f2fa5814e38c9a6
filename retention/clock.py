"""Time as every timestamp column stores it: naive UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    """Current time as naive UTC, the convention of every timestamp column."""
    return datetime.now(UTC).replace(tzinfo=None)


def naive_utc(moment: datetime) -> datetime:
    """`moment` as naive UTC: Airflow hands aware datetimes; every timestamp column is naive UTC."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
