"""Extraction bookkeeping on SQLite and PostgreSQL: a rerun of a published interval keeps what the first
publish changed and adds its own entry to the interval's attempt history."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update

from pipelines.extract import Interval, extract, publish, validate
from pipelines.simulate import simulate
from retention.clock import utc_now
from retention.db import create_db_engine, upgrade
from retention.db.models import Customer
from retention.db.scratch import private_schema
from retention.db.warehouse import Batch
from retention.params import load_params
from retention.quality import QualityService
from tests.conftest import POSTGRES_URL, ROOT

pytestmark = pytest.mark.slow  # simulated shop, extractions and reruns on both backends (about 40 s)

PARAMS = load_params(ROOT / "params.yaml")
START = datetime.combine(PARAMS.simulate.start, datetime.min.time())
ENTRY_KEYS = {"attempt", "finished_at", "status", "rows_read", "rows_changed"}


def day(n: int) -> Interval:
    return Interval(START + timedelta(days=n), START + timedelta(days=n + 1))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shop(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A small simulated shop, nothing extracted yet; shared by this module's tests."""
    home = tmp_path_factory.mktemp(f"attempts-{request.param}")
    if request.param == "sqlite":
        yield from _shop(f"sqlite:///{home / 'retention.db'}", home)
    else:
        with private_schema(POSTGRES_URL, prefix="test") as url:
            yield from _shop(url, home)


def _shop(url: str, home: Path) -> Iterator[dict]:
    upgrade(url)
    engine = create_db_engine(url)
    simulate(
        engine, home / "simulator", PARAMS.simulate.model_copy(update={"customers": 80, "products": 30}), 4
    )
    yield {"engine": engine, "home": home, "quality": QualityService(home / "gx")}
    engine.dispose()


def run(shop: dict, interval: Interval) -> dict[str, int]:
    batch_dir = extract(shop["engine"], interval, PARAMS.extract, shop["home"] / "staging")
    validate(shop["engine"], batch_dir, PARAMS.extract, shop["quality"])
    return publish(shop["engine"], batch_dir)


def batch_row(engine: Engine, interval: Interval) -> dict:
    with engine.connect() as connection:
        query = select(Batch.__table__).where(Batch.batch_id == interval.batch_id)
        return dict(connection.execute(query).mappings().one())


def test_a_rerun_keeps_the_first_publish_and_adds_an_attempt(shop: dict) -> None:
    engine = shop["engine"]
    # given an interval published once
    first = run(shop, day(0))
    published = batch_row(engine, day(0))
    assert first["events"] > 0 and first["customers"] > 0
    assert published["rows_changed"] == first and published["attempts"] == 1
    [entry] = published["attempt_history"]
    assert entry.keys() == ENTRY_KEYS
    assert (entry["attempt"], entry["status"], entry["rows_changed"]) == (1, "published", first)
    assert entry["rows_read"] == published["rows_read"]
    # when it is run again and finds nothing new
    again = run(shop, day(0))
    # then this attempt changed nothing, the interval keeps what its first publish changed,
    # and the history holds both attempts
    assert again == dict.fromkeys(first, 0)
    rerun = batch_row(engine, day(0))
    assert rerun["attempts"] == 2 and rerun["rows_changed"] == first
    assert [(e["attempt"], e["status"], e["rows_changed"]) for e in rerun["attempt_history"]] == [
        (1, "published", first),
        (2, "published", again),
    ]
    assert rerun["attempt_history"][0] == entry  # earlier entries are never rewritten
    finished = [datetime.fromisoformat(e["finished_at"]) for e in rerun["attempt_history"]]
    assert finished == sorted(finished) and finished[-1] == rerun["finished_at"]
    # when a customer changes in the shop and the interval runs a third time
    with engine.begin() as connection:
        changed = connection.execute(select(Customer.customer_id).limit(1)).scalar_one()
        connection.execute(
            update(Customer).where(Customer.customer_id == changed).values(country="LU", updated_at=utc_now())
        )
    third = run(shop, day(0))
    # then what it changed is added to the interval's count and recorded as its own attempt
    assert third["customers"] == 1
    row = batch_row(engine, day(0))
    assert row["rows_changed"] == {t: first[t] + third[t] for t in first}
    assert [e["rows_changed"] for e in row["attempt_history"]] == [first, again, third]


def test_a_row_from_before_the_history_keeps_its_record(shop: dict) -> None:
    engine = shop["engine"]
    # given an interval published by the code before the history: counts, but no attempt_history
    first = run(shop, day(1))
    with engine.begin() as connection:
        connection.execute(
            update(Batch).where(Batch.batch_id == day(1).batch_id).values(attempt_history=None)
        )
    before = batch_row(engine, day(1))
    # when it is rerun
    run(shop, day(1))
    # then its first record becomes the history's first entry, and its counts stay
    row = batch_row(engine, day(1))
    assert row["attempts"] == 2 and row["rows_changed"] == first
    assert [(e["attempt"], e["status"], e["rows_changed"]) for e in row["attempt_history"]] == [
        (1, "published", first),
        (2, "published", dict.fromkeys(first, 0)),
    ]
    assert row["attempt_history"][0]["finished_at"] == before["finished_at"].isoformat()
