"""The champion recommender's materialised states on a trained platform: refreshed by the extract task,
reused by the campaign when current, never rolled back by a backfill, and ranking as the model does."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from feature_store.events import read_event_log
from pipelines.campaigns.run import build, read_staged
from pipelines.campaigns.state_cache import STATES_DIR, current_states, states_path, task_refresh_states
from retention.db import create_db_engine
from retention.settings import Settings
from training.recommender.customer_states import CustomerStates
from training.registry import load_native

AS_OF = datetime(2026, 4, 1)
NAME = "retention-recommender"


def test_the_extract_task_materialises_states_the_campaign_then_reuses(on_trained_platform) -> None:  # noqa: ANN001
    settings = Settings.from_env()
    # given the states refreshed by the extract DAG's task up to as-of
    kept = task_refresh_states(AS_OF)
    path = states_path(settings, NAME, "1")
    saved = CustomerStates.load(path)
    written = path.stat().st_mtime_ns
    engine = create_db_engine(settings.database_url)
    history = read_event_log(engine, "warehouse", before=AS_OF)
    assert kept == len(saved.customer_ids) == history.events["customer_id"].nunique()
    # when the task runs again and the campaign is built on the same history
    assert task_refresh_states(AS_OF) == kept
    staged, meta = read_staged(build(AS_OF))
    # then neither rewrote the states
    assert path.stat().st_mtime_ns == written
    # and each target's products are the model's own top products among those allowed (active, and
    # not bought in the last 30 days unless due for reorder: its interval has passed since)
    model = load_native(settings.mlflow_tracking_uri, NAME, "1")
    sequences = model.history_sequences(history)
    targets = staged.head(20)
    scores = model.score_sequences([sequences[c] for c in targets["customer_id"]])
    active = pd.read_sql("SELECT product_id FROM wh_products WHERE active", engine)["product_id"]
    scores[:, ~np.isin(model.index.ids, active.to_numpy(dtype=str))] = -np.inf
    events = history.events
    recent = events[
        (events["event_type"] == "purchase") & (events["ts"] >= pd.Timestamp(AS_OF) - pd.Timedelta(days=30))
    ]
    intervals = meta["summary"]["reorder_intervals"]
    for row, (customer, products) in enumerate(
        zip(targets["customer_id"], targets["recommendations"], strict=True)
    ):
        bought = recent.loc[recent["customer_id"] == customer].groupby("product_id")["ts"].max()
        days = (pd.Timestamp(AS_OF).floor("D") - bought.dt.floor("D")).dt.days
        due = [str(p) in intervals and days[p] >= intervals[str(p)] for p in bought.index]
        masked = bought.index.astype(str)[~np.array(due, dtype=bool)]
        scores[row, np.isin(model.index.ids, masked.to_numpy())] = -np.inf
        chosen = scores[row, model.index.codes(list(products)) - 1]
        best = np.sort(scores[row])[::-1][: len(products)]
        assert np.allclose(chosen, best, atol=1e-4), customer
    engine.dispose()


def test_a_backfill_refreshes_in_memory_but_never_rolls_the_saved_states_back(on_trained_platform) -> None:  # noqa: ANN001
    settings = Settings.from_env()
    task_refresh_states(AS_OF)
    path = states_path(settings, NAME, "1")
    written = path.stat().st_mtime_ns
    # given a campaign backfilled a month earlier
    earlier = pd.Timestamp(AS_OF) - pd.Timedelta(days=30)
    engine = create_db_engine(settings.database_url)
    history = read_event_log(engine, "warehouse", before=earlier.to_pydatetime())
    engine.dispose()
    model = load_native(settings.mlflow_tracking_uri, NAME, "1")
    # when its states are asked for
    states = current_states(settings, model, NAME, "1", history, earlier)
    # then they describe the earlier history, and the saved (newer) states are untouched
    assert states.as_of == earlier.isoformat()
    assert set(states.customer_ids) == set(history.events["customer_id"].astype(str))
    assert path.stat().st_mtime_ns == written
    assert CustomerStates.load(path).as_of == pd.Timestamp(AS_OF).isoformat()


def test_without_a_champion_there_is_nothing_to_materialise(migrated_home: Path) -> None:
    # given a (migrated) platform where nothing was trained
    settings = Settings.from_env()
    # when the extract task refreshes the states, then it does nothing and writes no file
    assert task_refresh_states(AS_OF) == 0
    assert not (settings.home / STATES_DIR).exists()


def test_the_cli_warms_the_states(on_trained_platform) -> None:  # noqa: ANN001
    from typer.testing import CliRunner

    from cli.main import app

    result = CliRunner().invoke(app, ["campaigns", "states", "--as-of", "2026-04-01"])
    assert result.exit_code == 0, result.output
    assert "current as of 2026-04-01" in result.output
    assert states_path(Settings.from_env(), NAME, "1").exists()


def test_unreadable_saved_states_are_recomputed_and_replaced(on_trained_platform) -> None:  # noqa: ANN001
    settings = Settings.from_env()
    path = states_path(settings, NAME, "1")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an npz file")
    assert task_refresh_states(AS_OF) > 0
    assert CustomerStates.load(path).model_key == f"{NAME}/1"
