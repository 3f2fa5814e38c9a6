"""How simulated customers respond to retention campaigns, and the true effect of every offer.

A treated customer (a campaign target whose `offer` is not `none`) is contacted on the campaign's
contact day, the day of its as-of. One uniform draw from the stream (seed, campaign,
customer) decides what the contact does for good (params.yaml `simulate.response`):

- annoyed (a sleeping dog), with P = annoy(offer) x max(0, 1 - satisfaction / annoy_satisfaction):
  the customer leaves for good on the contact day;
- persuaded, with P = min(1, persuade(segment) x strength(offer)): the churn day moves
  `postpone_days` later (activity, which fades before churn, recovers);
- otherwise the churn day stays.

Only customers active on the contact day (signed up, not churned) can be annoyed or persuaded: a
contact changes nothing for lost causes. Within the response window (the campaign's horizon) every
contacted customer also visits more (rate x (1 + visit_boost(segment) x strength(offer))), converts
more carts (purchase_rate + (1 - purchase_rate) x purchase_lift(offer) x price_sensitivity) and pays
(1 - discount(offer)) of the price. A later contact replaces an earlier contact's window; churn
moves compose in contact order (day, then campaign id).

True effects are expectations given the latent state, computed in closed form from the same
quantities the day generator draws from (no Monte-Carlo error): days are independent given the
state, a session buys with P = 1 - (1 - q) exp(-(v - 1) q) (q = cart x purchase rate, v = mean
views), and the expected price of a view sums the catalogue's rank probabilities. A habitual
customer's rebuys (pipelines/simulate/days.py) fall on known days and are bought with a known
chance, independently of the sessions, so they enter both P(return) and E[revenue] exactly. The
realised order totals differ from the expectation only by cent rounding of each line.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines.simulate.days import (
    MAX_VISIT_PROBABILITY,
    DayChanges,
    activity_fade,
    is_promo_day,
    offer_price,
    rebuy_chance,
    repurchase_due,
)
from pipelines.simulate.world import STREAM_CONTACT, World
from retention.params import NO_OFFER

log = logging.getLogger(__name__)

NEITHER, PERSUADED, ANNOYED = "neither", "persuaded", "annoyed"  # a contact's lasting outcome
TREATMENT_COLUMNS = ["campaign_id", "day", "horizon_days", "customer_id", "offer"]
EFFECT_COLUMNS = ["customer_id", "offer", "p_return", "revenue"]
CHUNK_CUSTOMERS = 20_000  # customers x horizon days evaluated at once by `true_effects`


@dataclass(frozen=True)
class CampaignResponses:
    """A simulated shop together with the resolved responses to its published campaigns.

    Attributes:
        world: the static shop.
        contacts: one row per treated customer and campaign, in contact order: campaign_id,
            customer_id, customer (position), day (contact day), window_end (first day after the
            response window), offer, draw, outcome (neither | persuaded | annoyed), churn_before,
            churn_after, visit_factor, purchase_rate, discount. For tests and evaluation only.
    """

    world: World
    contacts: pd.DataFrame

    def on_day(self, day: int) -> DayChanges | None:
        """The customers whose behaviour contacts up to `day` change on `day` (None: nobody)."""
        days = self.contacts["day"].to_numpy()
        known = int(np.searchsorted(days, day, side="right"))
        if known == 0:
            return None
        customer, latest = _latest_contacts(self.contacts["customer"].to_numpy()[:known])
        churn = self.contacts["churn_after"].to_numpy()[latest]
        window = day < self.contacts["window_end"].to_numpy()[latest]
        original = self.world.churn_day[customer]
        changed = window | ((churn != original) & (day < np.maximum(churn, original)))
        if not changed.any():
            return None
        window, latest = window[changed], latest[changed]
        return DayChanges(
            customer=customer[changed],
            churn_day=churn[changed],
            visit_factor=np.where(window, self.contacts["visit_factor"].to_numpy()[latest], 1.0),
            purchase_rate=np.where(
                window, self.contacts["purchase_rate"].to_numpy()[latest], self.world.params.purchase_rate
            ),
            discount=np.where(window, self.contacts["discount"].to_numpy()[latest], 0.0),
        )

    def contacts_before(self, day: int, campaign_id: str | None = None) -> int:
        """How many contacts precede a campaign contacting on `day` (by day, then campaign id)."""
        days = self.contacts["day"].to_numpy()
        earlier = days < day
        if campaign_id is not None:
            earlier |= (days == day) & (self.contacts["campaign_id"].to_numpy() < campaign_id)
        return int(earlier.sum())


def apply_campaigns(world: World, treatments: pd.DataFrame) -> CampaignResponses:
    """Resolve every contact of the published campaigns, in contact order.

    Args:
        world: the shop.
        treatments: one row per campaign target, TREATMENT_COLUMNS (`day` is the contact day, the
            day of the as-of); rows with offer `none` are not contacts and are ignored.

    Returns:
        The shop with its responses, for `simulate_days` and `true_effects`.

    Raises:
        ValueError: an offer that `simulate.response.offers` does not describe.
    """
    response = world.params.response
    treated = treatments.loc[treatments["offer"] != NO_OFFER, TREATMENT_COLUMNS]
    unknown = sorted(set(treated["offer"]) - set(response.offers))
    if unknown:
        raise ValueError(
            f"campaign offers {unknown} have no response in simulate.response.offers "
            f"({sorted(response.offers)}): add one to params.yaml"
        )
    position = pd.Index(world.customer_ids).get_indexer(treated["customer_id"])
    if (position < 0).any():
        log.warning("ignoring %d contacts of customers the shop does not have", int((position < 0).sum()))
    treated = treated.assign(customer=position)[position >= 0]
    treated = treated.sort_values(["day", "campaign_id", "customer"], kind="stable", ignore_index=True)

    churn = world.churn_day.astype(float)
    parts = []
    for (day, campaign_id), group in treated.groupby(["day", "campaign_id"], sort=True):
        customer = group["customer"].to_numpy()
        terms = contact_terms(world, customer, group["offer"].to_numpy())
        draw = contact_draws(world, str(campaign_id))[customer]
        before = churn[customer]
        active = (world.signup_day[customer] <= day) & (day < before)
        annoyed = active & (draw < terms["annoy"])
        persuaded = active & ~annoyed & (draw < terms["annoy"] + terms["persuade"])
        after = np.where(annoyed, float(day), np.where(persuaded, before + response.postpone_days, before))
        churn[customer] = after
        parts.append(
            group.assign(
                window_end=group["day"] + group["horizon_days"],
                draw=draw,
                outcome=np.where(annoyed, ANNOYED, np.where(persuaded, PERSUADED, NEITHER)),
                churn_before=before,
                churn_after=after,
                visit_factor=terms["visit_factor"],
                purchase_rate=terms["purchase_rate"],
                discount=terms["discount"],
            )
        )
    contacts = pd.concat(parts, ignore_index=True) if parts else _no_contacts()
    return CampaignResponses(world=world, contacts=contacts.drop(columns="horizon_days"))


def no_campaigns(world: World) -> CampaignResponses:
    """The shop as if no campaign had been published."""
    return apply_campaigns(world, pd.DataFrame(columns=TREATMENT_COLUMNS))


def contact_draws(world: World, campaign_id: str) -> np.ndarray:
    """The uniform draw of every customer (by position) for one campaign: stream (seed, campaign)."""
    key = int.from_bytes(hashlib.sha256(campaign_id.encode()).digest()[:8], "big")
    rng = np.random.default_rng([world.params.seed, STREAM_CONTACT, key])
    return rng.random(world.customer_ids.size)


def contact_terms(world: World, customer: np.ndarray, offer: np.ndarray) -> dict[str, np.ndarray]:
    """Per contact: P(annoyed), P(persuaded | not annoyed draw), and the window's changed parameters.

    Args:
        world: the shop.
        customer: positions of the contacted customers.
        offer: the offer each got (names of `simulate.response.offers`).

    Returns:
        annoy, persuade, visit_factor, purchase_rate, discount (arrays aligned with `customer`).
    """
    p = world.params
    r = p.response
    segment = pd.Series(world.truth["segment"].to_numpy()[customer])
    offers = pd.Series(offer)

    def of_offer(field: str) -> np.ndarray:
        return offers.map({name: getattr(o, field) for name, o in r.offers.items()}).to_numpy(float)

    def of_segment(field: str) -> np.ndarray:
        return segment.map({name: getattr(s, field) for name, s in r.segments.items()}).to_numpy(float)

    responsiveness = of_segment("responsiveness")
    unhappy = np.clip(1.0 - world.satisfaction[customer] / r.annoy_satisfaction, 0.0, 1.0)
    lift = of_offer("purchase_lift") * responsiveness * world.price_sensitivity[customer]
    return {
        "annoy": of_offer("annoy") * unhappy,
        "persuade": np.minimum(1.0, of_segment("persuade") * of_offer("strength")),
        "visit_factor": 1.0 + of_offer("visit_boost") * responsiveness,
        "purchase_rate": p.purchase_rate + (1.0 - p.purchase_rate) * lift,
        "discount": of_offer("discount"),
    }


def true_effects(
    shop: World | CampaignResponses,
    customer_ids: Iterable[str],
    as_of_day: int,
    offers: Sequence[str],
    horizon_days: int,
    contacts_before: int | None = None,
) -> pd.DataFrame:
    """The true potential outcomes of contacting customers with each offer on `as_of_day`.

    The customers' state is the one the published campaigns left before `as_of_day`; the outcome
    window and the offer's response window are days [as_of_day, as_of_day + horizon_days). Later
    campaigns are not part of the counterfactual.

    Args:
        shop: a world (no campaigns) or a world with its campaign responses.
        customer_ids: customers of the shop (any set; unknown ids raise KeyError).
        as_of_day: the contact day (the day of the campaign's as-of).
        offers: offer names of `simulate.response.offers`, and/or `none` (no contact).
        horizon_days: length of the window.
        contacts_before: how many contacts (in contact order) precede this one; default: those
            with a day before `as_of_day`.

    Returns:
        EFFECT_COLUMNS, one row per customer and offer (customers in the given order, then
        offers): p_return = P(at least one purchase in the window | offer), revenue = E[order
        totals in the window | offer].
    """
    responses = shop if isinstance(shop, CampaignResponses) else no_campaigns(shop)
    world = responses.world
    ids = np.asarray(list(customer_ids), dtype=object)
    position = pd.Index(world.customer_ids).get_indexer(ids)
    if (position < 0).any():
        raise KeyError(f"customers not in the shop: {list(ids[position < 0][:5])}")
    unknown = sorted(set(offers) - set(world.params.response.offers) - {NO_OFFER})
    if unknown:
        raise ValueError(
            f"unknown offers {unknown}: expected {NO_OFFER} or {sorted(world.params.response.offers)}"
        )
    n_before = responses.contacts_before(as_of_day) if contacts_before is None else contacts_before
    days = _Days.of(world, as_of_day, horizon_days)
    frames = []
    for start in range(0, max(position.size, 1), CHUNK_CUSTOMERS):
        chunk = position[start : start + CHUNK_CUSTOMERS]
        prior = _prior_state(responses, chunk, n_before, as_of_day)
        for offer in offers:
            p_return, revenue = _offer_outcomes(world, chunk, days, prior, offer)
            frames.append(
                pd.DataFrame(
                    {
                        "customer_id": world.customer_ids[chunk],
                        "offer": offer,
                        "p_return": p_return,
                        "revenue": revenue,
                        "_row": np.arange(start, start + chunk.size),
                    }
                )
            )
    effects = pd.concat(frames, ignore_index=True)
    order = {name: i for i, name in enumerate(offers)}
    effects = effects.assign(_offer=effects["offer"].map(order)).sort_values(
        ["_row", "_offer"], kind="stable"
    )
    return effects[EFFECT_COLUMNS].reset_index(drop=True)


def campaign_effects(responses: CampaignResponses, targets: pd.DataFrame) -> pd.DataFrame:
    """The true effects of every offer (and `none`) for every target of every campaign.

    Args:
        responses: the shop with its campaign responses.
        targets: campaign_id, day (contact day), horizon_days, customer_id: every target of each
            campaign, whatever its arm.

    Returns:
        campaign_id, customer_id, offer, p_return, revenue; customers the shop lacks are skipped.
    """
    offers = [NO_OFFER, *responses.world.params.response.offers]
    known = targets["customer_id"].isin(pd.Index(responses.world.customer_ids))
    targets = targets[known]
    campaigns = targets[["campaign_id", "day", "horizon_days"]].drop_duplicates("campaign_id")
    frames = []
    campaigns = campaigns.sort_values(["day", "campaign_id"])
    for campaign_id, day, horizon in zip(
        campaigns["campaign_id"].to_numpy(),
        campaigns["day"].to_numpy(dtype=np.int64),
        campaigns["horizon_days"].to_numpy(dtype=np.int64),
        strict=True,
    ):
        effects = true_effects(
            responses,
            targets.loc[targets["campaign_id"] == campaign_id, "customer_id"],
            int(day),
            offers,
            int(horizon),
            contacts_before=responses.contacts_before(int(day), str(campaign_id)),
        )
        frames.append(effects.assign(campaign_id=str(campaign_id)))
    columns = ["campaign_id", *EFFECT_COLUMNS]
    if not frames:
        return pd.DataFrame(
            {c: pd.Series(dtype=float if c in ("p_return", "revenue") else object) for c in columns}
        )
    return pd.concat(frames, ignore_index=True)[columns]


@dataclass(frozen=True)
class _Prior:
    """Customers' state before a contact: churn day and the window of their latest earlier contact."""

    churn_day: np.ndarray
    window_end: np.ndarray
    visit_factor: np.ndarray
    purchase_rate: np.ndarray
    discount: np.ndarray


@dataclass(frozen=True)
class _Days:
    """Per day of a window: the day, weekday factor, promotion flag and add-to-cart rate."""

    day: np.ndarray
    weekday_factor: np.ndarray
    promo: np.ndarray
    cart_rate: np.ndarray

    @classmethod
    def of(cls, world: World, first: int, length: int) -> _Days:
        p = world.params
        day = np.arange(first, first + length)
        weekday = (pd.Timestamp(p.start).weekday() + day) % 7
        promo = np.array([is_promo_day(world, int(d)) for d in day], dtype=bool)
        cart = np.array([min(1.0, p.cart_rate * (p.promo_cart_boost if f else 1.0)) for f in promo])
        return cls(day, np.asarray(p.weekday_factors)[weekday], promo, cart)


def _prior_state(responses: CampaignResponses, customer: np.ndarray, n_before: int, day: int) -> _Prior:
    world = responses.world
    churn = world.churn_day[customer].astype(float)
    window_end = np.full(customer.size, np.iinfo(np.int64).min)
    visit_factor = np.ones(customer.size)
    purchase_rate = np.full(customer.size, world.params.purchase_rate)
    discount = np.zeros(customer.size)
    if n_before:
        contacted, latest = _latest_contacts(responses.contacts["customer"].to_numpy()[:n_before])
        at = np.minimum(np.searchsorted(contacted, customer), contacted.size - 1)
        hit = contacted[at] == customer
        row = latest[at[hit]]
        c = responses.contacts
        churn[hit] = c["churn_after"].to_numpy()[row]
        window_end[hit] = c["window_end"].to_numpy()[row]
        visit_factor[hit] = c["visit_factor"].to_numpy()[row]
        purchase_rate[hit] = c["purchase_rate"].to_numpy()[row]
        discount[hit] = c["discount"].to_numpy()[row]
    return _Prior(churn, window_end, visit_factor, purchase_rate, discount)


def _offer_outcomes(
    world: World, customer: np.ndarray, days: _Days, prior: _Prior, offer: str
) -> tuple[np.ndarray, np.ndarray]:
    """P(return) and E[revenue] over the window for one offer: a mixture over the contact's outcomes."""
    if offer == NO_OFFER:
        return _window_outcomes(world, customer, days, prior)
    r = world.params.response
    terms = contact_terms(world, customer, np.full(customer.size, offer, dtype=object))
    first = int(days.day[0])
    window = _Prior(
        churn_day=prior.churn_day,
        window_end=np.full(customer.size, first + days.day.size),
        visit_factor=terms["visit_factor"],
        purchase_rate=terms["purchase_rate"],
        discount=terms["discount"],
    )
    active = (world.signup_day[customer] <= first) & (first < prior.churn_day)
    p_annoyed = np.where(active, terms["annoy"], 0.0)
    p_persuaded = np.where(active, np.minimum(terms["persuade"], 1.0 - terms["annoy"]), 0.0)
    stay_return, stay_revenue = _window_outcomes(world, customer, days, window)
    moved = _Prior(
        churn_day=prior.churn_day + r.postpone_days,
        window_end=window.window_end,
        visit_factor=window.visit_factor,
        purchase_rate=window.purchase_rate,
        discount=window.discount,
    )
    moved_return, moved_revenue = _window_outcomes(world, customer, days, moved)
    stay = 1.0 - p_annoyed - p_persuaded  # annoyed customers leave on the contact day: no outcome
    return (
        stay * stay_return + p_persuaded * moved_return,
        stay * stay_revenue + p_persuaded * moved_revenue,
    )


def _window_outcomes(
    world: World, customer: np.ndarray, days: _Days, state: _Prior
) -> tuple[np.ndarray, np.ndarray]:
    """P(at least one purchase) and E[revenue] over the window's days, in closed form."""
    p = world.params
    d = days.day[None, :]  # (N, H) below
    churn = state.churn_day[:, None]
    active = (world.signup_day[customer][:, None] <= d) & (d < churn)
    rate = world.visit_rate[customer][:, None] * days.weekday_factor[None, :] * activity_fade(world, churn, d)
    in_window = d < state.window_end[:, None]
    rate = np.where(in_window, rate * state.visit_factor[:, None], rate)
    promo_boost = 1.0 + p.promo_visit_boost * world.price_sensitivity[customer][:, None]
    rate = np.where(days.promo[None, :], rate * promo_boost, rate)
    p_visit = np.where(active, np.minimum(rate, MAX_VISIT_PROBABILITY), 0.0)
    purchase = np.where(in_window, state.purchase_rate[:, None], p.purchase_rate)
    q = days.cart_rate[None, :] * purchase  # P(a view is bought)
    p_order = 1.0 - (1.0 - q) * np.exp(-(p.views_per_session - 1.0) * q)
    discount = np.where(in_window, state.discount[:, None], 0.0)
    p_rebuy, rebuy_price = _rebuys(world, customer, days, churn, discount)
    p_return = 1.0 - np.prod((1.0 - p_visit * p_order) * (1.0 - p_rebuy), axis=1)
    price = _expected_view_price(world, customer, days, discount)
    revenue = (p_visit * p.views_per_session * q * (1.0 + p.extra_quantity_mean) * price).sum(axis=1)
    return p_return, revenue + (p_rebuy * rebuy_price).sum(axis=1)


def _rebuys(
    world: World, customer: np.ndarray, days: _Days, churn: np.ndarray, discount: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """P(rebuy) and its price per customer and day of the window (0 for customers without a habit)."""
    p_rebuy, price = np.zeros(discount.shape), np.zeros(discount.shape)
    habit = np.flatnonzero(world.habit_product[customer] >= 0)
    if habit.size == 0:
        return p_rebuy, price
    who = customer[habit][:, None]
    due, _ = repurchase_due(world, who, days.day[None, :])
    p_rebuy[habit] = np.where(due, rebuy_chance(world, who, churn[habit], days.day[None, :]), 0.0)
    price[habit] = offer_price(world, world.habit_product[who], days.promo[None, :], discount[habit])
    return p_rebuy, price


def _expected_view_price(world: World, customer: np.ndarray, days: _Days, discount: np.ndarray) -> np.ndarray:
    """E[price of a viewed product] per customer and day, with the day's promotion and coupon."""
    p = world.params
    category = np.repeat(np.arange(world.category_count.size), world.category_count)
    rank = np.arange(world.sellable.size) - world.category_start[category]
    n = world.category_count[category]
    rank_p = ((rank + 1) / n) ** (1.0 / p.popularity_skew) - (rank / n) ** (1.0 / p.popularity_skew)
    base_price = world.product_price[world.sellable]
    favourite = world.favourite[customer]
    price = np.zeros(discount.shape)
    for promo in (False, True):
        promo_factor = (1.0 - p.promo_discount) if promo else 1.0
        for cut in np.unique(discount):
            factor = promo_factor * (1.0 - cut)
            by_category = np.bincount(
                category,
                weights=rank_p * np.round(base_price * factor, 2),
                minlength=world.category_count.size,
            )
            per_customer = (
                p.favourite_category_share * by_category[favourite]
                + (1.0 - p.favourite_category_share) * world.category_weights @ by_category
            )
            mask = (days.promo[None, :] == promo) & (discount == cut)
            price = np.where(mask, per_customer[:, None], price)
    return price


def _latest_contacts(customer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct customers (ascending) and the row of each one's latest contact."""
    unique, first_in_reverse = np.unique(customer[::-1], return_index=True)
    return unique, customer.size - 1 - first_in_reverse


def _no_contacts() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "campaign_id": pd.Series(dtype=object),
            "day": pd.Series(dtype=np.int64),
            "horizon_days": pd.Series(dtype=np.int64),
            "customer_id": pd.Series(dtype=object),
            "offer": pd.Series(dtype=object),
            "customer": pd.Series(dtype=np.int64),
            "window_end": pd.Series(dtype=np.int64),
            "draw": pd.Series(dtype=float),
            "outcome": pd.Series(dtype=object),
            "churn_before": pd.Series(dtype=float),
            "churn_after": pd.Series(dtype=float),
            "visit_factor": pd.Series(dtype=float),
            "purchase_rate": pd.Series(dtype=float),
            "discount": pd.Series(dtype=float),
        }
    )
