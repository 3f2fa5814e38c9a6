"""Idempotent bulk writes of data frames into tables: insert new keys, optionally update changed rows.

Rows go straight through the DB-API driver (SQLite `executemany`, PostgreSQL `COPY`)
because ORM-level inserts are an order of magnitude slower at millions of rows. Both run inside
the caller's SQLAlchemy transaction, so a failure rolls back everything the caller wrote.
"""

from __future__ import annotations

import csv
import io
import sqlite3
import uuid
from collections.abc import Sequence
from typing import IO, Literal, Protocol, cast

import numpy as np
import pandas as pd
from sqlalchemy import Boolean, Connection, Date, DateTime, Table
from sqlalchemy.exc import DBAPIError

COPY_NULL = r"\N"  # how COPY marks a missing value (an empty field stays an empty string)
SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"  # the text format SQLAlchemy itself stores in SQLite

Mode = Literal["insert_new", "upsert"]
Row = tuple[object, ...]


class _CopyCursor(Protocol):
    """What `_copy_then_insert` uses of a psycopg2 cursor (COPY is not part of the DB-API)."""

    @property
    def rowcount(self) -> int: ...

    def execute(self, operation: str) -> object: ...

    def copy_expert(self, sql: str, file: IO[str]) -> object: ...


def write_frame(
    connection: Connection,
    table: Table,
    frame: pd.DataFrame,
    mode: Mode,
    bookkeeping: Sequence[str] = ("updated_at",),
) -> int:
    """Write `frame` into `table` keyed on its primary key.

    Args:
        connection: an open connection inside a transaction.
        table: the target table; `frame` must hold its primary key and a subset of its columns.
        frame: the rows, one per key (duplicate keys are an error of the caller).
        mode: "insert_new" skips keys already stored; "upsert" also updates stored rows whose
            values differ (rows that are identical are left untouched and not counted).
        bookkeeping: columns that are rewritten along with a change but never count as one
            (the shop's write time; the warehouse's batch id).

    Returns:
        The number of rows inserted or changed.
    """
    if frame.empty:
        return 0
    key = [c.name for c in table.primary_key.columns]
    columns = [c.name for c in table.columns if c.name in frame.columns]
    missing = [k for k in key if k not in columns]
    if missing:
        raise ValueError(f"{table.name}: frame lacks key columns {missing}")
    dialect = connection.dialect.name
    sql = _insert_sql(connection, table, columns, key, mode, bookkeeping)
    # Key order turns random B-tree inserts (content-hash keys) into appends: several times faster.
    rows = _driver_rows(frame[columns].sort_values(key), table, dialect)
    cursor = connection.connection.cursor()
    try:
        if dialect == "sqlite":
            driver = cast(sqlite3.Connection, connection.connection.driver_connection)  # pysqlite
            before = driver.total_changes
            cursor.executemany(sql, rows)
            return driver.total_changes - before
        if dialect == "postgresql":
            return _copy_then_insert(cast(_CopyCursor, cursor), sql, table, columns, rows)  # psycopg2
        raise NotImplementedError(f"bulk writes support sqlite and postgresql, not {dialect}")
    except connection.dialect.loaded_dbapi.Error as error:
        # Same exception family as SQLAlchemy's own statements (IntegrityError, OperationalError...).
        raise DBAPIError.instance(sql, None, error, connection.dialect.loaded_dbapi.Error) from error
    finally:
        cursor.close()


def _insert_sql(
    connection: Connection,
    table: Table,
    columns: Sequence[str],
    key: Sequence[str],
    mode: Mode,
    bookkeeping: Sequence[str],
) -> str:
    quote = connection.dialect.identifier_preparer.quote
    names = ", ".join(quote(c) for c in columns)
    if connection.dialect.name == "sqlite":
        values, distinct = "VALUES (" + ", ".join("?" for _ in columns) + ")", "IS NOT"
    else:  # rows arrive through COPY into a staging table (see _copy_then_insert)
        values, distinct = f"SELECT {names} FROM {{stage}}", "IS DISTINCT FROM"
    target = quote(table.name)
    sql = f"INSERT INTO {target} ({names}) {values} ON CONFLICT ({', '.join(map(quote, key))}) "
    # Bookkeeping columns change on every write, so they must not make an identical row count as changed.
    compared = [c for c in columns if c not in key and c not in bookkeeping]
    if mode == "insert_new" or not compared:
        return sql + "DO NOTHING"
    assignments = ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in columns if c not in key)
    changed = " OR ".join(f"{target}.{quote(c)} {distinct} excluded.{quote(c)}" for c in compared)
    return sql + f"DO UPDATE SET {assignments} WHERE {changed}"


def _driver_rows(frame: pd.DataFrame, table: Table, dialect: str) -> list[Row]:
    """Convert a frame into tuples of plain Python values the driver accepts (None for missing)."""
    converted = []
    for name in frame.columns:
        column, kind = frame[name], type(table.c[name].type)
        missing = column.isna().to_numpy()
        if issubclass(kind, DateTime) and dialect == "sqlite":
            values = pd.to_datetime(column).dt.strftime(SQLITE_DATETIME).to_numpy(dtype=object)
        elif issubclass(kind, DateTime):
            values = np.asarray(pd.to_datetime(column).dt.to_pydatetime(), dtype=object)
        elif issubclass(kind, Date):
            values = pd.to_datetime(column).dt.strftime("%Y-%m-%d").to_numpy(dtype=object)
        elif issubclass(kind, Boolean):
            values = np.asarray([bool(v) for v in column.fillna(False)], dtype=object)
        else:
            values = np.asarray(column.astype(object).tolist(), dtype=object)
        values = np.array(values, dtype=object)  # a writable copy (pandas arrays are read-only views)
        values[missing] = None
        converted.append(values.tolist())
    return list(zip(*converted, strict=True))


def _copy_then_insert(
    cursor: _CopyCursor, sql: str, table: Table, columns: Sequence[str], rows: list[Row]
) -> int:
    """PostgreSQL: COPY rows into a temporary table, then one INSERT ... SELECT ... ON CONFLICT."""
    stage = f"stage_{table.name}_{uuid.uuid4().hex[:8]}"
    cursor.execute(f'CREATE TEMPORARY TABLE "{stage}" (LIKE "{table.name}" INCLUDING DEFAULTS)')
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows(tuple(COPY_NULL if v is None else v for v in row) for row in rows)
    buffer.seek(0)
    names = ", ".join(f'"{c}"' for c in columns)
    cursor.copy_expert(f"COPY \"{stage}\" ({names}) FROM STDIN WITH (FORMAT csv, NULL '{COPY_NULL}')", buffer)
    cursor.execute(sql.replace("{stage}", f'"{stage}"'))
    changed = cursor.rowcount
    cursor.execute(f'DROP TABLE "{stage}"')
    return changed
