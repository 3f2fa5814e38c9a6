"""Erasure in the files under the platform home: tables lose the customers' rows, documents their mentions.

Every file under `RETENTION_HOME` is looked at by its kind:
- Parquet and CSV (staged batches and campaigns, campaign exports, feature exports, the protocol
  score files logged to MLflow, the simulator's ground truth): rows whose id column (`ID_KEYS`) or
  e-mail column names an erased customer are dropped;
- NumPy archives with a `customer_ids` array (the recommender's customer states): those rows of
  every array of the same length are dropped;
- JSON (validation results, run reports, staged metadata, MLflow input examples): the customers'
  records are dropped and any other mention is replaced (`scrub.scrub`);
- other text (Data Docs pages, logs): mentions are replaced;
- anything else (model weights, pickles) is searched as bytes; a hit is reported as `unscrubbable`,
  never silently kept.
The database files themselves are left to the SQL side. A rewrite is prepared beside its target
(`prepare_rewrites`) and only swapped in by `Rewrite.commit`, after the database transaction.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.privacy.scrub import EMAIL_KEYS, ID_KEYS, Terms, scrub

# SQLite databases (and their journals) are erased through SQL: rewriting their bytes would corrupt them.
DATABASE_SUFFIXES = (".db", ".db-wal", ".db-shm", ".db-journal", ".sqlite", ".sqlite3")
STATES_KEY = "customer_ids"  # training/recommender/customer_states.py


@dataclass(frozen=True)
class Rewrite:
    """A file's new content, written beside it and not yet in place.

    Attributes:
        target: the file to replace.
        staged: the new content's temporary path (same folder: the swap is one rename).
        removed: rows or mentions removed.
        store: the erasure report's name for the store the file belongs to.
    """

    target: Path
    staged: Path
    removed: int
    store: str

    def commit(self) -> None:
        """Put the new content in place (atomically), with the old file's times: an erasure must not
        make a file look new to the retention periods (`pipelines.privacy.housekeeping`)."""
        stat = self.target.stat()
        os.utime(self.staged, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        os.replace(self.staged, self.target)

    def discard(self) -> None:
        """Drop the new content; the file stays as it was."""
        self.staged.unlink(missing_ok=True)


def store_of(home: Path, path: Path) -> str:
    """The report's store name of a file: its first folder under the home (`campaigns`, `staging`, ...)."""
    parts = path.relative_to(home).parts
    return f"files:{parts[0]}" if len(parts) > 1 else "files"


def _files(home: Path) -> Iterator[Path]:
    for folder, _, names in os.walk(home):
        for name in sorted(names):
            if name.endswith(".tmp") or name.endswith(DATABASE_SUFFIXES):
                continue
            yield Path(folder) / name


def _staged_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}.erase.tmp")


def _parquet(path: Path, terms: Terms) -> pa.Table | None:
    schema = pq.read_schema(path)
    keys = [k for k in (*ID_KEYS, *EMAIL_KEYS) if k in schema.names]
    if not keys:
        return None
    table = pq.read_table(path, columns=keys)  # the key columns first: most files hold no erased customer
    drop = None
    for key in keys:
        column = table.column(key)
        if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
            column = pc.cast(column, pa.string())
        if key in EMAIL_KEYS:
            hit = pc.is_in(
                pc.utf8_lower(column), value_set=pa.array(sorted(terms.lowered_emails), pa.string())
            )
        else:
            hit = pc.is_in(column, value_set=pa.array(sorted(terms.ids), pa.string()))
        hit = pc.fill_null(hit, False)
        drop = hit if drop is None else pc.or_(drop, hit)
    if drop is None or not pc.any(drop).as_py():
        return None
    return pq.read_table(path).filter(pc.invert(drop))


def _csv(text: str, terms: Terms) -> tuple[str, int]:
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows:
        return text, 0
    header, body = rows[0], rows[1:]
    ids = [i for i, name in enumerate(header) if name in ID_KEYS]
    emails = [i for i, name in enumerate(header) if name in EMAIL_KEYS]
    kept = [
        row
        for row in body
        if not any(i < len(row) and row[i] in terms.ids for i in ids)
        and not any(i < len(row) and row[i].lower() in terms.lowered_emails for i in emails)
    ]
    cleaned = [[terms.scrub_text(cell) for cell in row] for row in [header, *kept]]
    changed_cells = sum(
        a != b
        for old, new in zip([header, *kept], cleaned, strict=True)
        for a, b in zip(old, new, strict=True)
    )
    out = io.StringIO(newline="")
    # the platform's CSVs are pandas' defaults: minimal quoting, "\n" line ends
    csv.writer(out, lineterminator="\n").writerows(cleaned)
    return out.getvalue(), len(body) - len(kept) + changed_cells


def _npz(path: Path, terms: Terms) -> tuple[dict[str, np.ndarray], int] | None:
    with np.load(path, allow_pickle=False) as stored:
        if STATES_KEY not in stored.files:
            return None
        arrays = {name: stored[name] for name in stored.files}
    ids = arrays[STATES_KEY].astype(str)
    drop = np.isin(ids, sorted(terms.ids))
    if not drop.any():
        return None
    kept = {name: (a[~drop] if a.ndim and a.shape[0] == len(ids) else a) for name, a in arrays.items()}
    return kept, int(drop.sum())


def _rewrite(path: Path, terms: Terms) -> tuple[Path, int] | None:
    """Stage the erased content of one file; None when it holds nothing of the customers."""
    suffix = path.suffix.lower()
    staged = _staged_path(path)
    if suffix == ".parquet":
        table = _parquet(path, terms)
        if table is None:
            return None
        removed = pq.read_metadata(path).num_rows - table.num_rows
        pq.write_table(table, staged)
        return staged, removed
    if suffix == ".npz":
        found = _npz(path, terms)
        if found is None:
            return None
        with staged.open("wb") as handle:
            arrays: dict[str, Any] = found[0]  # names of arrays, not savez's own options
            np.savez(handle, **arrays)
        return staged, found[1]
    text = _utf8(path)
    if text is None or not terms.in_text(text):
        return None
    if suffix == ".csv":
        new_text, removed = _csv(text, terms)
    elif suffix == ".json":
        try:
            document = json.loads(text)
        except json.JSONDecodeError:
            new_text, removed = terms.scrub_text(text), 1
        else:
            cleaned, removed = scrub(document, terms)
            new_text = json.dumps(cleaned, indent=2) if removed else text
    else:
        new_text, removed = terms.scrub_text(text), 1
    if not removed or new_text == text:
        return None
    staged.write_text(new_text, encoding="utf-8")
    return staged, removed


def _utf8(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return None


def prepare_rewrites(home: Path, terms: Terms) -> tuple[list[Rewrite], list[Path]]:
    """Stage the erased version of every file under `home` that holds the customers.

    Returns:
        The staged rewrites (commit or discard each), and the binary files that still contain a
        term and cannot be rewritten here (model weights and the like).
    """
    rewrites: list[Rewrite] = []
    unscrubbable: list[Path] = []
    if not home.exists():
        return rewrites, unscrubbable
    try:
        for path in _files(home):
            staged = _rewrite(path, terms)
            if staged is not None:
                rewrites.append(Rewrite(path, staged[0], staged[1], store_of(home, path)))
            elif path.suffix.lower() not in (".parquet", ".npz") and _utf8(path) is None:
                data = path.read_bytes()  # binary: searched as bytes, reported when it holds a term
                if any(needle in data for needle in terms.needles()):
                    unscrubbable.append(path)
    except BaseException:
        for rewrite in rewrites:
            rewrite.discard()
        raise
    return rewrites, unscrubbable
