"""Offline store: materialise features, training sets and event sequences from the warehouse to Parquet."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Engine

from feature_store.core import build_sequences, compute_features, training_cutoffs, training_rows
from feature_store.definitions import feature_version
from feature_store.io import read_frames, read_purchases, read_sequence_events
from retention.atomic import atomic_path
from retention.params import FeatureParams

log = logging.getLogger(__name__)
METADATA_PREFIX = "retention."  # Parquet key-value metadata written with every table


@dataclass(frozen=True)
class Written:
    """What an offline job wrote."""

    path: Path
    rows: int
    feature_version: str


def features_at(engine: Engine, as_of: datetime, params: FeatureParams) -> pd.DataFrame:
    """Read the warehouse and compute every feature of the population as of `as_of`.

    Args:
        engine: the platform database.
        as_of: the point in time (naive UTC).
        params: the `features` section of params.yaml.

    Returns:
        `compute_features`' frame: customer_id then the features in registry order.
    """
    started = time.perf_counter()
    frames = read_frames(engine, as_of, params)
    read = time.perf_counter()
    features = compute_features(frames, as_of, params)
    log.info(
        "features as of %s: %d customers (%d events read in %.1fs, computed in %.1fs)",
        as_of,
        len(features),
        len(frames.events),
        read - started,
        time.perf_counter() - read,
    )
    return features


def training_set(engine: Engine, as_of: datetime, params: FeatureParams) -> pd.DataFrame:
    """Training rows (customer_id, cutoff, features..., returned) for every cutoff before `as_of`.

    Each cutoff's features are read and computed as of that cutoff, and labels come from
    purchases in [cutoff, cutoff + horizon), which ends at or before `as_of`.

    Args:
        engine: the platform database.
        as_of: nothing at or after it is read.
        params: the `features` section of params.yaml.

    Returns:
        The rows, sorted by cutoff then customer_id.
    """
    cutoffs = training_cutoffs(as_of, params)
    purchases = read_purchases(engine, cutoffs[0].to_pydatetime(), as_of)
    parts = []
    for cutoff in cutoffs:
        features = features_at(engine, cutoff.to_pydatetime(), params)
        parts.append(training_rows(features, cutoff, purchases, params))
    return pd.concat(parts, ignore_index=True)


def sequences_at(engine: Engine, as_of: datetime, params: FeatureParams) -> pd.DataFrame:
    """The last `sequence_length` events of every customer before `as_of` (see `build_sequences`).

    Args:
        engine: the platform database.
        as_of: the point in time.
        params: the `features` section of params.yaml.

    Returns:
        The long sequence frame.
    """
    events, products = read_sequence_events(engine, as_of, params)
    return build_sequences(events, products, as_of, params)


def write_parquet(frame: pd.DataFrame, path: Path, as_of: datetime, params: FeatureParams) -> Written:
    """Write `frame` to Parquet atomically, with as-of and feature_version in the file's metadata.

    Args:
        frame: the table.
        path: the target file (replaced in one step; readers never see a partial file).
        as_of: the point in time the table describes.
        params: the `features` section of params.yaml (for the version).

    Returns:
        What was written.
    """
    version = feature_version(params)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    metadata = {
        **(table.schema.metadata or {}),
        f"{METADATA_PREFIX}as_of".encode(): pd.Timestamp(as_of).isoformat().encode(),
        f"{METADATA_PREFIX}feature_version".encode(): version.encode(),
    }
    with atomic_path(Path(path)) as tmp:
        pq.write_table(table.replace_schema_metadata(metadata), tmp)
    log.info("wrote %d rows to %s", len(frame), path)
    return Written(path=Path(path), rows=len(frame), feature_version=version)


def materialize(
    engine: Engine, as_of: datetime, params: FeatureParams, out: Path, features: pd.DataFrame | None = None
) -> Written:
    """Compute the features as of `as_of` and write them to `out` (Parquet, with an `as_of` column).

    Args:
        engine: the platform database.
        as_of: the point in time.
        params: the `features` section of params.yaml.
        out: the Parquet file.
        features: the features as of `as_of` when already computed (and validated) by the caller.

    Returns:
        What was written.
    """
    features = (features_at(engine, as_of, params) if features is None else features).copy()
    features.insert(1, "as_of", pd.Timestamp(as_of))
    return write_parquet(features, out, as_of, params)
