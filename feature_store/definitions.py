"""Customer feature definitions as code: the ordered registry, its computations and its version hash.

Every feature is a `FeatureDef` whose `compute` maps a `FeatureContext` (the frames cut at as-of,
restricted to the population) to one value per population customer. Definitions that depend on
parameters (windows) are generated from `params.features`, so the registry is a function of them.

Choices (see also `retention features list`):
- Population at as-of T: customers with at least one purchase before T (EVALUATION.md); customers
  who only viewed or carted are left out. Only rows with ts < T are used (signup_date < T too).
- Windows are half-open, [as_of - w days, as_of). Non-windowed behavioural features (inter-purchase
  times, category entropy, discount share, reviews) use the whole look-back of `history_days`;
  recency and tenure use all history (aggregated in SQL by the reader).
- An order is an `order_id`; purchase lines without one count as one order per timestamp.
- Activity counts and cart abandonment use the last `activity_days`.
- Discount share is amount-based: the share of the purchase amount (quantity x unit price) bought
  below list price (unit price < list price x (1 - discount_tolerance)).
- Trends compare the last `trend_days` with the `trend_days` before them:
  (last - previous) / (last + previous), in [-1, 1], 0 when both are 0.
- RFM: quantile scores 1..rfm_quantiles of recency, frequency and monetary over the longest window
  (`rfm_score`: ties share the lower score, independent of row order); the segment comes from the
  R and F scores through the classic 5 x 5 map.
- Known limit: product category and list price are the catalogue's current values (the warehouse
  keeps no product history), so a later catalogue change can move category entropy and discount share.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, cast

import numpy as np
import pandas as pd

from feature_store.frames import CART, PURCHASE, VIEW, FeatureContext
from retention.params import FeatureParams

ENTITY = "customer"
# Bump when a computation changes without a change of names, dtypes, windows or parameters.
CODE_REVISION = 1
VERSION_LENGTH = 12  # hex digits of the feature_version hash
ENTROPY_BASE = 2  # category entropy in bits
RFM_BINS_PARAMETER = "rfm_quantiles"  # suite parameter: the highest RFM score
RATING_RANGE = (1, 5)  # the schema's CHECK constraint on reviews.rating
RFM_SEGMENT_SCALE = 5  # the segment map below is written on the classic 1..5 R and F scores

# Classic RFM segment map on 1..5 recency (rows) x frequency (columns) scores.
_SEGMENT_GRID = (
    # F=1           F=2                   F=3                   F=4           F=5
    ("hibernating", "hibernating", "at_risk", "at_risk", "cant_lose"),  # R=1
    ("hibernating", "hibernating", "at_risk", "at_risk", "cant_lose"),  # R=2
    ("about_to_sleep", "about_to_sleep", "need_attention", "loyal", "loyal"),  # R=3
    ("promising", "potential_loyalist", "potential_loyalist", "loyal", "loyal"),  # R=4
    ("new", "potential_loyalist", "potential_loyalist", "champions", "champions"),  # R=5
)
RFM_SEGMENTS = tuple(dict.fromkeys(name for row in _SEGMENT_GRID for name in row))


Bound = float | str | None
FeatureDtype = Literal["float64", "int64", "string"]


@dataclass(frozen=True)
class FeatureDef:
    """One feature: what it is, its type and window, and how to compute it.

    Attributes:
        name: column name in every feature table.
        dtype: pandas dtype of the column ("float64", "int64" or "string").
        description: one line for `retention features list`.
        window_days: the look-back window in days; None when not windowed.
        compute: FeatureContext -> one value per population customer (aligned with `ctx.ids`).
        bounds: (min, max) of valid values, None = open; a string names a suite parameter.
        nullable: whether NaN is a legitimate value (e.g. a mean over nothing).
        allowed: the valid values of a categorical feature.
        entity: the key the feature describes.
    """

    name: str
    dtype: FeatureDtype
    description: str
    window_days: int | None
    compute: Callable[[FeatureContext], np.ndarray]
    bounds: tuple[Bound, Bound] = (None, None)
    nullable: bool = False
    allowed: tuple[str, ...] | None = None
    entity: str = ENTITY


# -- computations ------------------------------------------------------------------------------


def _recency(ctx: FeatureContext) -> np.ndarray:
    return ctx.days_before(ctx.last_purchase_ts)


def _tenure(ctx: FeatureContext) -> np.ndarray:
    start = np.where(np.isnat(ctx.signup_date), ctx.first_event_ts, ctx.signup_date)
    return ctx.days_before(start)


def _frequency(days: int) -> Callable[[FeatureContext], np.ndarray]:
    def compute(ctx: FeatureContext) -> np.ndarray:
        return ctx.count(ctx.orders_between(0, days)["code"].to_numpy()).astype(np.int64)

    return compute


def _monetary(days: int) -> Callable[[FeatureContext], np.ndarray]:
    def compute(ctx: FeatureContext) -> np.ndarray:
        orders = ctx.orders_between(0, days)
        return ctx.count(orders["code"].to_numpy(), orders["amount"].to_numpy())

    return compute


def _gaps(ctx: FeatureContext) -> pd.DataFrame:
    orders = ctx.orders  # sorted by customer, then time
    same = orders["code"].eq(orders["code"].shift())
    ts: pd.Series[pd.Timestamp] = orders["ts"]
    gaps = ts.diff() / pd.Timedelta(days=1)
    return pd.DataFrame({"code": orders["code"][same], "gap": gaps[same]})


def _ipt(statistic: str) -> Callable[[FeatureContext], np.ndarray]:
    def compute(ctx: FeatureContext) -> np.ndarray:
        gaps = _gaps(ctx)
        values = gaps.groupby("code")["gap"].agg(statistic)  # std: sample std, NaN with one gap
        return values.reindex(range(ctx.n)).to_numpy(dtype=float)

    return compute


def _activity(event_type: str, days: int) -> Callable[[FeatureContext], np.ndarray]:
    def compute(ctx: FeatureContext) -> np.ndarray:
        events = ctx.events
        mask = (events["event_type"] == event_type) & (events["age_days"] <= days)
        return ctx.count(events["code"][mask].to_numpy()).astype(np.int64)

    return compute


def _cart_abandonment(days: int) -> Callable[[FeatureContext], np.ndarray]:
    def compute(ctx: FeatureContext) -> np.ndarray:
        events = ctx.events
        recent = events[(events["age_days"] <= days) & events["event_type"].isin([CART, PURCHASE])]
        last = recent.groupby(["code", "product_id", "event_type"], sort=False)["ts"].max().unstack()
        if CART not in last:
            return np.full(ctx.n, np.nan)
        carted = last[last[CART].notna()]
        bought = carted[PURCHASE] if PURCHASE in carted else pd.Series(pd.NaT, index=carted.index)
        abandoned = ~(bought >= carted[CART])  # no purchase of the product at or after its last cart
        codes = carted.index.get_level_values("code").to_numpy()
        n_carted = ctx.count(codes)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(
                n_carted > 0, ctx.count(codes, abandoned.to_numpy(dtype=float)) / n_carted, np.nan
            )

    return compute


def _category_entropy(ctx: FeatureContext) -> np.ndarray:
    lines = ctx.purchases[ctx.purchases["category"].notna()]
    counts = lines.groupby(["code", "category"], sort=False).size()
    codes = counts.index.get_level_values("code").to_numpy()
    totals = ctx.count(codes, counts.to_numpy(dtype=float))
    p = counts.to_numpy() / totals[codes]
    entropy = ctx.count(codes, -p * np.log(p) / np.log(ENTROPY_BASE))
    return np.where(totals > 0, entropy + 0.0, np.nan)  # + 0.0 turns -0.0 into 0.0


def _discount_share(ctx: FeatureContext) -> np.ndarray:
    lines = ctx.purchases
    lines = lines[lines["amount"].notna() & lines["list_price"].notna()]
    discounted = lines["price"] < lines["list_price"] * (1 - ctx.params.discount_tolerance)
    codes = lines["code"].to_numpy()
    total = ctx.count(codes, lines["amount"].to_numpy())
    below = ctx.count(codes, lines["amount"].where(discounted, 0.0).to_numpy())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, below / total, np.nan)


def _review_count(ctx: FeatureContext) -> np.ndarray:
    return ctx.count(ctx.reviews["code"].to_numpy()).astype(np.int64)


def _review_mean(column: str) -> Callable[[FeatureContext], np.ndarray]:
    def compute(ctx: FeatureContext) -> np.ndarray:
        reviews = ctx.reviews[ctx.reviews[column].notna()]
        codes = reviews["code"].to_numpy()
        n = ctx.count(codes)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, ctx.count(codes, reviews[column].to_numpy()) / n, np.nan)

    return compute


def _trend(days: int, value: str) -> Callable[[FeatureContext], np.ndarray]:
    def compute(ctx: FeatureContext) -> np.ndarray:
        last_orders, previous_orders = ctx.orders_between(0, days), ctx.orders_between(days, 2 * days)
        weights = (lambda o: o["amount"].to_numpy()) if value == "amount" else (lambda o: None)
        last = ctx.count(last_orders["code"].to_numpy(), weights(last_orders))
        previous = ctx.count(previous_orders["code"].to_numpy(), weights(previous_orders))
        total = last + previous
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, (last - previous) / total, 0.0)

    return compute


def rfm_score(goodness: np.ndarray, bins: int) -> np.ndarray:
    """Quantile score 1 (worst) .. `bins` (best) of each value; ties share the lower score.

    Deterministic whatever the row order: a value's score depends only on how many values are
    strictly worse, `1 + floor((rank_min - 1) * bins / n)`.

    Args:
        goodness: higher is better (pass minus recency).
        bins: number of quantile bins.

    Returns:
        Integer scores, one per value.
    """
    if len(goodness) == 0:
        return np.zeros(0, dtype=np.int64)
    rank = pd.Series(goodness).rank(method="min").to_numpy()
    return (1 + np.floor((rank - 1) * bins / len(goodness))).astype(np.int64)


def _rfm(ctx: FeatureContext) -> dict[str, np.ndarray]:
    cached = cast("dict[str, np.ndarray] | None", ctx.memo.get("rfm"))
    if cached is None:
        longest = max(ctx.params.windows_days)
        bins = ctx.params.rfm_quantiles
        cached = {
            "r": rfm_score(-_recency(ctx), bins),
            "f": rfm_score(_frequency(longest)(ctx).astype(float), bins),
            "m": rfm_score(_monetary(longest)(ctx), bins),
        }
        ctx.memo["rfm"] = cached
    return cached


def rfm_segment(r: np.ndarray, f: np.ndarray, bins: int) -> np.ndarray:
    """Named segment of each (R, F) score pair, via the classic 5 x 5 map (scores rescaled to 1..5).

    Args:
        r: recency scores 1..bins.
        f: frequency scores 1..bins.
        bins: the number of quantile bins the scores were made with.

    Returns:
        Segment names (object array).
    """
    grid = np.array(_SEGMENT_GRID, dtype=object)

    def scale(score: np.ndarray) -> np.ndarray:
        return np.floor((score - 1) * RFM_SEGMENT_SCALE / bins).astype(np.int64)

    return grid[scale(r), scale(f)]


def _rfm_score(letter: str) -> Callable[[FeatureContext], np.ndarray]:
    def compute(ctx: FeatureContext) -> np.ndarray:
        return _rfm(ctx)[letter]

    return compute


def _segment(ctx: FeatureContext) -> np.ndarray:
    scores = _rfm(ctx)
    return rfm_segment(scores["r"], scores["f"], ctx.params.rfm_quantiles)


# -- registry ----------------------------------------------------------------------------------


def feature_registry(params: FeatureParams) -> tuple[FeatureDef, ...]:
    """Every customer feature, in output column order.

    Args:
        params: the `features` section of params.yaml (windows, activity and trend spans...).

    Returns:
        The ordered feature definitions.
    """
    history, activity, trend = params.history_days, params.activity_days, params.trend_days
    longest = max(params.windows_days)
    windows = sorted(params.windows_days)
    days, count, share = (0, None), (0, None), (0, 1)
    trend_range, score = (-1, 1), (1, RFM_BINS_PARAMETER)
    f = FeatureDef
    return (
        f(
            "recency_days",
            "float64",
            "days since the last purchase (all history)",
            None,
            _recency,
            bounds=days,
        ),
        f(
            "tenure_days",
            "float64",
            "days since signup_date, or since the first event if unknown",
            None,
            _tenure,
            bounds=days,
        ),
        *(
            f(
                f"frequency_{w}d",
                "int64",
                f"distinct orders in the last {w} days",
                w,
                _frequency(w),
                bounds=count,
            )
            for w in windows
        ),
        *(
            f(
                f"monetary_{w}d",
                "float64",
                f"purchase amount (quantity x unit price) in the last {w} days",
                w,
                _monetary(w),
                bounds=count,
            )
            for w in windows
        ),
        f(
            "ipt_mean_days",
            "float64",
            "mean days between consecutive orders (NaN: < 2 orders)",
            history,
            _ipt("mean"),
            bounds=days,
            nullable=True,
        ),
        f(
            "ipt_std_days",
            "float64",
            "sample std of days between orders (NaN: < 3 orders)",
            history,
            _ipt("std"),
            bounds=days,
            nullable=True,
        ),
        *(
            f(
                f"{kind}_count_{activity}d",
                "int64",
                f"{kind} events in the last {activity} days",
                activity,
                _activity(kind, activity),
                bounds=count,
            )
            for kind in (VIEW, CART, PURCHASE)
        ),
        f(
            f"cart_abandonment_{activity}d",
            "float64",
            "share of carted products not bought at or after their last cart (NaN: no cart)",
            activity,
            _cart_abandonment(activity),
            bounds=share,
            nullable=True,
        ),
        f(
            "category_entropy",
            "float64",
            "Shannon entropy (bits) of purchase-line categories (NaN: none categorised)",
            history,
            _category_entropy,
            bounds=count,
            nullable=True,
        ),
        f(
            "discount_share",
            "float64",
            "share of the purchase amount bought below list price (NaN: no priced line)",
            history,
            _discount_share,
            bounds=share,
            nullable=True,
        ),
        f("review_count", "int64", "reviews written", history, _review_count, bounds=count),
        f(
            "rating_mean",
            "float64",
            "mean star rating (NaN: no review)",
            history,
            _review_mean("rating"),
            bounds=RATING_RANGE,
            nullable=True,
        ),
        f(
            "sentiment_mean",
            "float64",
            "mean review sentiment P(positive) (NaN: none scored)",
            history,
            _review_mean("score"),
            bounds=share,
            nullable=True,
        ),
        f(
            f"order_trend_{trend}d",
            "float64",
            f"(orders last {trend}d - the {trend}d before) / their sum; 0 if both 0",
            2 * trend,
            _trend(trend, "orders"),
            bounds=trend_range,
        ),
        f(
            f"spend_trend_{trend}d",
            "float64",
            f"(spend last {trend}d - the {trend}d before) / their sum; 0 if both 0",
            2 * trend,
            _trend(trend, "amount"),
            bounds=trend_range,
        ),
        f(
            "rfm_r",
            "int64",
            "recency quantile score, 1 (oldest) .. rfm_quantiles (newest)",
            None,
            _rfm_score("r"),
            bounds=score,
        ),
        f(
            "rfm_f",
            "int64",
            f"frequency_{longest}d quantile score, 1 .. rfm_quantiles",
            longest,
            _rfm_score("f"),
            bounds=score,
        ),
        f(
            "rfm_m",
            "int64",
            f"monetary_{longest}d quantile score, 1 .. rfm_quantiles",
            longest,
            _rfm_score("m"),
            bounds=score,
        ),
        f(
            "rfm_segment",
            "string",
            "RFM segment named from the R and F scores",
            longest,
            _segment,
            allowed=RFM_SEGMENTS,
        ),
    )


def feature_version(params: FeatureParams) -> str:
    """Short hash of the feature definitions: names, dtypes, windows and the parameters they use.

    Args:
        params: the `features` section of params.yaml.

    Returns:
        `VERSION_LENGTH` hex digits; changes whenever a stored feature could change meaning.
    """
    spec = {
        "revision": CODE_REVISION,
        "features": [(f.name, f.entity, f.dtype, f.window_days) for f in feature_registry(params)],
        "params": {
            key: getattr(params, key)
            for key in (
                "windows_days",
                "trend_days",
                "rfm_quantiles",
                "history_days",
                "activity_days",
                "discount_tolerance",
            )
        },
    }
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
    return digest[:VERSION_LENGTH]
