"""Events given as records (the API's `POST /events`): the pandas-free fast path agrees with the contract's
validator, unusual records go to the validator, and a group of requests is stored in one transaction."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import func, select

from pipelines.ingest import ingest_events, plain_event_rows, store_event_rows
from pipelines.ingest.load import _event_rows, limits
from retention.contract import Checker, ContractError, validate_events
from retention.db.models import Customer, Event, Load, Product
from retention.params import IngestParams, load_params
from tests.conftest import ROOT

VIEW = {"user_id": "C1", "item_id": "P1", "ts": "2026-05-01T10:00:00", "event_type": "view"}
PLAIN_REQUESTS = [
    [VIEW],
    [VIEW, VIEW],  # the same event twice: told apart by occurrence
    [VIEW | {"ts": "2026-05-01T12:00:00+02:00", "event_type": " CART "}],  # aware -> naive UTC; case
    [VIEW | {"ts": "2026-05-01 10:00:00.250000", "quantity": 3, "price": 12.5}],
    [
        VIEW | {"price": 10.0, "event_type": "purchase"},
        {"user_id": " C2 ", "item_id": "P9", "ts": "2026-05-02", "event_type": "view"},
    ],
    [{"user_id": "C3", "item_id": "P1", "ts": "2026-05-01T10:00:00Z"}],  # the default event type
]
NOT_PLAIN = [
    [VIEW | {"colour": "red"}],
    [VIEW | {"ts": "01/05/2026 10:00"}],
    [VIEW | {"ts": "yesterday"}],
    [VIEW | {"event_type": "like"}],
    [VIEW | {"quantity": 0}],
    [VIEW | {"quantity": True}],
    [VIEW | {"price": -1.0}],
    [VIEW | {"user_id": "  "}],
    [VIEW | {"order_id": "O1", "event_type": "purchase"}],  # orders are built by the full path
    [VIEW, {"user_id": "C2", "item_id": "P9", "ts": "2026-05-02"}],  # no event type in a typed column
]
# Records the contract refuses (issue 17): neither path may take them.
IMPLAUSIBLE = {
    "year 0001": VIEW | {"ts": "0001-01-01T00:00:00"},
    "year 1677": VIEW | {"ts": "1677-09-21T00:00:00"},
    "year 2099": VIEW | {"ts": "2099-01-01T00:00:00"},
    "65-character id": VIEW | {"user_id": "C" * 65},
    "NUL in an id": VIEW | {"item_id": "P\x001"},
    "zero-width space in an id": VIEW | {"user_id": "C\u200b1"},
    "formula id": VIEW | {"user_id": '=HYPERLINK("http://x")'},
    "decomposed (NFD) id": VIEW | {"user_id": "Cafe\u0301"},
    "formula order id": VIEW | {"event_type": "purchase", "order_id": "@SUM(A1)"},
    "quantity beyond INTEGER": VIEW | {"quantity": 2**31},
}


@pytest.fixture(scope="module")
def ingest_params() -> IngestParams:
    return load_params(ROOT / "params.yaml").ingest


@pytest.mark.parametrize("records", PLAIN_REQUESTS)
def test_the_fast_path_gives_the_validators_rows_and_keys(
    records: list[dict], ingest_params: IngestParams
) -> None:
    # given the contract's own validation of the request as a file
    check = Checker(source="events", limits=limits(ingest_params))
    expected = _event_rows(validate_events(check, pd.DataFrame(records), ingest_params.default_event_type))
    assert check.problems == []
    # when
    fast = plain_event_rows(records, ingest_params)
    # then every normalised value and key is the same
    assert fast is not None
    got = pd.DataFrame(fast)[expected.columns]
    got["ts"] = pd.to_datetime(got["ts"]).astype("datetime64[us]")
    pd.testing.assert_frame_equal(
        got.astype(object).where(got.notna(), None),
        expected.astype(object).where(expected.notna(), None),
        check_dtype=False,
    )


@pytest.mark.parametrize("records", NOT_PLAIN)
def test_unusual_records_leave_the_fast_path(records: list[dict], ingest_params: IngestParams) -> None:
    assert plain_event_rows(records, ingest_params) is None


@pytest.mark.parametrize("case", sorted(IMPLAUSIBLE))
def test_implausible_records_are_refused_by_both_paths(
    engine,  # noqa: ANN001
    ingest_params: IngestParams,
    case: str,
) -> None:
    records = [IMPLAUSIBLE[case]]
    assert plain_event_rows(records, ingest_params) is None
    with pytest.raises(ContractError, match="at event 0"):
        ingest_events(engine, pd.DataFrame(records), ingest_params)
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(Event)).scalar_one() == 0


def test_a_group_of_requests_is_stored_at_once_counting_new_events_per_request(
    engine,
    ingest_params: IngestParams,  # noqa: ANN001
) -> None:
    # given three requests, the third resending the first's event and a new one
    first = plain_event_rows([VIEW], ingest_params)
    second = plain_event_rows([VIEW | {"user_id": "C2", "item_id": "P2"}], ingest_params)
    third = plain_event_rows([VIEW, VIEW | {"ts": "2026-05-01T11:00:00"}], ingest_params)
    assert first and second and third
    # when they are stored together, then again
    counts = store_event_rows(engine, [first, second, third])
    again = store_event_rows(engine, [third])
    # then each event is stored once, with stubs for the new customers and products
    assert counts == [1, 1, 1] and again == [0]
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(Event)).scalar_one() == 3
        assert set(connection.execute(select(Customer.customer_id)).scalars()) == {"C1", "C2"}
        assert set(connection.execute(select(Product.product_id)).scalars()) == {"P1", "P2"}
        assert connection.execute(select(func.count()).select_from(Load)).scalar_one() == 2


def test_the_full_path_names_every_problem_and_stores_nothing(engine, ingest_params: IngestParams) -> None:  # noqa: ANN001
    records = [VIEW, VIEW | {"ts": "yesterday", "event_type": "like"}]
    with pytest.raises(ContractError) as error:
        ingest_events(engine, pd.DataFrame(records), ingest_params)
    problems = " ".join(error.value.problems)
    assert "column 'ts': unparsable date/time at event 1" in problems
    assert "column 'event_type': unknown event type" in problems
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(Event)).scalar_one() == 0
