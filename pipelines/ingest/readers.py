"""Readers that turn files into frames with contract column names, plus their row-number style.

Contract files are read as text (CSV) or as stored (Parquet) and checked by `retention.contract`;
the public datasets are read in their original formats (see shared/data/README.md for where to
obtain them: CDNOW from the PyPI package `lifetimes`, MovieLens-100K from `recbole`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from retention.contract import Checker, numbers, timestamps

CDNOW_COLUMNS = ["orig_id", "new_id", "date", "n_cds", "dollars"]


def checker_for(path: Path, max_rows: int) -> Checker:
    """A checker numbering rows as the user sees them: file lines for text, rows for Parquet."""
    if path.suffix.lower() == ".parquet":
        return Checker(path.name, first_row=1, row_word="row", max_rows=max_rows)
    return Checker(path.name, first_row=2, row_word="line", max_rows=max_rows)


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
        frame = pd.read_parquet(path)
    elif suffix in (".csv", ".tsv"):
        separator = "," if suffix == ".csv" else "\t"
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], sep=separator)
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
    return frame.rename(columns=renames)


def read_cdnow(path: Path, check: Checker, placeholder_item: str) -> pd.DataFrame:
    """CDNOW order totals (`orig_id new_id yyyymmdd n_cds dollars`) as one purchase row per order."""
    check.first_row = 1  # no header line
    raw = pd.read_csv(path, sep=r"\s+", header=None, dtype=str, engine="python")
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


def _recbole_frame(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_values=[""])
    frame.columns = [c.split(":")[0] for c in frame.columns]  # "user_id:token" -> "user_id"
    return frame


def read_movielens(path: Path, check: Checker) -> tuple[pd.DataFrame, pd.DataFrame]:
    """MovieLens ratings (`ml-100k.inter`): each rating is a consumption event and a review."""
    raw = _recbole_frame(path)
    if not check.require_columns(raw, {"user_id": True, "item_id": True, "rating": True, "timestamp": True}):
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
    raw = _recbole_frame(path)
    if not check.require_columns(raw, {"item_id": True, "movie_title": True}):
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
