"""The event-data contract (shared/docs/EVALUATION.md) and validation of files against it.

Validation collects every problem of a file before failing, and each problem names the file,
the column, the offending row numbers and the reason, so one run tells the user all to fix.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from sqlalchemy import Column, String

from retention.db.models import Customer, Event, Product

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


def _max_chars(column: Column[str] | Column[str | None]) -> int:
    """The length limit of a String column: the schema says what fits."""
    length = column.type.length if isinstance(column.type, String) else None
    assert length is not None, f"{column} has no length"
    return length


ID_MAX_CHARS = _max_chars(Event.__table__.c.event_id)  # every id column; the API refuses longer ids too
CATEGORY_MAX_CHARS = _max_chars(Product.__table__.c.category)
TITLE_MAX_CHARS = _max_chars(Product.__table__.c.title)
EMAIL_MAX_CHARS = _max_chars(Customer.__table__.c.email)
INTEGER_MAX = 2**31 - 1  # the schema's INTEGER columns (quantity, rating)
# Characters no id may hold: Unicode control (Cc), format and zero-width (Cf), line and paragraph
# separators (Zl, Zp); two ids differing only by one look the same to a person. Written as literal
# characters so that Python's `re` and pyarrow's RE2 (pandas' string columns) read the class alike.
_INVISIBLE_RANGES = (
    (0x00, 0x1F), (0x7F, 0x9F), (0xAD, 0xAD), (0x600, 0x605), (0x61C, 0x61C), (0x6DD, 0x6DD),
    (0x70F, 0x70F), (0x890, 0x891), (0x8E2, 0x8E2), (0x180E, 0x180E), (0x200B, 0x200F),
    (0x2028, 0x202E), (0x2060, 0x2064), (0x2066, 0x206F), (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD), (0x110CD, 0x110CD), (0x13430, 0x1343F), (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A), (0xE0001, 0xE0001), (0xE0020, 0xE007F),
)  # fmt: skip
INVISIBLE = "[" + "".join(chr(a) if a == b else f"{chr(a)}-{chr(b)}" for a, b in _INVISIBLE_RANGES) + "]"
# Free text keeps tabs and line breaks but no other control character (PostgreSQL refuses NUL).
TEXT_CONTROL = "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
FORMULA_START = "^[=+@-]"  # a spreadsheet runs a cell starting with one of these (CSV injection)
# The WHATWG "valid e-mail address" (HTML's <input type=email>), with a dotted domain required.
_LABEL = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL = f"^[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]+@{_LABEL}(?:\\.{_LABEL})+$"
# ISO 3166-1 alpha-2: the officially assigned codes
_COUNTRIES = """AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS
    BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG
    EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR
    HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR
    LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG
    NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE
    SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA
    UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW"""
COUNTRY_CODES = frozenset(_COUNTRIES.split())
_INVISIBLE_RE = re.compile(INVISIBLE)
_FORMULA_RE = re.compile(FORMULA_START)


class ContractError(ValueError):
    """Input that breaks the contract; `problems` lists each one, fully described."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"input rejected, nothing was loaded ({len(problems)} problem(s)):\n{lines}")


@dataclass(frozen=True)
class Limits:
    """What the contract accepts as plausible (params.yaml `ingest.plausible`).

    Attributes:
        earliest: the earliest date/time accepted (naive UTC).
        latest: the latest date/time accepted (naive UTC): now plus a little slack.
        max_text_chars: the longest free text (product description, review text).
    """

    earliest: datetime
    latest: datetime
    max_text_chars: int

    def range_text(self) -> str:
        return f"allowed {self.earliest:%Y-%m-%d} to {self.latest:%Y-%m-%d %H:%M} UTC"


@dataclass
class Checker:
    """Validates one file's frame and records problems phrased with the file's own row numbers.

    Attributes:
        source: the file name shown in messages.
        first_row: number of the first data row (2 for a CSV with a header line, 1 otherwise).
        row_word: "line" for text files, "row" for Parquet.
        max_rows: row numbers quoted per problem.
        limits: plausible dates and text sizes.
    """

    source: str
    first_row: int = 2
    row_word: str = "line"
    max_rows: int = 5
    problems: list[str] = field(default_factory=list)
    limits: Limits = field(kw_only=True)

    def fail(
        self, column: str | None, mask: np.ndarray, values: pd.Series, reason: str, show: bool = True
    ) -> None:
        """Record a problem for the rows where `mask` is true (no-op if none).

        `show=False` leaves the values out of the message (personal data such as e-mail addresses
        must not reach logs or the load log).
        """
        positions = np.flatnonzero(mask)
        if positions.size == 0:
            return
        shown = positions[: self.max_rows]
        numbers = ", ".join(str(p + self.first_row) for p in shown)
        more = f" and {positions.size - shown.size} more" if positions.size > shown.size else ""
        examples = ", ".join(_shown(values.iloc[p]) for p in shown[:3]) if show else "values not shown"
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


SHOWN_CHARS = 40  # a quoted value is cut here: a 5 MB field must not make a 5 MB message


def _shown(value: ScalarOrNA) -> str:
    if pd.isna(value):
        return "an empty value"
    text = str(value)
    if len(text) <= SHOWN_CHARS:
        return repr(text)
    return f"{text[:SHOWN_CHARS]!r}... ({len(text):,} characters)"


def _text(series: pd.Series) -> pd.Series:
    """Strings with surrounding blanks removed; missing values stay missing."""
    return series.astype("string").str.strip().replace({"": pd.NA})


def _flag(mask: pd.Series) -> np.ndarray:
    """A boolean mask of a nullable result: missing means "no problem here"."""
    return mask.fillna(False).to_numpy(dtype=bool)


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
    _plausible_dates(check, column, parsed, raw)
    return parsed.astype("datetime64[us]")


def _plausible_dates(check: Checker, column: str, parsed: pd.Series, raw: pd.Series) -> None:
    limits = check.limits
    outside = (parsed < limits.earliest) | (parsed > limits.latest)
    check.fail(column, _flag(outside), raw, f"implausible date ({limits.range_text()})")


def numbers(check: Checker, frame: pd.DataFrame, column: str, integer: bool, minimum: float) -> pd.Series:
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce")
    present = raw.notna() & (
        _text(raw).notna() if raw.dtype == object or pd.api.types.is_string_dtype(raw) else True
    )
    bad = present & values.isna()
    kind = "an integer" if integer else "a number"
    check.fail(column, bad.to_numpy(), raw, f"not {kind}")
    infinite = values.abs() == np.inf  # "inf", "1e309": finite numbers only
    check.fail(column, _flag(infinite), raw, "not a finite number")
    if integer:
        check.fail(column, _flag(values.notna() & ~infinite & (values % 1 != 0)), raw, "not an integer")
        check.fail(column, _flag(~infinite & (values > INTEGER_MAX)), raw, f"must be <= {INTEGER_MAX}")
    check.fail(column, _flag(values < minimum), raw, f"must be >= {minimum:g}")
    return values


def _keys(check: Checker, frame: pd.DataFrame, column: str) -> pd.Series:
    values = _ids(check, frame, column)
    check.fail(column, values.isna().to_numpy(), frame[column], "empty key")
    return values


def _ids(check: Checker, frame: pd.DataFrame, column: str) -> pd.Series:
    """An id column, stripped: at most ID_MAX_CHARS, Unicode NFC, nothing invisible, no formula."""
    raw = frame[column]
    values = _text(raw)
    check.fail(
        column, _flag(values.str.len() > ID_MAX_CHARS), raw, f"id longer than {ID_MAX_CHARS} characters"
    )
    invisible = values.str.contains(INVISIBLE, regex=True)
    check.fail(column, _flag(invisible), raw, "id holds a control or zero-width character")
    check.fail(
        column,
        _flag(values.str.contains(FORMULA_START, regex=True)),
        raw,
        "id starts with =, +, - or @ (a spreadsheet would run it as a formula)",
    )
    # Only non-ASCII values can be unnormalised; NFC of the rest would cost time for nothing.
    wide = values.str.contains("[^\\x00-\\x7f]", regex=True).fillna(False)
    if wide.any():
        unnormalised = values.where(wide).str.normalize("NFC") != values.where(wide)
        check.fail(column, _flag(unnormalised & ~invisible), raw, "id not in Unicode NFC form")
    return values


def _free_text(check: Checker, frame: pd.DataFrame, column: str, max_chars: int) -> pd.Series:
    """A text column, stripped: at most `max_chars`, no control character but tabs and line breaks."""
    raw = frame[column]
    values = _text(raw)
    check.fail(column, _flag(values.str.len() > max_chars), raw, f"longer than {max_chars:,} characters")
    check.fail(column, _flag(values.str.contains(TEXT_CONTROL, regex=True)), raw, "holds a control character")
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
    out["order_id"] = _ids(check, frame, "order_id") if "order_id" in frame else pd.NA
    return out


def validate_products(check: Checker, frame: pd.DataFrame) -> pd.DataFrame:
    """Return normalised product records; problems go to `check`."""
    if not check.require_columns(frame, PRODUCT_COLUMNS):
        return pd.DataFrame()
    out = pd.DataFrame({"product_id": _keys(check, frame, "item_id")})
    _no_duplicate_keys(check, out, "product_id", "item_id")
    sizes = {
        "category": CATEGORY_MAX_CHARS,
        "title": TITLE_MAX_CHARS,
        "description": check.limits.max_text_chars,
    }
    for column, max_chars in sizes.items():
        out[column] = _free_text(check, frame, column, max_chars) if column in frame else pd.NA
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
        _plausible_dates(check, "signup_date", parsed, frame["signup_date"])
        out["signup_date"] = parsed.dt.normalize()
    country = (
        _text(frame["country"]).str.upper() if "country" in frame else pd.Series(pd.NA, index=frame.index)
    )
    check.fail(
        "country",
        _flag(country.notna() & ~country.isin(COUNTRY_CODES)),
        frame.get("country", country),
        "not an ISO 3166-1 two-letter country code",
    )
    out["country"] = country
    out["marketing_consent"] = _booleans(check, frame, "marketing_consent", default=False)
    out["email"] = _emails(check, frame) if "email" in frame else pd.NA
    return out


def _emails(check: Checker, frame: pd.DataFrame) -> pd.Series:
    """E-mail addresses, checked without quoting them: an address is personal data."""
    values = _text(frame["email"])
    invalid = (
        ~values.str.fullmatch(EMAIL)
        | (values.str.len() > EMAIL_MAX_CHARS)
        | values.str.contains(FORMULA_START, regex=True)
    )
    check.fail("email", _flag(invalid), frame["email"], "not a valid e-mail address", show=False)
    return values


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
    out["text"] = _free_text(check, frame, "text", check.limits.max_text_chars) if "text" in frame else pd.NA
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


def plain_events(
    records: list[dict[str, object]], default_event_type: str, limits: Limits
) -> list[dict[str, object]] | None:
    """The normalised events of records that plainly keep the contract, without pandas; None otherwise.

    The fast path of small requests (`POST /events`), row by row: it accepts only what
    `validate_events` accepts and normalises it the same way (keys and texts stripped, event types
    lower-cased, ISO 8601 times to naive UTC, quantity 1 and price None by default). Anything else
    (an unknown field, a time that is not plain ISO 8601, a value out of range) gives None, and the
    caller runs `validate_events`, which says what is wrong: the rules have one implementation.

    Args:
        records: events as field -> value (JSON types).
        default_event_type: the event type of a record without one.
        limits: plausible dates.

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
        if not (_plain_id(user) and _plain_id(item) and (order is None or _plain_id(_plain_text(order)))):
            return None
        if when is None or not limits.earliest <= when <= limits.latest:
            return None
        if not isinstance(kind, str) or kind.lower() not in EVENT_TYPES:
            return None
        if quantity is not None and (
            isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= INTEGER_MAX
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


def _plain_id(value: str | None) -> bool:
    """Whether an id keeps the rules `_ids` checks column-wise."""
    return (
        value is not None
        and len(value) <= ID_MAX_CHARS
        and not _INVISIBLE_RE.search(value)
        and not _FORMULA_RE.search(value)
        and unicodedata.is_normalized("NFC", value)
    )


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
