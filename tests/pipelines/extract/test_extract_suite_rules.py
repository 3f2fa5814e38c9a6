"""The ingest contract's rules in the extraction suites (issue 17): rows written straight into the shop
tables, around `retention ingest`, are caught by the batch's validation and quarantined."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.exc import DBAPIError

from pipelines.extract import BatchRejected, Interval, extract, publish, validate
from pipelines.simulate import simulate
from retention.clock import utc_now
from retention.db import create_db_engine, upgrade
from retention.db.models import Customer, Event, Order, Product, Review
from retention.db.scratch import private_schema
from retention.params import load_params
from retention.quality import QualityService
from tests.conftest import POSTGRES_URL, ROOT

pytestmark = pytest.mark.slow  # an extraction and GX validation per case on both backends (about 90 s)

PARAMS = load_params(ROOT / "params.yaml")
EXTRACT = PARAMS.extract.model_copy(update={"volume_min_history": 2, "volume_window": 3})
START = datetime.combine(PARAMS.simulate.start, datetime.min.time())
CHECKED = Interval(START + timedelta(days=3), START + timedelta(days=4))  # the day the bad rows land in
WHEN = CHECKED.start + timedelta(hours=5)
Rows = dict[type, list[dict]]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shop(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A small simulated shop whose first three days are published."""
    home = tmp_path_factory.mktemp(f"suite-rules-{request.param}")
    sqlite_url = f"sqlite:///{home / 'retention.db'}"
    with (
        private_schema(POSTGRES_URL, prefix="test")
        if request.param == "postgresql"
        else _same(sqlite_url) as url
    ):
        upgrade(url)
        engine = create_db_engine(url)
        simulate(
            engine,
            home / "simulator",
            PARAMS.simulate.model_copy(update={"customers": 200, "products": 60}),
            days=5,
        )
        quality = QualityService(home / "gx")
        for n in range(3):
            interval = Interval(START + timedelta(days=n), START + timedelta(days=n + 1))
            batch_dir = extract(engine, interval, EXTRACT, home / "staging")
            validate(engine, batch_dir, EXTRACT, quality)
            publish(engine, batch_dir)
        with engine.connect() as connection:
            templates = {
                model: dict(connection.execute(select(model.__table__).limit(1)).mappings().one())
                for model in (Customer, Product, Event, Order, Review)
            }
        yield {
            "engine": engine,
            "home": home,
            "quality": quality,
            "templates": templates,
            "backend": request.param,
        }
        engine.dispose()


class _same:
    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> str:
        return self.url

    def __exit__(self, *exc: object) -> None:
        return None


def _customer(t: dict, **values: object) -> Rows:
    return {Customer: [{**t[Customer], "customer_id": "bad-c", "updated_at": utc_now(), **values}]}


def _event(t: dict, customer: str = "bad-c", product: str | None = None, **values: object) -> Rows:
    rows = _customer(t, customer_id=customer)
    if product is not None:
        rows[Product] = [{**t[Product], "product_id": product, "updated_at": utc_now()}]
    event = {
        **t[Event],
        "event_id": "bad-e",
        "customer_id": customer,
        "product_id": product or t[Event]["product_id"],
        "ts": WHEN,
        "updated_at": utc_now(),
        **values,
    }
    return {**rows, Event: [event]}


# case -> (rows to write straight into the shop tables, the expectation that must fail,
#          whether PostgreSQL itself refuses the rows before any batch is read)
CASES: dict[str, tuple[Callable[[dict], Rows], str, bool]] = {
    "zero-width space in a customer id": (
        lambda t: _event(t, customer="C\u200b0000001"),
        "expect_column_values_to_not_match_regex(customer_id)",
        False,
    ),
    "formula product id": (
        lambda t: _event(t, product='=HYPERLINK("http://evil.example")'),
        "expect_column_values_to_not_match_regex(product_id)",
        False,
    ),
    "formula customer id @SUM": (
        lambda t: _event(t, customer="@SUM(1+1)"),
        "expect_column_values_to_not_match_regex(customer_id)",
        False,
    ),
    "65-character event id": (
        lambda t: _event(t, event_id="e" * 65),
        "expect_column_value_lengths_to_be_between(event_id)",
        True,  # varchar(64)
    ),
    "NUL in an event id": (
        lambda t: _event(t, event_id="bad\x00e"),
        "expect_column_values_to_not_match_regex(event_id)",
        True,  # PostgreSQL text holds no NUL
    ),
    "infinite event price": (
        lambda t: _event(t, price=float("inf")),
        "expect_column_values_to_be_between(price)",
        False,
    ),
    "infinite order total": (
        lambda t: {
            **_customer(t),
            Order: [
                {
                    **t[Order],
                    "order_id": "bad-o",
                    "customer_id": "bad-c",
                    "ts": WHEN,
                    "total_amount": float("inf"),
                }
            ],
        },
        "expect_column_values_to_be_between(total_amount)",
        False,
    ),
    "country 99": (
        lambda t: _customer(t, country="99"),
        "expect_column_values_to_be_in_set(country)",
        False,
    ),
    "signup in 2099": (
        lambda t: _customer(t, signup_date=date(2099, 1, 1)),
        "expect_column_values_to_be_between(signup_date)",
        False,
    ),
    "signup in 1677": (
        lambda t: _customer(t, signup_date=date(1677, 9, 21)),
        "expect_column_values_to_be_between(signup_date)",
        False,
    ),
    "20,000-character description": (
        lambda t: {
            Product: [
                {**t[Product], "product_id": "bad-p", "description": "x" * 20_000, "updated_at": utc_now()}
            ]
        },
        "expect_column_value_lengths_to_be_between(description)",
        False,
    ),
    "control character in a review": (
        lambda t: {
            **_customer(t),
            Review: [
                {
                    **t[Review],
                    "review_id": "bad-r",
                    "customer_id": "bad-c",
                    "ts": WHEN,
                    "text": "fine\x01",
                    "updated_at": utc_now(),
                }
            ],
        },
        "expect_column_values_to_not_match_regex(text)",
        False,
    ),
}


def _write(engine: Engine, rows: Rows) -> None:
    with engine.begin() as connection:
        for model in (Customer, Product, Order, Event, Review):  # foreign-key order
            if model in rows:
                connection.execute(insert(model), rows[model])


def _remove(engine: Engine, rows: Rows) -> None:
    with engine.begin() as connection:
        for model in (Review, Event, Order, Product, Customer):
            key = model.__table__.primary_key.columns.values()[0]
            if model in rows:
                connection.execute(delete(model).where(key.in_([r[key.name] for r in rows[model]])))


def _validate(shop: dict) -> None:
    batch_dir = extract(shop["engine"], CHECKED, EXTRACT, shop["home"] / "staging")
    validate(shop["engine"], batch_dir, EXTRACT, shop["quality"])


def test_a_clean_day_passes_the_contract_rules(shop: dict) -> None:
    _validate(shop)  # the simulator's own rows keep every rule: no false alarm


@pytest.mark.parametrize("case", list(CASES))
def test_rows_that_bypass_ingest_are_quarantined(shop: dict, case: str) -> None:
    build, expectation, postgres_refuses = CASES[case]
    rows = build(shop["templates"])
    if postgres_refuses and shop["backend"] == "postgresql":
        with pytest.raises((DBAPIError, ValueError)):  # the database (or its driver) keeps the row out
            _write(shop["engine"], rows)
        return
    _write(shop["engine"], rows)
    try:
        with pytest.raises(BatchRejected) as rejected:
            _validate(shop)
        assert expectation in str(rejected.value), str(rejected.value)
    finally:
        _remove(shop["engine"], rows)
