"""SASRec's blend weights chosen on history only: the split's own protocol applied again inside its history.

The recommender's score is standardised SASRec + a * standardised ALS taste + b * standardised log
popularity + c * standardised item-kNN score + d * standardised buy-again score (`SASRecRecommender`;
d only when seen items are included). (a, b, c, d) come from a grid in
params.yaml: a copy of the model is fitted on the inner history of `validation_split` and every
tuple is scored there with the protocol's own `recommend` and `ranking_metrics` at the smallest K;
the best tuple (the first in grid order on ties, so the smaller weights) is then used by the fit on
the whole history. Nothing at or after the split's cutoff, nor its truth,
reaches this choice (EVALUATION.md: "tuned only on history").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from retention.params import SASRecParams
from training.protocol import (
    ProtocolError,
    RecSplit,
    item_cells,
    leave_last_split,
    temporal_split,
)

log = logging.getLogger("retention.training")
WEIGHTS = ("mf_weight", "popularity_weight", "knn_weight", "repeat_weight")  # the order of a grid tuple
Weights = tuple[float, float, float, float]


def validation_split(split: RecSplit) -> RecSplit:
    """The same protocol applied to `split.history` alone (the inner validation split).

    temporal: cutoff T' = T - H' with H' = H, or half the history's span when the history is
    shorter than two horizons (EVALUATION.md allows shorter windows then); the inner window
    [T', T) ends where the history does. leave-last: each user's last basket of the history.

    Args:
        split: the outer split (only its history, protocol, cutoff, horizon and exclude_seen are read).

    Returns:
        A split whose history, users and truth all come from `split.history`.

    Raises:
        ProtocolError: the history is too short or leaves no inner test user.
    """
    if split.protocol == "leave-last":
        return leave_last_split(split.history, split.exclude_seen)
    if split.as_of is None or split.horizon_days is None:
        raise ProtocolError("a temporal split needs its cutoff and horizon")
    events = split.history.events
    if events.empty:
        raise ProtocolError("the history is empty: no inner validation split")
    span_days = (split.as_of - events["ts"].min()).days
    horizon = min(split.horizon_days, span_days // 2)
    if horizon < 1:
        raise ProtocolError(f"a history of {span_days} days is too short for an inner validation split")
    as_of = split.as_of - pd.Timedelta(days=horizon)
    return temporal_split(split.history, as_of, horizon, split.exclude_seen)


def blend_grid(config: SASRecParams, exclude_seen: bool = True) -> list[Weights]:
    """(mf_weight, popularity_weight, knn_weight, repeat_weight) tuples to try, in order; an empty
    grid uses the configured weight. With seen items excluded the buy-again part (which scores only
    seen items) is off."""
    mf = config.mf_weights or [config.mf_weight]
    popularity = config.popularity_weights or [config.popularity_weight]
    knn = config.knn_weights or [config.knn_weight]
    repeat = [0.0] if exclude_seen else (config.repeat_weights or [config.repeat_weight])
    return [(a, b, c, d) for a in mf for b in popularity for c in knn for d in repeat]


@dataclass(frozen=True)
class BlendParts:
    """Each validation user's standardised score parts, computed once for the whole grid.

    Attributes:
        users: the users, in row order.
        sasrec: (U, n_items) standardised SASRec scores (rows without history: popularity counts).
        mf: (U, n_items) standardised ALS scores (zeros where there is no factorisation or history).
        knn: (U, n_items) standardised item-kNN scores (likewise).
        popularity: (1, n_items) standardised log popularity.
        has_history: (U,) rows that have a sequence (the others score by popularity whatever the weights).
        repeat: (U, n_items) standardised buy-again scores (`repeat.py`; zeros without purchases),
            or None when the buy-again part is not tried.
    """

    users: np.ndarray
    sasrec: np.ndarray
    mf: np.ndarray
    knn: np.ndarray
    popularity: np.ndarray
    has_history: np.ndarray
    repeat: np.ndarray | None = None

    def combined(
        self, mf_weight: float, popularity_weight: float, knn_weight: float, repeat_weight: float = 0.0
    ) -> np.ndarray:
        """The blended scores of every row for one tuple of weights."""
        blended = (
            self.sasrec + mf_weight * self.mf + popularity_weight * self.popularity + knn_weight * self.knn
        )
        if repeat_weight and self.repeat is not None:
            blended = blended + repeat_weight * self.repeat
        return np.where(self.has_history[:, None], blended, self.sasrec)


@dataclass
class FixedScores:
    """A `Recommender` whose scores were computed beforehand (to reuse `recommend` on the grid)."""

    users: np.ndarray
    scores: np.ndarray
    name: str = "sasrec-blend"
    rows: pd.Index = field(init=False)

    def __post_init__(self) -> None:
        self.rows = pd.Index(self.users)

    def fit(self, history: Any, candidates: np.ndarray) -> None:
        """Nothing to fit: the scores are given."""

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.scores[self.rows.get_indexer(pd.Index(np.asarray(users, dtype=str)))]


def sample_users(split: RecSplit, most: int, seed: int) -> RecSplit:
    """The split restricted to at most `most` of its users (a seeded sample, kept sorted)."""
    if len(split.users) <= most:
        return split
    keep = np.sort(np.random.default_rng(seed).choice(len(split.users), size=most, replace=False))
    return replace(
        split,
        users=split.users[keep],
        truth=[split.truth[i] for i in keep],
        seen=[split.seen[i] for i in keep],
    )


class GridMetric:
    """ndcg@k of the validation users for any (U, n_candidates) score matrix, vectorised.

    The value of `ranking_metrics(validation, recommend(validation, FixedScores(users, scores), k))`
    to the last bit (same top-k with the same tie order, same masks, same sums in the same order),
    without the per-user lists, the frame and its group-by: the grid ranks the same users hundreds
    of times, and those made up nearly all of its cost. What is the same for every tuple (the
    seen mask, the truth cells, each user's ideal DCG) is computed once here. Kept rather than
    torchmetrics' `RetrievalNormalizedDCG`: that casts scores to float32, which changes the tie
    order (ndcg@10 0.05002 against 0.05017 on ML-100K leave-last), and was 37x slower per grid point
    (docs/architecture.md, "Hand-written vs library").

    Args:
        validation: the inner split.
        users: the score rows' users (`BlendParts.users`; every validation user among them).
        k: the cut-off.
    """

    def __init__(self, validation: RecSplit, users: np.ndarray, k: int) -> None:
        index = pd.Index(validation.candidates)
        self.k = min(k, len(index))
        self.exclude_seen = validation.exclude_seen
        self.rows = pd.Index(np.asarray(users, dtype=str)).get_indexer(
            pd.Index(np.asarray(validation.users, dtype=str))
        )
        self.seen = item_cells(index, validation.seen) if validation.exclude_seen else None
        self.truth = np.zeros((len(validation.users), len(index)), dtype=bool)
        self.truth[item_cells(index, validation.truth)] = True
        discounts = 1.0 / np.log2(np.arange(2, k + 2))
        self.discounts = discounts[: self.k]
        self.ideal = np.array([discounts[: min(k, len(truth))].sum() for truth in validation.truth])

    def __call__(self, scores: np.ndarray) -> float:
        """ndcg@k of `scores` ((len(users), n_candidates), rows as `users`)."""
        from training.scoring import top_k  # the one `recommend` uses (its tie order)

        values = np.asarray(scores)
        if values.dtype != np.float32:  # float32 -> float64 (`recommend`'s cast) keeps every order and tie
            values = values.astype(np.float64)
        if not np.array_equal(self.rows, np.arange(len(values))):
            values = values[self.rows]
        values = np.where(np.isfinite(values), values, -np.inf)  # a new array: masked below
        if self.seen is not None:
            values[self.seen] = -np.inf
        order, taken = top_k(values, self.k)
        gains = np.take_along_axis(self.truth, order, axis=1).astype(float)
        if self.exclude_seen:  # `recommend` drops masked items; they gain nothing either way
            gains[~np.isfinite(taken)] = 0.0
        return float(np.mean((gains * self.discounts).sum(axis=1) / self.ideal))


def choose_weights(validation: RecSplit, parts: BlendParts, grid: list[Weights], k: int) -> dict[str, Any]:
    """Score every tuple of the grid on the validation split; the best ndcg@k wins (first on ties).

    Each tuple's value is the protocol's (`recommend` then `ranking_metrics`), computed by
    `GridMetric`.

    Args:
        validation: the inner split (its users are `parts.users`).
        parts: the score parts of those users.
        grid: (mf_weight, popularity_weight, knn_weight, repeat_weight) in order of preference on ties.
        k: the NDCG cut-off.

    Returns:
        the four weights, metric, the best score and every tuple's score ("grid").
    """
    metric = f"ndcg@{k}"
    ndcg = GridMetric(validation, parts.users, k)
    scored = [
        {**dict(zip(WEIGHTS, weights, strict=True)), metric: ndcg(parts.combined(*weights))}
        for weights in grid
    ]
    best = max(range(len(scored)), key=lambda i: (scored[i][metric], -i))
    return {
        **{name: scored[best][name] for name in WEIGHTS},
        "metric": metric,
        "best": scored[best][metric],
        "grid": scored,
    }
