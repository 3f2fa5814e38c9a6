"""Contact details stay in the shop: after extraction like the main job's, no e-mail address is in any
warehouse, feature or platform table, nor in any staged or validation file (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, MetaData, func, select, update

from pipelines.extract import task_extract, task_publish, task_validate
from pipelines.extract.run import initial_load_start
from pipelines.features import task_refresh_online
from pipelines.simulate import simulate
from retention.clock import utc_now
from retention.db.models import CONTACT_COLUMNS, Customer
from retention.db.warehouse import WAREHOUSE, OnlineFeatures
from retention.params import load_params
from retention.settings import Settings
from tests.conftest import ROOT

pytestmark = (
    pytest.mark.slow
)  # simulated shop, extractions and a feature refresh on both backends (about 25 s)

PARAMS = load_params(ROOT / "params.yaml")
START = datetime.combine(PARAMS.simulate.start, datetime.min.time())
SHOP_DAYS = 10
SOURCE_TABLES = {Customer.__tablename__}  # the shop table that holds the addresses, by design


def _emails(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return {e for e in connection.execute(select(Customer.email)).scalars() if e}


def _leaks(values: list[object], emails: set[str]) -> list[str]:
    """The cells that hold one of the addresses (in any form: a cell, JSON text, a list)."""
    texts = [v if isinstance(v, str) else json.dumps(v, default=str) for v in values if v is not None]
    return [t for t in texts if "@" in t and any(e in t for e in emails)]


def _table_leaks(engine: Engine, emails: set[str]) -> dict[str, int]:
    """Per table of the platform database (the shop's `customers` aside): cells holding an address."""
    metadata = MetaData()
    metadata.reflect(engine)
    found = {}
    with engine.connect() as connection:
        for name, table in metadata.tables.items():
            if name in SOURCE_TABLES:
                continue
            cells = [v for row in connection.execute(select(table)) for v in row]
            if leaks := _leaks(cells, emails):
                found[name] = len(leaks)
    return found


def _file_leaks(root: Path, emails: set[str]) -> dict[str, int]:
    """Per file under `root`: cells (Parquet) or lines (anything else) holding an address."""
    found = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
            cells = [v for column in frame.columns for v in frame[column].tolist()]
        else:
            cells = path.read_bytes().decode("utf-8", errors="replace").splitlines()
        if leaks := _leaks(cells, emails):
            found[str(path.relative_to(root))] = len(leaks)
    return found


def _extract(start: datetime, end: datetime, settings: Settings) -> None:
    """The extraction DAG's three tasks for one interval."""
    batch_dir = task_extract(start, end, settings)
    task_validate(batch_dir, settings)
    task_publish(batch_dir, settings)


def test_no_address_leaves_the_shop_table(engine: Engine, isolated_env: Path) -> None:
    # given a simulated shop, extracted as the main job does: one initial load, then a daily run
    # after customers changed in the shop (a consent withdrawn, an address changed)
    settings = Settings.from_env()
    shop = PARAMS.simulate.model_copy(update={"customers": 150, "products": 40})
    simulate(engine, isolated_env.parent / "simulator", shop, days=SHOP_DAYS)
    last = START + timedelta(days=SHOP_DAYS - 1)
    start = initial_load_start(START.date().isoformat(), last - timedelta(days=1))
    _extract(start, last, settings)
    with engine.begin() as connection:  # the shop changes customers between the runs
        changed = connection.execute(select(Customer.customer_id).limit(5)).scalars().all()
        connection.execute(
            update(Customer)
            .where(Customer.customer_id.in_(changed))
            .values(marketing_consent=False, email="new." + Customer.email, updated_at=utc_now())
        )
    _extract(last, last + timedelta(days=1), settings)
    task_refresh_online(last + timedelta(days=1), settings)
    emails = _emails(engine)
    # then the warehouse, the features and every other platform table hold none of the addresses
    with engine.connect() as connection:
        shop_customers = connection.execute(select(func.count()).select_from(Customer)).scalar()
        published = connection.execute(select(func.count()).select_from(WAREHOUSE["customers"])).scalar()
        features = connection.execute(select(func.count()).select_from(OnlineFeatures)).scalar()
    assert emails and published == shop_customers and features
    assert _table_leaks(engine, emails) == {}
    assert set(CONTACT_COLUMNS["customers"]).isdisjoint(WAREHOUSE["customers"].columns.keys())
    # nor does any staged batch or validation result under RETENTION_HOME
    staged = list((settings.staging_dir).rglob("*.parquet"))
    assert {p.stem for p in staged} >= {"customers", "events"}
    assert all("email" not in pd.read_parquet(p).columns for p in staged)
    assert _file_leaks(settings.home, emails) == {}


def test_the_scan_finds_an_address_where_there_is_one(tmp_path: Path) -> None:
    # the scan itself must be able to fail: an address inside JSON text, a Parquet cell, a file line
    emails = {"ann.lee1@example.com"}
    assert _leaks([{"rows": '[{"email": "ann.lee1@example.com"}]'}, "x@y", None, 3], emails) != []
    pd.DataFrame({"email": ["ann.lee1@example.com"]}).to_parquet(tmp_path / "c.parquet")
    (tmp_path / "r.json").write_text(json.dumps({"unexpected": ["ann.lee1@example.com"]}))
    (tmp_path / "clean.txt").write_text("nothing@here.org\n")
    assert _file_leaks(tmp_path, emails) == {"c.parquet": 1, "r.json": 1}
