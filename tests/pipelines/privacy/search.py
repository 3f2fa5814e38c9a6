"""Search every store of a platform for terms: each database table, each file under the home, Redis."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from sqlalchemy import Engine, MetaData, select

DATABASE_FILES = (".db", ".db-wal", ".db-shm", ".db-journal")


def _pattern(terms: list[str]) -> re.Pattern[str]:
    return re.compile("|".join(rf"(?<!\w){re.escape(t)}(?!\w)" for t in terms), re.IGNORECASE)


def search_database(engine: Engine, terms: list[str]) -> list[str]:
    """`table.column: value` of every cell of every table (of the engine's schema) that mentions a term."""
    pattern = _pattern(terms)
    metadata = MetaData()
    metadata.reflect(engine)
    hits = []
    with engine.connect() as connection:
        for table in metadata.sorted_tables:
            for row in connection.execute(select(table)):
                for column, value in row._mapping.items():
                    if value is not None and pattern.search(str(value)):
                        hits.append(f"{table.name}.{column}: {str(value)[:120]}")
    return hits


def _file_text(path: Path) -> str:
    if path.suffix == ".parquet":
        return str(pq.read_table(path).to_pylist())
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as stored:
            return " ".join(str(stored[name].tolist()) for name in stored.files)
    data = path.read_bytes()
    texts = [data.decode("utf-8", errors="replace")]
    texts.append(data.decode("utf-32-le", errors="replace")[: len(data) // 4])
    with io.BytesIO(data):  # binary files (weights, pickles): the raw bytes as latin-1
        texts.append(data.decode("latin-1"))
    return "\n".join(texts)


def search_files(home: Path, terms: list[str]) -> list[str]:
    """Files under `home` (SQLite files excluded: they are searched table by table) that mention a term."""
    pattern = _pattern(terms)
    hits = []
    for folder, _, names in os.walk(home):
        for name in names:
            path = Path(folder) / name
            if name.endswith(DATABASE_FILES):
                continue
            if pattern.search(_file_text(path)):
                hits.append(str(path.relative_to(home)))
    return hits


def search_redis(client, terms: list[str]) -> list[str]:  # noqa: ANN001
    """Redis keys whose name or string value mentions a term."""
    pattern = _pattern(terms)
    hits = []
    for key in client.scan_iter(count=1_000):
        value = client.get(key) if client.type(key) in (b"string", "string") else ""
        text = f"{key!s} {value!s}"
        if pattern.search(text):
            hits.append(str(key))
    return hits
