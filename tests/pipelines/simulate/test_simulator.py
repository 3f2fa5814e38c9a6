"""Shop simulator: deterministic per seed, split-invariant, realistic within stated ranges."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.simulate import build_world, simulate, simulate_days
from pipelines.simulate.days import is_promo_day
from pipelines.simulate.run import SimulatorError, read_truth
from retention.params import SimulateParams, load_params
from tests.conftest import ROOT, table_counts

DAYS = 120


@pytest.fixture(scope="module")
def params() -> SimulateParams:
    return load_params(ROOT / "params.yaml").simulate.model_copy(update={"customers": 3000, "days": DAYS})


@pytest.fixture(scope="module")
def shop(params: SimulateParams) -> dict[str, pd.DataFrame]:
    world = build_world(params, DAYS)
    days = list(simulate_days(world, 0, DAYS))
    return {
        "events": pd.concat([d.events for d in days], ignore_index=True),
        "orders": pd.concat([d.orders for d in days], ignore_index=True),
        "reviews": pd.concat([d.reviews for d in days], ignore_index=True),
        "truth": world.truth,
        "customers": world.customers,
        "category": world.products.set_index("product_id")["category"],
        "promo": pd.Series([is_promo_day(world, d) for d in range(DAYS)]),
    }


def _generate(params: SimulateParams, day_from: int, day_to: int) -> pd.DataFrame:
    world = build_world(params, DAYS)
    return pd.concat([d.events for d in simulate_days(world, day_from, day_to)], ignore_index=True)


def test_same_seed_same_shop_other_seed_other_shop(params: SimulateParams) -> None:
    first, again = _generate(params, 0, 10), _generate(params, 0, 10)
    pd.testing.assert_frame_equal(first, again)
    other = _generate(params.model_copy(update={"seed": params.seed + 1}), 0, 10)
    assert not first[["customer_id", "product_id", "ts"]].equals(other[["customer_id", "product_id", "ts"]])


def test_days_do_not_depend_on_how_a_period_is_split(params: SimulateParams) -> None:
    whole = _generate(params, 0, 20)
    pieces = pd.concat([_generate(params, 0, 7), _generate(params, 7, 20)], ignore_index=True)
    pd.testing.assert_frame_equal(whole, pieces)


def test_funnel_and_purchase_behaviour_are_realistic(shop: dict[str, pd.DataFrame]) -> None:
    counts = shop["events"]["event_type"].value_counts()
    cart_per_view = counts["cart"] / counts["view"]
    purchase_per_cart = counts["purchase"] / counts["cart"]
    assert 0.08 <= cart_per_view <= 0.20, cart_per_view
    assert 0.40 <= purchase_per_cart <= 0.70, purchase_per_cart
    orders_per_buyer = shop["orders"].groupby("customer_id").size()
    repeat_rate = (orders_per_buyer > 1).mean()
    assert 0.3 <= repeat_rate <= 0.9, repeat_rate
    # purchases concentrate on the buyer's favourite category
    purchases = shop["events"][shop["events"]["event_type"] == "purchase"]
    favourite = shop["truth"].set_index("customer_id")["favourite_category"]
    share_in_favourite = (
        purchases["product_id"].map(shop["category"]) == purchases["customer_id"].map(favourite)
    ).mean()
    assert share_in_favourite > 0.5, share_in_favourite


def test_a_share_of_active_customers_churns_within_the_period(shop: dict[str, pd.DataFrame]) -> None:
    truth = shop["truth"]
    active_at_start = truth[(truth["signup_day"] <= 0) & (truth["churn_day"] > 0)]
    churned = (active_at_start["churn_day"] < DAYS).mean()
    assert 0.15 <= churned <= 0.6, churned
    by_segment = (
        active_at_start.assign(churned=active_at_start["churn_day"] < DAYS)
        .groupby("segment")["churned"]
        .mean()
    )
    assert by_segment["loyal"] < by_segment["at_risk"] < by_segment["lapsed"]


def test_activity_fades_before_churn(shop: dict[str, pd.DataFrame]) -> None:
    truth = shop["truth"].set_index("customer_id")
    churners = truth[(truth["churn_day"] > 60) & (truth["churn_day"] < DAYS) & (truth["signup_day"] < 0)]
    views = shop["events"][shop["events"]["customer_id"].isin(churners.index)]
    day = (views["ts"] - pd.Timestamp("2026-01-01")).dt.days
    days_before_churn = churners.loc[views["customer_id"], "churn_day"].to_numpy() - day.to_numpy()
    last_two_weeks = np.sum(days_before_churn < 14) / 14
    earlier = np.sum((days_before_churn >= 14) & (days_before_churn < 56)) / 42
    assert last_two_weeks < 0.8 * earlier, (last_two_weeks, earlier)


def test_reviews_relate_to_later_churn(shop: dict[str, pd.DataFrame]) -> None:
    truth = shop["truth"].set_index("customer_id")
    reviews = shop["reviews"]
    mean_rating = reviews.groupby("customer_id")["rating"].mean()
    churned = truth.loc[mean_rating.index, "churn_day"] < DAYS + 90  # churns within 90 days after the period
    unhappy = churned[mean_rating <= 2.5].mean()
    happy = churned[mean_rating >= 4].mean()
    assert unhappy > happy + 0.15, (unhappy, happy)
    negative = reviews["text"].str.contains("disappointed|not buy|broke|Poor quality|returning|late")
    assert reviews.loc[negative, "rating"].mean() < reviews.loc[~negative, "rating"].mean() - 0.5


def test_weekends_and_promotion_days_are_busier(
    shop: dict[str, pd.DataFrame], params: SimulateParams
) -> None:
    sessions = shop["events"].drop_duplicates("session_id")
    per_day = sessions.groupby(sessions["ts"].dt.normalize()).size()
    weekend = per_day[per_day.index.day_of_week >= 5].mean()
    weekday = per_day[per_day.index.day_of_week < 4].mean()
    assert weekend > weekday
    promo = shop["promo"].to_numpy()
    assert promo.any() and not promo.all()
    # compare each promotion day with the same weekdays of the surrounding fortnight (trend-free)
    ratios = [
        per_day.iloc[d]
        / per_day.iloc[[o for o in (d - 7, d + 7) if 0 <= o < len(per_day) and not promo[o]]].mean()
        for d in np.flatnonzero(promo)
        if any(0 <= o < len(per_day) and not promo[o] for o in (d - 7, d + 7))
    ]
    assert np.median(ratios) > 1.1, ratios


def test_consent_and_emails(shop: dict[str, pd.DataFrame], params: SimulateParams) -> None:
    customers = shop["customers"]
    assert abs(customers["marketing_consent"].mean() - params.consent_rate) < 0.05
    assert customers["email"].str.fullmatch(r"[a-z]+\.[a-z]+\d+@example\.(com|org|net)").all()
    assert customers["email"].is_unique


def test_simulate_stores_the_shop_idempotently_and_appends(
    engine, tmp_path: Path, params: SimulateParams
) -> None:  # noqa: ANN001
    small = params.model_copy(update={"customers": 300})
    state = tmp_path / "sim"
    first = simulate(engine, state, small, days=10)
    stored = table_counts(engine)
    assert stored["events"] == first.generated["events"] > 0
    assert stored["customers"] == first.inserted["customers"]
    again = simulate(engine, state, small, days=10)
    assert sum(again.inserted.values()) == 0 and table_counts(engine) == stored
    with engine.connect() as connection:
        catalogue = pd.read_sql("SELECT * FROM products ORDER BY product_id", connection)
    appended = simulate(engine, state, small, days=5, append=True)
    assert (appended.day_from, appended.day_to) == (10, 15)
    assert appended.inserted["products"] == 0  # the same world: the catalogue is restated unchanged
    with engine.connect() as connection:
        pd.testing.assert_frame_equal(
            pd.read_sql("SELECT * FROM products ORDER BY product_id", connection), catalogue
        )
    assert table_counts(engine)["events"] == stored["events"] + appended.generated["events"]
    assert read_truth(state)["customer_id"].is_unique
    with pytest.raises(SimulatorError, match="other parameters"):
        simulate(engine, state, small.model_copy(update={"seed": 7}), days=10)


def test_append_without_a_shop_is_a_clear_error(engine, tmp_path: Path, params: SimulateParams) -> None:  # noqa: ANN001
    with pytest.raises(SimulatorError, match="run `retention simulate` first"):
        simulate(engine, tmp_path / "none", params, days=1, append=True)
