"""Campaign responses of the simulated shop: realised effects match the analytic truth, the effects
are heterogeneous (persuadables, lost causes, sleeping dogs), untreated rows never change, re-runs
are idempotent, and the truth file is complete and written atomically."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sqlalchemy import Boolean, DateTime, Float, Integer, Table, insert, text

from pipelines.simulate import build_world, load_shop, read_effects, simulate, simulate_days, true_effects
from pipelines.simulate.response import EFFECT_COLUMNS, apply_campaigns, no_campaigns
from pipelines.simulate.run import EFFECTS_FILE, write_effects
from retention.db.platform import Campaign, CampaignTarget
from retention.params import NO_OFFER, ResponseParams, SimulateParams, load_params
from tests.conftest import ROOT

PARAMS = load_params(ROOT / "params.yaml")
OFFERS = [NO_OFFER, *PARAMS.simulate.response.offers]
CONTACT_DAY, HORIZON = 60, 30
Z = 4.0  # tolerance in standard errors: a false alarm about once in 16,000 comparisons


@pytest.fixture(scope="module")
def params() -> SimulateParams:
    return PARAMS.simulate.model_copy(update={"customers": 20_000})


@pytest.fixture(scope="module")
def experiment(params: SimulateParams) -> dict[str, Any]:
    """Everyone signed up before the contact day, offers (and `none`) assigned at random."""
    world = build_world(params, 120)
    ids = world.customer_ids[world.signup_day < CONTACT_DAY]
    arm = np.random.default_rng(7).integers(0, len(OFFERS), ids.size)
    treatments = _treatments("exp", CONTACT_DAY, HORIZON, ids, np.array(OFFERS)[arm])
    responses = apply_campaigns(world, treatments)
    orders = pd.concat(
        [d.orders for d in simulate_days(world, CONTACT_DAY, CONTACT_DAY + HORIZON, responses)],
        ignore_index=True,
    )
    spend = orders.groupby("customer_id")["total_amount"].sum().reindex(ids, fill_value=0.0)
    effects = true_effects(responses, ids, CONTACT_DAY, OFFERS, HORIZON, contacts_before=0)
    return {
        "world": world,
        "ids": ids,
        "arm": arm,
        "responses": responses,
        "returned": spend.index.isin(orders["customer_id"]),
        "revenue": spend.to_numpy(),
        "p_return": effects.pivot(index="customer_id", columns="offer", values="p_return").loc[ids],
        "expected_revenue": effects.pivot(index="customer_id", columns="offer", values="revenue").loc[ids],
    }


def _treatments(
    campaign_id: str, day: int, horizon: int, ids: np.ndarray, offers: np.ndarray
) -> pd.DataFrame:
    return pd.DataFrame(
        {"campaign_id": campaign_id, "day": day, "horizon_days": horizon, "customer_id": ids, "offer": offers}
    )


def test_each_arm_realises_its_true_expected_return_rate_and_revenue(experiment: dict[str, Any]) -> None:
    # given every customer's true P(return) and E[revenue] under the offer drawn for them
    for k, offer in enumerate(OFFERS):
        in_arm = experiment["arm"] == k
        p = experiment["p_return"][offer].to_numpy()[in_arm]
        mean_revenue = experiment["expected_revenue"][offer].to_numpy()[in_arm]
        # when the arm's outcomes are realised by the day generator
        returned = experiment["returned"][in_arm]
        revenue = experiment["revenue"][in_arm]
        # then the realised means agree with the expectations (a sum of independent Bernoullis)
        se_return = np.sqrt(np.sum(p * (1 - p))) / p.size
        assert abs(returned.mean() - p.mean()) < Z * se_return, (offer, returned.mean(), p.mean(), se_return)
        se_revenue = revenue.std() / np.sqrt(revenue.size)
        assert abs(revenue.mean() - mean_revenue.mean()) < Z * se_revenue, (
            offer,
            revenue.mean(),
            mean_revenue.mean(),
        )


def test_randomised_offer_groups_recover_the_mean_true_effect(experiment: dict[str, Any]) -> None:
    p, returned, arm = experiment["p_return"], experiment["returned"], experiment["arm"]
    for k, offer in enumerate(OFFERS[1:], start=1):
        # the difference of realised return rates between two randomly assigned groups ...
        realised = returned[arm == k].mean() - returned[arm == 0].mean()
        # ... estimates the mean true effect over everyone (both groups are random samples of them)
        true_effect = float((p[offer] - p[NO_OFFER]).mean())
        se = np.sqrt(
            returned[arm == k].var() / (arm == k).sum() + returned[arm == 0].var() / (arm == 0).sum()
        )
        assert abs(realised - true_effect) < Z * se, (offer, realised, true_effect, se)


def test_near_churn_customers_realise_their_large_true_effects(params: SimulateParams) -> None:
    # given a churn-heavy shop, so that many customers are near their churn day on the contact day
    segments = {
        name: segment.model_copy(update={"share": share, "weekly_churn_hazard": hazard})
        for (name, segment), share, hazard in zip(
            params.segments.items(), (0.05, 0.9, 0.05), (0.004, 0.12, 0.12), strict=True
        )
    }
    world = build_world(params.model_copy(update={"segments": segments}), 120)
    near = (world.signup_day < CONTACT_DAY) & (world.churn_day > CONTACT_DAY)
    near &= world.churn_day < CONTACT_DAY + HORIZON
    ids = world.customer_ids[near]
    arm = np.random.default_rng(8).integers(0, len(OFFERS), ids.size)
    responses = apply_campaigns(world, _treatments("near", CONTACT_DAY, HORIZON, ids, np.array(OFFERS)[arm]))
    # when their offers (or none) are realised
    days = simulate_days(world, CONTACT_DAY, CONTACT_DAY + HORIZON, responses)
    returned = pd.Series(ids).isin(pd.concat([d.orders for d in days])["customer_id"]).to_numpy()
    p = true_effects(responses, ids, CONTACT_DAY, OFFERS, HORIZON).pivot(
        index="customer_id", columns="offer", values="p_return"
    )
    # then each offer's realised lift over `none` matches the mean true effect, which is large
    control = arm == 0
    for k, offer in enumerate(OFFERS[1:], start=1):
        treated = arm == k
        realised = returned[treated].mean() - returned[control].mean()
        true_effect = float((p[offer] - p[NO_OFFER]).loc[ids].mean())
        se = np.sqrt(returned[treated].var() / treated.sum() + returned[control].var() / control.sum())
        assert abs(realised - true_effect) < Z * se, (offer, realised, true_effect, se)
        assert true_effect > 3 * se, (offer, true_effect, se)


def test_effects_are_heterogeneous_lost_causes_loyal_persuadables_and_sleeping_dogs(
    experiment: dict[str, Any],
) -> None:
    world, ids, p = experiment["world"], experiment["ids"], experiment["p_return"]
    truth = world.truth.set_index("customer_id").loc[ids]
    churn = truth["churn_day"].to_numpy()
    effect = {offer: (p[offer] - p[NO_OFFER]).to_numpy() for offer in OFFERS[1:]}
    gone = churn <= CONTACT_DAY
    loyal = (truth["segment"].to_numpy() == "loyal") & ~gone
    persuadable = (truth["segment"].to_numpy() == "at_risk") & ~gone & (churn < CONTACT_DAY + HORIZON)
    for offer, e in effect.items():
        # lost causes: a contact changes nothing for customers already gone
        assert np.all(e[gone] == 0), offer
        # loyal customers return anyway: almost no effect
        assert abs(e[loyal].mean()) < 0.02, (offer, e[loyal].mean())
        # at-risk customers near their churn day gain the most
        assert e[persuadable].mean() > 0.08, (offer, e[persuadable].mean())
        assert e[persuadable].mean() > 3 * e[~gone].mean(), offer
    # sleeping dogs: for some customers a contact lowers the chance to return, and they are unhappy ones
    dogs = effect["reminder"] < -0.02
    assert dogs.mean() > 0.01, dogs.mean()
    assert truth["satisfaction"].to_numpy()[dogs].max() < PARAMS.simulate.response.annoy_satisfaction
    # coupons pay for purchases loyal customers make anyway: they lose revenue on them
    revenue = experiment["expected_revenue"]
    assert (revenue["coupon_10"] - revenue[NO_OFFER]).to_numpy()[loyal].mean() < 0


def test_targeting_by_true_effect_beats_targeting_by_risk(experiment: dict[str, Any]) -> None:
    # among customers active within the last month (a campaign's eligible list excludes long-lapsed ones)
    churn = experiment["world"].truth.set_index("customer_id").loc[experiment["ids"], "churn_day"]
    p = experiment["p_return"][(churn > CONTACT_DAY - 30).to_numpy()]
    k = len(p) // 5
    for offer in OFFERS[1:]:
        effect = p[offer] - p[NO_OFFER]
        by_risk = effect.loc[(1 - p[NO_OFFER]).sort_values(ascending=False).index[:k]].sum()
        best = effect.sort_values(ascending=False).iloc[:k].sum()
        assert best > 2 * by_risk > 0, (offer, best, by_risk)


def test_campaigns_never_change_untreated_rows_or_days_before_the_contact(params: SimulateParams) -> None:
    world = build_world(params.model_copy(update={"customers": 3000}), 120)
    ids = world.customer_ids[world.signup_day < 40]
    rng = np.random.default_rng(1)
    treated = rng.choice(ids, 800, replace=False)
    offers = rng.choice(OFFERS, treated.size)
    responses = apply_campaigns(world, _treatments("c", 40, HORIZON, treated, offers))
    contacted = treated[offers != NO_OFFER]
    plain_days, campaign_days = (
        list(simulate_days(world, 30, 80)),
        list(simulate_days(world, 30, 80, responses)),
    )
    for name in ("events", "orders", "reviews"):
        plain = pd.concat([getattr(d, name) for d in plain_days], ignore_index=True)
        with_campaign = pd.concat([getattr(d, name) for d in campaign_days], ignore_index=True)
        after = (plain["ts"] >= pd.Timestamp(params.start) + timedelta(days=40)).to_numpy()

        def untouched(frame: pd.DataFrame) -> pd.DataFrame:
            return frame[~frame["customer_id"].isin(contacted)].reset_index(drop=True)

        pd.testing.assert_frame_equal(untouched(plain), untouched(with_campaign))
        before = int((~after).sum())
        pd.testing.assert_frame_equal(plain.iloc[:before], with_campaign.iloc[:before])
        assert with_campaign.iloc[:, 0].is_unique  # event, order and review ids stay unique
    # a shop whose campaigns contact nobody is the shop without campaigns, row for row
    pd.testing.assert_frame_equal(
        pd.concat([d.events for d in simulate_days(world, 40, 45, no_campaigns(world))], ignore_index=True),
        pd.concat([d.events for d in simulate_days(world, 40, 45)], ignore_index=True),
    )


def test_a_contact_draw_depends_only_on_seed_campaign_and_customer(params: SimulateParams) -> None:
    world = build_world(params.model_copy(update={"customers": 3000}), 120)
    ids = world.customer_ids[world.signup_day < 40]
    whole = apply_campaigns(world, _treatments("c", 40, HORIZON, ids, np.full(ids.size, "coupon_10")))
    half = apply_campaigns(
        world, _treatments("c", 40, HORIZON, ids[::2], np.full(ids[::2].size, "coupon_10"))
    )
    shared = whole.contacts.set_index("customer_id").loc[ids[::2], ["draw", "outcome", "churn_after"]]
    pd.testing.assert_frame_equal(
        shared, half.contacts.set_index("customer_id")[["draw", "outcome", "churn_after"]]
    )
    other = apply_campaigns(world, _treatments("d", 40, HORIZON, ids, np.full(ids.size, "coupon_10")))
    assert not np.allclose(other.contacts["draw"], whole.contacts["draw"])
    assert set(whole.contacts["outcome"]) == {"neither", "persuaded", "annoyed"}


def test_a_later_campaign_sees_the_state_earlier_ones_left(params: SimulateParams) -> None:
    world = build_world(params.model_copy(update={"customers": 3000}), 200)
    ids = world.customer_ids[(world.signup_day < 40) & (world.churn_day > 40)]
    first = _treatments("a", 40, HORIZON, ids, np.full(ids.size, "reminder"))
    second = _treatments("b", 70, HORIZON, ids, np.full(ids.size, "coupon_10"))
    responses = apply_campaigns(world, pd.concat([first, second], ignore_index=True))
    contacts = responses.contacts.set_index(["campaign_id", "customer_id"])
    annoyed = contacts.loc["a"].index[contacts.loc["a", "outcome"] == "annoyed"]
    persuaded = contacts.loc["a"].index[contacts.loc["a", "outcome"] == "persuaded"]
    assert len(annoyed) and len(persuaded)
    # the second campaign starts from the churn days the first one left
    pd.testing.assert_series_equal(
        contacts.loc["b", "churn_before"], contacts.loc["a", "churn_after"], check_names=False
    )
    effects = true_effects(responses, ids, 70, OFFERS, HORIZON)
    p = effects.pivot(index="customer_id", columns="offer", values="p_return")
    assert (p.loc[annoyed] == 0).all().all()  # gone for good: no offer brings them back
    alone = true_effects(world, persuaded, 70, [NO_OFFER], HORIZON).set_index("customer_id")["p_return"]
    assert (p.loc[persuaded, NO_OFFER] >= alone - 1e-12).all()
    assert (p.loc[persuaded, NO_OFFER] > alone + 1e-6).any()  # their postponed churn counts


def test_true_effects_api(params: SimulateParams) -> None:
    world = build_world(params.model_copy(update={"customers": 500}), 120)
    ids = list(world.customer_ids[[5, 3, 400]])
    effects = true_effects(world, ids, 50, ["coupon_10", NO_OFFER], 14)
    assert list(effects.columns) == EFFECT_COLUMNS
    assert effects["customer_id"].tolist() == [c for c in ids for _ in range(2)]
    assert effects["offer"].tolist() == ["coupon_10", NO_OFFER] * 3
    assert effects["p_return"].between(0, 1).all() and (effects["revenue"] >= 0).all()
    pd.testing.assert_frame_equal(
        effects, true_effects(no_campaigns(world), ids, 50, ["coupon_10", NO_OFFER], 14)
    )
    with pytest.raises(KeyError, match="not in the shop"):
        true_effects(world, ["nobody"], 50, [NO_OFFER], 14)
    with pytest.raises(ValueError, match="unknown offers"):
        true_effects(world, ids, 50, ["gift"], 14)
    with pytest.raises(ValueError, match="no response"):
        apply_campaigns(world, _treatments("c", 50, 14, np.array(ids), np.full(3, "gift")))


def test_response_parameters_are_validated() -> None:
    response = PARAMS.simulate.response.model_dump()
    assert set(PARAMS.campaign.offers) <= set(response["offers"]), "every campaign offer needs a response"
    too_likely = {
        **response,
        "offers": {**response["offers"], "reminder": {**response["offers"]["reminder"], "annoy": 0.9}},
    }
    with pytest.raises(ValidationError, match="at most 1"):
        ResponseParams.model_validate(too_likely)
    with pytest.raises(ValidationError, match="lowercase identifiers"):
        ResponseParams.model_validate({**response, "offers": {NO_OFFER: response["offers"]["reminder"]}})


# --- stored shop: campaigns read from the platform tables ------------------------------------------


def _publish(engine, campaign_id: str, as_of: datetime, horizon: int, targets: pd.DataFrame) -> None:  # noqa: ANN001
    campaign = {
        "campaign_id": campaign_id,
        "name": "winback",
        "as_of": as_of,
        "horizon_days": horizon,
        "published_at": as_of,
        "n_targets": len(targets),
        "n_control": int((targets["arm"] == "control").sum()),
        "control_share": 0.1,
        "content_hash": hashlib.sha256(targets.to_csv().encode()).hexdigest()[:16],
        "lift": None,
        "policy": "uplift",
    }
    rows = [
        {
            "campaign_id": campaign_id,
            "customer_id": row.customer_id,
            "arm": row.arm,
            "rank": i + 1,
            "offer": row.offer,
            "policy_offer": row.offer,
            "propensity": 0.25,
            "explored": True,
        }
        for i, row in enumerate(targets.itertuples())
    ]
    with engine.begin() as connection:
        connection.execute(insert(Campaign.__table__), [_complete(Campaign.__table__, campaign)])
        connection.execute(
            insert(CampaignTarget.__table__), [_complete(CampaignTarget.__table__, r) for r in rows]
        )


def _complete(table: Table, row: dict[str, Any]) -> dict[str, Any]:
    """The row plus a placeholder for each required column it leaves out (this test needs none of them)."""
    filled = dict(row)
    for column in table.columns:
        if (
            column.name in filled
            or column.nullable
            or column.default is not None
            or column.server_default is not None
        ):
            continue
        kind = column.type
        filled[column.name] = (
            0
            if isinstance(kind, Integer)
            else 0.0
            if isinstance(kind, Float)
            else False
            if isinstance(kind, Boolean)
            else datetime(2026, 1, 1)
            if isinstance(kind, DateTime)
            else {}
            if kind.__class__.__name__ == "JSON"
            else "x"
        )
    return filled


def test_simulate_applies_published_campaigns_idempotently_and_writes_the_truth(
    engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    shop = PARAMS.simulate.model_copy(update={"customers": 400})
    state = tmp_path / "sim"
    # given a shop of 21 days and a campaign published as of its data end
    first = simulate(engine, state, shop, days=21)
    assert first.campaigns == 0 and not (state / EFFECTS_FILE).exists()
    world = build_world(shop, 21)
    ids = world.customer_ids[world.signup_day < 21]
    rng = np.random.default_rng(2)
    targets = pd.DataFrame(
        {
            "customer_id": ids,
            "arm": rng.choice(["treatment", "control", "untreated"], ids.size),
            "offer": rng.choice(OFFERS, ids.size),
        }
    )
    targets.loc[targets["arm"] != "treatment", "offer"] = NO_OFFER
    as_of = datetime.combine(shop.start, datetime.min.time()) + timedelta(days=21)
    _publish(engine, "winback-2026-01-22", as_of, 14, targets)

    # when the next days are simulated, then again
    later = simulate(engine, state, shop, days=14, append=True)
    with engine.connect() as connection:
        stored = pd.read_sql(text("SELECT * FROM events ORDER BY event_id"), connection)
    again = simulate(engine, state, shop, days=14, first_day=21)

    # then the responses are stored once: the re-run generates the same rows and stores nothing new
    assert later.campaigns == again.campaigns == 1
    assert again.generated == later.generated and sum(again.inserted.values()) == 0
    # and the stored rows are what the shop with its campaigns generates
    responses = load_shop(engine, state)
    assert set(responses.contacts["customer_id"]) == set(
        targets.loc[targets["offer"] != NO_OFFER, "customer_id"]
    )
    regenerated = pd.concat(
        [d.events for d in simulate_days(responses.world, 21, 35, responses)], ignore_index=True
    )
    stored_days = stored[stored["event_id"] >= "E00021"].reset_index(drop=True)
    columns = ["event_id", "customer_id", "event_type", "order_id"]
    pd.testing.assert_frame_equal(
        stored_days[columns].astype(object).fillna("-"),
        regenerated[columns].sort_values("event_id", ignore_index=True).astype(object).fillna("-"),
    )
    assert not regenerated.equals(
        pd.concat([d.events for d in simulate_days(responses.world, 21, 35)], ignore_index=True)
    )

    # and the truth file holds every target (all arms) x every offer and `none`
    effects = read_effects(state)
    assert list(effects.columns) == ["campaign_id", *EFFECT_COLUMNS]
    assert len(effects) == len(targets) * len(OFFERS)
    assert set(effects["customer_id"]) == set(targets["customer_id"])
    assert effects.groupby("customer_id")["offer"].apply(set).eq(set(OFFERS)).all()
    assert effects["p_return"].between(0, 1).all() and effects[["p_return", "revenue"]].notna().all().all()

    # and it is replaced atomically: a failed write leaves the previous file whole
    def broken(frame: pd.DataFrame, path: Path, **kwargs: object) -> None:
        Path(path).write_bytes(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", broken)
    with pytest.raises(OSError, match="disk full"):
        write_effects(engine, state)
    monkeypatch.undo()
    pd.testing.assert_frame_equal(read_effects(state), effects)
    assert sorted(p.name for p in state.iterdir()) == ["effects.parquet", "state.json", "truth.parquet"]
