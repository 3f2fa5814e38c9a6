"""The simulated shop's static world: catalogue, customers and their latent (ground-truth) state.

Everything here is drawn once from the seed, so a shop extended day by day (`--append`) is the
same shop, row for row, as one simulated in a single run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd

from pipelines.simulate import vocabulary as vocab
from retention.params import MIN_REPURCHASE_DAYS, SimulateParams

# Independent random streams, so adding a draw to one step never shifts another step's numbers.
STREAM_CATALOGUE, STREAM_CUSTOMERS, STREAM_CALENDAR, STREAM_DAY = 1, 2, 3, 4
STREAM_CONTACT, STREAM_RESPONSE = 5, 6  # campaign responses: per (campaign, customer), per day
STREAM_REPURCHASE = 7  # product cycles, habits, and each rebuy (keyed by customer and occurrence)
STREAM_DRIFT = 8  # who joins the injected new segment (`simulate.drift`)
MAX_LIFETIME_DAYS = 36_500  # a century: keeps dates of never-churning customers representable


@dataclass(frozen=True)
class World:
    """Static state of a simulated shop; arrays are indexed by customer or product position.

    Attributes:
        params: the simulator parameters the shop was built from.
        horizon_days: customers sign up from `-prior_signup_days` until this day.
        customers, products: the records as the shop's source tables hold them.
        truth: latent customer state (segment, satisfaction, churn day): for tests only.
        product_cycle: repurchase interval in days per product (NaN: a durable).
        habitual: positions of the customers who rebuy a consumable by its cycle (ascending) ...
        habit_product, habit_start: ... per customer, that product (-1: none) and the (fractional)
            day its cycle starts (NaN: none).
    """

    params: SimulateParams
    horizon_days: int
    customers: pd.DataFrame
    products: pd.DataFrame
    truth: pd.DataFrame
    customer_ids: np.ndarray
    signup_day: np.ndarray
    churn_day: np.ndarray
    visit_rate: np.ndarray
    price_sensitivity: np.ndarray
    satisfaction: np.ndarray
    favourite: np.ndarray
    category_weights: np.ndarray
    category_start: np.ndarray  # into `sellable`, per category
    category_count: np.ndarray
    sellable: np.ndarray  # positions of active products, grouped by category
    product_ids: np.ndarray
    product_price: np.ndarray
    product_noun: np.ndarray
    product_cycle: np.ndarray
    habitual: np.ndarray
    habit_product: np.ndarray
    habit_start: np.ndarray

    def customers_signing_up(self, day_from: int, day_to: int) -> pd.DataFrame:
        """Customer records whose signup day lies in [day_from, day_to)."""
        mask = (self.signup_day >= day_from) & (self.signup_day < day_to)
        return self.customers[mask]


def build_world(params: SimulateParams, horizon_days: int) -> World:
    """Draw the catalogue and the customers of a shop from `params.seed`.

    Args:
        params: simulator parameters.
        horizon_days: last day (exclusive) on which new customers sign up.

    Returns:
        The world; the same arguments give an identical world.
    """
    categories = list(params.categories)
    weights = np.array([params.categories[c] for c in categories], dtype=float)
    weights /= weights.sum()
    products, noun, price, category = _catalogue(params, categories, weights)
    active = products["active"].to_numpy()
    sellable = np.flatnonzero(active)
    count = np.bincount(category[sellable], minlength=len(categories))
    if (count == 0).any():
        empty = [categories[i] for i in np.flatnonzero(count == 0)]
        raise ValueError(f"no active product in categories {empty}: raise `products`")
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    customers, truth, arrays = _customers(params, horizon_days, weights)
    if params.drift is not None and params.drift.new_segment_share > 0:
        truth, arrays = _new_segment(params, categories, weights, truth, arrays)
    cycle = _cycles(params, categories, category)
    habits = _habits(params, arrays["signup_day"], arrays["favourite"], sellable, start, count, cycle)
    return World(
        params=params,
        horizon_days=horizon_days,
        customers=customers,
        products=products,
        truth=truth,
        category_weights=weights,
        category_start=start,
        category_count=count,
        sellable=sellable,  # already grouped by category: products are sorted by category
        product_ids=products["product_id"].to_numpy(dtype=object),
        product_price=price,
        product_noun=noun,
        product_cycle=cycle,
        **habits,
        **arrays,
    )


def _catalogue(
    params: SimulateParams, categories: list[str], weights: np.ndarray
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng([params.seed, STREAM_CATALOGUE])
    n = params.products
    # every category gets at least one product, the rest follow the catalogue mix
    category = np.sort(
        np.concatenate(
            [
                np.arange(len(categories)),
                rng.choice(len(categories), n - len(categories), p=weights),
            ]
        )
    )
    median = np.array([params.price_median[categories[c]] for c in category])
    price = np.maximum(0.99, np.round(median * rng.lognormal(0, params.price_spread, n)) - 0.01)
    nouns = np.array(
        [rng.choice(vocab.NOUNS.get(categories[c], vocab.GENERIC_NOUNS)) for c in category],
        dtype=object,
    )
    adjectives = rng.choice(vocab.ADJECTIVES, n)
    uses = rng.choice(vocab.USES, n)
    models = rng.integers(100, 1000, n)
    titles = [f"{a.title()} {w} {m}" for a, w, m in zip(adjectives, nouns, models, strict=True)]
    descriptions = [
        f"A {a} {w} for {u}. Part of our {categories[c]} range."
        for a, w, u, c in zip(adjectives, nouns, uses, category, strict=True)
    ]
    width = max(6, len(str(n)))
    products = pd.DataFrame(
        {
            "product_id": [f"P{i:0{width}d}" for i in range(n)],
            "category": [categories[c] for c in category],
            "title": titles,
            "description": descriptions,
            "price": price,
            "active": rng.random(n) >= params.inactive_product_share,
        }
    )
    return products, nouns, price, category


def _cycles(params: SimulateParams, categories: list[str], category: np.ndarray) -> np.ndarray:
    """Repurchase interval per product: its category's mean times lognormal noise; NaN for durables."""
    rng = np.random.default_rng([params.seed, STREAM_REPURCHASE, 0])
    noise = rng.lognormal(0.0, params.repurchase.spread if params.repurchase else 0.0, category.size)
    days = params.repurchase.days if params.repurchase else {}
    mean = np.array([days.get(name, np.nan) for name in categories], dtype=float)[category]
    return np.maximum(mean * noise, MIN_REPURCHASE_DAYS)  # NaN stays NaN


def _habits(
    params: SimulateParams,
    signup_day: np.ndarray,
    favourite: np.ndarray,
    sellable: np.ndarray,
    category_start: np.ndarray,
    category_count: np.ndarray,
    cycle: np.ndarray,
) -> dict[str, np.ndarray]:
    """Who rebuys which consumable: a share of the customers whose favourite category has cycles.

    The product is drawn as a view of that category is (skewed to its top sellers); its cycle starts
    within one interval of the signup.
    """
    rng = np.random.default_rng([params.seed, STREAM_REPURCHASE, 1])
    n = signup_day.size
    keeps, rank_draw, phase = rng.random(n), rng.random(n), rng.random(n)
    rank = (category_count[favourite] * rank_draw**params.popularity_skew).astype(np.int64)
    product = sellable[category_start[favourite] + rank]
    share = params.repurchase.habit_share if params.repurchase else 0.0
    habit = ~np.isnan(cycle[product]) & (keeps < share)
    return {
        "habitual": np.flatnonzero(habit),
        "habit_product": np.where(habit, product, -1),
        "habit_start": np.where(habit, signup_day + phase * cycle[product], np.nan),
    }


def _new_segment(
    params: SimulateParams,
    categories: list[str],
    weights: np.ndarray,
    truth: pd.DataFrame,
    arrays: dict[str, np.ndarray],
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Turn a share of the customers signing up from `drift.from_day` on into a new segment.

    They visit `new_segment_visit_factor` times as often and favour `new_segment_category` (default:
    the least popular category). Drawn from a stream of its own, so the draws of everyone else,
    and every customer before `from_day`, are those of the shop without drift.
    """
    drift = params.drift
    assert drift is not None
    draw = np.random.default_rng([params.seed, STREAM_DRIFT]).random(arrays["signup_day"].size)
    joins = (arrays["signup_day"] >= drift.from_day) & (draw < drift.new_segment_share)
    category = (
        categories.index(drift.new_segment_category)
        if drift.new_segment_category is not None
        else int(np.argmin(weights))
    )
    arrays = {
        **arrays,
        "visit_rate": np.where(
            joins, arrays["visit_rate"] * drift.new_segment_visit_factor, arrays["visit_rate"]
        ),
        "favourite": np.where(joins, category, arrays["favourite"]),
    }
    truth = truth.assign(
        segment=np.where(joins, "drift", truth["segment"].to_numpy(dtype=object)),
        visit_rate=arrays["visit_rate"],
        favourite_category=np.array(categories, dtype=object)[arrays["favourite"]],
    )
    return truth, arrays


def price_factor(params: SimulateParams, day: int | np.ndarray) -> float | np.ndarray:
    """Multiplier of list prices on `day`: `drift.price_factor` from `drift.from_day` on, else 1."""
    if params.drift is None:
        return 1.0
    return np.where(np.asarray(day) >= params.drift.from_day, params.drift.price_factor, 1.0)


def keyed_uniform(seed: int, *keys: np.ndarray | int) -> np.ndarray:
    """Uniform draws in [0, 1) that depend only on the seed and the keys (broadcast), not on a stream.

    A rebuy's draws are keyed by its customer and occurrence, so they are the same whichever day,
    campaign or run asks for them (a counter-based generator: SplitMix64 applied to each key in turn).
    """
    with np.errstate(over="ignore"):  # wrapping uint64 arithmetic is the point
        h = _splitmix(np.uint64(seed))
        for key in (STREAM_REPURCHASE, *keys):
            h = _splitmix(h ^ np.asarray(key).astype(np.uint64))
    return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _splitmix(x: np.ndarray | np.uint64) -> np.ndarray:
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return np.asarray(z ^ (z >> np.uint64(31)))


def _customers(
    params: SimulateParams, horizon_days: int, category_weights: np.ndarray
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
    rng = np.random.default_rng([params.seed, STREAM_CUSTOMERS])
    n = params.customers
    names = list(params.segments)
    shares = np.array([params.segments[s].share for s in names])
    segment = rng.choice(len(names), n, p=shares / shares.sum())
    seg = [params.segments[names[i]] for i in range(len(names))]
    a = np.array([s.satisfaction[0] for s in seg])[segment]
    b = np.array([s.satisfaction[1] for s in seg])[segment]
    satisfaction = rng.beta(a, b)
    hazard = np.array([s.weekly_churn_hazard for s in seg])[segment] * np.exp(
        -params.satisfaction_hazard_effect * (satisfaction - 0.5)
    )
    signup_day = rng.integers(-params.prior_signup_days, max(horizon_days, 1), n)
    lifetime = np.minimum(rng.exponential(7.0 / np.minimum(hazard, 0.99)), MAX_LIFETIME_DAYS)
    churn_day = signup_day + lifetime
    mean_rate = np.array([s.visits_per_week / 7.0 for s in seg])[segment]
    shape = params.activity_heterogeneity
    visit_rate = rng.gamma(shape, mean_rate / shape)
    price_sensitivity = rng.beta(2.0, 2.0, n)
    favourite = rng.choice(len(category_weights), n, p=category_weights)
    consent = rng.random(n) < params.consent_rate
    countries = list(params.countries)
    country_p = np.array([params.countries[c] for c in countries], dtype=float)
    country = np.array(countries, dtype=object)[rng.choice(len(countries), n, p=country_p / country_p.sum())]
    first = rng.choice(vocab.FIRST_NAMES, n)
    last = rng.choice(vocab.LAST_NAMES, n)
    domain = rng.choice(vocab.EMAIL_DOMAINS, n)

    width = max(7, len(str(n)))
    ids = np.array([f"C{i:0{width}d}" for i in range(n)], dtype=object)
    start = pd.Timestamp(params.start)
    signup_date = start + pd.to_timedelta(signup_day, unit="D")
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "signup_date": signup_date.normalize(),
            "country": country,
            "marketing_consent": consent,
            "email": [f"{a}.{b}{i}@{d}" for i, (a, b, d) in enumerate(zip(first, last, domain, strict=True))],
        }
    )
    truth = pd.DataFrame(
        {
            "customer_id": ids,
            "segment": np.array(names, dtype=object)[segment],
            "signup_day": signup_day,
            "churn_day": churn_day,
            "churn_date": (start + pd.to_timedelta(np.floor(churn_day), unit="D")).normalize(),
            "satisfaction": satisfaction,
            "visit_rate": visit_rate,
            "price_sensitivity": price_sensitivity,
            "favourite_category": np.array(list(params.categories), dtype=object)[favourite],
        }
    )
    arrays = {
        "customer_ids": ids,
        "signup_day": signup_day,
        "churn_day": churn_day,
        "visit_rate": visit_rate,
        "price_sensitivity": price_sensitivity,
        "satisfaction": satisfaction,
        "favourite": favourite,
    }
    return customers, truth, arrays


def day_date(params: SimulateParams, day: int) -> pd.Timestamp:
    """Calendar date of simulation day `day` (day 0 is `params.start`)."""
    return pd.Timestamp(params.start) + timedelta(days=day)
