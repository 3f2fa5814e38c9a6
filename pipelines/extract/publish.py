"""Publish a validated batch into the warehouse tables, or quarantine a rejected one; both atomic.

Either way the interval's row in `platform_batches` records the outcome, so reruns of an interval
update one row (attempts + 1) instead of adding rows; each attempt also gets its own entry in the
row's `attempt_history`, and `rows_changed` adds up what the attempts changed (see `Batch`).
"""

from __future__ import annotations

import copy
import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from sqlalchemy import Connection, Engine, RowMapping, delete, func, insert, select, update

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
    """Insert or update the interval's row in `platform_batches`, appending this attempt to its history.

    `changed` is what this attempt changed; the row's `rows_changed` adds it to what earlier attempts
    changed, so a rerun that changes nothing leaves the first publish's counts in place.
    """
    finished_at = utc_now()
    values = {
        "interval_start": datetime.fromisoformat(manifest["interval_start"]),
        "interval_end": datetime.fromisoformat(manifest["interval_end"]),
        "status": status,
        "finished_at": finished_at,
        "interval_events": manifest["interval_events"],
        "rows_read": manifest["rows"],
        "failed": failed,
        "warnings": warnings,
        "docs_url": docs_url,
    }
    # Locked for the read-modify-write, so two concurrent reruns cannot lose each other's entry.
    stored = (
        connection.execute(
            select(
                Batch.attempts,
                Batch.finished_at,
                Batch.status,
                Batch.rows_read,
                Batch.rows_changed,
                Batch.attempt_history,
            )
            .where(Batch.batch_id == manifest["batch_id"])
            .with_for_update()
        )
        .mappings()
        .one_or_none()
    )
    history = _history(stored)
    attempt = stored["attempts"] + 1 if stored is not None else 1
    history.append(
        {
            "attempt": attempt,
            "finished_at": finished_at.isoformat(),
            "status": status,
            "rows_read": dict(manifest["rows"]),
            "rows_changed": dict(changed),
        }
    )
    total = _json(stored["rows_changed"]) if stored is not None else {}
    for table, n in changed.items():
        total[table] = total.get(table, 0) + n
    recorded = {**values, "attempts": attempt, "rows_changed": total, "attempt_history": history}
    if stored is None:
        connection.execute(insert(Batch).values(batch_id=manifest["batch_id"], **recorded))
    else:
        connection.execute(update(Batch).where(Batch.batch_id == manifest["batch_id"]).values(**recorded))


def _history(stored: RowMapping | None) -> list[dict[str, Any]]:
    """The attempts recorded so far; a row from before the history gets one entry for its last attempt."""
    if stored is None:
        return []
    history = _json(stored["attempt_history"])
    if history:
        return list(history)
    return [
        {
            "attempt": stored["attempts"],
            "finished_at": stored["finished_at"].isoformat(),
            "status": stored["status"],
            "rows_read": _json(stored["rows_read"]),
            "rows_changed": _json(stored["rows_changed"]),
        }
    ]


def _json(value: Any) -> Any:
    """A JSON column's value as a fresh object (some drivers hand JSON back as text)."""
    return json.loads(value) if isinstance(value, str) else copy.deepcopy(value)


def data_end(engine: Engine) -> pd.Timestamp | None:
    """End of the newest published warehouse interval (what the warehouse is complete up to)."""
    with engine.connect() as connection:
        end = connection.execute(
            select(func.max(Batch.interval_end)).where(Batch.status == "published")
        ).scalar()
    return pd.Timestamp(end) if end is not None else None
