"""Read the feature store's inputs from the warehouse tables: only needed rows and columns, fast.

Rows come straight through the DB-API driver: PostgreSQL streams `COPY (SELECT ...) TO STDOUT`
CSV into `pandas.read_csv`; SQLite is fetched in chunks that are converted to typed columns one
at a time, so Python objects never hold the whole result. Time filters are pushed into SQL:
events within the `history_days` look-back (views only within `activity_days`, the only feature
that counts them), and the all-history aggregates (first event, last purchase) as GROUP BYs.
"""

from __future__ import annotations

import io
import re
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

import pandas as pd
from sqlalchemy import Connection, Engine

from feature_store.frames import Frames
from retention.params import FeatureParams

SQLITE_TIMESTAMP = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores DateTime in SQLite (text sorts by time)
FETCH_ROWS = 250_000  # SQLite rows converted per chunk (bounds the Python objects alive at once)
_PARAM = re.compile(r"(?<!:):(\w+)")


def _bind(value: Any, dialect: str) -> Any:
    if isinstance(value, datetime) and dialect == "sqlite":
        return value.strftime(SQLITE_TIMESTAMP)
    return value


def read_query(
    connection: Connection,
    sql: str,
    params: Mapping[str, Any],
    columns: Sequence[str],
    timestamps: Sequence[str] = (),
    numbers: Sequence[str] = (),
) -> pd.DataFrame:
    """Run a SELECT and return its rows as a frame with typed columns.

    Args:
        connection: an open connection (SQLite or PostgreSQL).
        sql: the query, with `:name` placeholders; it selects exactly `columns`, in order.
        params: the placeholder values (datetimes are bound in each backend's own form).
        columns: result column names.
        timestamps: columns parsed to datetime64 (dates too).
        numbers: columns parsed to float64 (NULL -> NaN).

    Returns:
        The rows; other columns are strings (object), NULL as None or NaN.
    """
    dialect = connection.dialect.name
    bound = {name: _bind(value, dialect) for name, value in params.items()}
    if dialect == "postgresql":
        frame = _postgres_frame(connection, sql, bound, columns, numbers)
    elif dialect == "sqlite":
        frame = _sqlite_frame(connection, sql, bound, columns, timestamps, numbers)
    else:
        raise NotImplementedError(f"the feature store reads sqlite and postgresql, not {dialect}")
    return _typed(frame, timestamps, numbers)


def _typed(frame: pd.DataFrame, timestamps: Sequence[str], numbers: Sequence[str]) -> pd.DataFrame:
    for name in timestamps:
        if not pd.api.types.is_datetime64_any_dtype(frame[name]):
            frame[name] = pd.to_datetime(frame[name], format="ISO8601")
    for name in numbers:
        frame[name] = pd.to_numeric(frame[name]).astype(float)
    return frame


def _sqlite_frame(
    connection: Connection,
    sql: str,
    params: Mapping[str, Any],
    columns: Sequence[str],
    timestamps: Sequence[str],
    numbers: Sequence[str],
) -> pd.DataFrame:
    driver = cast(sqlite3.Connection, connection.connection.driver_connection)  # pysqlite
    cursor = driver.execute(sql, dict(params))
    parts = []
    try:
        while chunk := cursor.fetchmany(FETCH_ROWS):
            parts.append(_typed(pd.DataFrame.from_records(chunk, columns=list(columns)), timestamps, numbers))
    finally:
        cursor.close()
    if not parts:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in columns})
    return pd.concat(parts, ignore_index=True)


def _postgres_frame(
    connection: Connection,
    sql: str,
    params: Mapping[str, Any],
    columns: Sequence[str],
    numbers: Sequence[str],
) -> pd.DataFrame:
    cursor = connection.connection.cursor()
    try:
        query = cursor.mogrify(_PARAM.sub(r"%(\1)s", sql), dict(params)).decode()
        buffer = io.BytesIO()
        cursor.copy_expert(f"COPY ({query}) TO STDOUT WITH (FORMAT csv)", buffer)
    finally:
        cursor.close()
    buffer.seek(0)
    # Only an empty field is NULL (NaN); ids such as "NA" stay strings.
    dtypes = {name: float if name in numbers else str for name in columns}
    return pd.read_csv(
        buffer, names=list(columns), header=None, dtype=dtypes, keep_default_na=False, na_values=[""]
    )


# -- the feature store's reads ---------------------------------------------------------------


def read_frames(engine: Engine, as_of: datetime, params: FeatureParams) -> Frames:
    """Everything `compute_features` needs at `as_of`, read from the warehouse tables.

    Args:
        engine: the platform database.
        as_of: the point in time; no row at or after it is read.
        params: the `features` section of params.yaml (look-back spans).

    Returns:
        Frames with events bounded by `history_days` (views by `activity_days`) and all-history
        aggregates in `lifetime`.
    """
    start = as_of - timedelta(days=params.history_days)
    views_from = as_of - timedelta(days=params.activity_days)
    window = {"as_of": as_of, "start": start}
    with engine.connect() as connection:
        customers = read_query(
            connection,
            "SELECT customer_id, signup_date FROM wh_customers",
            {},
            ["customer_id", "signup_date"],
            ["signup_date"],
        )
        products = read_query(
            connection,
            "SELECT product_id, category, price FROM wh_products",
            {},
            ["product_id", "category", "price"],
            (),
            ["price"],
        )
        events = read_query(
            connection,
            "SELECT customer_id, product_id, event_type, ts, quantity, price, order_id FROM wh_events "
            "WHERE ts >= :start AND ts < :as_of AND (event_type <> 'view' OR ts >= :views_from)",
            {**window, "views_from": views_from},
            ["customer_id", "product_id", "event_type", "ts", "quantity", "price", "order_id"],
            ["ts"],
            ["quantity", "price"],
        )
        reviews = read_query(
            connection,
            "SELECT r.customer_id, r.review_id, r.ts, r.rating, s.score FROM wh_reviews r "
            "LEFT JOIN review_sentiment s ON s.review_id = r.review_id WHERE r.ts >= :start AND r.ts < :as_of",
            window,
            ["customer_id", "review_id", "ts", "rating", "score"],
            ["ts"],
            ["rating", "score"],
        )
        lifetime = read_lifetime(connection, as_of, start, events)
    return Frames(customers=customers, products=products, events=events, reviews=reviews, lifetime=lifetime)


def read_lifetime(
    connection: Connection, as_of: datetime, start: datetime, events: pd.DataFrame
) -> pd.DataFrame:
    """First event and last purchase per purchasing customer before `as_of`.

    The first event comes from a GROUP BY over the (customer_id, ts) index alone; the last
    purchase from the already-read `events` where it lies in [start, as_of), and otherwise from a
    GROUP BY over the (usually small) part of the table before `start`.

    Args:
        connection: an open connection.
        as_of: the point in time.
        start: the start of the window `events` covers completely for purchases.
        events: the event rows read for [start, as_of) (at least every purchase in it).

    Returns:
        customer_id, first_event_ts, last_purchase_ts for customers with a purchase before `as_of`.
    """
    first = read_query(
        connection,
        "SELECT customer_id, MIN(ts) FROM wh_events WHERE ts < :as_of GROUP BY customer_id",
        {"as_of": as_of},
        ["customer_id", "first_event_ts"],
        ["first_event_ts"],
    )
    older = read_query(
        connection,
        "SELECT customer_id, MAX(ts) FROM wh_events WHERE event_type = 'purchase' AND ts < :start "
        "GROUP BY customer_id",
        {"start": start},
        ["customer_id", "last_purchase_ts"],
        ["last_purchase_ts"],
    )
    purchases = events[events["event_type"] == "purchase"]
    recent = purchases.groupby("customer_id")["ts"].max().rename("last_purchase_ts").reset_index()
    last = pd.concat([older, recent], ignore_index=True).groupby("customer_id")["last_purchase_ts"].max()
    return first.merge(last.reset_index(), on="customer_id", how="inner")


def read_purchases(engine: Engine, start: datetime, end: datetime) -> pd.DataFrame:
    """Purchase rows (customer_id, ts) with start <= ts < end: what training labels need.

    Args:
        engine: the platform database.
        start: first instant included.
        end: first instant excluded.

    Returns:
        customer_id, ts.
    """
    with engine.connect() as connection:
        return read_query(
            connection,
            "SELECT customer_id, ts FROM wh_events WHERE event_type = 'purchase' AND ts >= :start AND ts < :end",
            {"start": start, "end": end},
            ["customer_id", "ts"],
            ["ts"],
        )


def read_sequence_events(
    engine: Engine, as_of: datetime, params: FeatureParams
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The last `sequence_length` + 1 events of each customer before `as_of` (within `history_days`), and products.

    The extra oldest event only gives the first kept event its time gap; `build_sequences` drops it.

    Args:
        engine: the platform database.
        as_of: the point in time.
        params: `sequence_length` and `history_days`.

    Returns:
        (events: event_id, customer_id, product_id, event_type, ts, quantity, price; products:
        product_id, category).
    """
    start = as_of - timedelta(days=params.history_days)
    columns = ["event_id", "customer_id", "product_id", "event_type", "ts", "quantity", "price"]
    sql = (
        f"SELECT {', '.join(columns)} FROM (SELECT {', '.join(columns)}, ROW_NUMBER() OVER "
        "(PARTITION BY customer_id ORDER BY ts DESC, event_id DESC) AS rn FROM wh_events "
        "WHERE ts >= :start AND ts < :as_of) ranked WHERE rn <= :keep"
    )
    with engine.connect() as connection:
        events = read_query(
            connection,
            sql,
            {"start": start, "as_of": as_of, "keep": params.sequence_length + 1},
            columns,
            ["ts"],
            ["quantity", "price"],
        )
        products = read_query(
            connection, "SELECT product_id, category FROM wh_products", {}, ["product_id", "category"]
        )
    return events, products
