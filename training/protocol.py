"""The offline evaluation protocol (docs/EVALUATION.md): splits, metrics and the backtest files.

Every quality figure of the project comes from here, so models, baselines and other libraries are
compared on identical splits and formulas. Models never see a split's truth: they get `history`
(an `EventLog` cut before the test window) and the candidates or population to score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from feature_store.events import EventLog
from training.scoring import top_k

PURCHASE = "purchase"
PROBABILITY_CLIP = 1e-6  # log loss clips probabilities to [1e-6, 1 - 1e-6] (EVALUATION.md)
SplitProtocol = Literal["temporal", "leave-last"]
SPLIT_PROTOCOLS: dict[str, SplitProtocol] = {"temporal": "temporal", "leave-last": "leave-last"}  # by name


class ProtocolError(ValueError):
    """A split cannot be built as asked (for example: no user to evaluate)."""


# ---------------------------------------------------------------------------------------------
# Task 1: return / churn


@dataclass(frozen=True)
class ReturnSplit:
    """Population, labels and the history a return model may see.

    Attributes:
        history: the log cut at `as_of` (ts < as_of).
        as_of: the cutoff T.
        horizon_days: H.
        population: sorted ids of the users with a purchase before T.
        returned: 1 where the user purchased in [T, T + H), aligned with `population`.
    """

    history: EventLog
    as_of: pd.Timestamp
    horizon_days: int
    population: np.ndarray
    returned: np.ndarray


def return_population(history: EventLog) -> np.ndarray:
    """Sorted ids of the users with at least one purchase in `history`."""
    events = history.events
    return np.unique(events.loc[events["event_type"] == PURCHASE, "customer_id"].to_numpy(dtype=str))


def return_split(log: EventLog, as_of: pd.Timestamp, horizon_days: int) -> ReturnSplit:
    """The return task's split at cutoff `as_of` with horizon `horizon_days`.

    Raises:
        ProtocolError: no purchase before `as_of`, or the log ends before the label window does.
    """
    as_of = pd.Timestamp(as_of)
    history = log.before(as_of)
    population = return_population(history)
    if len(population) == 0:
        raise ProtocolError(f"no purchase before --as-of {as_of.date()}: the population is empty")
    end = as_of + pd.Timedelta(days=horizon_days)
    last = log.events["ts"].max()
    if last < end - pd.Timedelta(days=1):
        raise ProtocolError(
            f"the log ends at {last.date()}, before the label window [{as_of.date()}, {end.date()}) "
            "does: labels would be censored; choose an earlier --as-of or a shorter --horizon-days"
        )
    events = log.events
    window = (events["event_type"] == PURCHASE) & (events["ts"] >= as_of) & (events["ts"] < end)
    buyers = np.unique(events.loc[window, "customer_id"].to_numpy(dtype=str))
    returned = np.isin(population, buyers).astype(np.int64)
    return ReturnSplit(history, as_of, horizon_days, population, returned)


def return_metrics(returned: np.ndarray, p_return: np.ndarray) -> dict[str, float]:
    """ROC-AUC, PR-AUC (average precision), Brier, log loss, base rate and population size.

    Args:
        returned: 0/1 labels.
        p_return: predicted P(return), aligned.

    Returns:
        roc_auc, pr_auc, brier, log_loss, base_rate, n_users (AUCs are NaN with a single class).
    """
    y = np.asarray(returned, dtype=float)
    p = np.asarray(p_return, dtype=float)
    if len(y) != len(p) or not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ProtocolError("p_return must be finite probabilities in [0, 1], one per population user")
    both = 0 < y.sum() < len(y)
    clipped = np.clip(p, PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
    return {
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
        # labels=[0, 1]: defined, like the mean formulas they replace, when one class is absent.
        "brier": float(brier_score_loss(y, p, labels=[0, 1])),
        "log_loss": float(log_loss(y, clipped, labels=[0, 1])),
        "base_rate": float(y.mean()),
        "n_users": int(len(y)),
    }


def aligned_scores(split: ReturnSplit, scores: pd.DataFrame) -> np.ndarray:
    """`p_return` of a model's output frame in population order; every user must be scored once."""
    if scores["customer_id"].duplicated().any():
        raise ProtocolError("a model scored some users twice")
    by_user = scores.assign(customer_id=scores["customer_id"].astype(str)).set_index("customer_id")[
        "p_return"
    ]
    missing = np.setdiff1d(split.population, by_user.index.to_numpy(dtype=str))
    if len(missing):
        raise ProtocolError(f"{len(missing)} population users have no p_return (e.g. {missing[0]})")
    return by_user.reindex(split.population).to_numpy(dtype=float)


class ReturnScorer(Protocol):
    """A return model or baseline."""

    name: str

    def fit(self, history: EventLog, as_of: pd.Timestamp, horizon_days: int) -> None: ...

    def predict(self, history: EventLog, as_of: pd.Timestamp, horizon_days: int) -> pd.DataFrame: ...


# ---------------------------------------------------------------------------------------------
# Task 2: recommendation


@dataclass(frozen=True)
class RecSplit:
    """Test users, their truth, and the history and candidates a recommender may see.

    Attributes:
        protocol: "temporal" or "leave-last".
        history: what models train on.
        candidates: sorted ids of every item in history or in the catalogue.
        users: test users (sorted).
        truth: the items each test user interacted with in the test window / last basket.
        seen: the items in each test user's own history (masked when `exclude_seen`).
        exclude_seen: whether seen items are removed from rankings and truth.
        as_of, horizon_days: the temporal cutoff and window (None for leave-last).
    """

    protocol: SplitProtocol
    history: EventLog
    candidates: np.ndarray
    users: np.ndarray
    truth: list[set[str]]
    seen: list[set[str]]
    exclude_seen: bool
    as_of: pd.Timestamp | None = None
    horizon_days: int | None = None


def _candidates(log: EventLog, history: EventLog) -> np.ndarray:
    items = np.concatenate(
        [history.events["product_id"].to_numpy(dtype=str), log.products["product_id"].to_numpy(dtype=str)]
    )
    return np.unique(items)


def _items_by_user(events: pd.DataFrame) -> pd.Series:
    return events.groupby("customer_id")["product_id"].agg(lambda s: set(s.astype(str)))


def _finish(
    protocol: SplitProtocol,
    log: EventLog,
    history: EventLog,
    truth_events: pd.DataFrame,
    exclude_seen: bool,
    as_of: pd.Timestamp | None = None,
    horizon_days: int | None = None,
) -> RecSplit:
    truth_by_user = _items_by_user(truth_events)
    seen_by_user = _items_by_user(history.events)
    users, truth, seen = [], [], []
    for user in sorted(truth_by_user.index.astype(str)):
        own = seen_by_user.get(user, set())
        items = truth_by_user[user] - own if exclude_seen else truth_by_user[user]
        if items:
            users.append(user)
            truth.append(items)
            seen.append(own)
    if not users:
        raise ProtocolError(f"the {protocol} split leaves no test user with a non-empty truth")
    return RecSplit(
        protocol,
        history,
        _candidates(log, history),
        np.array(users, dtype=str),
        truth,
        seen,
        exclude_seen,
        as_of,
        horizon_days,
    )


def temporal_split(log: EventLog, as_of: pd.Timestamp, horizon_days: int, exclude_seen: bool) -> RecSplit:
    """History = events before T; test users = users active before T and in [T, T + H)."""
    as_of = pd.Timestamp(as_of)
    history = log.before(as_of)
    events = log.events
    end = as_of + pd.Timedelta(days=horizon_days)
    window = events[(events["ts"] >= as_of) & (events["ts"] < end)]
    known = set(history.events["customer_id"].astype(str))
    window = window[window["customer_id"].astype(str).isin(known)]
    return _finish("temporal", log, history, window, exclude_seen, as_of=as_of, horizon_days=horizon_days)


def basket_keys(events: pd.DataFrame) -> pd.Series:
    """A basket per row: its order_id, or its timestamp where it has no order."""
    by_time = "ts:" + events["ts"].astype("datetime64[ns]").astype(str)
    return ("order:" + events["order_id"].astype(str)).where(events["order_id"].notna(), by_time)


def leave_last_split(log: EventLog, exclude_seen: bool) -> RecSplit:
    """For users with two or more baskets the last basket is the truth; history = all other rows."""
    events = log.events.assign(basket=basket_keys(log.events))
    baskets = events.groupby(["customer_id", "basket"], sort=False)["ts"].max().reset_index()
    baskets = baskets.sort_values(["customer_id", "ts", "basket"], kind="stable")
    counts = baskets.groupby("customer_id")["basket"].transform("size")
    last = baskets[counts >= 2].groupby("customer_id").tail(1)
    is_truth = events.set_index(["customer_id", "basket"]).index.isin(
        last.set_index(["customer_id", "basket"]).index
    )
    truth_events = events.loc[is_truth]
    history_events = events.loc[~is_truth].drop(columns="basket").reset_index(drop=True)
    history = EventLog(history_events, log.products, log.customers, log.reviews)
    return _finish("leave-last", log, history, truth_events, exclude_seen)


class Recommender(Protocol):
    """A recommender or baseline: fit on history, then score every candidate for given users."""

    name: str

    def fit(self, history: EventLog, candidates: np.ndarray) -> None: ...

    def score(self, users: np.ndarray) -> np.ndarray: ...


class CandidateScorer(Protocol):
    """What `recommend` needs of a fitted recommender: a name and scores over the candidates."""

    name: str

    def score(self, users: np.ndarray) -> np.ndarray: ...


def item_cells(index: pd.Index, seen: list[set[str]]) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns) of every user's items among the candidates `index` (others left out), looked up
    in one call (not one per user: the blend grid ranks the same users hundreds of times)."""
    sizes = [len(items) for items in seen]
    items = [item for user_items in seen for item in user_items]
    rows = np.repeat(np.arange(len(seen)), sizes)
    columns = index.get_indexer(pd.Index(items, dtype=index.dtype)) if items else np.zeros(0, dtype=np.intp)
    known = columns >= 0
    return rows[known], columns[known]


def recommend(split: RecSplit, model: CandidateScorer, k: int, batch_users: int = 1024) -> pd.DataFrame:
    """Top-k of every test user over the full candidate set (seen items masked if `exclude_seen`).

    Args:
        split: the split (the model must already be fitted on `split.history`).
        model: the recommender.
        k: list length.
        batch_users: users scored per call (bounds memory on large catalogues).

    Returns:
        customer_id, rank (1 = best), product_id, score: k rows per test user (fewer only when
        fewer candidates are left).
    """
    index = pd.Index(split.candidates)
    parts = []
    for start in range(0, len(split.users), batch_users):
        users = split.users[start : start + batch_users]
        scores = np.asarray(model.score(users), dtype=np.float64)
        if scores.shape != (len(users), len(index)):
            raise ProtocolError(
                f"{model.name}.score returned {scores.shape}, expected {(len(users), len(index))}"
            )
        scores = np.where(np.isfinite(scores), scores, -np.inf)
        if split.exclude_seen:
            rows, columns = item_cells(index, split.seen[start : start + len(users)])
            scores[rows, columns] = -np.inf
        order, taken = top_k(scores, k)
        keep = np.isfinite(taken) | (not split.exclude_seen)
        rows, ranks = np.nonzero(keep)
        parts.append(
            pd.DataFrame(
                {
                    "customer_id": users[rows],
                    "rank": ranks + 1,
                    "product_id": split.candidates[order[rows, ranks]],
                    "score": taken[rows, ranks],
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def ranking_metrics(split: RecSplit, recommendations: pd.DataFrame, ks: list[int]) -> dict[str, float]:
    """recall, ndcg, hit_rate, precision and coverage at each K, averaged over the test users.

    Kept by hand rather than torchmetrics.retrieval (docs/architecture.md, "Hand-written vs
    library"; `python benchmarks/ranking_library.py --data ../shared/data`): fed each user's list
    plus the truth items it left out, torchmetrics 1.9 gives the same recall, ndcg, hit rate and
    precision on MovieLens-100K (leave-last and temporal, |difference| < 3e-8), but only when the
    list is re-scored with positive values (its recall and precision count scores <= 0 as not
    retrieved), it has no coverage, and it took 10x as long (leave-last, 943 users, K = 10, 20,
    50: 1.54 s against 0.15 s, median of 5; benchmarks/results/ranking_library.json).

    Args:
        split: the split the recommendations were made for.
        recommendations: `recommend`'s frame (at least max(ks) rows per user, rank 1 = best).
        ks: cut-offs.

    Returns:
        `{metric}@{k}` for each metric and k, plus n_users.
    """
    ranked = (
        recommendations.sort_values(["customer_id", "rank"]).groupby("customer_id")["product_id"].agg(list)
    )
    metrics: dict[str, float] = {}
    discounts = 1.0 / np.log2(np.arange(2, max(ks) + 2))
    for k in ks:
        recall, ndcg, hit, precision, shown = [], [], [], [], set()
        for user, truth in zip(split.users, split.truth, strict=True):
            top = ranked.get(user, [])[:k]
            shown.update(top)
            gains = np.array([item in truth for item in top], dtype=float)
            hits = gains.sum()
            recall.append(hits / len(truth))
            precision.append(hits / k)
            hit.append(float(hits > 0))
            ideal = discounts[: min(k, len(truth))].sum()
            ndcg.append(float((gains * discounts[: len(gains)]).sum() / ideal))
        metrics[f"recall@{k}"] = float(np.mean(recall))
        metrics[f"ndcg@{k}"] = float(np.mean(ndcg))
        metrics[f"hit_rate@{k}"] = float(np.mean(hit))
        metrics[f"precision@{k}"] = float(np.mean(precision))
        metrics[f"coverage@{k}"] = len(shown) / len(split.candidates)
    metrics["n_users"] = len(split.users)
    return metrics
