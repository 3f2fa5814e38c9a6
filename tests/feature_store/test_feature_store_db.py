"""Feature store on the warehouse tables (SQLite and PostgreSQL): reads, offline jobs, online store, CLI."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from cli.main import app
from feature_store.core import build_sequences, build_training_set, compute_features
from feature_store.definitions import feature_registry, feature_version
from feature_store.offline import features_at, sequences_at, training_set
from feature_store.online import TABLE, read_online, refresh_online
from retention.params import FeatureParams
from tests.feature_store.conftest import AS_OF, frames_of, load_warehouse
from tests.feature_store.test_feature_core import assert_matches_expected, later_rows


@pytest.fixture
def loaded(engine: Engine, shop: dict) -> Engine:
    """The tiny shop in the warehouse tables."""
    load_warehouse(engine, shop)
    return engine


def test_database_features_equal_hand_computed_values(loaded: Engine, feature_params: FeatureParams) -> None:
    features = features_at(loaded, AS_OF, feature_params)

    assert_matches_expected(features)


def test_rows_written_later_change_no_feature(
    loaded: Engine, shop: dict, feature_params: FeatureParams
) -> None:
    before = features_at(loaded, AS_OF, feature_params)

    load_warehouse(loaded, later_rows(shop))  # events, orders, reviews, sentiment, a customer

    pd.testing.assert_frame_equal(features_at(loaded, AS_OF, feature_params), before)


def test_training_set_and_sequences_match_the_pure_builders(
    loaded: Engine, shop: dict, feature_params: FeatureParams
) -> None:
    load_warehouse(loaded, later_rows(shop))
    params = feature_params.model_copy(update={"training_cutoffs": 2, "sequence_length": 3})

    rows = training_set(loaded, AS_OF, params)
    sequences = sequences_at(loaded, AS_OF, params)

    pd.testing.assert_frame_equal(rows, build_training_set(frames_of(shop), AS_OF, params))
    assert rows.groupby("cutoff")["returned"].sum().tolist() == [0, 3]
    # The reader bounds sequences by the history window too: customer e's only event is older.
    recent = shop["events"][
        shop["events"]["ts"] >= pd.Timestamp(AS_OF) - pd.Timedelta(days=params.history_days)
    ]
    expected = build_sequences(recent, shop["products"], AS_OF, params)
    pd.testing.assert_frame_equal(sequences, expected, check_dtype=False)


def test_online_refresh_is_idempotent_and_readable(
    loaded: Engine, shop: dict, feature_params: FeatureParams
) -> None:
    first = refresh_online(loaded, AS_OF, feature_params, now=datetime(2026, 3, 1, 1))
    with loaded.connect() as connection:
        stored = connection.execute(select(TABLE).order_by(TABLE.c.customer_id)).all()

    again = refresh_online(loaded, AS_OF, feature_params, now=datetime(2026, 3, 1, 2))

    with loaded.connect() as connection:
        assert connection.execute(select(TABLE).order_by(TABLE.c.customer_id)).all() == stored
    assert first == again == 4
    vector = read_online(loaded, "c")
    assert vector["feature_version"] == feature_version(feature_params)
    assert vector["as_of"] == AS_OF and vector["updated_at"] == datetime(2026, 3, 1, 1)
    assert list(vector["features"]) == [f.name for f in feature_registry(feature_params)]
    assert vector["features"]["frequency_30d"] == 2 and vector["features"]["rfm_segment"] == "loyal"
    assert vector["features"]["ipt_std_days"] == pytest.approx((35 - 14 - 20 / 24) / 2**0.5)
    assert read_online(loaded, "a")["features"]["rating_mean"] == 3.0
    assert read_online(loaded, "b")["features"]["rating_mean"] is None
    assert read_online(loaded, "d") is None  # never purchased

    # Later: new purchases change some rows, and a new buyer arrives; nothing else is rewritten.
    load_warehouse(loaded, later_rows(shop))
    later = datetime(2026, 3, 10)
    assert refresh_online(loaded, later, feature_params, now=datetime(2026, 3, 10, 1)) == 6
    assert read_online(loaded, "f")["as_of"] == later
    assert read_online(loaded, "f")["updated_at"] == datetime(2026, 3, 10, 1)
    # Back to the first as-of: customers d and f leave the online store again.
    assert refresh_online(loaded, AS_OF, feature_params, now=datetime(2026, 3, 11)) == 4
    assert read_online(loaded, "f") is None
    assert read_online(loaded, "c")["features"] == vector["features"]


def test_cli_lists_and_materialises(loaded: Engine, tmp_path: Path, feature_params: FeatureParams) -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["features", "list", "--json"])
    out = tmp_path / "features.parquet"

    result = runner.invoke(app, ["features", "materialize", "--as-of", "2026-03-01", "--out", str(out)])

    assert listed.exit_code == 0, listed.output
    registry = json.loads(listed.output)
    assert registry["feature_version"] == feature_version(feature_params)
    assert [f["name"] for f in registry["features"]] == [f.name for f in feature_registry(feature_params)]
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    assert table.schema.metadata[b"retention.feature_version"] == feature_version(feature_params).encode()
    frame = table.to_pandas()
    assert frame["customer_id"].tolist() == ["a", "b", "c", "e"]
    assert (frame["as_of"] == pd.Timestamp(AS_OF)).all()
    for command in ("training-set", "sequences"):
        path = tmp_path / f"{command}.parquet"
        done = runner.invoke(app, ["features", command, "--as-of", "2026-03-01", "--out", str(path)])
        assert done.exit_code == 0, done.output
        assert pq.read_table(path).num_rows > 0
    refreshed = runner.invoke(app, ["features", "refresh-online", "--as-of", "2026-03-01"])
    assert refreshed.exit_code == 0 and "4 customers" in refreshed.output


def test_pure_core_and_database_agree_on_the_simulated_shape(
    loaded: Engine, shop: dict, feature_params: FeatureParams
) -> None:
    # The reader leaves out old views and events before the history window; results must not move.
    narrow = feature_params.model_copy(update={"activity_days": 7, "windows_days": [7, 30]})

    pd.testing.assert_frame_equal(
        features_at(loaded, AS_OF, narrow), compute_features(frames_of(shop), AS_OF, narrow)
    )


def test_checked_features_pass_the_feature_suite_and_a_wrong_population_is_refused(
    loaded: Engine, feature_params: FeatureParams, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from feature_store import checks
    from retention.quality import QualityService

    quality = QualityService(tmp_path / "gx")
    features = checks.checked_features(loaded, AS_OF, feature_params, quality)
    assert len(features) == checks.active_customers(loaded, AS_OF) > 0

    # A feature table that misses an active customer must not reach any store.
    monkeypatch.setattr(checks, "features_at", lambda *args: features.iloc[1:])
    with pytest.raises(checks.FeatureValidationError, match=r"expect_table_row_count_to_equal"):
        checks.checked_features(loaded, AS_OF, feature_params, quality)
