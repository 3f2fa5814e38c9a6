"""Sharded campaign scoring: the per-customer part of a campaign build, split by a hash of the customer id.

A build has three steps (`pipelines.campaigns.run`: `plan`, `score_shard` here, `merge`):
- the **plan** (one task) checks freshness, pins the champion versions, decides the policy,
  computes and validates the features once, and stages them with `plan.json`;
- each **shard** (one mapped task per shard, `campaign.shards` of them) scores its customers: the
  return model's P(churn) and reasons, the predicted value and, under the uplift policy, the
  uplift champion's per-offer estimates; it writes its part atomically;
- the **merge** (one task) concatenates the parts in the plan's customer order and runs the
  selection, which is global (budget, quotas, risk deciles, control draws), then stages the list.

A customer's shard is a stable hash of its id mod N (its bucket, `sha256(id) mod buckets`, then
mod N): the same across runs, processes and Python versions (unlike `hash()`); the number of
buckets follows the population (`buckets_for`), never N. The return model's inputs include
population-relative features, so a shard builds them from the whole history and scores only its
own rows, one bucket at a time; the list is the same, bit for bit, for any number of shards
(tests/pipelines/campaigns/test_shards.py). Parts live under a folder named
by the plan's digest: a rerun with the same plan rewrites the same files, and a part written under
another plan (other champions, other shard count) is never read.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retention.atomic import atomic_path
from retention.context import platform_session
from retention.settings import Settings

log = logging.getLogger("retention.campaigns")
PLAN_FILE, FEATURES_FILE, PARTS_DIR = "plan.json", "features.parquet", "parts"
# The unit of scoring: customers are hashed into buckets (one per `campaign.scoring_unit` active
# customers, at most BUCKETS), a shard holds whole buckets (bucket mod shards) and the models run
# once per bucket. A model's float arithmetic can depend on the rows scored with it (padding,
# kernel choice), so the same buckets in every shard layout make the scores, and the list, the
# same bits for any number of shards. More shards than buckets leave shards empty.
BUCKETS = 64
# What a part holds per customer besides the uplift estimates (contacts are re-read at the merge:
# no e-mail address is written to staging).
PART_COLUMNS = ("customer_id", "p_churn", "reasons", "predicted_value", "segment", "recency_days")


class ShardError(RuntimeError):
    """A shard or its parts do not match the plan (missing, duplicated or foreign customers)."""


def buckets_for(customers: int, unit: int) -> int:
    """How many buckets a population of `customers` is hashed into: one per `unit` customers, 1 to BUCKETS."""
    return int(min(BUCKETS, max(1, customers // unit)))


def bucket_of(customer_ids: Iterable[str], buckets: int) -> np.ndarray:
    """Each customer's bucket in [0, buckets): the first 8 bytes of sha256(customer id), mod `buckets`."""
    if not 1 <= buckets <= BUCKETS:
        raise ValueError(f"buckets must be between 1 and {BUCKETS} (got {buckets})")
    return np.array(
        [int.from_bytes(hashlib.sha256(str(c).encode()).digest()[:8], "big") % buckets for c in customer_ids],
        dtype=np.int64,
    )


def shard_of(customer_ids: Iterable[str], shards: int, buckets: int = BUCKETS) -> np.ndarray:
    """Each customer's shard in [0, shards): its bucket mod `shards` (a stable hash of the id, mod N)."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1 (got {shards})")
    return bucket_of(customer_ids, buckets) % shards


def units_of(customer_ids: pd.Series, buckets: int) -> list[pd.Series]:
    """The customers grouped by bucket (bucket order; each keeps the given order): what the models score at once."""
    of = bucket_of(customer_ids, buckets)
    return [customer_ids[of == b] for b in np.unique(of)]


def plan_digest(plan: dict[str, Any]) -> str:
    """A short hash of the plan (names the folder of its parts)."""
    return hashlib.sha256(json.dumps(plan, sort_keys=True, default=str).encode()).hexdigest()[:16]


def write_plan(folder: Path, plan: dict[str, Any], features: pd.DataFrame) -> list[dict[str, Any]]:
    """Stage the plan and the features it was made with (atomically); returns one spec per shard.

    The plan records a hash of the features, so other features (late data) make another plan digest
    and the parts scored from the old ones are not read.
    """
    rows = pd.util.hash_pandas_object(features.astype(str), index=False).to_numpy()
    plan = {**plan, "features_hash": hashlib.sha256(rows.tobytes()).hexdigest()[:16]}
    with atomic_path(folder / FEATURES_FILE) as tmp:
        features.to_parquet(tmp, index=False)
    with atomic_path(folder / PLAN_FILE) as tmp:
        tmp.write_text(json.dumps(plan, indent=2, sort_keys=True))
    return [{"folder": str(folder), "shard": i} for i in range(plan["shards"])]


def read_plan(folder: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """The staged plan and features.

    Raises:
        FileNotFoundError: nothing planned there (run the plan task first).
    """
    if not (folder / PLAN_FILE).exists():
        raise FileNotFoundError(f"no campaign planned in {folder}: run the plan task first")
    return json.loads((folder / PLAN_FILE).read_text()), pd.read_parquet(folder / FEATURES_FILE)


def part_path(folder: Path, plan: dict[str, Any], shard: int) -> Path:
    """Where shard `shard` of this plan writes its part."""
    return folder / PARTS_DIR / plan_digest(plan) / f"part-{shard:04d}-of-{plan['shards']:04d}.parquet"


def score_shard(folder: Path, shard: int, settings: Settings | None = None) -> Path:
    """Score shard `shard` of the campaign planned in `folder`; returns its part (written atomically).

    Raises:
        ShardError: `shard` is not one of the plan's.
    """
    from feature_store.events import read_event_log
    from pipelines.campaigns.score import load_version, score_customers, uplift_estimates

    plan, features = read_plan(folder)
    if not 0 <= shard < plan["shards"]:
        raise ShardError(f"shard {shard} is not one of the plan's {plan['shards']}")
    with platform_session(settings) as (settings, params, engine):
        when = pd.Timestamp(plan["as_of"])
        buckets = plan["buckets"]
        of = shard_of(features["customer_id"], plan["shards"], buckets)
        mine = features.loc[of == shard].reset_index(drop=True)
        if mine.empty:  # fewer buckets than shards (a small shop): nobody to score
            target = part_path(folder, plan, shard)
            with atomic_path(target) as tmp:
                pd.DataFrame(columns=list(PART_COLUMNS)).to_parquet(tmp, index=False)
            return target
        return_model = load_version(settings, "return", plan["versions"]["return"])
        history = read_event_log(engine, "warehouse", before=when.to_pydatetime())
        units = units_of(mine["customer_id"], buckets)
        scored = score_customers(engine, history, mine, return_model, params, when, units=units)
        part = scored[list(PART_COLUMNS)].reset_index(drop=True)
        if plan["uplift"] is not None:
            model = load_version(settings, "uplift", plan["uplift"])
            estimates = pd.concat(  # by bucket too, for the same reason
                [uplift_estimates(model, scored[scored["customer_id"].isin(u)], mine, params) for u in units],
                ignore_index=True,
            )
            order = pd.concat([scored.loc[scored["customer_id"].isin(u), "customer_id"] for u in units])
            estimates.index = order.to_numpy()
            part = pd.concat(
                [part, estimates.loc[part["customer_id"]].reset_index(drop=True).add_prefix("est:")], axis=1
            )
        target = part_path(folder, plan, shard)
        with atomic_path(target) as tmp:
            part.to_parquet(tmp, index=False)
        log.info("shard %d of %d: scored %d customers", shard, plan["shards"], len(part))
        return target


def read_parts(folder: Path, plan: dict[str, Any], features: pd.DataFrame) -> tuple[pd.DataFrame, Any]:
    """Every shard's part, in the features' customer order: (scored rows, uplift estimates or None).

    Raises:
        ShardError: a part is missing, or the parts do not cover the planned customers exactly once.
    """
    paths = [part_path(folder, plan, i) for i in range(plan["shards"])]
    missing = [p.name for p in paths if not p.exists()]
    if missing:
        raise ShardError(f"campaign {plan['campaign_id']}: parts {missing} not scored yet")
    frames = [pd.read_parquet(p) for p in paths]
    # An empty shard's part has untyped columns: leave it out so the dtypes stay the scored ones.
    parts = pd.concat([f for f in frames if len(f)] or frames, ignore_index=True)
    ids = parts["customer_id"]
    if ids.duplicated().any() or set(ids) != set(features["customer_id"]):
        raise ShardError(
            f"campaign {plan['campaign_id']}: the parts hold {ids.nunique()} customers "
            f"({int(ids.duplicated().sum())} twice) for {len(features)} planned"
        )
    parts = parts.set_index("customer_id").loc[features["customer_id"]].reset_index()
    parts["reasons"] = parts["reasons"].map(lambda v: [str(x) for x in v])
    estimates = [c for c in parts.columns if c.startswith("est:")]
    uplift = parts[estimates].rename(columns=lambda c: c.removeprefix("est:")) if estimates else None
    return parts[list(PART_COLUMNS)], uplift
