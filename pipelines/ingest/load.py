"""Validate input files completely, then store them in one transaction, or store nothing.

Every row gets a key derived from its content, so loading the same file again (or an overlapping
one) adds nothing; each attempt, accepted or rejected, is recorded in the platform load log.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd
from sqlalchemy import Engine

from pipelines.ingest import readers
from retention.clock import utc_now
from retention.contract import (
    EVENT_COLUMNS,
    Checker,
    ContractError,
    validate_customers,
    validate_events,
    validate_products,
    validate_reviews,
)
from retention.db.shop import ShopBatch, record_load, write_shop_batch
from retention.params import IngestParams

log = logging.getLogger(__name__)

Format = Literal["contract", "cdnow", "movielens"]
FORMATS: dict[str, Format] = {"contract": "contract", "cdnow": "cdnow", "movielens": "movielens"}  # by name
SEPARATOR = "\x1f"  # between fields of a row when deriving its key


class IngestError(ValueError):
    """The request itself is wrong (missing file, bad --map, option not valid for the format)."""


@dataclass(frozen=True)
class IngestRequest:
    """What to load.

    Attributes:
        events: the event log (required).
        products, customers, reviews: optional side files in the contract's schema
            (for `movielens`, `products` may be the original `ml-100k.item`).
        format: "contract" (CSV/Parquet in the EVALUATION.md schema), "cdnow" or "movielens".
        mapping: contract column -> the files' column name, for contract files.
    """

    events: Path
    products: Path | None = None
    customers: Path | None = None
    reviews: Path | None = None
    format: Format = "contract"
    mapping: dict[str, str] = field(default_factory=dict)

    def files(self) -> list[Path]:
        return [p for p in (self.events, self.products, self.customers, self.reviews) if p is not None]


@dataclass(frozen=True)
class IngestResult:
    """Outcome of a load: its id in the load log, rows read, and rows newly stored per table."""

    load_id: int
    rows_read: int
    inserted: dict[str, int]


def parse_mapping(text: str | None) -> dict[str, str]:
    """Parse `user_id=CustomerID,ts=InvoiceDate` into {contract name: file column}."""
    if not text:
        return {}
    known = set(EVENT_COLUMNS) | {
        "signup_date",
        "country",
        "marketing_consent",
        "email",
        "category",
        "title",
        "description",
        "active",
        "rating",
        "text",
        "review_id",
    }
    mapping = {}
    for part in text.split(","):
        name, sep, column = (s.strip() for s in part.partition("="))
        if not sep or not name or not column:
            raise IngestError(f"--map: '{part}' is not of the form contract_column=file_column")
        if name not in known:
            raise IngestError(f"--map: unknown contract column '{name}' (known: {', '.join(sorted(known))})")
        mapping[name] = column
    return mapping


def ingest(engine: Engine, request: IngestRequest, params: IngestParams) -> IngestResult:
    """Validate and load the files of `request` into the shop tables.

    Args:
        engine: the source database (migrated).
        request: files, their format and column mapping.
        params: ingest parameters from params.yaml.

    Returns:
        The load's id and counts; a re-run of the same files inserts nothing.

    Raises:
        IngestError: a file is missing or an option does not fit the format.
        ContractError: the files break the contract; nothing was stored.
    """
    started = utc_now()
    missing = [str(p) for p in request.files() if not p.is_file()]
    if missing:
        raise IngestError(f"file not found: {', '.join(missing)}")
    if request.format != "contract" and (request.mapping or request.customers or request.reviews):
        raise IngestError(
            f"--map, --customers and --reviews apply to contract files, not --format {request.format}"
        )
    if request.format == "cdnow" and request.products:
        raise IngestError("CDNOW has no product file: it holds order totals only")
    content_hash = _content_hash(request)
    source = ", ".join(p.name for p in request.files())

    problems: list[str] = []
    batch, rows_read = _read_and_validate(request, params, problems)
    if problems:
        with engine.begin() as connection:
            record_load(
                connection,
                kind="ingest",
                source=source,
                content_hash=content_hash,
                status="rejected",
                started_at=started,
                rows_read=0,
                rows_inserted=0,
                detail={"problems": problems},
            )
        raise ContractError(problems)

    log.info("validated %s: %s rows; writing", source, f"{rows_read:,}")
    with engine.begin() as connection:
        inserted = write_shop_batch(connection, batch, utc_now())
        load_id = record_load(
            connection,
            kind="ingest",
            source=source,
            content_hash=content_hash,
            status="loaded",
            started_at=started,
            rows_read=rows_read,
            rows_inserted=sum(inserted.values()),
            detail={"inserted": inserted, "format": request.format},
        )
    return IngestResult(load_id=load_id, rows_read=rows_read, inserted=inserted)


def _read_and_validate(
    request: IngestRequest, params: IngestParams, problems: list[str]
) -> tuple[ShopBatch, int]:
    max_rows = params.max_reported_rows
    event_check = readers.checker_for(request.events, max_rows)
    checks = [event_check]
    products = customers = reviews = pd.DataFrame()

    if request.format == "cdnow":
        events = validate_events(
            event_check,
            readers.read_cdnow(request.events, event_check, params.placeholder_item),
            params.default_event_type,
        )
    elif request.format == "movielens":
        raw_events, raw_reviews = readers.read_movielens(request.events, event_check)
        events = (
            validate_events(event_check, raw_events, params.default_event_type)
            if len(raw_events.columns)
            else raw_events
        )
        reviews = validate_reviews(event_check, raw_reviews) if len(raw_reviews.columns) else raw_reviews
        if request.products:
            check = readers.checker_for(request.products, max_rows)
            checks.append(check)
            products = validate_products(check, readers.read_movielens_items(request.products, check))
    else:
        raw = readers.read_contract_file(request.events, request.mapping, event_check, required=True)
        events = (
            validate_events(event_check, raw, params.default_event_type) if not event_check.problems else raw
        )
        side = {}
        for name, path, validate in (
            ("products", request.products, validate_products),
            ("customers", request.customers, validate_customers),
            ("reviews", request.reviews, validate_reviews),
        ):
            if path is not None:
                check = readers.checker_for(path, max_rows)
                checks.append(check)
                frame = readers.read_contract_file(path, request.mapping, check, required=False)
                side[name] = validate(check, frame) if not check.problems else frame
        products = side.get("products", products)
        customers = side.get("customers", customers)
        reviews = side.get("reviews", reviews)

    for check in checks:
        problems.extend(check.problems)
    if problems:
        return ShopBatch(), 0
    event_rows = _event_rows(events)
    orders = _orders(event_rows, event_check)
    if event_check.problems:  # an order_id shared by several users
        problems.extend(event_check.problems)
        return ShopBatch(), 0
    review_rows = _review_rows(reviews)
    rows_read = len(events) + len(products) + len(customers) + len(reviews)
    batch = ShopBatch(
        customers=customers,
        products=products,
        customer_stubs=_referenced(event_rows, review_rows, customers, "customer_id"),
        product_stubs=_referenced(event_rows, review_rows, products, "product_id"),
        orders=orders,
        events=event_rows,
        reviews=review_rows,
    )
    return batch, rows_read


def _referenced(events: pd.DataFrame, reviews: pd.DataFrame, records: pd.DataFrame, key: str) -> pd.Index:
    """Ids that events or reviews reference but the batch has no full record for."""
    frames = [f[key] for f in (events, reviews) if key in f]
    used = pd.Index(pd.concat(frames).unique())
    return used.difference(pd.Index(records[key]) if key in records else pd.Index([]))


def _row_keys(prefix: str, frame: pd.DataFrame, columns: list[str]) -> list[str]:
    """Content-derived keys; identical rows are told apart by their occurrence number."""
    text = frame[columns].astype("string").fillna("")
    occurrence = frame.groupby(columns, dropna=False).cumcount().astype(str)
    others = [text[c] for c in columns[1:]] + [occurrence]
    # pandas-stubs type `others` without the list of Series that pandas documents and accepts.
    joined = text[columns[0]].str.cat(others, sep=SEPARATOR)  # type: ignore[arg-type]
    return [prefix + hashlib.blake2b(s.encode(), digest_size=16).hexdigest() for s in joined]


def _event_rows(events: pd.DataFrame) -> pd.DataFrame:
    rows = events.rename(columns={"user_id": "customer_id", "item_id": "product_id"})
    rows["ts"] = rows["ts"].astype("datetime64[us]")
    rows["quantity"] = rows["quantity"].astype("int64")
    key_columns = ["customer_id", "product_id", "ts", "event_type", "quantity", "price", "order_id"]
    rows.insert(0, "event_id", _row_keys("ev-", rows, key_columns))
    return rows


def _orders(events: pd.DataFrame, check: Checker) -> pd.DataFrame:
    """One order per order_id of the purchase rows; an order must belong to one customer."""
    lines = events[(events["event_type"] == "purchase") & events["order_id"].notna()]
    if lines.empty:
        return pd.DataFrame()
    owners = lines.groupby("order_id")["customer_id"].nunique()
    shared = owners[owners > 1].index
    if len(shared):
        mask = events["order_id"].isin(shared).to_numpy()
        check.fail("order_id", mask, events["order_id"], "one order_id used by several users")
    amount = lines["quantity"] * lines["price"]
    grouped = lines.assign(amount=amount).groupby("order_id", sort=False)
    return pd.DataFrame(
        {
            "customer_id": grouped["customer_id"].first(),
            "ts": grouped["ts"].max(),
            "n_items": grouped["quantity"].sum().astype("int64"),
            "total_amount": grouped["amount"]
            .sum(min_count=1)
            .where(grouped["price"].count() == grouped.size())
            .round(2),
        }
    ).reset_index()


def _review_rows(reviews: pd.DataFrame) -> pd.DataFrame:
    if reviews.empty:
        return pd.DataFrame()
    rows = reviews.rename(columns={"user_id": "customer_id", "item_id": "product_id"})
    rows["rating"] = pd.to_numeric(rows["rating"]).astype("int64")
    if "review_id" not in rows:
        rows.insert(
            0,
            "review_id",
            _row_keys("rv-", rows, ["customer_id", "product_id", "ts", "rating", "text"]),
        )
    return rows


def _content_hash(request: IngestRequest) -> str:
    digest = hashlib.sha256(
        json.dumps({"format": request.format, "mapping": request.mapping}, sort_keys=True).encode()
    )
    for path in request.files():
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
