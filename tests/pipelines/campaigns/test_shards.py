"""Sharded campaign scoring: a stable shard key, and the same published list for any number of shards."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sqlalchemy import text

from pipelines.campaigns.run import build, merge, plan, publish, read_staged, validate
from pipelines.campaigns.shards import (
    ShardError,
    buckets_for,
    part_path,
    read_plan,
    score_shard,
    shard_of,
    units_of,
)
from retention.db import create_db_engine
from retention.settings import Settings

AS_OF = datetime(2026, 4, 1)


def test_the_shard_key_is_a_stable_hash_of_the_customer_id() -> None:
    ids = pd.Series([f"C{i:05d}" for i in range(3000)])
    shards = shard_of(ids, 3)
    assert shards.min() == 0 and shards.max() == 2
    assert np.bincount(shards).min() > 900  # about a third each
    # sha256, not hash(): the same in every process and Python version (these values are fixed)
    six = ["C00001", "C00002", "C00003", "C00004", "C00005", "C00006"]
    assert shard_of(six, 7).tolist() == [5, 3, 4, 3, 4, 3]
    assert (shard_of(ids, 1) == 0).all()
    with pytest.raises(ValueError, match="at least 1"):
        shard_of(ids, 0)
    # A shard holds whole buckets, whatever the number of shards: the models score the same groups.
    assert buckets_for(3000, 1024) == 2 and buckets_for(10, 1024) == 1 and buckets_for(10**7, 1) == 64
    for n in (1, 2, 3, 5):
        for unit in units_of(ids, 9):
            assert len(set(shard_of(unit, n, 9))) == 1


def _with_shards(tmp_path: Path, shards: int, monkeypatch: pytest.MonkeyPatch, unit: int = 16) -> None:
    """Point RETENTION_PARAMS at a copy of the current params with `campaign.shards` set. The small
    default scoring unit puts the fixture's ~150 active customers into 9 buckets (3 per shard of 3)."""
    params = yaml.safe_load(Path(Settings.from_env().params_path).read_text())
    params["campaign"].update(shards=shards, scoring_unit=unit)
    path = tmp_path / f"params-{shards}-{unit}.yaml"
    path.write_text(yaml.safe_dump(params))
    monkeypatch.setenv("RETENTION_PARAMS", str(path))


def _published_rows() -> pd.DataFrame:
    engine = create_db_engine(Settings.from_env().database_url)
    try:
        with engine.connect() as connection:
            rows = pd.read_sql(
                text("SELECT * FROM platform_campaign_targets ORDER BY customer_id"), connection
            )
            content = connection.execute(text("SELECT content_hash FROM platform_campaigns")).scalars().all()
    finally:
        engine.dispose()
    rows.attrs["content_hash"] = content
    return rows


def test_three_shards_publish_the_same_list_as_one(
    on_trained_platform,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    # Given the campaign built, validated and published with one shard (today's behaviour)
    _with_shards(tmp_path, 1, monkeypatch)
    folder = build(AS_OF)
    single, _ = read_staged(folder)
    validate(folder)
    publish(folder)
    published = _published_rows()
    assert len(published) > 0

    # When it is rebuilt with three shards, each scored separately (as the DAG's mapped tasks do)
    _with_shards(tmp_path, 3, monkeypatch)
    specs = plan(AS_OF)
    assert [s["shard"] for s in specs] == [0, 1, 2]
    parts = [score_shard(Path(s["folder"]), s["shard"]) for s in specs]
    folder = merge(Path(specs[0]["folder"]))
    sharded, meta = read_staged(folder)
    validate(folder)
    publish(folder)

    # Then every shard scored its own customers, and the list and the published rows are identical
    planned, features = read_plan(folder)
    assert planned["buckets"] == len(features) // 16 >= 3
    scored = [pd.read_parquet(p)["customer_id"] for p in parts]
    assert all(len(s) for s in scored) and sum(len(s) for s in scored) == len(features)
    for shard, ids in enumerate(scored):
        assert (shard_of(ids, 3, planned["buckets"]) == shard).all()
    pd.testing.assert_frame_equal(sharded, single)
    again = _published_rows()
    pd.testing.assert_frame_equal(again, published)
    assert again.attrs["content_hash"] == published.attrs["content_hash"]
    assert meta["funnel"]["scored"] == len(features)


def test_a_shard_rerun_is_idempotent_and_a_missing_part_stops_the_merge(
    on_trained_platform,  # noqa: ANN001
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The default scoring unit: one bucket for this small shop, so shard 1 of 2 has nobody.
    _with_shards(tmp_path, 2, monkeypatch, unit=1024)
    specs = plan(AS_OF)
    folder = Path(specs[0]["folder"])
    first = score_shard(folder, 0)
    content = first.read_bytes()
    assert score_shard(folder, 0) == first and first.read_bytes() == content  # same plan: same part
    with pytest.raises(ShardError, match="not scored yet"):
        merge(folder)  # shard 1 has not run
    with pytest.raises(ShardError, match="not one of the plan's"):
        score_shard(folder, 2)
    assert len(pd.read_parquet(score_shard(folder, 1))) == 0  # an empty shard writes an empty part
    targets, meta = read_staged(merge(folder))
    assert meta["funnel"]["scored"] == len(pd.read_parquet(first)) and len(targets) > 0

    # A new plan (here: three shards) never reads the parts of the old one
    _with_shards(tmp_path, 3, monkeypatch, unit=1024)
    specs = plan(AS_OF)
    planned, _ = read_plan(folder)
    assert part_path(folder, planned, 0) != first
    with pytest.raises(ShardError, match="not scored yet"):
        merge(folder)
