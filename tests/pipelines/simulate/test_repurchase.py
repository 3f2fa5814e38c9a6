"""Repurchase cycles of the simulated shop: consumables are bought again about one interval later,
durables rarely, deterministically per seed; the true effects of offers include the rebuys."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from pipelines.simulate import apply_campaigns, build_world, simulate_days, true_effects
from retention.params import NO_OFFER, SimulateParams, load_params
from tests.conftest import ROOT

DAYS = 120
Z = 4.0  # tolerance in standard errors, as in test_response.py
PARAMS = load_params(ROOT / "params.yaml").simulate


@pytest.fixture(scope="module")
def params() -> SimulateParams:
    return PARAMS.model_copy(update={"customers": 4000, "days": DAYS})


def _purchases(params: SimulateParams, day_from: int = 0, day_to: int = DAYS) -> pd.DataFrame:
    """Purchase events of [day_from, day_to), one row per customer, product and day, with the cycle."""
    world = build_world(params, DAYS)
    events = pd.concat([d.events for d in simulate_days(world, day_from, day_to)], ignore_index=True)
    bought = events[events["event_type"] == "purchase"]
    cycle = pd.Series(world.product_cycle, index=world.product_ids)
    return (
        bought.assign(
            day=(bought["ts"] - pd.Timestamp(params.start)).dt.days,
            cycle=bought["product_id"].map(cycle).to_numpy(),
        )
        .drop_duplicates(["customer_id", "product_id", "day"])
        .sort_values(["customer_id", "product_id", "day"])[["customer_id", "product_id", "day", "cycle"]]
        .reset_index(drop=True)
    )


@pytest.fixture(scope="module")
def purchases(params: SimulateParams) -> pd.DataFrame:
    return _purchases(params)


def test_consumables_are_bought_again_about_one_interval_later(purchases: pd.DataFrame) -> None:
    # given the purchases of consumables (products with a cycle)
    gap = purchases.groupby(["customer_id", "product_id"])["day"].diff()
    consumable = purchases["cycle"].notna() & gap.notna()
    # then customers buy the same consumable again, and the median gap is the product's interval
    assert consumable.sum() >= 100, consumable.sum()
    ratio = float((gap[consumable] / purchases.loc[consumable, "cycle"]).median())
    assert 0.9 <= ratio <= 1.1, ratio


def test_durables_are_bought_again_far_less_often(purchases: pd.DataFrame) -> None:
    pairs = purchases.groupby(["customer_id", "product_id"]).agg(
        times=("day", "size"), consumable=("cycle", lambda c: c.notna().all())
    )
    assert pairs["consumable"].any() and not pairs["consumable"].all()
    # repeat purchases per customer and product bought: several times more for consumables
    again = (pairs["times"] - 1).groupby(pairs["consumable"]).mean()
    assert again[True] > 3 * again[False], again


def _events(params: SimulateParams, day_from: int, day_to: int) -> pd.DataFrame:
    world = build_world(params, DAYS)
    return pd.concat([d.events for d in simulate_days(world, day_from, day_to)], ignore_index=True)


def test_same_seed_same_rebuys_whatever_the_split(params: SimulateParams) -> None:
    first, again = _events(params, 0, 60), _events(params, 0, 60)
    assert first["session_id"].str.contains("-R").sum() > 100  # rebuy sessions
    pd.testing.assert_frame_equal(first, again)
    pieces = pd.concat([_events(params, 0, 25), _events(params, 25, 60)], ignore_index=True)
    pd.testing.assert_frame_equal(first, pieces)
    other = _events(params.model_copy(update={"seed": params.seed + 1}), 0, 60)
    rebuys = [
        e.loc[e["session_id"].str.contains("-R"), ["customer_id", "product_id", "ts"]] for e in (first, other)
    ]
    assert not rebuys[0].reset_index(drop=True).equals(rebuys[1].reset_index(drop=True))


def test_without_cycles_nobody_rebuys_by_a_cycle(params: SimulateParams) -> None:
    world = build_world(params.model_copy(update={"repurchase": None}), DAYS)
    assert world.habitual.size == 0 and np.isnan(world.product_cycle).all()
    orders = pd.concat([d.orders for d in simulate_days(world, 0, 30)])
    assert not orders["order_id"].str.contains("-R").any()


def test_true_effects_include_the_rebuys(params: SimulateParams) -> None:
    # given a shop where every customer rebuys a product by a short cycle, and random offers
    every_category = dict.fromkeys(params.categories, 14.0)
    cycles = params.repurchase.model_copy(update={"days": every_category, "habit_share": 1.0})
    world = build_world(params.model_copy(update={"repurchase": cycles}), DAYS)
    assert world.habitual.size == params.customers
    contact, horizon = 60, 30
    offers = [NO_OFFER, *params.response.offers]
    ids = world.customer_ids[world.signup_day < contact]
    arm = np.random.default_rng(3).integers(0, len(offers), ids.size)
    targets = pd.DataFrame(
        {"campaign_id": "c", "day": contact, "horizon_days": horizon, "customer_id": ids}
    ).assign(offer=np.array(offers)[arm])
    responses = apply_campaigns(world, targets)
    # when the window is realised
    orders = pd.concat([d.orders for d in simulate_days(world, contact, contact + horizon, responses)])
    assert orders["order_id"].str.contains("-R").mean() > 0.3  # rebuys are a large part of the orders
    contacts = responses.contacts
    annoyed = contacts.loc[contacts["outcome"] == "annoyed", "customer_id"]
    assert annoyed.size > 0 and not orders["customer_id"].isin(annoyed).any()  # gone: no rebuys either
    spend = orders.groupby("customer_id")["total_amount"].sum().reindex(ids, fill_value=0.0)
    effects = true_effects(responses, ids, contact, offers, horizon, contacts_before=0)
    # then each arm's realised return rate and revenue agree with the truth
    for k, offer in enumerate(offers):
        mine = effects[effects["offer"] == offer].set_index("customer_id").loc[ids[arm == k]]
        p = mine["p_return"].to_numpy()
        returned = spend.loc[mine.index].gt(0).to_numpy()
        se = np.sqrt(np.sum(p * (1 - p))) / p.size
        assert abs(returned.mean() - p.mean()) < Z * se, (offer, returned.mean(), p.mean(), se)
        revenue = spend.loc[mine.index].to_numpy()
        se_revenue = revenue.std() / np.sqrt(revenue.size)
        assert abs(revenue.mean() - mine["revenue"].mean()) < Z * se_revenue, (offer, revenue.mean())


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"days": {"beauty": 3.0}}, "at least 7"),
        ({"jitter": 0.5}, "jitter"),
        ({"days": {"groceries": 14.0}}, "unknown categories: groceries"),
    ],
)
def test_repurchase_parameters_are_validated(update: dict, message: str) -> None:
    raw = PARAMS.model_dump()
    raw["repurchase"].update(update)
    with pytest.raises(ValidationError, match=message):
        SimulateParams.model_validate(raw)
