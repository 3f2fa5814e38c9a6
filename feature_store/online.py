"""Online store: the latest feature vector of every active customer, in `online_features`, for serving.

`refresh_online` replaces the table's contents in one transaction. It is idempotent: a row whose
as-of, version and features are unchanged is left as it is (its `updated_at` included), so the
same input gives the same rows; changed rows are rewritten and customers who left the
population are deleted.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Engine, select

from feature_store.definitions import feature_version
from feature_store.io import read_query
from feature_store.offline import features_at
from retention.clock import utc_now
from retention.db.warehouse import OnlineFeatures
from retention.db.writes import write_frame
from retention.params import FeatureParams

log = logging.getLogger(__name__)
TABLE = OnlineFeatures.__table__
DELETE_CHUNK = 5_000  # ids per DELETE ... IN (...) statement (SQLite allows 32,766 variables)
JSON_DIGITS = 15  # significant digits of floats in the stored JSON


def feature_documents(features: pd.DataFrame) -> pd.Series:
    """Canonical JSON text of each row's features (NaN -> null), indexed like `features`.

    Args:
        features: `compute_features`' frame.

    Returns:
        One JSON object per row, keys in registry order.
    """
    values = features.drop(columns=["customer_id"])
    if values.empty:
        return pd.Series([], dtype=object)
    lines = values.to_json(orient="records", lines=True, double_precision=JSON_DIGITS).splitlines()
    return pd.Series(lines, index=features.index, dtype=object)


def refresh_online(
    engine: Engine,
    as_of: datetime,
    params: FeatureParams,
    now: datetime | None = None,
    features: pd.DataFrame | None = None,
) -> int:
    """Compute every active customer's features as of `as_of` and make them the online store's contents.

    Args:
        engine: the platform database.
        as_of: the point in time (naive UTC).
        params: the `features` section of params.yaml.
        now: the write time stored in `updated_at` of new or changed rows (default: now, UTC).
        features: the features as of `as_of` when already computed (and validated) by the caller.

    Returns:
        The number of customers in the online store afterwards.
    """
    features = features_at(engine, as_of, params) if features is None else features
    version = feature_version(params)
    now = now or utc_now()
    rows = pd.DataFrame(
        {
            "customer_id": features["customer_id"].astype(str),
            "as_of": pd.Timestamp(as_of),
            "feature_version": version,
            "features": feature_documents(features),
        }
    )
    with engine.begin() as connection:
        stored = read_query(
            connection,
            "SELECT customer_id, as_of, feature_version, CAST(features AS TEXT) FROM online_features",
            {},
            ["customer_id", "as_of", "feature_version", "features"],
            ["as_of"],
        )
        merged = rows.merge(stored, on="customer_id", how="left", suffixes=("", "_stored"), indicator=True)
        same = (
            merged["_merge"].eq("both")
            & merged["as_of"].eq(merged["as_of_stored"])
            & merged["feature_version"].eq(merged["feature_version_stored"])
            & merged["features"].eq(merged["features_stored"])
        ).to_numpy()
        changed = rows[~same & merged["_merge"].eq("both").to_numpy()]["customer_id"]
        gone = stored.loc[~stored["customer_id"].isin(rows["customer_id"]), "customer_id"]
        doomed = pd.concat([changed, gone]).tolist()
        for start in range(0, len(doomed), DELETE_CHUNK):
            connection.execute(
                TABLE.delete().where(TABLE.c.customer_id.in_(doomed[start : start + DELETE_CHUNK]))
            )
        written = write_frame(
            connection, TABLE, rows[~same].assign(updated_at=now), "insert_new", bookkeeping=()
        )
    log.info(
        "online store as of %s (version %s): %d customers, %d written, %d removed",
        as_of,
        version,
        len(rows),
        written,
        len(gone),
    )
    return len(rows)


def read_online(engine: Engine, customer_id: str) -> dict[str, Any] | None:
    """The online feature vector of one customer, for serving.

    Args:
        engine: the platform database.
        customer_id: the customer.

    Returns:
        {"customer_id", "as_of", "feature_version", "updated_at", "features": {name: value}},
        or None when the customer is not in the online store.
    """
    with engine.connect() as connection:
        row = connection.execute(select(TABLE).where(TABLE.c.customer_id == customer_id)).mappings().first()
    if row is None:
        return None
    result = dict(row)
    if isinstance(result["features"], str):  # a driver that hands JSON back as text
        result["features"] = json.loads(result["features"])
    return result
