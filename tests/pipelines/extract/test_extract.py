"""Extraction on SQLite and PostgreSQL: clean publish, idempotent rerun, late rows, and every corruption caught."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, func, insert, select, text

from pipelines.extract import BatchRejected, Interval, extract, publish, validate
from pipelines.extract.batch import read_staged, stage
from pipelines.simulate import simulate
from retention.db import create_db_engine, upgrade
from retention.db.models import Event
from retention.db.scratch import private_schema
from retention.db.warehouse import WAREHOUSE, Batch, Quarantine
from retention.params import ExtractParams, load_params
from retention.quality import QualityService
from tests.conftest import POSTGRES_URL, ROOT

PARAMS = load_params(ROOT / "params.yaml")
# A short history is enough for the volume check here; the production values are in params.yaml.
EXTRACT = PARAMS.extract.model_copy(update={"volume_min_history": 2, "volume_window": 3})
START = datetime.combine(PARAMS.simulate.start, datetime.min.time())


def day(n: int) -> Interval:
    """The data interval of the shop's day n (0 = its first day)."""
    return Interval(START + timedelta(days=n), START + timedelta(days=n + 1))


def warehouse_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            name: connection.execute(select(func.count()).select_from(t)).scalar_one()
            for name, t in WAREHOUSE.items()
        }


def _batch(connection, interval: Interval) -> dict:  # noqa: ANN001
    query = select(Batch.__table__).where(Batch.batch_id == interval.batch_id)
    return dict(connection.execute(query).mappings().one())


def run(
    engine: Engine,
    interval: Interval,
    staging: Path,
    quality: QualityService,
    params: ExtractParams = EXTRACT,
):
    batch_dir = extract(engine, interval, params, staging)
    validate(engine, batch_dir, params, quality)
    return publish(engine, batch_dir)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shop(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A small simulated shop whose first three days are published; shared by this module's tests."""
    home = tmp_path_factory.mktemp(f"extract-{request.param}")
    with (
        private_schema(POSTGRES_URL, prefix="test") if request.param == "postgresql" else _sqlite(home) as url
    ):
        upgrade(url)
        engine = create_db_engine(url)
        shop_params = PARAMS.simulate.model_copy(update={"customers": 200, "products": 60})
        simulate(engine, home / "simulator", shop_params, days=8)
        quality = QualityService(home / "gx")
        for n in range(3):
            run(engine, day(n), home / "staging", quality)
        yield {"engine": engine, "home": home, "quality": quality}
        engine.dispose()


class _sqlite:
    def __init__(self, home: Path) -> None:
        self.url = f"sqlite:///{home / 'retention.db'}"

    def __enter__(self) -> str:
        return self.url

    def __exit__(self, *exc: object) -> None:
        return None


def test_a_clean_interval_publishes_its_window(shop: dict) -> None:
    engine = shop["engine"]
    window = day(2)
    with engine.connect() as connection:
        source = connection.execute(
            select(func.count()).select_from(Event).where(Event.ts < window.end)
        ).scalar_one()
        batch = _batch(connection, window)
    assert warehouse_counts(engine)["events"] == source > 0  # every event of days 0-2 is in the warehouse
    assert batch["status"] == "published" and batch["failed"] == []
    assert batch["interval_events"] > 0


def test_rerunning_an_interval_changes_nothing(shop: dict) -> None:
    engine, home = shop["engine"], shop["home"]
    before = warehouse_counts(engine)
    changed = run(engine, day(1), home / "staging", shop["quality"])
    assert changed == dict.fromkeys(changed, 0)
    assert warehouse_counts(engine) == before
    with engine.connect() as connection:
        attempts = connection.execute(
            select(Batch.attempts).where(Batch.batch_id == day(1).batch_id)
        ).scalar_one()
        published = connection.execute(select(func.count()).select_from(Batch)).scalar_one()
    assert attempts >= 2 and published == 3  # the rerun updated its row, it did not add one


def test_late_rows_within_the_lateness_are_picked_up_by_a_later_run(shop: dict) -> None:
    engine, home = shop["engine"], shop["home"]
    with engine.connect() as connection:
        template = dict(
            connection.execute(select(Event).where(Event.ts < day(1).start).limit(1)).mappings().one()
        )
    late = {
        **template,
        "event_id": "late-arrival",
        "ts": day(2).start + timedelta(hours=23),
        "updated_at": datetime.now(),
    }
    too_late = {**template, "event_id": "too-late", "ts": day(3).window_start(EXTRACT) - timedelta(hours=1)}
    with engine.begin() as connection:  # both arrive after day 2 was published
        connection.execute(insert(Event), [late, too_late])
    try:
        run(engine, day(3), home / "staging", shop["quality"])
        with engine.connect() as connection:
            stored = set(
                connection.execute(
                    select(WAREHOUSE["events"].c.event_id).where(
                        WAREHOUSE["events"].c.event_id.in_(["late-arrival", "too-late"])
                    )
                ).scalars()
            )
        assert stored == {"late-arrival"}  # within 48 h: taken; older than the lateness: not
    finally:
        with engine.begin() as connection:
            connection.execute(
                Event.__table__.delete().where(Event.event_id.in_(["late-arrival", "too-late"]))
            )
            connection.execute(
                WAREHOUSE["events"].delete().where(WAREHOUSE["events"].c.event_id == "late-arrival")
            )
            connection.execute(Batch.__table__.delete().where(Batch.batch_id == day(3).batch_id))


def _events(change: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[dict], dict]:
    return lambda frames: {**frames, "events": change(frames["events"].copy())}


def _set(column: str, value: object, rows: int = 3) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(events: pd.DataFrame) -> pd.DataFrame:
        events[column] = events[column].astype(object)
        events.loc[events.index[:rows], column] = value
        return events

    return change


def _spike(events: pd.DataFrame) -> pd.DataFrame:
    copies = [events.assign(event_id=events["event_id"] + f"-copy{i}") for i in range(10)]
    return pd.concat([events, *copies], ignore_index=True)


CORRUPTIONS = {
    "null keys": (_events(_set("event_id", None)), "expect_column_values_to_not_be_null(event_id)"),
    "duplicate events": (
        _events(lambda e: pd.concat([e, e.head(5)], ignore_index=True)),
        "expect_column_values_to_be_unique(event_id)",
    ),
    "unknown event type": (
        _events(_set("event_type", "refund")),
        "expect_column_values_to_be_in_set(event_type)",
    ),
    "negative price": (_events(_set("price", -5.0)), "expect_column_values_to_be_between(price)"),
    "timestamp outside the interval": (
        _events(_set("ts", pd.Timestamp("2025-06-01"))),
        "expect_column_values_to_be_between(ts)",
    ),
    "orphan product": (
        _events(_set("product_id", "no-such-product")),
        "expect_column_values_to_be_in_set(product_known)",
    ),
    "volume spike": (_events(_spike), "expect_table_row_count_to_be_between()"),
    "volume drop": (_events(lambda e: e.head(3)), "expect_table_row_count_to_be_between()"),
    "missing column": (_events(lambda e: e.drop(columns="quantity")), "expect_column_to_exist(quantity)"),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_each_corruption_is_quarantined_and_nothing_is_published(shop: dict, corruption: str) -> None:
    engine, home, quality = shop["engine"], shop["home"], shop["quality"]
    corrupt, expectation = CORRUPTIONS[corruption]
    interval = day(4)
    batch_dir = extract(engine, interval, EXTRACT, home / "staging")
    frames, manifest = read_staged(batch_dir)
    stage(home / "staging", interval.batch_id, corrupt(frames), manifest)
    before = warehouse_counts(engine)

    with pytest.raises(BatchRejected) as rejected:
        validate(engine, batch_dir, EXTRACT, quality)

    message = str(rejected.value)
    assert expectation in message, message
    assert "quarantined" in message and interval.batch_id in message
    assert warehouse_counts(engine) == before
    with pytest.raises(ValueError, match="failed validation"):
        publish(engine, batch_dir)  # the publish step refuses a rejected batch
    with engine.connect() as connection:
        status = connection.execute(
            select(Batch.status).where(Batch.batch_id == interval.batch_id)
        ).scalar_one()
        quarantined = (
            connection.execute(
                select(Quarantine.__table__).where(
                    Quarantine.batch_id == interval.batch_id, Quarantine.table_name == "events"
                )
            )
            .mappings()
            .one()
        )
    assert status == "quarantined"
    assert expectation in quarantined["failed"]
    assert quarantined["n_rows"] == len(corrupt(frames)["events"]) == len(json.loads(quarantined["rows"]))
    docs = message.rsplit("GX Data Docs: ", 1)[1].strip()
    assert Path(docs).is_file() and docs.endswith(".html")
    # the batch stores the page relative to the Data Docs site: a moved home keeps the link
    with engine.connect() as connection:
        stored = connection.execute(
            select(Batch.docs_url).where(Batch.batch_id == interval.batch_id)
        ).scalar_one()
    assert stored.startswith("validations/") and docs.endswith(stored)


def test_warnings_are_recorded_without_blocking(shop: dict) -> None:
    engine, home = shop["engine"], shop["home"]
    interval = day(5)
    batch_dir = extract(engine, interval, EXTRACT, home / "staging")
    frames, manifest = read_staged(batch_dir)
    unpriced = _events(_set("price", None, rows=10**6))(frames)
    unpriced["reviews"] = unpriced["reviews"].head(0)  # a quiet day: no reviews, so no share to warn about
    stage(home / "staging", interval.batch_id, unpriced, manifest)
    outcome = validate(engine, batch_dir, EXTRACT, shop["quality"])
    assert outcome.success
    assert any(
        "expect_column_proportion_of_non_null_values_to_be_between(price)" in w for w in outcome.warnings
    )
    assert not [w for w in outcome.warnings if w.startswith("reviews:")]
    try:
        publish(engine, batch_dir)
        with engine.connect() as connection:
            recorded = _batch(connection, interval)
        assert recorded["status"] == "published" and recorded["warnings"] == outcome.warnings
    finally:
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM wh_events WHERE batch_id = :b"), {"b": interval.batch_id})
            connection.execute(Batch.__table__.delete().where(Batch.batch_id == interval.batch_id))


def test_committed_suites_match_the_code(tmp_path: Path) -> None:
    from feature_store import feature_suites
    from pipelines.campaigns.suite import campaign_suites
    from pipelines.extract import build_suites

    suites = {**build_suites(), **feature_suites(PARAMS.features), **campaign_suites()}
    assert QualityService(tmp_path / "gx").stale_suites(suites) == []
