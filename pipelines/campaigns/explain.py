"""Campaign targets in a marketer's words: reason codes as sentences, risk deciles, why each product.

Pure functions of values the campaign already holds (reason codes, the model inputs at as-of in
`platform_campaign_targets.features`, the customer's own events, the catalogue), so the export,
the campaign page and the customer profile say the same thing about a customer.

- `reasons_in_words`: each reason code (a return-model input, see `feature_store/definitions.py`
  and `training/churn/dataset.py`) becomes a sentence with the customer's own value and, where the
  inputs allow it, a comparison that gives its direction ("no purchase for 64 days; usually buys
  every 21 days", "spent €35 in the last 90 days, down from €120 per 90 days before"). A feature
  without a sentence of its own gets a readable generic one; a value that was not stored (old
  campaigns) gives the feature's meaning without a value.
- `explain_recommendations`: titles, categories and a reason per recommended product, the first of
  time to reorder (a product they re-buy on a cycle, whose usual gap has passed: "time to reorder:
  usually re-bought every 28 days, last bought 31 days ago") / bought it before / left it in the
  cart / viewed it / bought another product of its category / a bestseller of its category / from
  their history (or popular, for a customer without history).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

DEFAULT_RFM_QUANTILES = 5  # params.features.rfm_quantiles as shipped
BESTSELLERS_PER_CATEGORY = 10  # a product among its category's top N by purchases is "popular"
SAME_SHARE = 0.1  # a value within 10% of its comparison is "about the same"
SENTIMENT_BANDS = (0.4, 0.6)  # mean P(positive) below: negative tone; above: positive; between: mixed
PURCHASE, CART, VIEW = "purchase", "cart", "view"


# -- formatting ----------------------------------------------------------------------------------


def _value(features: Mapping[str, Any], name: str) -> float | None:
    """A numeric input, None when absent, null, NaN or not a number."""
    raw = features.get(name)
    if raw is None or isinstance(raw, bool):
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _plural(n: float, noun: str, plural: str | None = None) -> str:
    whole = round(n)
    return f"{whole:,} {noun if whole == 1 else (plural or noun + 's')}"


def _orders(n: float) -> str:
    return "no order" if round(n) == 0 else _plural(n, "order")


def _days(n: float) -> str:
    return _plural(n, "day")


def euros(amount: float) -> str:
    """€35, €1,234 or €4.50: whole euros from €10 up, cents below."""
    return f"€{amount:,.0f}" if abs(amount) >= 10 else f"€{amount:,.2f}"


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _compare(now: float, before: float, show: Callable[[float], str], unit: str) -> str:
    """ ", down from X per <unit> before" / ", up from ..." / ", about the same as before (...)"."""
    if before <= 0 and now <= 0:
        return ""
    if abs(now - before) <= SAME_SHARE * max(abs(now), abs(before)):
        return f", about the same as before ({show(before)} per {unit})"
    return f", {'down' if now < before else 'up'} from {show(before)} per {unit} before"


# -- reason sentences ----------------------------------------------------------------------------

Sentence = Callable[[re.Match[str], float | None, Mapping[str, Any], int], str]


def _recency(_: re.Match[str], value: float | None, features: Mapping[str, Any], __: int) -> str:
    if value is None:
        return "time since the last purchase"
    text = "bought within the last day" if value < 1 else f"no purchase for {_days(value)}"
    usual = _value(features, "ipt_mean_days")
    return text + (f"; usually buys every {_days(usual)}" if usual is not None else "")


def _recency_over_gap(_: re.Match[str], value: float | None, features: Mapping[str, Any], __: int) -> str:
    recency, usual = _value(features, "recency_days"), _value(features, "ipt_mean_days")
    if recency is not None and usual is not None:
        ratio = value if value is not None else recency / max(usual, 1.0)  # as the model computes it
        return f"last purchase {_days(recency)} ago, {ratio:.1f}x their usual gap of {_days(usual)} between orders"
    if value is None:
        return "time since the last purchase compared with their usual gap between orders"
    return f"time since the last purchase is {value:.1f}x their usual gap between orders"


def _usual_gap(_: re.Match[str], value: float | None, features: Mapping[str, Any], __: int) -> str:
    if value is None:
        return "only one order so far: no usual rhythm yet" if features else "usual gap between orders"
    recency = _value(features, "recency_days")
    return f"usually buys every {_days(value)}" + (
        f"; last purchase {_days(recency)} ago" if recency is not None else ""
    )


def _gap_spread(_: re.Match[str], value: float | None, features: Mapping[str, Any], __: int) -> str:
    if value is None:
        return "too few orders to tell how regular they are" if features else "regularity of their orders"
    usual = _value(features, "ipt_mean_days")
    regular = "irregular" if usual is not None and value > usual / 2 else "fairly regular"
    return f"{regular} rhythm: gaps between orders vary by about {_days(value)}" + (
        f" around {_days(usual)}" if usual is not None else ""
    )


def _last_gap(_: re.Match[str], value: float | None, features: Mapping[str, Any], __: int) -> str:
    if value is None:
        return "only one order so far" if features else "gap between their last two orders"
    usual = _value(features, "ipt_mean_days")
    return f"{_days(value)} between their last two orders" + (
        f" (usually {_days(usual)})" if usual is not None else ""
    )


def _tenure(_: re.Match[str], value: float | None, __: Mapping[str, Any], ___: int) -> str:
    return "how long they have been a customer" if value is None else f"customer for {_days(value)}"


def _window_rate(features: Mapping[str, Any], prefix: str, days: int, now: float) -> tuple[float, int] | None:
    """The same measure per `days` over the period before the window: from the next longer window,
    over the part of it the customer was a customer (None: no longer window, or too new)."""
    longer = sorted(
        int(m.group(1))
        for name in features
        if (m := re.fullmatch(rf"{prefix}_(\d+)d", name)) and int(m.group(1)) > days
    )
    if not longer:
        return None
    total = _value(features, f"{prefix}_{longer[0]}d")
    tenure = _value(features, "tenure_days")
    span = min(longer[0], tenure) if tenure is not None else longer[0]
    if total is None or span - days < days / 2:  # too little time before the window to compare
        return None
    return (total - now) * days / (span - days), days


def _frequency(match: re.Match[str], value: float | None, features: Mapping[str, Any], _: int) -> str:
    days = int(match.group(1))
    if value is None:
        return f"number of orders in the last {days} days"
    text = f"{_orders(value)} in the last {days} days"
    before = _window_rate(features, "frequency", days, value)
    return text + (_compare(value, before[0], lambda v: f"{v:.1f} orders", f"{days} days") if before else "")


def _monetary(match: re.Match[str], value: float | None, features: Mapping[str, Any], _: int) -> str:
    days = int(match.group(1))
    if value is None:
        return f"spending in the last {days} days"
    text = f"spent {euros(value)} in the last {days} days"
    before = _window_rate(features, "monetary", days, value)
    return text + (_compare(value, before[0], euros, f"{days} days") if before else "")


def _activity(match: re.Match[str], value: float | None, _: Mapping[str, Any], __: int) -> str:
    kind, days = match.group(1), int(match.group(2))
    verbs = {
        VIEW: ("product view", "product views"),
        CART: ("product added to the cart", "products added to the cart"),
        PURCHASE: ("item bought", "items bought"),
    }
    one, many = verbs[kind]
    if value is None:
        return f"{many} in the last {days} days"
    return f"{_plural(value, one, many)} in the last {days} days"


def _abandonment(match: re.Match[str], value: float | None, features: Mapping[str, Any], _: int) -> str:
    days = int(match.group(1))
    if value is None:
        return f"nothing put in the cart in the last {days} days" if features else "cart abandonment"
    return f"left {value:.0%} of the products they put in the cart unbought (last {days} days)"


def _trend(match: re.Match[str], value: float | None, features: Mapping[str, Any], _: int) -> str:
    kind, days = match.group(1), int(match.group(2))
    noun = "orders" if kind == "order" else "spending"
    if value is None:
        return f"trend of their {noun}: last {days} days against the {days} before"
    last = _value(features, f"{'frequency' if kind == 'order' else 'monetary'}_{days}d")
    show: Callable[[float], str] = _orders if kind == "order" else euros
    lead = "" if kind == "order" else "spent "
    if last is not None and value > -1:
        before = last * (1 - value) / (1 + value)  # value = (last - before) / (last + before)
        if last == 0 and before == 0:
            return f"no {'order' if kind == 'order' else 'spending'} in the last {2 * days} days"
        if abs(last - before) <= SAME_SHARE * max(last, before):
            return f"{lead}{show(last)} in the last {days} days, about as in the {days} days before"
        way = "down" if last < before else "up"
        return (
            f"{lead}{show(last)} in the last {days} days, {way} from {show(before)} in the {days} days before"
        )
    if value <= -1:
        return f"no {'order' if kind == 'order' else 'spending'} in the last {days} days, after some in the {days} days before"
    way = "fewer" if kind == "order" else "less"
    if value > 0:
        way = "more"
    return f"{way} {noun} in the last {days} days than in the {days} before"


def _entropy(_: re.Match[str], value: float | None, features: Mapping[str, Any], __: int) -> str:
    if value is None:
        return "no categorised purchase yet" if features else "variety of categories they buy from"
    if value < 0.5:
        return "buys almost only from one category"
    return f"buys across about {2**value:.0f} categories"


def _discount(_: re.Match[str], value: float | None, features: Mapping[str, Any], __: int) -> str:
    if value is None:
        return "no priced purchase yet" if features else "share of spending on discounted items"
    return f"{value:.0%} of their spending was on discounted items"


def _reviews(_: re.Match[str], value: float | None, __: Mapping[str, Any], ___: int) -> str:
    return "number of reviews written" if value is None else f"wrote {_plural(value, 'review')}"


def _rating(_: re.Match[str], value: float | None, features: Mapping[str, Any], __: int) -> str:
    if value is None:
        return "no review written" if features else "their star ratings"
    return f"rates {value:.1f} of 5 stars on average"


def sentiment_tone(score: float) -> str:
    """'negative', 'mixed' or 'positive' for a mean review sentiment P(positive)."""
    low, high = SENTIMENT_BANDS
    return "negative" if score < low else "positive" if score > high else "mixed"


def _sentiment(_: re.Match[str], value: float | None, features: Mapping[str, Any], __: int) -> str:
    if value is None:
        return "no scored review" if features else "the tone of their reviews"
    return f"their reviews sound {sentiment_tone(value)} ({value:.0%} positive)"


def _rfm(match: re.Match[str], value: float | None, _: Mapping[str, Any], quantiles: int) -> str:
    what = {
        "r": ("recency", "longest since the last purchase"),
        "f": ("frequency", "fewest orders"),
        "m": ("spending", "lowest spend"),
    }
    name, low = what[match.group(1)]
    if value is None:
        return f"{name} score"
    return f"{name} score {value:.0f} of {quantiles} (1 = {low})"


def _orders_total(_: re.Match[str], value: float | None, __: Mapping[str, Any], ___: int) -> str:
    return "number of orders" if value is None else f"{_orders(value)} in total"


def _first_order(_: re.Match[str], value: float | None, __: Mapping[str, Any], ___: int) -> str:
    return "time since the first order" if value is None else f"first order {_days(value)} ago"


def _span(_: re.Match[str], value: float | None, __: Mapping[str, Any], ___: int) -> str:
    return "time between first and last order" if value is None else f"orders spread over {_days(value)}"


def _repeat_rate(_: re.Match[str], value: float | None, features: Mapping[str, Any], __: int) -> str:
    if value is None:
        return "how often they order again" if not features else "no repeat order yet"
    if value <= 0:
        return "no repeat order yet"
    return f"one repeat order every {_days(1 / value)} on average"


def _amount(match: re.Match[str], value: float | None, features: Mapping[str, Any], _: int) -> str:
    which = match.group(1)
    label = {"mean": "average order", "last": "last order", "first": "first order"}[which]
    if value is None:
        return f"{label} value"
    text = f"{label} {euros(value)}"
    mean = _value(features, "amount_mean")
    if which == "last" and mean is not None and abs(value - mean) > SAME_SHARE * mean:
        text += f", {'below' if value < mean else 'above'} their average of {euros(mean)}"
    return text


def _items(_: re.Match[str], value: float | None, __: Mapping[str, Any], ___: int) -> str:
    return "number of items bought" if value is None else f"{_plural(value, 'item')} bought in total"


def _basket(_: re.Match[str], value: float | None, __: Mapping[str, Any], ___: int) -> str:
    return "items per order" if value is None else f"{value:.1f} items per order on average"


# Feature name pattern -> sentence; the first that matches the whole name is used.
SENTENCES: tuple[tuple[str, Sentence], ...] = (
    (r"recency_days", _recency),
    (r"recency_over_ipt", _recency_over_gap),
    (r"ipt_mean_days", _usual_gap),
    (r"ipt_std_days", _gap_spread),
    (r"last_gap_days", _last_gap),
    (r"tenure_days", _tenure),
    (r"frequency_(\d+)d", _frequency),
    (r"monetary_(\d+)d", _monetary),
    (r"(view|cart|purchase)_count_(\d+)d", _activity),
    (r"cart_abandonment_(\d+)d", _abandonment),
    (r"(order|spend)_trend_(\d+)d", _trend),
    (r"category_entropy", _entropy),
    (r"discount_share", _discount),
    (r"review_count", _reviews),
    (r"rating_mean", _rating),
    (r"sentiment_mean", _sentiment),
    (r"rfm_([rfm])", _rfm),
    (r"orders_total", _orders_total),
    (r"first_order_days", _first_order),
    (r"order_span_days", _span),
    (r"repeat_rate_per_day", _repeat_rate),
    (r"amount_(mean|last|first)", _amount),
    (r"items_total", _items),
    (r"items_per_order", _basket),
)


def _generic(name: str, features: Mapping[str, Any]) -> str:
    label = re.sub(r"_(\d+)d$", r" (last \1 days)", name).replace("_", " ").strip()
    raw = features.get(name)
    value = _value(features, name)
    if value is not None:
        return f"{label}: {_number(value)}"
    if isinstance(raw, str) and raw:
        return f"{label}: {raw}"
    return f"{label}: no value recorded" if name in features else label


def reason_in_words(
    code: str, features: Mapping[str, Any], rfm_quantiles: int = DEFAULT_RFM_QUANTILES
) -> str:
    """One reason code as a sentence with the customer's value (see `reasons_in_words`)."""
    for pattern, sentence in SENTENCES:
        match = re.fullmatch(pattern, code)
        if match:
            return sentence(match, _value(features, code), features, rfm_quantiles)
    return _generic(code, features)


def reasons_in_words(
    reason_codes: Sequence[str], features: Mapping[str, Any], rfm_quantiles: int = DEFAULT_RFM_QUANTILES
) -> list[str]:
    """The return model's reason codes as sentences with the customer's own values.

    Args:
        reason_codes: feature names, most important first (`platform_campaign_targets.reasons`).
        features: the model inputs at as-of (`platform_campaign_targets.features`, or the online
            features plus the served model's inputs); missing or null values are allowed.
        rfm_quantiles: the highest RFM score (params.features.rfm_quantiles).

    Returns:
        One sentence per reason code, in the same order (e.g. "no purchase for 64 days; usually
        buys every 21 days"); an unknown feature gives "<its name in words>: <value>".
    """
    return [reason_in_words(str(code), features, rfm_quantiles) for code in reason_codes]


def risk_decile_text(decile: int, deciles: int = 10) -> str:
    """What a risk decile of the list means, e.g. "decile 9 of 10: among the 20% most at risk of this list".

    Args:
        decile: 1 (lowest P(churn) of the list) .. `deciles`.
        deciles: how many (params.campaign.risk_deciles).
    """
    share = 100 / deciles
    if decile > deciles / 2:
        return f"decile {decile} of {deciles}: among the {(deciles - decile + 1) * share:.0f}% most at risk of this list"
    return f"decile {decile} of {deciles}: among the {decile * share:.0f}% least at risk of this list"


# -- recommendations -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RecommendedProduct:
    """A recommended product with what a marketer needs to use it.

    Attributes:
        product_id: the catalogue id.
        title: the product's title (None: not in the catalogue).
        category: its category (None: unknown).
        why: the reason in words, e.g. "bought Wool scarf", "popular in garden" or "time to
            reorder: usually re-bought every 28 days, last bought 31 days ago".
    """

    product_id: str
    title: str | None
    category: str | None
    why: str

    @property
    def text(self) -> str:
        """'Title (category): why'."""
        name = self.title or f"product {self.product_id}"
        return f"{name} ({self.category}): {self.why}" if self.category else f"{name}: {self.why}"


def bestsellers(
    purchases: pd.DataFrame, products: pd.DataFrame, top: int = BESTSELLERS_PER_CATEGORY
) -> set[str]:
    """The `top` most purchased products of each category.

    Args:
        purchases: product_id, one row per purchase line (when an event_type column is present,
            rows of other event types are ignored).
        products: product_id, category.
        top: products per category.

    Returns:
        Product ids (ties at the cut broken by product id).
    """
    if "event_type" in purchases:
        purchases = purchases.loc[purchases["event_type"] == PURCHASE]
    counts = purchases["product_id"].astype(str).value_counts().rename("purchases").reset_index()
    return top_per_category(counts, products, top)


def top_per_category(
    counts: pd.DataFrame, products: pd.DataFrame, top: int = BESTSELLERS_PER_CATEGORY
) -> set[str]:
    """The `top` products of each category from per-product purchase counts (product_id, purchases)."""
    catalogue = products[["product_id", "category"]].assign(product_id=lambda f: f["product_id"].astype(str))
    ranked = counts.merge(catalogue, on="product_id", how="inner").dropna(subset=["category"])
    ranked = ranked.loc[ranked["purchases"] > 0].sort_values(
        ["category", "purchases", "product_id"], ascending=[True, False, True], kind="stable"
    )
    return set(ranked.groupby("category").head(top)["product_id"])


@dataclass
class _History:
    """What one customer did before as-of, as `_why` reads it."""

    bought: set[str] = field(default_factory=set)
    carted: set[str] = field(default_factory=set)
    viewed: set[str] = field(default_factory=set)
    last_bought: dict[str, str] = field(default_factory=dict)  # category -> newest product bought in it


def _histories(
    events: pd.DataFrame, customers: set[str], categories: Mapping[str, str | None]
) -> dict[str, _History]:
    """The customers' events (any order) summarised, so each product's reason is a lookup."""
    rows = events.loc[events["customer_id"].astype(str).isin(customers)]
    rows = rows.assign(customer_id=rows["customer_id"].astype(str), product_id=rows["product_id"].astype(str))
    found: dict[str, _History] = {c: _History() for c in rows["customer_id"].unique().tolist()}
    kinds = {PURCHASE: "bought", CART: "carted", VIEW: "viewed"}
    touched = rows[["customer_id", "product_id", "event_type"]].drop_duplicates()
    for customer, product, kind in zip(
        touched["customer_id"].tolist(),
        touched["product_id"].tolist(),
        touched["event_type"].tolist(),
        strict=True,
    ):
        if kind in kinds:
            getattr(found[customer], kinds[kind]).add(product)
    purchases = rows.loc[rows["event_type"] == PURCHASE]
    purchases = purchases.assign(category=purchases["product_id"].map(categories)).dropna(subset=["category"])
    if "ts" in purchases:
        purchases = purchases.sort_values("ts", kind="stable")
    newest = purchases.groupby(["customer_id", "category"], sort=False)["product_id"].last()
    for (customer, category), product in zip(newest.index.tolist(), newest.tolist(), strict=True):
        found[customer].last_bought[category] = product
    return found


def reorder_text(interval_days: float, days_since: float) -> str:
    """'time to reorder: usually re-bought every 28 days, last bought 31 days ago'."""
    every = "day" if interval_days == 1 else f"{_number(interval_days)} days"
    return f"time to reorder: usually re-bought every {every}, last bought {_days(days_since)} ago"


def _why(
    product: str,
    category: str | None,
    seen: _History | None,
    titles: Mapping[str, str | None],
    popular: Collection[str],
    reorder: tuple[float, float] | None = None,
) -> str:
    """The first reason that holds (see the module doc); `reorder`: (interval, days since the last
    purchase) of a product due for reorder."""
    if reorder is not None:
        return reorder_text(*reorder)
    if seen is not None:
        if product in seen.bought:
            return "bought it before"
        if product in seen.carted:
            return "left it in the cart"
        if product in seen.viewed:
            return "viewed it"
    if category is not None:
        same = seen.last_bought.get(category) if seen is not None else None
        if same is not None:
            return f"bought {titles.get(same) or f'product {same}'}"
        if product in popular:
            return f"popular in {category}"
    if seen is None:
        return f"popular in {category}" if category else "popular in the shop"
    return "picked from their shopping history"


def _text_or_none(value: Any) -> str | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def explain_recommendations(
    customer_ids: Sequence[str],
    recommendations: Sequence[Sequence[str]],
    events: pd.DataFrame,
    products: pd.DataFrame,
    popular: Collection[str] | None = None,
    reorders: pd.DataFrame | None = None,
) -> list[list[RecommendedProduct]]:
    """Titles, categories and the reason for every recommended product of every customer.

    The build step can call it with the campaign's log before as-of:
    `explain_recommendations(targets["customer_id"].tolist(), targets["recommendations"].tolist(),
    history.events, history.products)`; the export calls it with the exported customers' own
    events and the catalogue's bestsellers at as-of (`pipelines.campaigns.store.export_frame`).

    Args:
        customer_ids: the customers, aligned with `recommendations`.
        recommendations: product ids per customer, best first.
        events: customer_id, product_id, event_type, ts: at least these customers' events before
            as-of (other customers' rows are ignored except for counting bestsellers).
        products: product_id, category, title: at least the recommended and the purchased products.
        popular: the products counted as popular in their category; None = the `bestsellers` of
            the purchases in `events` (pass the whole log's events then).
        reorders: customer_id, product_id, interval_days, days_since of the products due for
            reorder (`pipelines.campaigns.reorder.due_reorders`); None = no reorder reasons.

    Returns:
        Per customer, one `RecommendedProduct` per recommended id, in the same order.
    """
    if popular is None:
        popular = set(bestsellers(events, products))
    elif not isinstance(popular, set | frozenset):
        popular = set(popular)
    catalogue = products.assign(product_id=products["product_id"].astype(str)).drop_duplicates("product_id")
    titles = {p: _text_or_none(t) for p, t in zip(catalogue["product_id"], catalogue["title"], strict=True)}
    categories = {
        p: _text_or_none(c) for p, c in zip(catalogue["product_id"], catalogue["category"], strict=True)
    }
    histories = _histories(events, {str(c) for c in customer_ids}, categories)
    due: dict[tuple[str, str], tuple[float, float]] = {}
    if reorders is not None and len(reorders):
        keys = zip(reorders["customer_id"].astype(str), reorders["product_id"].astype(str), strict=True)
        cycles = zip(
            reorders["interval_days"].astype(float), reorders["days_since"].astype(float), strict=True
        )
        due = dict(zip(keys, cycles, strict=True))
    explained = []
    for customer, products_of in zip(customer_ids, recommendations, strict=True):
        seen = histories.get(str(customer))
        row = []
        for product in (str(p) for p in (products_of if products_of is not None else [])):
            category = categories.get(product)
            why = _why(product, category, seen, titles, popular, due.get((str(customer), product)))
            row.append(RecommendedProduct(product, titles.get(product), category, why))
        explained.append(row)
    return explained


def value_feature(value_days: int) -> str:
    """The feature the campaign's value estimate reads: spend in the last `value_days`."""
    return f"monetary_{value_days}d"


def predicted_value(spend: Any, horizon_days: int, value_days: int) -> Any:
    """Spend expected within the horizon at the customer's recent rate: the campaign's `predicted_value`.

    Args:
        spend: `value_feature(value_days)` of one customer (a number, None or NaN) or of many (a
            Series); unknown counts as 0.
        horizon_days: params.campaign.horizon_days.
        value_days: params.campaign.value_days.

    Returns:
        spend x horizon_days / value_days: a float, or a Series for a Series.
    """
    if isinstance(spend, pd.Series):
        return spend.astype(float).fillna(0.0) * horizon_days / value_days
    known = _value({"spend": spend}, "spend")
    return (known or 0.0) * horizon_days / value_days
