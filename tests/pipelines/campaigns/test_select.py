"""Selection on hand-made scored customers: exclusions, both policies, quotas, budget, control, logging."""

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
    offer_economics,
    risk_deciles,
    select_targets,
    uplift_columns,
)
from retention.params import NO_OFFER, load_params
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
    frame.loc[4, "p_churn"] = CAMPAIGN.risk_band[0] / 2  # eligible, but the risk ranking skips it
    frame.loc[5, "predicted_value"] = 0.0
    rules = params(min_value_at_stake=0.01, exploration_share=0.0)
    reasons = exclusion_reasons(frame, rules, recently_treated={frame.loc[6, "customer_id"]})
    assert reasons.tolist() == [
        "internal_account",
        "internal_account",
        "no_consent",
        "lapsed",
        "",
        "",
        "cooldown",
        "",
    ]
    targets, funnel = select_targets(
        frame, rules, "c-1", {frame.loc[6, "customer_id"]}, exploration_share=0.0
    )
    assert sorted(targets["customer_id"]) == sorted(frame.loc[[4, 5, 7], "customer_id"])
    contacted = targets.loc[targets["policy_offer"] != NO_OFFER, "customer_id"].tolist()
    assert contacted == [frame.loc[7, "customer_id"]]  # outside the band / no value at stake: not chosen
    assert funnel["excluded"] == {"internal_account": 2, "no_consent": 1, "lapsed": 1, "cooldown": 1}
    assert set(funnel["excluded"]) == set(EXCLUSIONS)


def test_the_risk_policy_ranks_by_value_at_stake_within_quota_and_budget() -> None:
    frame = scored(500)
    rules = params(segment_quotas={"champions": 5}, budget=10.0, exploration_share=0.0)
    targets, funnel = select_targets(frame, rules, "c-1", set(), exploration_share=0.0)
    chosen = targets.loc[targets["policy_offer"] != NO_OFFER]
    assert set(chosen["policy_offer"]) == {rules.default_offer}
    spent = rules.offers[rules.default_offer].fixed_cost * len(chosen)  # the reminder has no order share
    assert spent <= rules.budget + 1e-9 < spent + rules.offers[rules.default_offer].fixed_cost
    stakes = chosen["value_at_stake"].to_numpy()
    assert (np.diff(stakes) <= 0).all() and chosen["rank"].tolist() == list(range(1, len(chosen) + 1))
    assert (chosen["segment"] == "champions").sum() == 5
    value = frame["p_churn"] * frame["predicted_value"]
    left = frame.loc[~frame["customer_id"].isin(chosen["customer_id"]) & (frame["segment"] != "champions")]
    assert (value[left.index] <= stakes[-1]).all()  # nobody left out is worth more than the last one
    assert funnel["eligible"] == 500 and funnel["selected"] == len(chosen)
    assert funnel["over_quota"] + funnel["over_budget"] + funnel["selected"] == funnel["candidates"]
    assert set(targets["risk_offer"]) <= {NO_OFFER, rules.default_offer}


def test_control_group_is_stratified_by_risk_decile_and_reproducible() -> None:
    frame = scored(2000, seed=1)
    rules = params(exploration_share=0.0)
    targets, funnel = select_targets(frame, rules, "winback-2026-05-04", set())
    listed = targets.loc[targets["policy_offer"] != NO_OFFER]
    share = (listed["arm"] == CONTROL).mean()
    assert abs(share - CAMPAIGN.control_share) <= 1 / len(listed)
    by_decile = listed.groupby("risk_decile")["arm"].apply(lambda a: (a == CONTROL).mean())
    assert (by_decile.sub(CAMPAIGN.control_share).abs() <= 0.03).all()  # each decile ~ the share
    again, _ = select_targets(frame, rules, "winback-2026-05-04", set())
    assert again["arm"].tolist() == targets["arm"].tolist()  # same campaign: same draw
    other, _ = select_targets(frame, rules, "winback-2026-05-11", set())
    mine = set(targets.loc[targets["arm"] == CONTROL, "customer_id"])
    theirs = set(other.loc[other["arm"] == CONTROL, "customer_id"])
    assert len(mine & theirs) < 0.5 * len(mine)  # another campaign: another draw
    assert funnel["control"] == (targets["arm"] == CONTROL).sum()
    assert (targets.loc[targets["arm"] == CONTROL, "offer"] == NO_OFFER).all()


def uplift_for(frame: pd.DataFrame, rules, gains: dict[str, tuple[float, float]]) -> pd.DataFrame:  # noqa: ANN001
    """Every customer gets the same (incremental P(return), incremental revenue) per offer."""
    columns = {}
    for offer in rules.offers:
        returns, revenue = gains.get(offer, (0.0, 0.0))
        ret, rev = uplift_columns(offer)
        columns[ret], columns[rev] = np.full(len(frame), returns), np.full(len(frame), revenue)
    return pd.DataFrame(columns)


def test_the_uplift_policy_picks_the_most_profitable_offer_and_none_when_nothing_pays() -> None:
    frame = scored(300, seed=2)
    frame["predicted_value"] = 50.0  # every offer allowed
    rules = params(exploration_share=0.0, budget=1e6)
    # coupon: most revenue uplift, but its 10% share of the spend costs more than it brings
    gains = {"reminder": (0.02, 10.0), "coupon_10": (0.05, 12.0), "free_shipping": (0.03, 11.0)}
    uplift = uplift_for(frame, rules, gains)
    economics = offer_economics(frame.reset_index(drop=True), uplift, rules)
    best = economics["profit"].idxmax(axis=1)
    targets, funnel = select_targets(frame, rules, "c-2", set(), uplift=uplift)
    assert funnel["policy"] == "uplift"
    chosen = targets.set_index("customer_id")["policy_offer"]
    expected = pd.Series(best.to_numpy(), index=frame["customer_id"])
    assert (chosen.reindex(expected.index) == expected).all()
    # nothing pays: no contact at all
    losing = uplift_for(frame, rules, {"reminder": (0.0, 0.0)})
    nobody, funnel = select_targets(frame, rules, "c-2", set(), uplift=losing)
    assert (nobody["policy_offer"] == NO_OFFER).all() and funnel["not_profitable"] == len(frame)


def test_ties_go_to_the_cheaper_offer() -> None:
    frame = scored(50, seed=3)
    frame["predicted_value"] = 40.0
    offers = {
        "reminder": CAMPAIGN.offers["reminder"].model_copy(update={"fixed_cost": 0.1, "order_share": 0.0}),
        "free_shipping": CAMPAIGN.offers["reminder"].model_copy(
            update={"fixed_cost": 0.2, "order_share": 0.0}
        ),
    }
    rules = params(exploration_share=0.0, budget=1e6, offers=offers, default_offer="reminder")
    # free shipping brings exactly its extra cost in margin: equal profit, so the cheaper wins
    extra = 0.1 / rules.margin
    uplift = uplift_for(frame, rules, {"reminder": (0.02, 10.0), "free_shipping": (0.02, 10.0 + extra)})
    targets, funnel = select_targets(frame, rules, "c-3", set(), uplift=uplift)
    assert set(targets["policy_offer"]) == {"reminder"} and funnel["ties"] == len(frame)


def test_the_budget_keeps_the_most_profitable_customers() -> None:
    frame = scored(200, seed=4)
    frame["predicted_value"] = 50.0
    rules = params(exploration_share=0.0, budget=2.0)  # 20 reminders at 0.1
    uplift = uplift_for(frame, rules, {})
    ret, rev = uplift_columns("reminder")
    uplift[rev] = np.linspace(1.0, 20.0, len(frame))  # customer i is worth more than i - 1
    targets, funnel = select_targets(frame, rules, "c-4", set(), uplift=uplift)
    chosen = targets.loc[targets["policy_offer"] != NO_OFFER, "customer_id"]
    assert sorted(chosen) == sorted(frame["customer_id"].tail(20)) and funnel["over_budget"] == 180


def test_logged_propensities_are_the_probabilities_offers_were_drawn_with() -> None:
    """On many customers, each offer's share among those alike equals their logged propensity."""
    frame = scored(20000, seed=5)
    frame["predicted_value"] = 50.0  # all three offers allowed: 4 arms incl. no contact
    rules = params(exploration_share=0.2, budget=1e9, control_share=0.1)
    uplift = uplift_for(frame, rules, {})
    ret, rev = uplift_columns("coupon_10")
    uplift[rev] = np.where(np.arange(len(frame)) % 2 == 0, 100.0, 0.0)  # half: policy says coupon
    targets, _ = select_targets(frame, rules, "c-5", set(), uplift=uplift)
    for policy_offer, group in targets.groupby("policy_offer"):
        for offer in [NO_OFFER, *rules.offers]:
            got = group["offer"] == offer
            logged = group.loc[got, "propensity"]
            if policy_offer == NO_OFFER:
                expected = 0.2 / 4 + (0.8 if offer == NO_OFFER else 0.0)
            else:
                expected = 0.2 / 4 + 0.8 * (
                    0.9 if offer == policy_offer else 0.1 if offer == NO_OFFER else 0.0
                )
            assert np.allclose(logged, expected), (policy_offer, offer)
            se = np.sqrt(expected * (1 - expected) / len(group))
            assert abs(got.mean() - expected) < 4 * se + 1e-3, (policy_offer, offer, got.mean(), expected)
    arms = targets.groupby("arm")["offer"].agg(lambda o: set(o))
    assert arms[CONTROL] == {NO_OFFER} and NO_OFFER not in arms["treatment"]


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
