"""Day-by-day generation of sessions, funnels (view -> cart -> purchase), orders and reviews.

Vectorised with NumPy: one day of a million-customer shop is a handful of array operations.
Each day draws from its own random stream `(seed, day)`, so any range of days can be generated
independently and the result does not depend on how a period is split into runs. Customers whom a
published campaign changes on a day (pipelines/simulate/response.py) are generated again from that
day's response stream `(seed, response, day)` and their rows replace their first ones, so the rows
and ids of everyone else are the same with or without campaigns.

On top of their sessions, habitual customers rebuy a consumable by its cycle (`simulate.repurchase`):
occurrence k of a cycle falls on day floor(start + k x interval + jitter), and whether it is bought,
when, and at which time of day are drawn keyed by (customer, occurrence), so a rebuy is the same
whichever run, split or campaign generates its day. A rebuy is its own session and order: view, cart,
purchase of one unit, with ids named after the customer's position.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from pipelines.simulate import vocabulary as vocab
from pipelines.simulate.world import (
    STREAM_CALENDAR,
    STREAM_DAY,
    STREAM_RESPONSE,
    World,
    day_date,
    keyed_uniform,
    price_factor,
)

DAY_SECONDS = 86_400.0
LAST_SECOND = DAY_SECONDS - 1.0  # everything of a day happens before midnight
MAX_VISIT_PROBABILITY = 0.95
CHECKOUT_GAP_FACTOR = 3.0  # checkout takes this many view gaps after the last add-to-cart
CART_GAP_FACTOR = 1 / 3  # an add-to-cart follows its view after a third of a view gap
# what each keyed draw of a rebuy decides (the last key of `keyed_uniform`)
DRAW_JITTER, DRAW_BUY, DRAW_HOUR, DRAW_MINUTE, DRAW_CART, DRAW_CHECKOUT = range(6)


@dataclass(frozen=True)
class DayBatch:
    """What one simulated day adds to the shop (events sorted by time)."""

    day: int
    promo: bool
    events: pd.DataFrame
    orders: pd.DataFrame
    reviews: pd.DataFrame


@dataclass(frozen=True)
class DayChanges:
    """Customers whose behaviour campaigns change on one day, with their changed parameters.

    Attributes:
        customer: their positions in the world, ascending.
        churn_day: their churn days (moved by a persuasion or a drive-away).
        visit_factor: multiplier of their visit rates (1 outside a response window).
        purchase_rate: their P(purchase | cart).
        discount: price cut of their orders (0 outside a coupon's window).
    """

    customer: np.ndarray
    churn_day: np.ndarray
    visit_factor: np.ndarray
    purchase_rate: np.ndarray
    discount: np.ndarray


class Responses(Protocol):
    """What campaigns change, day by day (`pipelines.simulate.response.CampaignResponses`)."""

    def on_day(self, day: int) -> DayChanges | None:
        """The customers changed on `day`; None when nobody is."""
        ...


def is_promo_day(world: World, day: int) -> bool:
    """Whether `day` is a promotion day (a calendar fixed by the seed)."""
    p = world.params
    return bool(np.random.default_rng([p.seed, STREAM_CALENDAR, day]).random() < p.promo_day_rate)


def simulate_days(
    world: World, day_from: int, day_to: int, responses: Responses | None = None
) -> Iterator[DayBatch]:
    """Generate days [day_from, day_to) one at a time (with the responses to published campaigns)."""
    for day in range(day_from, day_to):
        yield simulate_day(world, day, responses)


def simulate_day(world: World, day: int, responses: Responses | None = None) -> DayBatch:
    """Generate one day of sessions, events, orders and reviews.

    Everyone is first generated from the day's own stream as if no campaign existed. Customers whose
    behaviour a campaign changes on this day then have their rows replaced by rows generated from the
    day's response stream, so a campaign never shifts the draws, rows or ids of anyone else.
    """
    p = world.params
    rng = np.random.default_rng([p.seed, STREAM_DAY, day])
    date = day_date(p, day)
    promo = is_promo_day(world, day)

    # Who visits: active customers, fading before they churn, more on weekends and promo days.
    alive = np.flatnonzero((world.signup_day <= day) & (day < world.churn_day))
    visit = visit_probability(world, alive, world.churn_day[alive], day, date.weekday(), promo)
    session_customer = alive[rng.random(alive.size) < visit]
    rows, next_ids = _sessions(world, day, rng, promo, session_customer)
    changed = responses.on_day(day) if responses is not None else None
    if changed is not None:
        stream = np.random.default_rng([p.seed, STREAM_RESPONSE, day])
        active = (world.signup_day[changed.customer] <= day) & (day < changed.churn_day)
        customer = changed.customer[active]
        visit = visit_probability(
            world,
            customer,
            changed.churn_day[active],
            day,
            date.weekday(),
            promo,
            changed.visit_factor[active],
        )
        visits = stream.random(customer.size) < visit
        responded, _ = _sessions(
            world,
            day,
            stream,
            promo,
            customer[visits],
            purchase_rate=changed.purchase_rate[active][visits],
            discount=changed.discount[active][visits],
            first_ids=next_ids,
        )
        replaced = np.zeros(world.customer_ids.size, dtype=bool)
        replaced[changed.customer] = True
        rows = rows.without(replaced).then(responded)
    rebuys = _rebuys(world, day, promo, changed)
    if rebuys is not None:
        rows = rows.then(rebuys)
    return rows.batch(world, day, promo)


def activity_fade(world: World, churn_day: np.ndarray, day: int | np.ndarray) -> np.ndarray:
    """Factor in (0, 1] by which activity fades over the days before churn."""
    return 1.0 - np.exp(-(churn_day - day) / world.params.decline_days)


def repurchase_due(
    world: World, customer: np.ndarray, day: int | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Whether an occurrence of each habitual customer's cycle falls on `day`, and which one.

    Args:
        world: the shop.
        customer: positions of habitual customers (`world.habitual` or some of them).
        day: a day, or days broadcast against `customer` (e.g. customers (N, 1), days (1, H)).

    Returns:
        due (bool) and the occurrence number (-1 where not due), both of the broadcast shape.
    """
    jitter = world.params.repurchase.jitter if world.params.repurchase else 0.0
    cycle = world.product_cycle[world.habit_product[customer]]
    start = world.habit_start[customer]
    nearest = np.floor((day - start) / cycle).astype(np.int64)
    due = np.zeros(np.broadcast(nearest, day).shape, dtype=bool)
    occurrence = np.full(due.shape, -1, dtype=np.int64)
    # jitter < half an interval of at least 7 days: only these two occurrences can fall on `day`
    for k in (nearest, nearest + 1):
        shift = jitter * cycle * (2.0 * keyed_uniform(world.params.seed, customer, k, DRAW_JITTER) - 1.0)
        hit = (k >= 0) & (np.floor(start + k * cycle + shift) == day)
        due |= hit
        occurrence = np.where(hit, k, occurrence)
    return due, occurrence


def rebuy_chance(
    world: World, customer: np.ndarray, churn_day: np.ndarray, day: int | np.ndarray
) -> np.ndarray:
    """P(a customer due a rebuy on `day` buys): `repurchase.probability`, fading before churn, 0 when inactive."""
    p = world.params
    active = (world.signup_day[customer] <= day) & (day < churn_day)
    chance = (p.repurchase.probability if p.repurchase else 0.0) * activity_fade(world, churn_day, day)
    return np.where(active, chance, 0.0)


def offer_price(
    world: World,
    product: np.ndarray,
    promo: bool | np.ndarray,
    discount: float | np.ndarray = 0.0,
    day: int | np.ndarray | None = None,
) -> np.ndarray:
    """Price of products on a day: the list price (times an injected drift's factor from its day on,
    when `day` is given) less the day's promotion and a campaign's coupon."""
    p = world.params
    factor = np.where(promo, 1.0 - p.promo_discount, 1.0) * (1.0 - np.asarray(discount))
    if day is not None:
        factor = factor * price_factor(p, day)
    return np.round(world.product_price[product] * factor, 2)


def _rebuys(world: World, day: int, promo: bool, changed: DayChanges | None) -> _Rows | None:
    """The rebuys of habitual customers due on `day` (None: nobody buys again today)."""
    customer = world.habitual
    churn_day = world.churn_day[customer]
    discount = np.zeros(customer.size)
    if changed is not None:  # a campaign moves churn days and gives coupons
        at = np.searchsorted(customer, changed.customer)
        hit = at < customer.size
        hit[hit] = customer[at[hit]] == changed.customer[hit]
        churn_day = churn_day.copy()
        churn_day[at[hit]] = changed.churn_day[hit]
        discount[at[hit]] = changed.discount[hit]
    due, occurrence = repurchase_due(world, customer, day)
    customer, occurrence, churn_day, discount = (
        customer[due],
        occurrence[due],
        churn_day[due],
        discount[due],
    )
    seed = world.params.seed

    def draw(what: int) -> np.ndarray:
        return keyed_uniform(seed, customer, occurrence, what)

    buys = draw(DRAW_BUY) < rebuy_chance(world, customer, churn_day, day)
    customer, occurrence, discount = customer[buys], occurrence[buys], discount[buys]
    n = customer.size
    if n == 0:
        return None
    p = world.params
    product = world.habit_product[customer]
    price = offer_price(world, product, promo, discount, day)
    hours = np.cumsum(p.hour_weights) / np.sum(p.hour_weights)
    hour = np.minimum(np.searchsorted(hours, draw(DRAW_HOUR), side="right"), 23)
    view_time = (hour + draw(DRAW_MINUTE)) * 3600.0
    cart_time = view_time - np.log1p(-draw(DRAW_CART)) * p.view_gap_seconds * CART_GAP_FACTOR
    checkout_time = cart_time - np.log1p(-draw(DRAW_CHECKOUT)) * p.view_gap_seconds * CHECKOUT_GAP_FACTOR
    base = np.datetime64(day_date(p, day).date(), "us")
    times = np.minimum(np.floor(np.stack([view_time, cart_time, checkout_time], axis=1)), LAST_SECOND)
    name = [f"{day:05d}-R{c:07d}" for c in customer]
    order_id = np.array([f"O{x}" for x in name], dtype=object)
    events = {  # per rebuy: view, cart, purchase (rows in that order, then put in time order)
        "customer": np.repeat(customer, 3),
        "product": np.repeat(product, 3),
        "event_type": np.tile(np.array(["view", "cart", "purchase"], dtype=object), n),
        "ts": base + times.ravel().astype("timedelta64[s]").astype("timedelta64[us]"),
        "quantity": np.ones(3 * n, dtype=np.int64),
        "price": np.repeat(price, 3),
        "order_id": np.stack([np.full(n, None, dtype=object)] * 2 + [order_id], axis=1).ravel(),
        "session_id": np.repeat(np.array([f"S{x}" for x in name], dtype=object), 3),
        "event_id": np.array([f"E{x}-{k}" for x in name for k in range(3)], dtype=object),
    }
    orders = {
        "order_id": order_id,
        "customer": customer,
        "ts": events["ts"][2::3],
        "n_items": np.ones(n, dtype=np.int64),
        "total_amount": price,
    }
    reviews = {
        "review_id": np.array([], dtype=object),
        "customer": np.array([], dtype=np.int64),
        "product": np.array([], dtype=np.int64),
        "ts": np.array([], dtype="datetime64[us]"),
        "rating": np.array([], dtype=np.int64),
        "text": np.array([], dtype=object),
    }
    return _Rows(_take(events, np.argsort(events["ts"], kind="stable")), orders, reviews)


@dataclass(frozen=True)
class _Rows:
    """One day's rows as column arrays; `customer` and `product` hold positions in the world.

    Events are in time order. Building the frames last lets a day generated in two parts (the
    campaign responses) cost one set of frames.
    """

    events: dict[str, np.ndarray]
    orders: dict[str, np.ndarray]
    reviews: dict[str, np.ndarray]
    sparse: bool = False  # a day without add-to-carts or purchases (typed as the shop always has)

    def without(self, drop: np.ndarray) -> _Rows:
        """These rows less those of the customers (positions) where `drop` is True."""
        events, orders, reviews = (
            _take(t, ~drop[t["customer"]]) for t in (self.events, self.orders, self.reviews)
        )
        return _Rows(events, orders, reviews, sparse=self.sparse)

    def then(self, more: _Rows) -> _Rows:
        """These rows and then `more`, events kept in time order (ties: these rows first)."""
        events = {k: np.concatenate([v, more.events[k]]) for k, v in self.events.items()}
        return _Rows(
            _take(events, np.argsort(events["ts"], kind="stable")),
            {k: np.concatenate([v, more.orders[k]]) for k, v in self.orders.items()},
            {k: np.concatenate([v, more.reviews[k]]) for k, v in self.reviews.items()},
        )

    def batch(self, world: World, day: int, promo: bool) -> DayBatch:
        """The rows as the shop's tables hold them."""
        e, o, r = self.events, self.orders, self.reviews
        events = pd.DataFrame(
            {
                "event_id": e["event_id"].tolist(),  # typed float64 when empty, as always
                "customer_id": world.customer_ids[e["customer"]],
                "product_id": world.product_ids[e["product"]],
                "event_type": pd.Series(e["event_type"], dtype="str"),
                "ts": e["ts"],
                "quantity": e["quantity"],
                "price": e["price"],
                "order_id": pd.Series(e["order_id"], dtype=object),  # None on views and carts
                "session_id": e["session_id"],
            }
        )
        if self.sparse:  # built from empty parts, these columns have always been typed object
            events = events.astype({"customer_id": object, "product_id": object, "session_id": object})
        orders = pd.DataFrame(
            {
                "order_id": o["order_id"],
                "customer_id": world.customer_ids[o["customer"]],
                "ts": o["ts"],
                "n_items": o["n_items"],
                "total_amount": o["total_amount"],
            }
        )
        reviews = pd.DataFrame(
            {  # ids and texts as lists, as the shop has always built them (typed float64 when empty)
                "review_id": r["review_id"].tolist(),
                "customer_id": world.customer_ids[r["customer"]],
                "product_id": world.product_ids[r["product"]],
                "ts": r["ts"],
                "rating": r["rating"],
                "text": r["text"].tolist(),
            }
        )
        return DayBatch(day=day, promo=promo, events=events, orders=orders, reviews=reviews)


def _take(table: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    return {name: column[rows] for name, column in table.items()}


def visit_probability(
    world: World,
    customers: np.ndarray,
    churn_day: np.ndarray,
    day: int,
    weekday: int,
    promo: bool,
    visit_factor: np.ndarray | None = None,
) -> np.ndarray:
    """P(visit on `day`) of active customers: fading before churn, more on weekends and promo days.

    Args:
        world: the shop.
        customers: positions of active customers.
        churn_day: their churn days (a campaign may have moved them).
        day, weekday, promo: the day, its weekday (0 = Monday) and whether it is a promotion day.
        visit_factor: a campaign's multiplier of their visit rates, if any.
    """
    p = world.params
    rate = world.visit_rate[customers] * p.weekday_factors[weekday] * activity_fade(world, churn_day, day)
    if visit_factor is not None:
        rate = rate * visit_factor
    if promo:
        rate = rate * (1.0 + p.promo_visit_boost * world.price_sensitivity[customers])
    return np.minimum(rate, MAX_VISIT_PROBABILITY)


def _sessions(
    world: World,
    day: int,
    rng: np.random.Generator,
    promo: bool,
    session_customer: np.ndarray,
    purchase_rate: np.ndarray | None = None,
    discount: np.ndarray | None = None,
    first_ids: tuple[int, int, int] = (0, 0, 0),
) -> tuple[_Rows, tuple[int, int, int]]:
    """Views, funnels, orders and reviews of one day's sessions (one per visiting customer).

    Args:
        purchase_rate, discount: per session, P(purchase | cart) and the price cut of a campaign
            offer; None: the shop's own rate and no cut.
        first_ids: first session, event and review number of the day to use (ids stay unique
            when a day is generated in two parts).

    Returns:
        The rows, and the next free session, event and review numbers.
    """
    p = world.params
    date = day_date(p, day)
    first_session, first_event, first_review = first_ids
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
    purchase = p.purchase_rate if purchase_rate is None else purchase_rate[view_session]
    bought = carted & (rng.random(n_views) < purchase)
    cart_time = view_time + rng.exponential(p.view_gap_seconds * CART_GAP_FACTOR, n_views)
    quantity = 1 + rng.poisson(p.extra_quantity_mean, n_views)
    factor: float | np.ndarray = ((1.0 - p.promo_discount) if promo else 1.0) * price_factor(p, day)
    if discount is not None:  # a campaign's coupon on top of the day's promotion
        factor = factor * (1.0 - discount[view_session])
    price = np.round(world.product_price[product] * factor, 2)
    last_cart = np.full(n_sessions, -np.inf)
    np.maximum.at(last_cart, view_session[bought], cart_time[bought])
    checkout_time = last_cart + rng.exponential(p.view_gap_seconds * CHECKOUT_GAP_FACTOR, n_sessions)

    base = np.datetime64(date.date(), "us")

    def stamp(seconds: np.ndarray) -> np.ndarray:
        clipped = np.minimum(np.floor(seconds), LAST_SECOND)
        return base + clipped.astype("timedelta64[s]").astype("timedelta64[us]")

    session_ids = np.array([f"S{day:05d}-{first_session + i:06d}" for i in range(n_sessions)], dtype=object)
    ordering = np.flatnonzero(np.bincount(view_session[bought], minlength=n_sessions))
    order_ids = np.full(n_sessions, None, dtype=object)
    order_ids[ordering] = [f"O{day:05d}-{first_session + i:06d}" for i in ordering]

    # Events: every view, then every add-to-cart, then every purchased line, put in time order.
    row = np.concatenate([np.arange(n_views), np.flatnonzero(carted), np.flatnonzero(bought)])
    kinds = np.array(["view", "cart", "purchase"], dtype=object)
    kind = np.repeat(kinds, [n_views, int(carted.sum()), int(bought.sum())])
    times = np.concatenate([view_time, cart_time[carted], checkout_time[view_session[bought]]])
    order_of = np.where(kind == "purchase", order_ids[view_session[row]], None)
    events = {
        "customer": view_customer[row],
        "product": product[row],
        "event_type": kind,
        "ts": stamp(times),
        "quantity": np.where(kind == "view", 1, quantity[row]),
        "price": price[row],
        "order_id": order_of,
        "session_id": session_ids[view_session[row]],
    }
    events = _take(events, np.argsort(events["ts"], kind="stable"))
    n_events = kind.size
    events["event_id"] = np.array(
        [f"E{day:05d}-{first_event + i:07d}" for i in range(n_events)], dtype=object
    )

    line_amount = quantity[bought] * price[bought]
    orders = {
        "order_id": order_ids[ordering],
        "customer": session_customer[ordering],
        "ts": stamp(checkout_time[ordering]),
        "n_items": np.bincount(view_session[bought], weights=quantity[bought], minlength=n_sessions)[
            ordering
        ].astype(np.int64),
        "total_amount": np.round(
            np.bincount(view_session[bought], weights=line_amount, minlength=n_sessions)[ordering], 2
        ),
    }
    reviews = _reviews(
        world,
        rng,
        day,
        view_customer[bought],
        product[bought],
        checkout_time[view_session[bought]],
        stamp,
        first_review,
    )
    next_ids = (first_session + n_sessions, first_event + n_events, first_review + reviews["review_id"].size)
    return _Rows(events, orders, reviews, sparse=not (carted.any() and bought.any())), next_ids


def _reviews(
    world: World,
    rng: np.random.Generator,
    day: int,
    customer: np.ndarray,
    product: np.ndarray,
    purchase_time: np.ndarray,
    stamp: Callable[[np.ndarray], np.ndarray],
    first_review: int = 0,
) -> dict[str, np.ndarray]:
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
    return {
        "review_id": np.array([f"R{day:05d}-{first_review + i:06d}" for i in range(n)], dtype=object),
        "customer": customer,
        "product": product,
        "ts": stamp(purchase_time + delay),
        "rating": rating,
        "text": np.array(texts, dtype=object),
    }
