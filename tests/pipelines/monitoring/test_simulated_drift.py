"""The simulator's injected drift (a price change, a new segment) is flagged; the same shop without it is not.

The reference is the population at the drift's first day (where a champion trained before it was
measured), the current population 30 days later: the gap a daily-retrained champion's reference
(its cutoff, as-of - H) has at the next monitoring run.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

CUSTOMERS, DAYS = 2000, 150
REFERENCE, CURRENT = datetime(2026, 5, 1), datetime(2026, 5, 31)  # days 120 and 150
DRIFT = {"from_day": 120, "price_factor": 3.0, "new_segment_share": 0.5}


def _population_drift(root: Path, monkeypatch: pytest.MonkeyPatch, drift: dict | None):  # noqa: ANN202
    """Simulate the shop (with `drift`), extract it into the warehouse, and compare the two as-ofs."""
    from pipelines.extract import run_interval
    from pipelines.monitoring import population_drift
    from pipelines.simulate import simulate
    from retention.db import create_db_engine, upgrade
    from retention.params import load_params
    from retention.settings import Settings

    root.mkdir(parents=True)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["simulate"]["drift"] = drift
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("RETENTION_HOME", str(root / "home"))
    monkeypatch.setenv("RETENTION_PARAMS", str(root / "params.yaml"))
    settings = Settings.from_env()
    params = load_params(settings.params_path)
    upgrade(settings.database_url)
    engine = create_db_engine(settings.database_url)
    try:
        shop = params.simulate.model_copy(update={"customers": CUSTOMERS})
        simulate(engine, settings.simulator_dir, shop, DAYS)
        run_interval(datetime(2026, 1, 1), CURRENT, settings)
        return population_drift(engine, REFERENCE, CURRENT, params)
    finally:
        engine.dispose()


@pytest.mark.slow  # two simulated shops extracted into the warehouse: about 100 s
def test_monitoring_flags_the_drifted_shop_and_nothing_on_the_same_shop_without_drift(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steady, steady_status, n_reference, n_current = _population_drift(tmp_path / "steady", monkeypatch, None)
    assert min(n_reference, n_current) >= 200  # enough customers to judge (monitoring.min_rows)
    assert steady_status == "ok"
    assert [d.feature for d in steady if d.status != "ok"] == []

    drifted, drifted_status, _, _ = _population_drift(tmp_path / "drifted", monkeypatch, DRIFT)
    assert drifted_status == "alert"  # the monitor DAG would emit its retrain Asset
    alerting = {d.feature for d in drifted if d.status == "alert"}
    assert alerting & {"amount_last", "monetary_30d", "amount_mean"}  # what a price change moves
    by_name = {d.feature: d for d in drifted}
    assert by_name["amount_last"].psi > 3 * {d.feature: d for d in steady}["amount_last"].psi


def test_the_drift_is_off_by_default_and_changes_nothing_before_its_day() -> None:
    import numpy as np
    import pandas as pd

    from pipelines.simulate import build_world
    from pipelines.simulate.days import simulate_day
    from retention.params import DriftParams, load_params

    base = load_params(ROOT / "params.yaml").simulate.model_copy(update={"customers": 400})
    assert base.drift is None  # params.yaml keeps it off
    priced = base.model_copy(update={"drift": DriftParams(from_day=10, price_factor=2.0)})
    plain, drifted = build_world(base, 30), build_world(priced, 30)
    before, before_drift = simulate_day(plain, 9), simulate_day(drifted, 9)
    pd.testing.assert_frame_equal(before.events, before_drift.events)
    after, after_drift = simulate_day(plain, 12), simulate_day(drifted, 12)
    assert after.events["event_id"].tolist() == after_drift.events["event_id"].tolist()  # same draws
    ratio = after_drift.events["price"].to_numpy() / after.events["price"].to_numpy()
    assert np.allclose(ratio, 2.0, atol=0.02)  # every price doubled (to the cent)
    again = simulate_day(build_world(priced, 30), 12)
    pd.testing.assert_frame_equal(after_drift.events, again.events)  # deterministic per (seed, day)


def test_the_new_segment_joins_only_from_its_day() -> None:
    from pipelines.simulate import build_world
    from retention.params import DriftParams, load_params

    base = load_params(ROOT / "params.yaml").simulate.model_copy(update={"customers": 4000})
    world = build_world(
        base.model_copy(update={"drift": DriftParams(from_day=20, new_segment_share=0.5)}), 60
    )
    plain = build_world(base, 60)
    joined = world.truth["segment"] == "drift"
    later = world.truth["signup_day"] >= 20
    assert not (joined & ~later).any()
    assert 0.4 < joined[later].mean() < 0.6
    assert (world.visit_rate[joined.to_numpy()] == 3.0 * plain.visit_rate[joined.to_numpy()]).all()
    assert (world.truth.loc[joined, "favourite_category"].nunique()) == 1
    unchanged = ~joined.to_numpy()
    assert (world.visit_rate[unchanged] == plain.visit_rate[unchanged]).all()
