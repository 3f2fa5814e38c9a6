"""Validate a staged batch with the extraction suites; a critical failure quarantines it.

Before validation each fact table gets `<key>_known` flags (does the customer / product resolve to
the warehouse or to the same batch?), and the allowed event volume is set from the trailing median
of published batches.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine, select

from pipelines.extract.batch import REPORT, BatchValidation, read_staged
from pipelines.extract.publish import quarantine
from pipelines.extract.suites import REFERENCES, known_flag, suite_name, suite_parameters
from retention.atomic import atomic_path
from retention.db.warehouse import WAREHOUSE, Batch
from retention.params import ExtractParams
from retention.quality import QualityService, Report, data_docs_file


class BatchRejected(RuntimeError):
    """A batch failed critical expectations: it was quarantined and nothing was published."""


def validate(
    engine: Engine, batch_dir: Path, params: ExtractParams, quality: QualityService
) -> BatchValidation:
    """Validate a staged batch; on success write its report next to it for the publish step.

    Raises:
        BatchRejected: a critical expectation failed; the batch is now in `platform_quarantine`
            and the message names every failed expectation and the Data Docs page.
    """
    frames, manifest = read_staged(batch_dir)
    flagged = add_reference_flags(engine, frames)
    band = events_band(engine, datetime.fromisoformat(manifest["interval_start"]), params)
    parameters = suite_parameters(
        params,
        window_start=datetime.fromisoformat(manifest["window_start"]),
        window_end=datetime.fromisoformat(manifest["interval_end"]),
        events_band=band or (0, None),
    )
    reports = {
        table: quality.validate(suite_name(table), frame, parameters) for table, frame in flagged.items()
    }
    failing = [r for r in reports.values() if not r.success]
    outcome = BatchValidation(
        batch_id=manifest["batch_id"],
        success=not failing,
        failed=_lines(reports, critical=True),
        # Share expectations are undefined on an empty table (GX reports 0), so quiet days warn of nothing.
        warnings=_lines({t: r for t, r in reports.items() if len(frames[t])}, critical=False),
        docs_url=(failing[0] if failing else reports["events"]).docs_url,
        events_band=band,
    )
    with atomic_path(batch_dir / REPORT) as tmp:
        tmp.write_text(json.dumps(asdict(outcome), indent=2))
    if failing:
        quarantine(
            engine, manifest, frames, reports, outcome.failed, outcome.warnings, outcome.docs_url, params
        )
        listed = "\n  ".join(outcome.failed)
        raise BatchRejected(
            f"batch {outcome.batch_id} failed {len(outcome.failed)} critical expectation(s) and was "
            f"quarantined (nothing published):\n  {listed}\nGX Data Docs: {data_docs_file(quality.runtime_dir, outcome.docs_url)}"
        )
    return outcome


def add_reference_flags(engine: Engine, frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Add `<key>_known` columns: True where the key is in the warehouse or in this batch."""
    flagged = dict(frames)
    with engine.connect() as connection:
        for table, references in REFERENCES.items():
            frame = frames[table].copy()
            for column, target in references.items():
                if column not in frame:
                    continue  # the missing column is reported by the suite
                stored = connection.execute(select(WAREHOUSE[target].c[column])).scalars()
                known = set(stored) | set(frames[target].get(column, pd.Series(dtype="str")).dropna())
                frame[known_flag(column)] = frame[column].isin(known).astype(bool)
            flagged[table] = frame
    return flagged


def events_band(
    engine: Engine, interval_start: datetime, params: ExtractParams
) -> tuple[float, float] | None:
    """Allowed event rows of a batch: the volume band around the trailing published median.

    Returns None (no volume check) with fewer than `volume_min_history` earlier published batches.
    """
    query = (
        select(Batch.rows_read)
        .where(Batch.status == "published", Batch.interval_start < interval_start)
        .order_by(Batch.interval_start.desc())
        .limit(params.volume_window)
    )
    with engine.connect() as connection:
        history = [rows["events"] for rows in connection.execute(query).scalars()]
    if len(history) < params.volume_min_history:
        return None
    median = statistics.median(history)
    low, high = params.volume_band
    return (low * median, high * median)


def _lines(reports: dict[str, Report], critical: bool) -> list[str]:
    return [
        f"{table}: {o.name}: {o.detail}"
        for table, report in reports.items()
        for o in (report.failed if critical else report.warnings)
    ]
