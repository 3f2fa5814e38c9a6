"""Bulk writes: insert-new skips stored keys, upsert counts only rows that really changed."""

from datetime import datetime

import pandas as pd
import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from retention.db.models import Customer, Event, Product
from retention.db.writes import write_frame

NOW = datetime(2026, 1, 1)


def _customers(consent: bool) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["a", "b"],
            "signup_date": pd.to_datetime(["2025-01-01", None]),
            "country": ["DE", None],
            "marketing_consent": [consent, False],
            "email": ["a@example.com", None],
            "updated_at": NOW,
        }
    )


def test_insert_new_is_idempotent_and_upsert_counts_changes(engine) -> None:  # noqa: ANN001
    table = Customer.__table__
    with engine.begin() as connection:
        assert write_frame(connection, table, _customers(True), "insert_new") == 2
        assert write_frame(connection, table, _customers(True), "insert_new") == 0
        assert write_frame(connection, table, _customers(True), "upsert") == 0
        assert write_frame(connection, table, _customers(False), "upsert") == 1
    with engine.connect() as connection:
        rows = connection.execute(
            select(Customer.customer_id, Customer.marketing_consent, Customer.signup_date)
        ).all()
    assert sorted(rows) == [("a", False, datetime(2025, 1, 1).date()), ("b", False, None)]


def test_a_failing_batch_leaves_nothing_behind(engine) -> None:  # noqa: ANN001
    event = pd.DataFrame(
        {
            "event_id": ["e1"],
            "customer_id": ["ghost"],  # no such customer: the foreign key rejects it
            "product_id": ["p1"],
            "event_type": ["view"],
            "ts": [NOW],
            "quantity": [1],
            "updated_at": NOW,
        }
    )
    product = pd.DataFrame({"product_id": ["p1"], "active": [True], "updated_at": NOW})
    with pytest.raises(IntegrityError), engine.begin() as connection:
        write_frame(connection, Product.__table__, product, "insert_new")
        write_frame(connection, Event.__table__, event, "insert_new")
    with engine.connect() as connection:
        assert connection.execute(select(Product.product_id)).all() == []


def test_empty_text_stays_distinct_from_missing(engine) -> None:  # noqa: ANN001
    products = pd.DataFrame(
        {"product_id": ["p1", "p2"], "title": ["", None], "description": ['a "quoted", text\nline', None]}
    ).assign(active=True, updated_at=NOW)
    with engine.begin() as connection:
        assert write_frame(connection, Product.__table__, products, "upsert") == 2
    with engine.connect() as connection:
        rows = dict(connection.execute(select(Product.product_id, Product.title)).all())
        description = connection.execute(
            select(Product.description).where(Product.product_id == "p1")
        ).scalar_one()
    assert rows == {"p1": "", "p2": None}
    assert description == 'a "quoted", text\nline'
