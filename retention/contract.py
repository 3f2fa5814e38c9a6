"""The event-data contract (shared/docs/EVALUATION.md) and validation of files against it.

Validation collects every problem of a file before failing, and each problem names the file,
the column, the offending row numbers and the reason, so one run tells the user all to fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from pandas._typing import ScalarOrNA

EVENT_TYPES = ("view", "cart", "purchase")
BOOLEAN_WORDS = {
    "true": True,
    "1": True,
    "yes": True,
    "y": True,
    "t": True,
    "false": False,
    "0": False,
    "no": False,
    "n": False,
    "f": False,
}

# Columns of each contract table: (name, required).
EVENT_COLUMNS = {
    "user_id": True,
    "item_id": True,
    "ts": True,
    "event_type": False,
    "quantity": False,
    "price": False,
    "order_id": False,
}
PRODUCT_COLUMNS = {
    "item_id": True,
    "category": False,
    "title": False,
    "description": False,
    "price": False,
    "active": False,
}
CUSTOMER_COLUMNS = {
    "user_id": True,
    "signup_date": False,
    "country": False,
    "marketing_consent": False,
    "email": False,
}
REVIEW_COLUMNS = {
    "user_id": True,
    "item_id": True,
    "ts": True,
    "rating": True,
    "text": False,
    "review_id": False,
}


class ContractError(ValueError):
    """Input that breaks the contract; `problems` lists each one, fully described."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"input rejected, nothing was loaded ({len(problems)} problem(s)):\n{lines}")


@dataclass
class Checker:
    """Validates one file's frame and records problems phrased with the file's own row numbers.

    Attributes:
        source: the file name shown in messages.
        first_row: number of the first data row (2 for a CSV with a header line, 1 otherwise).
        row_word: "line" for text files, "row" for Parquet.
        max_rows: row numbers quoted per problem.
    """

    source: str
    first_row: int = 2
    row_word: str = "line"
    max_rows: int = 5
    problems: list[str] = field(default_factory=list)

    def fail(self, column: str | None, mask: np.ndarray, values: pd.Series, reason: str) -> None:
        """Record a problem for the rows where `mask` is true (no-op if none)."""
        positions = np.flatnonzero(mask)
        if positions.size == 0:
            return
        shown = positions[: self.max_rows]
        numbers = ", ".join(str(p + self.first_row) for p in shown)
        more = f" and {positions.size - shown.size} more" if positions.size > shown.size else ""
        examples = ", ".join(_shown(values.iloc[p]) for p in shown[:3])
        where = f"column '{column}'" if column else "rows"
        plural = "s" if positions.size > 1 else ""
        self.problems.append(
            f"{self.source}: {where}: {reason} at {self.row_word}{plural} {numbers}{more} (got {examples})"
        )

    def require_columns(self, frame: pd.DataFrame, columns: dict[str, bool]) -> bool:
        """Record missing required columns; True when all are present."""
        missing = [c for c, required in columns.items() if required and c not in frame.columns]
        for column in missing:
            found = ", ".join(map(str, frame.columns)) or "none"
            self.problems.append(
                f"{self.source}: missing required column '{column}' (columns found: {found})"
            )
        return not missing


def _shown(value: ScalarOrNA) -> str:
    return "an empty value" if pd.isna(value) else repr(str(value))


def _text(series: pd.Series) -> pd.Series:
    """Strings with surrounding blanks removed; missing values stay missing."""
    return series.astype("string").str.strip().replace({"": pd.NA})


def timestamps(
    check: Checker, frame: pd.DataFrame, column: str, unit: Literal["D", "s", "ms", "us", "ns"] | None = None
) -> pd.Series:
    raw = frame[column]
    if unit is not None:
        parsed = pd.to_datetime(pd.to_numeric(raw, errors="coerce"), unit=unit, errors="coerce")
    elif pd.api.types.is_datetime64_any_dtype(raw):
        parsed = raw
    else:
        text = _text(raw)
        # ISO 8601 parses vectorised; only what it rejects goes through the slow per-value parser.
        parsed = pd.to_datetime(text, errors="coerce", format="ISO8601", utc=True)
        retry = parsed.isna() & text.notna()
        if retry.any():
            parsed = parsed.where(
                ~retry, pd.to_datetime(text.where(retry), errors="coerce", format="mixed", utc=True)
            )
    if getattr(parsed.dt, "tz", None) is not None:  # aware -> UTC, then naive (the convention)
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    check.fail(column, (parsed.isna() & raw.notna()).to_numpy(), raw, "unparsable date/time")
    check.fail(column, raw.isna().to_numpy(), raw, "missing value")
    return parsed.astype("datetime64[us]")


def numbers(check: Checker, frame: pd.DataFrame, column: str, integer: bool, minimum: float) -> pd.Series:
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce")
    present = raw.notna() & (
        _text(raw).notna() if raw.dtype == object or pd.api.types.is_string_dtype(raw) else True
    )
    bad = present & values.isna()
    kind = "an integer" if integer else "a number"
    check.fail(column, bad.to_numpy(), raw, f"not {kind}")
    if integer:
        check.fail(column, (values.notna() & (values % 1 != 0)).to_numpy(), raw, "not an integer")
    check.fail(column, (values < minimum).fillna(False).to_numpy(), raw, f"must be >= {minimum:g}")
    return values


def _keys(check: Checker, frame: pd.DataFrame, column: str) -> pd.Series:
    values = _text(frame[column])
    check.fail(column, values.isna().to_numpy(), frame[column], "empty key")
    return values


def validate_events(check: Checker, frame: pd.DataFrame, default_event_type: str) -> pd.DataFrame:
    """Return the contract columns of an event log, normalised; problems go to `check`."""
    if not check.require_columns(frame, EVENT_COLUMNS):
        return pd.DataFrame()
    out = pd.DataFrame({"user_id": _keys(check, frame, "user_id"), "item_id": _keys(check, frame, "item_id")})
    out["ts"] = timestamps(check, frame, "ts")
    if "event_type" in frame:
        kind = _text(frame["event_type"]).str.lower()
        check.fail(
            "event_type",
            (~kind.isin(EVENT_TYPES) | kind.isna()).to_numpy(),
            frame["event_type"],
            f"unknown event type (allowed: {', '.join(EVENT_TYPES)})",
        )
        out["event_type"] = kind
    else:
        out["event_type"] = default_event_type
    out["quantity"] = numbers(check, frame, "quantity", True, 1).fillna(1) if "quantity" in frame else 1
    out["price"] = numbers(check, frame, "price", False, 0) if "price" in frame else np.nan
    out["order_id"] = _text(frame["order_id"]) if "order_id" in frame else pd.NA
    return out


def validate_products(check: Checker, frame: pd.DataFrame) -> pd.DataFrame:
    """Return normalised product records; problems go to `check`."""
    if not check.require_columns(frame, PRODUCT_COLUMNS):
        return pd.DataFrame()
    out = pd.DataFrame({"product_id": _keys(check, frame, "item_id")})
    _no_duplicate_keys(check, out, "product_id", "item_id")
    for column in ("category", "title", "description"):
        out[column] = _text(frame[column]) if column in frame else pd.NA
    out["price"] = numbers(check, frame, "price", False, 0) if "price" in frame else np.nan
    out["active"] = _booleans(check, frame, "active", default=True)
    return out


def validate_customers(check: Checker, frame: pd.DataFrame) -> pd.DataFrame:
    """Return normalised customer records; problems go to `check`."""
    if not check.require_columns(frame, CUSTOMER_COLUMNS):
        return pd.DataFrame()
    out = pd.DataFrame({"customer_id": _keys(check, frame, "user_id")})
    _no_duplicate_keys(check, out, "customer_id", "user_id")
    if "signup_date" in frame:
        present = frame["signup_date"].notna()
        parsed = pd.to_datetime(_text(frame["signup_date"]), errors="coerce", format="mixed")
        check.fail(
            "signup_date",
            (present & parsed.isna()).to_numpy(),
            frame["signup_date"],
            "unparsable date",
        )
        out["signup_date"] = parsed.dt.normalize()
    country = (
        _text(frame["country"]).str.upper() if "country" in frame else pd.Series(pd.NA, index=frame.index)
    )
    check.fail(
        "country",
        (country.notna() & (country.str.len() != 2)).to_numpy(),
        frame.get("country", country),
        "not a two-letter ISO country code",
    )
    out["country"] = country
    out["marketing_consent"] = _booleans(check, frame, "marketing_consent", default=False)
    out["email"] = _text(frame["email"]) if "email" in frame else pd.NA
    return out


def validate_reviews(check: Checker, frame: pd.DataFrame) -> pd.DataFrame:
    """Return normalised reviews; problems go to `check`."""
    if not check.require_columns(frame, REVIEW_COLUMNS):
        return pd.DataFrame()
    out = pd.DataFrame(
        {
            "customer_id": _keys(check, frame, "user_id"),
            "product_id": _keys(check, frame, "item_id"),
        }
    )
    out["ts"] = timestamps(check, frame, "ts")
    rating = numbers(check, frame, "rating", True, 1)
    check.fail("rating", (rating > 5).fillna(False).to_numpy(), frame["rating"], "must be between 1 and 5")
    check.fail("rating", frame["rating"].isna().to_numpy(), frame["rating"], "missing value")
    out["rating"] = rating
    out["text"] = _text(frame["text"]) if "text" in frame else pd.NA
    if "review_id" in frame:
        out["review_id"] = _keys(check, frame, "review_id")
        _no_duplicate_keys(check, out, "review_id", "review_id")
    return out


def _booleans(check: Checker, frame: pd.DataFrame, column: str, default: bool) -> pd.Series:
    if column not in frame:
        return pd.Series(default, index=frame.index, dtype=bool)
    raw = frame[column]
    if pd.api.types.is_bool_dtype(raw):
        return raw.fillna(default).astype(bool)
    words = _text(raw).str.lower()
    values = words.map(BOOLEAN_WORDS.get, na_action="ignore")
    check.fail(
        column,
        (words.notna() & values.isna()).to_numpy(),
        raw,
        "not a boolean (use true/false, yes/no or 1/0)",
    )
    return values.fillna(default).astype(bool)


def _no_duplicate_keys(check: Checker, out: pd.DataFrame, key: str, column: str) -> None:
    duplicated = out[key].duplicated(keep=False) & out[key].notna()
    check.fail(column, duplicated.to_numpy(), out[key], "duplicate key")


def plain_events(records: list[dict[str, object]], default_event_type: str) -> list[dict[str, object]] | None:
    """The normalised events of records that plainly keep the contract, without pandas; None otherwise.

    The fast path of small requests (`POST /events`), row by row: it accepts only what
    `validate_events` accepts and normalises it the same way (keys and texts stripped, event types
    lower-cased, ISO 8601 times to naive UTC, quantity 1 and price None by default). Anything else
    (an unknown field, a time that is not plain ISO 8601, a value out of range) gives None, and the
    caller runs `validate_events`, which says what is wrong: the rules have one implementation.

    Args:
        records: events as field -> value (JSON types).
        default_event_type: the event type of a record without one.

    Returns:
        customer_id, product_id, ts, event_type, quantity, price, order_id per record, or None.
    """
    typed = sum(record.get("event_type") is not None for record in records)
    if 0 < typed < len(records):  # as a column, a missing event type is an empty value: a problem
        return None
    out: list[dict[str, object]] = []
    for record in records:
        if not set(record) <= EVENT_COLUMNS.keys():
            return None
        user, item, ts = (
            _plain_text(record.get("user_id")),
            _plain_text(record.get("item_id")),
            record.get("ts"),
        )
        order = record.get("order_id")
        kind = record.get("event_type")
        kind = default_event_type if kind is None else _plain_text(kind)
        quantity, price = record.get("quantity"), record.get("price")
        when = _plain_time(ts)
        if user is None or item is None or when is None or (order is not None and _plain_text(order) is None):
            return None
        if not isinstance(kind, str) or kind.lower() not in EVENT_TYPES:
            return None
        if quantity is not None and (
            isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1
        ):
            return None
        if price is not None and (
            isinstance(price, bool)
            or not isinstance(price, int | float)
            or not math.isfinite(price)
            or price < 0
        ):
            return None
        out.append(
            {
                "customer_id": user,
                "product_id": item,
                "ts": when,
                "event_type": kind.lower(),
                "quantity": 1 if quantity is None else quantity,
                "price": None if price is None else float(price),
                "order_id": None if order is None else _plain_text(order),
            }
        )
    return out


def _plain_text(value: object) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip()


def _plain_time(value: object) -> datetime | None:
    """An ISO 8601 text as naive UTC (microseconds), or None when it is anything else."""
    text = value.strip() if isinstance(value, str) else ""
    # calendar dates only (YYYY-MM-DD...): the ISO forms the contract's parser reads the same way
    if len(text) < 10 or not (text[:4].isdigit() and text[4] == "-" and text[7] == "-"):
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed
