"""Buy-again: each customer's own products, by recency-weighted purchase frequency and how due they are.

In repeat-purchase shops (groceries, pet food, cosmetics) a customer's own most bought products are
the strongest signal there is. One computation serves the personal baseline (`BuyAgain`), the
recommender's buy-again part (`SASRecRecommender`) and the campaign's reorder rule:

- decayed frequency: sum over the customer's purchases of the item of 0.5 ** (age / half_life),
  the age measured to the customer's next basket (below);
- repurchase interval of an item: the median gap between successive purchases of it by one
  customer (`repurchase_intervals`), from the item's own gaps when it has `min_repeats` of them,
  else from its category's; none (NaN) for a product nobody re-buys (a durable);
- due: how far the customer is into that interval at their next basket, floored at `not_due_weight`
  (1 for a product without an interval, about which the log says nothing);
- the next basket: the customer's last purchase plus their median gap between purchase days (the
  shop-wide median for customers with one purchase day), and never before `as_of` when scoring at
  a known time. Without `as_of` (the protocol's leave-last split, whose truth basket's time is
  not known to a model) nothing after the history is read.

The score of (customer, item) is decayed frequency x due; the half-life is chosen on the inner
split of the history (`choose_half_life`), as the blend's weights are.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import sparse

from feature_store.events import EventLog
from retention.params import BuyAgainParams, Params

if TYPE_CHECKING:
    from training.protocol import RecSplit

log = logging.getLogger("retention.training")
DAY = pd.Timedelta(days=1)
BOUGHT_OFFSET = 2.0  # the baseline's bought items score in [2, 3], the others by popularity in [0, 1)


@dataclass(frozen=True)
class RepeatModel:
    """What the buy-again score needs besides a history (saved with a recommender that uses it).

    Attributes:
        half_life_days: the purchase decay's half-life.
        not_due_weight: the due factor's floor (an item bought just now).
        intervals: (n_items,) repurchase interval in days per candidate, NaN for none.
        default_gap_days: the shop-wide median gap between a customer's purchase days.
        event_types: the events counted as purchases.
    """

    half_life_days: float
    not_due_weight: float
    intervals: np.ndarray
    default_gap_days: float
    event_types: tuple[str, ...]


def purchases(events: pd.DataFrame, event_types: Sequence[str]) -> pd.DataFrame:
    """customer_id, product_id (str), ts of the purchase events, oldest first (as an `EventLog`'s
    events are sorted)."""
    bought = events.loc[events["event_type"].isin(list(event_types)), ["customer_id", "product_id", "ts"]]
    return bought.assign(
        customer_id=bought["customer_id"].astype(str), product_id=bought["product_id"].astype(str)
    )


def _gaps_days(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Gaps in days between successive distinct purchase days within each `keys` group.

    Rows are taken in time order and differenced within groups without sorting by the string keys:
    learning the intervals of 1.2M purchases took 0.36 s so, 0.69 s with that sort (a campaign
    learns them on every build).
    """
    days = frame.assign(day=frame["ts"].dt.floor("D"))[[*keys, "day"]].drop_duplicates()
    if not days["day"].is_monotonic_increasing:
        days = days.sort_values("day", kind="stable")
    # a group's rows are in time order, so diff() within groups needs no sort by the string keys
    gap = days.groupby(keys, sort=False)["day"].diff().dt.total_seconds() / DAY.total_seconds()
    return days.assign(gap=gap).dropna(subset=["gap"])


def repurchase_intervals(
    history: EventLog, candidates: np.ndarray, event_types: Sequence[str], min_repeats: int
) -> np.ndarray:
    """The typical repurchase interval of each candidate, in days (NaN: no cycle known).

    Args:
        history: the events (and the catalogue's categories) the intervals are learned from.
        candidates: product ids, in column order.
        event_types: the events counted as purchases.
        min_repeats: fewest gaps an item (else its category) needs for its median to count.

    Returns:
        (len(candidates),) float64 median gap between successive purchase days of the same item
        by the same customer; the category's median where the item has too few gaps; NaN where
        neither has enough (a durable, or too little data to tell).
    """
    gaps = _gaps_days(purchases(history.events, event_types), ["customer_id", "product_id"])
    out = np.full(len(candidates), np.nan)
    if gaps.empty:
        return out
    index = pd.Index(np.asarray(candidates, dtype=str))
    by_item = gaps.groupby("product_id")["gap"].agg(["median", "size"])
    items = by_item[by_item["size"] >= min_repeats]
    categories = history.products.assign(product_id=history.products["product_id"].astype(str))
    category_of = categories.set_index("product_id")["category"]
    gaps = gaps.assign(category=gaps["product_id"].map(category_of))
    by_category = gaps.dropna(subset=["category"]).groupby("category")["gap"].agg(["median", "size"])
    category_medians = by_category.loc[by_category["size"] >= min_repeats, "median"]
    item_category = category_of.reindex(index).to_numpy()
    from_category = pd.Series(item_category).map(category_medians).to_numpy(dtype=float)
    out[:] = from_category
    columns = index.get_indexer(items.index.astype(str))
    known = columns >= 0
    out[columns[known]] = items["median"].to_numpy(dtype=float)[known]
    return out


def fit_repeat_model(
    history: EventLog, candidates: np.ndarray, config: BuyAgainParams, half_life_days: float
) -> RepeatModel:
    """The intervals and the shop's default purchase gap of `history`, with a chosen half-life."""
    bought = purchases(history.events, config.event_types)
    gaps = _gaps_days(bought, ["customer_id"])["gap"]
    return RepeatModel(
        half_life_days=float(half_life_days),
        not_due_weight=config.not_due_weight,
        intervals=repurchase_intervals(history, candidates, config.event_types, config.min_repeats),
        default_gap_days=float(gaps.median()) if len(gaps) else float(config.default_gap_days),
        event_types=tuple(config.event_types),
    )


def next_baskets(bought: pd.DataFrame, default_gap_days: float, as_of: pd.Timestamp | None) -> pd.Series:
    """Each customer's expected next purchase time: last purchase + median gap (not before `as_of`)."""
    last = bought.groupby("customer_id")["ts"].max()
    gaps = _gaps_days(bought, ["customer_id"]).groupby("customer_id")["gap"].median()
    gap_days = gaps.reindex(last.index).fillna(default_gap_days)
    expected = last + pd.to_timedelta(gap_days, unit="D")
    if as_of is not None:
        cut = pd.Timestamp(as_of)
        expected = expected.mask(expected < cut, cut)
    return expected


def repeat_scores(
    model: RepeatModel,
    events: pd.DataFrame,
    candidates: np.ndarray,
    users: np.ndarray,
    as_of: pd.Timestamp | None = None,
) -> sparse.csr_matrix:
    """(len(users), len(candidates)) CSR float64 buy-again scores: decayed frequency x due.

    Args:
        model: half-life, intervals (aligned with `candidates`) and the rest.
        events: the history the customers' purchases are read from.
        candidates: product ids, in column order.
        users: the customers (rows); one without purchases gets an empty row.
        as_of: the scoring time, when known (campaigns, serving); None reads only the history.
    """
    bought = purchases(events, model.event_types)
    rows = pd.Index(np.asarray(users, dtype=str)).get_indexer(bought["customer_id"])
    columns = pd.Index(np.asarray(candidates, dtype=str)).get_indexer(bought["product_id"])
    keep = (rows >= 0) & (columns >= 0)
    bought, rows, columns = bought[keep], rows[keep], columns[keep]
    shape = (len(users), len(candidates))
    if bought.empty:
        return sparse.csr_matrix(shape, dtype=np.float64)
    next_basket = next_baskets(bought, model.default_gap_days, as_of)
    upcoming = bought["customer_id"].map(next_basket)
    age = ((upcoming - bought["ts"]) / DAY).to_numpy(dtype=float)
    weight = np.power(0.5, np.maximum(age, 0.0) / model.half_life_days)
    decayed = sparse.csr_matrix((weight, (rows, columns)), shape=shape)
    decayed.sum_duplicates()
    frame = pd.DataFrame({"row": rows, "column": columns, "elapsed": age})
    since_last = frame.groupby(["row", "column"], sort=True)["elapsed"].min()  # age of the last purchase
    interval = model.intervals[since_last.index.get_level_values("column")]
    progress = np.clip(since_last.to_numpy() / interval, 0.0, 1.0)
    due = np.where(np.isnan(interval), 1.0, model.not_due_weight + (1 - model.not_due_weight) * progress)
    due_matrix = sparse.csr_matrix(
        (due, (since_last.index.get_level_values("row"), since_last.index.get_level_values("column"))),
        shape=shape,
    )
    scores = decayed.multiply(due_matrix).tocsr()
    scores.eliminate_zeros()
    return scores


def standardised_sparse(scores: sparse.csr_matrix, weight: float) -> tuple[sparse.csr_matrix, np.ndarray]:
    """weight x each row standardised over all columns, as (sparse part, per-row constant).

    The dense standardised row is the sparse part plus the constant in every column; a row without
    entries is all zero (the part drops out).
    """
    n_columns = scores.shape[1]
    mean = np.asarray(scores.sum(axis=1)).ravel() / n_columns
    squares = np.asarray(scores.multiply(scores).sum(axis=1)).ravel() / n_columns
    std = np.sqrt(np.maximum(squares - mean**2, 0.0))
    scale = np.where(std > 0, weight / np.maximum(std, np.finfo(np.float64).tiny), 0.0)
    return sparse.diags(scale) @ scores, -mean * scale


def dense_standardised(scores: sparse.csr_matrix) -> np.ndarray:
    """The standardised rows of `scores` as a dense (rows, columns) float64 array."""
    part, constant = standardised_sparse(scores, 1.0)
    return part.toarray() + constant[:, None]


def choose_half_life(
    validation: RecSplit, config: BuyAgainParams, k: int, seed: int
) -> tuple[float, dict[str, float]]:
    """The half-life of the grid whose buy-again scores rank the inner split best (ndcg@k).

    Returns:
        The half-life (the configured one when the grid is empty) and each tried one's ndcg.
    """
    from training.recommender.blend import GridMetric, sample_users

    grid = config.half_life_days_grid or [config.half_life_days]
    if len(grid) < 2:
        return float(grid[0]), {}
    sample = sample_users(validation, config.tuning_users, seed)
    metric = GridMetric(sample, sample.users, k)
    tried: dict[str, float] = {}
    best, best_value = float(grid[0]), -1.0
    for half_life in grid:
        model = fit_repeat_model(validation.history, validation.candidates, config, half_life)
        scores = repeat_scores(model, validation.history.events, validation.candidates, sample.users)
        value = metric(baseline_scores(scores, np.zeros(len(validation.candidates))))
        tried[str(half_life)] = value
        if value > best_value:
            best, best_value = float(half_life), value
    return best, tried


def baseline_scores(repeat: sparse.csr_matrix, popularity: np.ndarray) -> np.ndarray:
    """The personal baseline's dense float32 scores: own items by buy-again score, then popularity.

    Bought items score in [2, 3] (by their buy-again score over the row's largest), the others in
    [0, 1) by popularity, so popularity only breaks ties among what the customer never bought.
    """
    top = np.asarray(repeat.max(axis=1).todense()).ravel()
    scaled = (sparse.diags(1.0 / np.maximum(top, np.finfo(np.float64).tiny)) @ repeat).tocoo()
    order = np.asarray(popularity, dtype=np.float64)
    if len(order) and order.max() > 0:
        order = order / (order.max() + 1.0)
    out = np.tile(order, (repeat.shape[0], 1))
    out[scaled.row, scaled.col] = BOUGHT_OFFSET + scaled.data
    return out.astype(np.float32)


class BuyAgain:
    """The personal buy-again baseline: each customer's own products by recency-weighted frequency.

    Its half-life is chosen on the inner split of the history (`tune`); ties (products the
    customer never bought) are broken by popularity. Shown whenever seen items are included
    (EVALUATION.md), and skipped when they are excluded: it recommends only seen items first.

    Args:
        params: params.yaml (`recommender.buy_again` and `training.seed`).
    """

    name = "buy_again"
    needs_seen_items = True

    def __init__(self, params: Params) -> None:
        self.config = params.recommender.buy_again
        self.seed = params.training.seed
        self.half_life_days = float(self.config.half_life_days)
        self.tuning: dict[str, Any] | None = None
        self.model: RepeatModel | None = None
        self.events = pd.DataFrame()
        self.candidates = np.zeros(0, dtype=str)
        self.popularity = np.zeros(0)

    def tune(self, validation: RecSplit, ks: list[int]) -> dict[str, Any] | None:
        """Choose the half-life on the inner split of the history (never the test window)."""
        self.half_life_days, tried = choose_half_life(validation, self.config, min(ks), self.seed)
        self.tuning = None
        if tried:  # the fields `run_backtest` records of any model's tuning
            best = tried[str(self.half_life_days)]
            self.tuning = {
                "half_life_days": self.half_life_days,
                "metric": f"ndcg@{min(ks)}",
                "best": best,
                "grid": tried,
            }
        log.info(
            "buy_again: half-life %g days (inner ndcg@%d by half-life: %s)",
            self.half_life_days,
            min(ks),
            tried,
        )
        return self.tuning

    def fit(self, history: EventLog, candidates: np.ndarray) -> None:
        """Learn the intervals and keep the purchases of `history`."""
        from training.recommender.baselines import popularity_counts

        self.model = fit_repeat_model(history, candidates, self.config, self.half_life_days)
        self.events = history.events
        self.candidates = np.asarray(candidates, dtype=str)
        self.popularity = popularity_counts(history.events, self.candidates, self.config.event_types)

    def score(self, users: np.ndarray) -> np.ndarray:
        """(len(users), len(candidates)) float32: own products first, then the rest by popularity."""
        if self.model is None:
            raise RuntimeError("fit the recommender before scoring")
        repeat = repeat_scores(self.model, self.events, self.candidates, np.asarray(users, dtype=str))
        return baseline_scores(repeat, self.popularity)
