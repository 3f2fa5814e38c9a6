"""Day-by-day generation of sessions, funnels (view -> cart -> purchase), orders and reviews.

Vectorised with NumPy: one day of a million-customer shop is a handful of array operations.
Each day draws from its own random stream `(seed, day)`, so any range of days can be generated
independently and the result does not depend on how a period is split into runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines.simulate import vocabulary as vocab
from pipelines.simulate.world import STREAM_CALENDAR, STREAM_DAY, World, day_date

DAY_SECONDS = 86_400.0
LAST_SECOND = DAY_SECONDS - 1.0  # everything of a day happens before midnight
MAX_VISIT_PROBABILITY = 0.95
CHECKOUT_GAP_FACTOR = 3.0  # checkout takes this many view gaps after the last add-to-cart
CART_GAP_FACTOR = 1 / 3  # an add-to-cart follows its view after a third of a view gap


@dataclass(frozen=True)
class DayBatch:
    """What one simulated day adds to the shop (events sorted by time)."""

    day: int
    promo: bool
    events: pd.DataFrame
    orders: pd.DataFrame
    reviews: pd.DataFrame


def is_promo_day(world: World, day: int) -> bool:
    """Whether `day` is a promotion day (a calendar fixed by the seed)."""
    p = world.params
    return bool(np.random.default_rng([p.seed, STREAM_CALENDAR, day]).random() < p.promo_day_rate)


def simulate_days(world: World, day_from: int, day_to: int) -> Iterator[DayBatch]:
    """Generate days [day_from, day_to) one at a time."""
    for day in range(day_from, day_to):
        yield simulate_day(world, day)


def simulate_day(world: World, day: int) -> DayBatch:
    """Generate one day of sessions, events, orders and reviews."""
    p = world.params
    rng = np.random.default_rng([p.seed, STREAM_DAY, day])
    date = day_date(p, day)
    promo = is_promo_day(world, day)

    # Who visits: active customers, fading before they churn, more on weekends and promo days.
    alive = np.flatnonzero((world.signup_day <= day) & (day < world.churn_day))
    fade = 1.0 - np.exp(-(world.churn_day[alive] - day) / p.decline_days)
    rate = world.visit_rate[alive] * p.weekday_factors[date.weekday()] * fade
    if promo:
        rate = rate * (1.0 + p.promo_visit_boost * world.price_sensitivity[alive])
    session_customer = alive[rng.random(alive.size) < np.minimum(rate, MAX_VISIT_PROBABILITY)]
    n_sessions = session_customer.size

    # Views: each session browses mostly its customer's favourite category, skewed to top sellers.
    views_per_session = 1 + rng.poisson(p.views_per_session - 1.0, n_sessions)
    view_session = np.repeat(np.arange(n_sessions), views_per_session)
    view_customer = session_customer[view_session]
    n_views = view_session.size
    favourite = rng.random(n_views) < p.favourite_category_share
    any_category = rng.choice(world.category_weights.size, n_views, p=world.category_weights)
    category = np.where(favourite, world.favourite[view_customer], any_category)
    rank = (world.category_count[category] * rng.random(n_views) ** p.popularity_skew).astype(np.int64)
    product = world.sellable[world.category_start[category] + rank]

    # Timing: sessions start by the hourly profile; views follow one another.
    hours = np.asarray(p.hour_weights, dtype=float)
    session_start = (rng.choice(24, n_sessions, p=hours / hours.sum()) + rng.random(n_sessions)) * 3600
    first_view = np.cumsum(views_per_session) - views_per_session
    elapsed = np.cumsum(rng.exponential(p.view_gap_seconds, n_views))
    view_time = session_start[view_session] + elapsed - elapsed[first_view][view_session]

    # Funnel: add to cart, then buy or abandon; one checkout (order) per session that buys.
    cart_rate = min(1.0, p.cart_rate * (p.promo_cart_boost if promo else 1.0))
    carted = rng.random(n_views) < cart_rate
    bought = carted & (rng.random(n_views) < p.purchase_rate)
    cart_time = view_time + rng.exponential(p.view_gap_seconds * CART_GAP_FACTOR, n_views)
    quantity = 1 + rng.poisson(p.extra_quantity_mean, n_views)
    price = np.round(world.product_price[product] * ((1.0 - p.promo_discount) if promo else 1.0), 2)
    last_cart = np.full(n_sessions, -np.inf)
    np.maximum.at(last_cart, view_session[bought], cart_time[bought])
    checkout_time = last_cart + rng.exponential(p.view_gap_seconds * CHECKOUT_GAP_FACTOR, n_sessions)

    base = np.datetime64(date.date(), "us")

    def stamp(seconds: np.ndarray) -> np.ndarray:
        clipped = np.minimum(np.floor(seconds), LAST_SECOND)
        return base + clipped.astype("timedelta64[s]").astype("timedelta64[us]")

    session_ids = np.array([f"S{day:05d}-{i:06d}" for i in range(n_sessions)], dtype=object)
    ordering = np.flatnonzero(np.bincount(view_session[bought], minlength=n_sessions))
    order_ids = np.full(n_sessions, None, dtype=object)
    order_ids[ordering] = [f"O{day:05d}-{i:06d}" for i in ordering]

    parts = []
    for kind, mask, times in (
        ("view", slice(None), view_time),
        ("cart", carted, cart_time),
        ("purchase", bought, checkout_time[view_session]),
    ):
        parts.append(
            pd.DataFrame(
                {
                    "customer_id": world.customer_ids[view_customer[mask]],
                    "product_id": world.product_ids[product[mask]],
                    "event_type": kind,
                    "ts": stamp(times[mask]),
                    "quantity": 1 if kind == "view" else quantity[mask],
                    "price": price[mask],
                    "order_id": order_ids[view_session[mask]] if kind == "purchase" else None,
                    "session_id": session_ids[view_session[mask]],
                }
            )
        )
    events = pd.concat(parts, ignore_index=True).sort_values("ts", kind="stable", ignore_index=True)
    events.insert(0, "event_id", [f"E{day:05d}-{i:07d}" for i in range(len(events))])

    line_amount = quantity[bought] * price[bought]
    orders = pd.DataFrame(
        {
            "order_id": order_ids[ordering],
            "customer_id": world.customer_ids[session_customer[ordering]],
            "ts": stamp(checkout_time[ordering]),
            "n_items": np.bincount(view_session[bought], weights=quantity[bought], minlength=n_sessions)[
                ordering
            ].astype(np.int64),
            "total_amount": np.round(
                np.bincount(view_session[bought], weights=line_amount, minlength=n_sessions)[ordering],
                2,
            ),
        }
    )
    reviews = _reviews(
        world,
        rng,
        day,
        view_customer[bought],
        product[bought],
        checkout_time[view_session[bought]],
        stamp,
    )
    return DayBatch(day=day, promo=promo, events=events, orders=orders, reviews=reviews)


def _reviews(
    world: World,
    rng: np.random.Generator,
    day: int,
    customer: np.ndarray,
    product: np.ndarray,
    purchase_time: np.ndarray,
    stamp: Callable[[np.ndarray], np.ndarray],
) -> pd.DataFrame:
    """Reviews of some purchased lines: rating and text tone both follow latent satisfaction."""
    p = world.params
    reviewed = rng.random(customer.size) < p.review_rate
    customer, product, purchase_time = (
        customer[reviewed],
        product[reviewed],
        purchase_time[reviewed],
    )
    satisfaction = world.satisfaction[customer]
    n = customer.size
    rating = np.clip(np.round(1 + 4 * satisfaction + rng.normal(0, p.rating_noise, n)), 1, 5).astype(np.int64)
    tone = np.digitize(satisfaction + rng.normal(0, p.sentiment_noise, n), p.sentiment_cutoffs)
    opening, closing = rng.random(n), rng.random(n)
    texts = []
    for t, o, c, noun in zip(tone, opening, closing, world.product_noun[product], strict=True):
        name = vocab.TONES[t]
        openings, closings = vocab.REVIEW_OPENINGS[name], vocab.REVIEW_CLOSINGS[name]
        texts.append(
            openings[int(o * len(openings))].format(noun=noun) + " " + closings[int(c * len(closings))]
        )
    low, high = p.review_delay_hours
    delay = rng.uniform(low * 3600, high * 3600, n)
    return pd.DataFrame(
        {
            "review_id": [f"R{day:05d}-{i:06d}" for i in range(n)],
            "customer_id": world.customer_ids[customer],
            "product_id": world.product_ids[product],
            "ts": stamp(purchase_time + delay),
            "rating": rating,
            "text": texts,
        }
    )
