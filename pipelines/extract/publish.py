"""Publish a validated batch into the warehouse tables, or quarantine a rejected one; both atomic.

Either way the interval's row in `platform_batches` records the outcome, so reruns of an interval
update one row (attempts + 1) instead of adding rows.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from sqlalchemy import Connection, Engine, delete, func, insert, select, update

from pipelines.extract.batch import TABLES, read_report, read_staged
from retention.clock import utc_now
from retention.db.warehouse import WAREHOUSE, Batch, Quarantine
from retention.db.writes import write_frame
from retention.params import ExtractParams

if TYPE_CHECKING:
    from retention.quality import Report


def publish(engine: Engine, batch_dir: Path) -> dict[str, int]:
    """Upsert a validated batch into the warehouse in one transaction.

    Args:
        engine: the platform database.
        batch_dir: a staged batch whose validation passed.

    Returns:
        Rows new or changed per warehouse table (all zero when the interval was published before).

    Raises:
        FileNotFoundError: the batch was not staged or not validated.
        ValueError: its validation failed (a rejected batch is never published).
    """
    report = read_report(batch_dir)
    if not report.success:
        raise ValueError(f"batch {report.batch_id} failed validation; it cannot be published")
    frames, manifest = read_staged(batch_dir)
    with engine.begin() as connection:
        changed = {
            table: write_frame(
                connection,
                WAREHOUSE[table],
                frames[table].assign(batch_id=manifest["batch_id"]),
                "upsert",
                bookkeeping=("batch_id",),
            )
            for table in TABLES
        }
        record_batch(
            connection,
            manifest,
            "published",
            changed,
            failed=[],
            warnings=report.warnings,
            docs_url=report.docs_url,
        )
    return changed


def quarantine(
    engine: Engine,
    manifest: dict,
    frames: dict[str, pd.DataFrame],
    reports: dict[str, Report],
    failed: list[str],
    warnings: list[str],
    docs_url: str | None,
    params: ExtractParams,
) -> None:
    """Store a rejected batch's rows with each table's validation result; publish nothing."""
    now = utc_now()
    with engine.begin() as connection:
        connection.execute(delete(Quarantine).where(Quarantine.batch_id == manifest["batch_id"]))
        for table, frame in frames.items():
            report = reports[table]
            connection.execute(
                insert(Quarantine).values(
                    batch_id=manifest["batch_id"],
                    table_name=table,
                    quarantined_at=now,
                    n_rows=len(frame),
                    failed=[o.name for o in report.failed],
                    validation=report.result,
                    rows=frame.head(params.quarantine_max_rows).to_json(orient="records", date_format="iso"),
                )
            )
        record_batch(
            connection, manifest, "quarantined", {}, failed=failed, warnings=warnings, docs_url=docs_url
        )


def record_batch(
    connection: Connection,
    manifest: dict,
    status: str,
    changed: dict[str, int],
    failed: list[str],
    warnings: list[str],
    docs_url: str | None,
) -> None:
    """Insert or update the interval's row in `platform_batches`."""
    values = {
        "interval_start": datetime.fromisoformat(manifest["interval_start"]),
        "interval_end": datetime.fromisoformat(manifest["interval_end"]),
        "status": status,
        "finished_at": utc_now(),
        "interval_events": manifest["interval_events"],
        "rows_read": manifest["rows"],
        "rows_changed": changed,
        "failed": failed,
        "warnings": warnings,
        "docs_url": docs_url,
    }
    attempts = connection.execute(
        select(Batch.attempts).where(Batch.batch_id == manifest["batch_id"])
    ).scalar_one_or_none()
    if attempts is None:
        connection.execute(insert(Batch).values(batch_id=manifest["batch_id"], attempts=1, **values))
    else:
        connection.execute(
            update(Batch)
            .where(Batch.batch_id == manifest["batch_id"])
            .values(attempts=attempts + 1, **values)
        )


def data_end(engine: Engine) -> pd.Timestamp | None:
    """End of the newest published warehouse interval (what the warehouse is complete up to)."""
    with engine.connect() as connection:
        end = connection.execute(
            select(func.max(Batch.interval_end)).where(Batch.status == "published")
        ).scalar()
    return pd.Timestamp(end) if end is not None else None
