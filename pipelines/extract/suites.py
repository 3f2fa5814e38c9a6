"""The extraction batch's Great Expectations suites, one per shop table, generated from the table models.

Columns, types and non-null keys come from the SQLAlchemy models, so a schema change updates the
suites. Every threshold is a `$PARAMETER` filled at validation time from `params.yaml` and the data
interval (see `suite_parameters`), so the committed suites hold no tunable number.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

import great_expectations.expectations as gxe
from great_expectations.expectations.metadata_types import FailureSeverity
from great_expectations.expectations.row_conditions import Column
from sqlalchemy import Boolean, Date, DateTime, Float, Integer, String, Text

from retention.clock import utc_now
from retention.contract import (
    COUNTRY_CODES,
    EMAIL,
    EMAIL_MAX_CHARS,
    EVENT_TYPES,
    FORMULA_START,
    ID_MAX_CHARS,
    INVISIBLE,
    TEXT_CONTROL,
)
from retention.db.warehouse import FACT_TIME, SHOP_MODELS, extracted_columns
from retention.params import ExtractParams

SUITE_PREFIX = "extract"
RATING_RANGE = (1, 5)  # the schema's CHECK constraint on reviews.rating
VALUE_SET_COLUMNS = {"event_type", "country"}  # checked against their allowed values instead
# Which reference each fact table's foreign keys must resolve to: column -> referenced table.
REFERENCES = {
    "events": {"customer_id": "customers", "product_id": "products"},
    "orders": {"customer_id": "customers"},
    "reviews": {"customer_id": "customers", "product_id": "products"},
}


def suite_name(table: str) -> str:
    """Name of the suite that validates `table`'s batch, e.g. "extract.events"."""
    return f"{SUITE_PREFIX}.{table}"


def known_flag(column: str) -> str:
    """Name of the derived column that says whether `column`'s key resolves (e.g. customer_known)."""
    return column.removesuffix("_id") + "_known"


def pandas_type(sql_type: Any) -> str:
    """The pandas dtype name a column of this SQL type has in an extracted batch."""
    for kind, name in ((Boolean, "bool"), (Integer, "int64"), (Float, "float64"), (DateTime, "datetime64")):
        if isinstance(sql_type, kind):
            return name
    if isinstance(sql_type, Date):
        return "datetime64"
    if isinstance(sql_type, (String, Text)):
        return "str"
    raise TypeError(f"no pandas type for {sql_type!r}")


def _param(name: str) -> dict[str, str]:
    return {"$PARAMETER": name}


def _schema(table: str) -> list[Any]:
    """Required columns, their types, non-null columns and a unique non-null key."""
    model = SHOP_MODELS[table]
    expectations: list[Any] = []
    for column in model.__table__.columns:
        if column.name not in extracted_columns(table):  # contact details are never extracted
            continue
        expectations.append(gxe.ExpectColumnToExist(column=column.name))
        expectations.append(
            gxe.ExpectColumnValuesToBeOfType(column=column.name, type_=pandas_type(column.type))
        )
        if not column.nullable:
            expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=column.name))
        if column.primary_key:
            expectations.append(gxe.ExpectColumnValuesToBeUnique(column=column.name))
    return expectations


def _facts(table: str) -> list[Any]:
    """Timestamps inside the interval plus lateness, and keys that resolve to known rows."""
    expectations: list[Any] = [
        gxe.ExpectColumnValuesToBeBetween(
            column=FACT_TIME[table],
            min_value=_param("window_start"),
            max_value=_param("window_end"),
            strict_max=True,
        )
    ]
    for column in REFERENCES[table]:
        expectations.append(gxe.ExpectColumnValuesToBeInSet(column=known_flag(column), value_set=[True]))
    return expectations


def _contract(table: str) -> list[Any]:
    """The ingest contract's value rules (`retention.contract`) on the extracted columns of `table`.

    Rows written into the shop tables around `retention ingest` (another application, a manual
    fix) meet the same rules here: ids of at most 64 characters with nothing invisible and no
    spreadsheet formula, free text of bounded size without control characters, and e-mail
    addresses that are addresses where the batch carries them.
    """
    expectations: list[Any] = []
    kept = extracted_columns(table)
    for column in SHOP_MODELS[table].__table__.columns:
        name, kind = column.name, column.type
        if name not in kept or not isinstance(kind, String | Text) or name in VALUE_SET_COLUMNS:
            continue
        if name.endswith("_id"):
            expectations += [
                gxe.ExpectColumnValueLengthsToBeBetween(column=name, max_value=ID_MAX_CHARS),
                gxe.ExpectColumnValuesToNotMatchRegex(column=name, regex=INVISIBLE),
                gxe.ExpectColumnValuesToNotMatchRegex(column=name, regex=FORMULA_START),
            ]
        elif name == "email":
            expectations += [
                gxe.ExpectColumnValuesToMatchRegex(column=name, regex=EMAIL),
                gxe.ExpectColumnValueLengthsToBeBetween(column=name, max_value=EMAIL_MAX_CHARS),
                gxe.ExpectColumnValuesToNotMatchRegex(column=name, regex=FORMULA_START),
            ]
        else:  # free text: a String's own length, or the configured size of a Text
            limit = kind.length if isinstance(kind, String) and kind.length else _param("max_text_chars")
            expectations += [
                gxe.ExpectColumnValueLengthsToBeBetween(column=name, max_value=limit),
                gxe.ExpectColumnValuesToNotMatchRegex(column=name, regex=TEXT_CONTROL),
            ]
    return expectations


WARNING = FailureSeverity.WARNING  # GX would coerce the string "warning"; its signature wants the enum


def build_suites() -> dict[str, list[Any]]:
    """Every extraction suite by name; critical unless marked `severity=WARNING`."""
    events = [
        *_schema("events"),
        *_facts("events"),
        *_contract("events"),
        gxe.ExpectColumnValuesToBeInSet(column="event_type", value_set=list(EVENT_TYPES)),
        gxe.ExpectColumnValuesToBeBetween(column="quantity", min_value=1, max_value=_param("quantity_max")),
        gxe.ExpectColumnValuesToBeBetween(column="price", min_value=0, max_value=_param("price_max")),
        gxe.ExpectTableRowCountToBeBetween(min_value=_param("events_min"), max_value=_param("events_max")),
        gxe.ExpectColumnProportionOfNonNullValuesToBeBetween(
            column="price", min_value=_param("price_non_null_min"), severity=WARNING
        ),
        gxe.ExpectColumnProportionOfNonNullValuesToBeBetween(
            column="order_id",
            min_value=_param("order_id_non_null_min"),
            row_condition=Column("event_type") == "purchase",
            severity=WARNING,
        ),
    ]
    orders = [
        *_schema("orders"),
        *_facts("orders"),
        *_contract("orders"),
        gxe.ExpectColumnValuesToBeBetween(column="n_items", min_value=1),
        # an upper bound also refuses an infinite total (SQLite and PostgreSQL both store one)
        gxe.ExpectColumnValuesToBeBetween(column="total_amount", min_value=0, max_value=_param("price_max")),
    ]
    reviews = [
        *_schema("reviews"),
        *_facts("reviews"),
        *_contract("reviews"),
        gxe.ExpectColumnValuesToBeBetween(
            column="rating", min_value=RATING_RANGE[0], max_value=RATING_RANGE[1]
        ),
        gxe.ExpectColumnProportionOfNonNullValuesToBeBetween(
            column="text", min_value=_param("review_text_non_null_min"), severity=WARNING
        ),
    ]
    customers = [
        *_schema("customers"),
        *_contract("customers"),
        gxe.ExpectColumnValuesToBeInSet(column="country", value_set=sorted(COUNTRY_CODES)),
        gxe.ExpectColumnValuesToBeBetween(
            column="signup_date", min_value=_param("earliest_date"), max_value=_param("latest_date")
        ),
    ]
    products = [
        *_schema("products"),
        *_contract("products"),
        gxe.ExpectColumnValuesToBeBetween(column="price", min_value=0, max_value=_param("price_max")),
    ]
    tables = {
        "customers": customers,
        "products": products,
        "orders": orders,
        "events": events,
        "reviews": reviews,
    }
    return {suite_name(table): expectations for table, expectations in tables.items()}


def suite_parameters(
    params: ExtractParams,
    window_start: datetime,
    window_end: datetime,
    events_band: tuple[float, float | None],
) -> dict[str, Any]:
    """Values of the suites' `$PARAMETER`s for one batch.

    Args:
        params: the `extract` section of params.yaml.
        window_start: earliest allowed fact timestamp (interval start minus lateness).
        window_end: the interval's end (exclusive).
        events_band: allowed event rows in the batch (from the trailing median); no maximum when None.
    """
    shares, plausible = params.max_null_share, params.plausible
    return {
        "earliest_date": datetime.combine(plausible.earliest_date, time()),
        # as at ingest: not after now (+ slack); customer records are current, not of the interval
        "latest_date": max(window_end, utc_now()) + timedelta(days=plausible.future_days),
        "max_text_chars": plausible.max_text_chars,
        "window_start": window_start,
        "window_end": window_end,
        "price_max": params.price_max,
        "quantity_max": params.quantity_max,
        "events_min": events_band[0],
        "events_max": events_band[1],
        "price_non_null_min": 1 - shares.price,
        "order_id_non_null_min": 1 - shares.order_id,
        "review_text_non_null_min": 1 - shares.review_text,
    }
