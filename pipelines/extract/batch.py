"""Extract one data interval's rows from the shop tables and stage them as Parquet files.

A batch holds, for the interval `[start, end)`:
- fact rows (events, orders, reviews) whose business time lies in `[start - lateness, end)`, so rows
  that arrive late, within the lateness, are picked up by a later interval's run;
- dimension rows (customers, products) written in the shop at or after the warehouse's newest
  `updated_at` (its high-water mark), i.e. new and changed since the last publish.
Re-extracting an interval gives the same batch; publishing upserts, so a rerun changes nothing.
Contact details (`retention.db.models.CONTACT_COLUMNS`) are never read, so no staged file holds them.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import pandas as pd
from sqlalchemy import Engine, func, select

from pipelines.extract.suites import pandas_type
from retention.db.warehouse import FACT_TIME, SHOP_MODELS, WAREHOUSE, extracted_columns
from retention.params import ExtractParams

TABLES = tuple(SHOP_MODELS)  # customers, products, orders, events, reviews (reference order)
MANIFEST = "manifest.json"
REPORT = "validation.json"  # the validate step's outcome, beside the staged files
CANONICAL_DTYPE: dict[str, Literal["bool", "int64", "float64", "datetime64[us]", "str"]] = {
    "bool": "bool",
    "int64": "int64",
    "float64": "float64",
    "datetime64": "datetime64[us]",
    "str": "str",
}


@dataclass(frozen=True)
class Interval:
    """A data interval `[start, end)` in naive UTC; a zero-length interval means the day it starts."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"interval end {self.end} is before its start {self.start}")
        if self.end == self.start:  # manual Airflow runs have zero-length intervals
            object.__setattr__(self, "end", self.start + timedelta(days=1))

    @property
    def batch_id(self) -> str:
        """Stable id of the interval's batch, e.g. 20260105T0000-20260106T0000."""
        return f"{self.start:%Y%m%dT%H%M}-{self.end:%Y%m%dT%H%M}"

    def window_start(self, params: ExtractParams) -> datetime:
        """Earliest fact timestamp the batch takes: the interval start minus the lateness."""
        return self.start - timedelta(hours=params.lateness_hours)


def extract(engine: Engine, interval: Interval, params: ExtractParams, staging_root: Path) -> Path:
    """Read the interval's batch from the shop tables and stage it.

    Args:
        engine: the database holding the shop tables and the warehouse.
        interval: the data interval.
        params: the `extract` section of params.yaml.
        staging_root: folder under which the batch folder is (re)written.

    Returns:
        The batch folder: one Parquet file per table and a manifest.
    """
    window = (interval.window_start(params), interval.end)
    frames: dict[str, pd.DataFrame] = {}
    with engine.connect() as connection:
        for name, model in SHOP_MODELS.items():
            table = model.__table__
            query = select(*(table.c[c] for c in extracted_columns(name)))
            if name in FACT_TIME:
                time = table.c[FACT_TIME[name]]
                query = query.where(time >= window[0], time < window[1])
            else:
                mark = connection.execute(select(func.max(WAREHOUSE[name].c.updated_at))).scalar_one()
                if mark is not None:
                    query = query.where(table.c.updated_at >= mark)
            frames[name] = canonical(name, pd.read_sql(query, connection))
    manifest = {
        "batch_id": interval.batch_id,
        "interval_start": interval.start.isoformat(),
        "interval_end": interval.end.isoformat(),
        "window_start": window[0].isoformat(),
        "rows": {name: len(frame) for name, frame in frames.items()},
        "interval_events": int((frames["events"]["ts"] >= interval.start).sum()),
    }
    return stage(staging_root, interval.batch_id, frames, manifest)


def canonical(table: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Give each known column its declared dtype where the values allow it.

    A column whose values cannot take the type (e.g. nulls in an integer column) keeps what it
    has, so that the suite's type and null expectations report it instead of a crash here.
    """
    frame = frame.copy()
    for column in SHOP_MODELS[table].__table__.columns:
        if column.name not in frame:
            continue
        with contextlib.suppress(TypeError, ValueError):
            frame[column.name] = frame[column.name].astype(CANONICAL_DTYPE[pandas_type(column.type)])
    return frame


def stage(staging_root: Path, batch_id: str, frames: dict[str, pd.DataFrame], manifest: dict) -> Path:
    """Write a batch folder atomically: build it aside, then swap it in place of any older one."""
    final = staging_root / batch_id
    building = staging_root / f".{batch_id}.{uuid.uuid4().hex[:8]}"
    building.mkdir(parents=True)
    try:
        for name, frame in frames.items():
            frame.to_parquet(building / f"{name}.parquet", index=False)
        (building / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        if final.exists():
            shutil.rmtree(final)
        building.rename(final)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return final


def read_staged(batch_dir: Path) -> tuple[dict[str, pd.DataFrame], dict]:
    """The frames and manifest of a staged batch.

    Raises:
        FileNotFoundError: the folder is not a complete staged batch.
    """
    manifest_path = batch_dir / MANIFEST
    if not manifest_path.exists():
        raise FileNotFoundError(f"{batch_dir} is not a staged batch (no {MANIFEST}): run the extract step")
    frames = {name: pd.read_parquet(batch_dir / f"{name}.parquet") for name in TABLES}
    return frames, json.loads(manifest_path.read_text())


@dataclass(frozen=True)
class BatchValidation:
    """Outcome of validating every table of one batch."""

    batch_id: str
    success: bool
    failed: list[str]  # "table: expectation: detail" for each failed critical expectation
    warnings: list[str]  # likewise for warning-level expectations
    docs_url: str | None  # the Data Docs page of the first failing table (or of events)
    events_band: tuple[float, float] | None  # allowed event rows; None when there is too little history


def read_report(batch_dir: Path) -> BatchValidation:
    """The validation outcome stored next to a staged batch.

    Raises:
        FileNotFoundError: the batch has not been validated.
    """
    path = batch_dir / REPORT
    if not path.exists():
        raise FileNotFoundError(f"{batch_dir} has not been validated (no {REPORT}): run the validate step")
    raw = json.loads(path.read_text())
    raw["events_band"] = tuple(raw["events_band"]) if raw["events_band"] else None
    return BatchValidation(**raw)
