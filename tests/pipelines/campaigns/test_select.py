"""Selection rules on hand-made scored customers: exclusions, ranking, quotas, budget, control group."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.campaigns.select import (
    CONTROL,
    EXCLUSIONS,
    SelectionError,
    exclusion_reasons,
    hash_unit,
    risk_deciles,
    select_targets,
)
from retention.params import load_params
from tests.conftest import ROOT

CAMPAIGN = load_params(ROOT / "params.yaml").campaign


def params(**changes: object):  # noqa: ANN201
    return CAMPAIGN.model_copy(update=changes)


def scored(n: int, seed: int = 0) -> pd.DataFrame:
    """n eligible customers (consenting, recent, at risk, valuable) with random scores."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": [f"C{i:06d}" for i in range(n)],
            "p_churn": rng.uniform(0.35, 0.95, n),
            "predicted_value": rng.uniform(1, 100, n),
            "segment": rng.choice(["at_risk", "hibernating", "champions", "loyal"], n),
            "recency_days": rng.integers(1, 100, n).astype(float),
            "marketing_consent": True,
            "email": [f"c{i}@example.org" for i in range(n)],
        }
    )


def test_each_exclusion_removes_exactly_its_customers() -> None:
    frame = scored(8)
    frame.loc[0, "email"] = "ops@example-shop.com"  # internal domain
    frame.loc[1, "customer_id"] = "test-42"  # test account
    frame.loc[2, "marketing_consent"] = False
    frame.loc[3, "recency_days"] = CAMPAIGN.lapsed_days + 1
    frame.loc[4, "p_churn"] = CAMPAIGN.risk_band[0] / 2
    frame.loc[5, "predicted_value"] = 0.0
    rules = params(min_value_at_stake=0.01)
    reasons = exclusion_reasons(frame, rules, recently_treated={frame.loc[6, "customer_id"]})
    assert reasons.tolist() == [
        "internal_account",
        "internal_account",
        "no_consent",
        "lapsed",
        "outside_risk_band",
        "low_value",
        "cooldown",
        "",
    ]
    targets, funnel = select_targets(frame, rules, "c-1", {frame.loc[6, "customer_id"]})
    assert targets["customer_id"].tolist() == [frame.loc[7, "customer_id"]]
    assert funnel["excluded"] == {
        "internal_account": 2,
        "no_consent": 1,
        "lapsed": 1,
        "cooldown": 1,
        "outside_risk_band": 1,
        "low_value": 1,
    }
    assert set(funnel["excluded"]) == set(EXCLUSIONS)


def test_targets_are_ranked_by_value_at_stake_within_quota_and_budget() -> None:
    frame = scored(500)
    rules = params(segment_quotas={"champions": 5}, budget=100.0, cost_per_contact=1.0)
    targets, funnel = select_targets(frame, rules, "c-1", set())
    assert len(targets) == rules.max_targets == 100
    value = frame["p_churn"] * frame["predicted_value"]
    stakes = targets["value_at_stake"].to_numpy()
    assert (np.diff(stakes) <= 0).all() and targets["rank"].tolist() == list(range(1, 101))
    assert (targets["segment"] == "champions").sum() == 5
    # Nobody left out (outside the quota'd segment) is worth more than the last one chosen.
    left = frame.loc[~frame["customer_id"].isin(targets["customer_id"]) & (frame["segment"] != "champions")]
    assert (value[left.index] <= stakes[-1]).all()
    assert funnel["eligible"] == 500 and funnel["selected"] == 100
    assert funnel["over_quota"] + funnel["over_budget"] + funnel["selected"] == funnel["eligible"]


def test_control_group_is_stratified_by_risk_decile_and_reproducible() -> None:
    frame = scored(2000, seed=1)
    targets, funnel = select_targets(frame, CAMPAIGN, "winback-2026-05-04", set())
    share = (targets["arm"] == CONTROL).mean()
    assert abs(share - CAMPAIGN.control_share) <= 1 / len(targets)
    by_decile = targets.groupby("risk_decile")["arm"].apply(lambda a: (a == CONTROL).mean())
    assert len(by_decile) == CAMPAIGN.risk_deciles
    assert (by_decile.sub(CAMPAIGN.control_share).abs() <= 0.02).all()  # each decile ~ the share
    again, _ = select_targets(frame, CAMPAIGN, "winback-2026-05-04", set())
    assert again["arm"].tolist() == targets["arm"].tolist()  # same campaign: same draw
    other, _ = select_targets(frame, CAMPAIGN, "winback-2026-05-11", set())
    overlap = (other["arm"] == CONTROL) & (targets["arm"] == CONTROL)
    assert overlap.sum() < 0.5 * (targets["arm"] == CONTROL).sum()  # another campaign: another draw
    assert funnel["control"] == (targets["arm"] == CONTROL).sum()


def test_hash_unit_is_uniform_and_deciles_are_equal_sized() -> None:
    draws = hash_unit("c", pd.Series([str(i) for i in range(20000)]))
    assert draws.min() >= 0 and draws.max() < 1
    counts = np.histogram(draws, bins=10, range=(0, 1))[0]
    assert counts.min() > 1800 and counts.max() < 2200
    deciles = risk_deciles(pd.Series(np.linspace(0, 1, 95)), 10)
    assert deciles.min() == 1 and deciles.max() == 10
    assert np.bincount(deciles)[1:].min() >= 9


def test_bad_scored_frames_are_refused_with_the_reason() -> None:
    with pytest.raises(SelectionError, match="lack columns"):
        select_targets(scored(3).drop(columns="email"), CAMPAIGN, "c", set())
    twice = pd.concat([scored(3), scored(3).head(1)])
    with pytest.raises(SelectionError, match="duplicate"):
        select_targets(twice, CAMPAIGN, "c", set())
