"""Ingest: real datasets load with the right counts; bad input is rejected whole, with its reason."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select

from pipelines.ingest import IngestError, IngestRequest, ingest, parse_mapping
from retention.contract import ContractError
from retention.db.models import Customer, Event, Load, Order
from retention.params import IngestParams, load_params
from tests.conftest import ROOT, SHARED_DATA, table_counts

CDNOW = SHARED_DATA / "cdnow" / "CDNOW_sample.txt"
MOVIELENS = SHARED_DATA / "movielens-100k"
GOOD = "user_id,item_id,ts,event_type,quantity,price,order_id\n" + "\n".join(
    [
        "u1,i1,2024-01-01 10:00:00,view,1,9.99,",
        "u1,i1,2024-01-01 10:05:00,purchase,2,9.99,o1",
        "u2,i2,2024-01-02T08:00:00+02:00,purchase,1,5.00,o2",
        "u2,i2,2024-01-02T08:00:00+02:00,purchase,1,5.00,o2",  # a second identical line is a real line
    ]
)


@pytest.fixture
def ingest_params() -> IngestParams:
    return load_params(ROOT / "params.yaml").ingest


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text + "\n")
    return path


def test_cdnow_loads_every_order(engine, ingest_params: IngestParams) -> None:  # noqa: ANN001
    result = ingest(engine, IngestRequest(CDNOW, format="cdnow"), ingest_params)
    counts = table_counts(engine)
    assert result.rows_read == 6919
    assert counts == {"customers": 2357, "products": 1, "events": 6919, "orders": 6919, "reviews": 0}
    raw = pd.read_csv(CDNOW, sep=r"\s+", header=None)
    with engine.connect() as connection:
        total = sum(row.total_amount for row in connection.execute(select(Order.total_amount)))
    assert total == pytest.approx(raw[4].sum(), abs=0.5)


def test_movielens_loads_ratings_and_items(engine, ingest_params: IngestParams) -> None:  # noqa: ANN001
    request = IngestRequest(
        MOVIELENS / "ml-100k.inter", products=MOVIELENS / "ml-100k.item", format="movielens"
    )
    ingest(engine, request, ingest_params)
    assert table_counts(engine) == {
        "customers": 943,
        "products": 1682,
        "events": 100_000,
        "orders": 0,
        "reviews": 100_000,
    }


def test_reingesting_the_same_file_adds_nothing(engine, tmp_path: Path, ingest_params: IngestParams) -> None:  # noqa: ANN001
    path = _write(tmp_path, "events.csv", GOOD)
    first = ingest(engine, IngestRequest(path), ingest_params)
    after_first = table_counts(engine)
    assert after_first["events"] == 4 and after_first["orders"] == 2
    second = ingest(engine, IngestRequest(path), ingest_params)
    assert sum(second.inserted.values()) == 0
    assert table_counts(engine) == after_first
    assert second.load_id > first.load_id  # both attempts are in the load log


def test_side_files_and_timezones(engine, tmp_path: Path, ingest_params: IngestParams) -> None:  # noqa: ANN001
    events = _write(tmp_path, "events.csv", GOOD)
    customers = _write(
        tmp_path,
        "customers.csv",
        "user_id,signup_date,country,marketing_consent,email\nu1,2023-05-01,de,yes,u1@example.com\nu2,,FR,no,",
    )
    ingest(engine, IngestRequest(events, customers=customers), ingest_params)
    with engine.connect() as connection:
        rows = {r.customer_id: r for r in connection.execute(select(Customer))}
        order = connection.execute(select(Order).where(Order.order_id == "o2")).one()
    assert rows["u1"].country == "DE" and rows["u1"].marketing_consent is True
    assert rows["u2"].marketing_consent is False and rows["u2"].email is None
    assert str(order.ts) == "2024-01-02 06:00:00"  # +02:00 stored as naive UTC
    assert order.n_items == 2 and order.total_amount == pytest.approx(10.0)


def test_column_mapping(engine, tmp_path: Path, ingest_params: IngestParams) -> None:  # noqa: ANN001
    path = _write(tmp_path, "retail.csv", "CustomerID,StockCode,InvoiceDate,Quantity\nc1,s1,2024-03-01,3")
    mapping = parse_mapping("user_id=CustomerID,item_id=StockCode,ts=InvoiceDate,quantity=Quantity")
    ingest(engine, IngestRequest(path, mapping=mapping), ingest_params)
    assert table_counts(engine)["events"] == 1
    with pytest.raises(IngestError, match="unknown contract column 'customer'"):
        parse_mapping("customer=CustomerID")


BAD_INPUTS = {
    "missing column": ("user_id,ts\nu1,2024-01-01", "missing required column 'item_id'"),
    "unparsable date": (
        "user_id,item_id,ts\nu1,i1,2024-01-01\nu1,i1,yesterday",
        "column 'ts': unparsable date/time at line 3",
    ),
    "negative quantity": (
        "user_id,item_id,ts,quantity\nu1,i1,2024-01-01,-1",
        "column 'quantity': must be >= 1 at line 2",
    ),
    "fractional quantity": (
        "user_id,item_id,ts,quantity\nu1,i1,2024-01-01,1.5",
        "column 'quantity': not an integer at line 2",
    ),
    "unknown event type": ("user_id,item_id,ts,event_type\nu1,i1,2024-01-01,click", "unknown event type"),
    "negative price": (
        "user_id,item_id,ts,price\nu1,i1,2024-01-01,-3",
        "column 'price': must be >= 0 at line 2",
    ),
    "empty key": ("user_id,item_id,ts\n,i1,2024-01-01", "column 'user_id': empty key at line 2"),
    "order of two users": (
        "user_id,item_id,ts,order_id\nu1,i1,2024-01-01,o9\nu2,i1,2024-01-01,o9",
        "one order_id used by several users at lines 2, 3",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_rejected_whole_and_changes_nothing(
    engine, tmp_path: Path, ingest_params: IngestParams, case: str
) -> None:  # noqa: ANN001
    ingest(engine, IngestRequest(_write(tmp_path, "earlier.csv", GOOD)), ingest_params)
    before = table_counts(engine)
    text, message = BAD_INPUTS[case]
    # a good row first: the whole file must be refused, not just its bad rows
    with pytest.raises(ContractError) as caught:
        ingest(engine, IngestRequest(_write(tmp_path, "bad.csv", text)), ingest_params)
    assert message in str(caught.value) and "bad.csv" in str(caught.value)
    assert table_counts(engine) == before
    with engine.connect() as connection:
        last = connection.execute(select(Load).order_by(Load.load_id.desc())).first()
    assert last.status == "rejected" and last.detail["problems"]


def test_bad_side_file_rejects_the_event_log_too(engine, tmp_path: Path, ingest_params: IngestParams) -> None:  # noqa: ANN001
    events = _write(tmp_path, "events.csv", GOOD)
    products = _write(tmp_path, "products.csv", "item_id,price\ni1,abc\ni1,2")
    with pytest.raises(ContractError) as caught:
        ingest(engine, IngestRequest(events, products=products), ingest_params)
    assert "products.csv: column 'price': not a number at line 2" in str(caught.value)
    assert "products.csv: column 'item_id': duplicate key at lines 2, 3" in str(caught.value)
    assert sum(table_counts(engine).values()) == 0


def test_malformed_public_files_are_rejected(engine, tmp_path: Path, ingest_params: IngestParams) -> None:  # noqa: ANN001
    cdnow = _write(tmp_path, "cdnow.txt", "00001 0001 19970101 2 29.33\n00002 0002 1997013x 1 10.00")
    with pytest.raises(ContractError, match="cdnow.txt: column 'date': unparsable date/time at line 2"):
        ingest(engine, IngestRequest(cdnow, format="cdnow"), ingest_params)
    with pytest.raises(IngestError, match="file not found"):
        ingest(engine, IngestRequest(tmp_path / "nope.csv"), ingest_params)
    assert sum(table_counts(engine).values()) == 0


def test_parquet_event_logs_load_and_report_row_numbers(
    engine, tmp_path: Path, ingest_params: IngestParams
) -> None:  # noqa: ANN001
    good = pd.DataFrame(
        {
            "user_id": ["u1", "u2"],
            "item_id": ["i1", "i2"],
            "ts": pd.to_datetime(["2024-05-01 10:00", "2024-05-02 11:00"]).tz_localize("Europe/Berlin"),
            "quantity": [1, 3],
            "price": [2.5, 4.0],
        }
    )
    good.to_parquet(tmp_path / "events.parquet")
    ingest(engine, IngestRequest(tmp_path / "events.parquet"), ingest_params)
    assert table_counts(engine)["events"] == 2
    good.assign(quantity=[1, 0]).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(ContractError, match="bad.parquet: column 'quantity': must be >= 1 at row 2"):
        ingest(engine, IngestRequest(tmp_path / "bad.parquet"), ingest_params)


def test_dates_in_several_formats_parse(engine, tmp_path: Path, ingest_params: IngestParams) -> None:  # noqa: ANN001
    path = _write(
        tmp_path,
        "dates.csv",
        "user_id,item_id,ts\nu1,i1,2024-05-01\nu1,i2,05/03/2024 14:00\nu1,i3,2024-05-04T08:00:00Z",
    )
    ingest(engine, IngestRequest(path), ingest_params)
    with engine.connect() as connection:
        stamps = sorted(str(r.ts) for r in connection.execute(select(Event.ts)))
    assert stamps == ["2024-05-01 00:00:00", "2024-05-03 14:00:00", "2024-05-04 08:00:00"]
