"""The one scoring path: fitted models plus customer histories or states -> churn frames and top-k products.

Serving (one customer), campaigns (every target, from materialised states), the gate and the
backtests (through the protocol's `recommend`) all score here, so a churn probability and a
product list mean the same everywhere:
- `p_churn` is 1 - P(return within the horizon), defined once (`p_churn`, `churn_frame`);
- a list is the `top_k` of the model's scores with excluded products at -inf: best first, ties to
  the lower column (the order of a stable sort), excluded products never listed.

The recommender is a `SASRecRecommender` (`history_sequences`, `score_sequences`, `input_sequences`,
`state_vectors`, `fused_scores`, `index`); the return model a `ReturnModel` (`predict`).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

RepeatPart = tuple[Any, np.ndarray]  # (sparse rows x items, per-row constant) added to the scores
SCORE_BATCH = 4096  # customers per score matrix from states (bounds memory: batch x catalogue floats)
Excluded = tuple[np.ndarray, np.ndarray]  # (row, item column) pairs never to recommend

# ---------------------------------------------------------------------------------------------
# churn


def p_churn(p_return: Any) -> Any:
    """P(no purchase within the horizon): the complement of the return model's P(return)."""
    return 1.0 - p_return


def churn_frame(predicted: pd.DataFrame) -> pd.DataFrame:
    """A return model's output as churn scores.

    Args:
        predicted: customer_id, p_return, reason_1..n (`ReturnModel.predict` / `predict_states`).

    Returns:
        customer_id, p_return, p_churn, reasons (the reason features, most important first).
    """
    reason_columns = [c for c in predicted.columns if c.startswith("reason_")]
    reasons = predicted[reason_columns].apply(lambda row: [r for r in row if isinstance(r, str)], axis=1)
    p_return = predicted["p_return"].to_numpy(dtype=float)
    return pd.DataFrame(
        {
            "customer_id": predicted["customer_id"].astype(str),
            "p_return": p_return,
            "p_churn": p_churn(p_return),
            "reasons": reasons.to_numpy() if len(predicted) else [],
        }
    )


def churn_scores(model: Any, history: Any, as_of: pd.Timestamp, horizon_days: int) -> pd.DataFrame:
    """`churn_frame` of every customer the return model scores in `history` at `as_of`."""
    return churn_frame(model.predict(history, as_of, horizon_days))


# ---------------------------------------------------------------------------------------------
# top-k


def top_k(scores: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns and values of each row's k highest scores, best first.

    The order of a stable descending sort (`np.argsort(-scores, kind="stable")[:, :k]`): ties go
    to the lower column, masked entries (-inf) come last and NaN counts as -inf. It costs a partial
    selection (`torch.topk`), not a full sort, except in rows where a column left out ties the k-th
    value (ties at the cut, or fewer than k entries above -inf): those rows are sorted in full.

    Args:
        scores: (B, n) float scores, numpy or a CPU tensor (not modified).
        k: how many per row (at most n are returned).

    Returns:
        (B, min(k, n)) int64 columns and their float scores, numpy.
    """
    import torch  # loaded with any recommender; the churn side of this module does not need it

    array = np.asarray(scores)  # a tensor's memory, not a copy
    n = array.shape[1]
    k = min(k, n)
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    # One more than asked: the (k+1)-th value equals the k-th exactly when a column left out ties it.
    extra, picked = (t.numpy() for t in torch.topk(tensor, min(k + 1, n), dim=1))
    if np.isnan(extra).any():  # torch ranks NaN above everything, so a row holding one shows it here
        return top_k(np.where(np.isnan(array), -np.inf, array), k)
    columns = np.sort(picked[:, :k], axis=1)  # the chosen k by column, then stably by score
    order = np.argsort(-np.take_along_axis(array, columns, axis=1), axis=1, kind="stable")
    columns = np.take_along_axis(columns, order, axis=1)
    if 0 < k < n:
        crowded = np.flatnonzero(extra[:, k] == extra[:, k - 1])
        if len(crowded):
            columns[crowded] = np.argsort(-array[crowded], axis=1, kind="stable")[:, :k]
    return columns, np.take_along_axis(array, columns, axis=1)


def masked(scores: np.ndarray, allowed: np.ndarray | None, excluded: Excluded | None) -> np.ndarray:
    """`scores` (float64) with -inf in columns not `allowed` and at the `excluded` (row, column) pairs."""
    out = np.array(scores, dtype=np.float64)
    if allowed is not None:
        out[:, ~allowed] = -np.inf
    if excluded is not None:
        out[excluded] = -np.inf
    return out


def ranked(
    customer_ids: np.ndarray, product_ids: np.ndarray, columns: np.ndarray, values: np.ndarray
) -> pd.DataFrame:
    """`top_k`'s picks as a frame, masked (non-finite) picks left out.

    Returns:
        customer_id, rank (1 = best), product_id, score.
    """
    rows, ranks = np.nonzero(np.isfinite(values))
    return pd.DataFrame(
        {
            "customer_id": np.asarray(customer_ids)[rows],
            "rank": ranks + 1,
            "product_id": np.asarray(product_ids)[columns[rows, ranks]],
            "score": values[rows, ranks],
        }
    )


# ---------------------------------------------------------------------------------------------
# recommendations from histories


def with_repeat(scores: np.ndarray, part: RepeatPart | None) -> np.ndarray:
    """`scores` plus a buy-again part (`SASRecRecommender.repeat_part`), in the dtype of `scores`."""
    if part is None:
        return scores
    values, constant = part
    return scores + (values.toarray() + constant[:, None]).astype(scores.dtype)


def repeat_of(model: Any, history: Any, users: np.ndarray, as_of: Any = None) -> RepeatPart | None:
    """The model's buy-again part of `users` from their purchases in `history` (an `EventLog`),
    None for a model without one."""
    repeat_part = getattr(model, "repeat_part", None)
    return None if repeat_part is None else repeat_part(history.events, users, as_of)


def history_scores(
    model: Any, history: Any, users: np.ndarray, as_of: pd.Timestamp | None = None
) -> np.ndarray:
    """(len(users), n_items) scores of a fitted or loaded recommender from each user's items in `history`.

    Column j scores product `model.index.ids[j]`; users without history get the model's fallback.
    The buy-again part (if the model has one) reads the users' purchases in `history` at `as_of`
    (None: at each one's expected next basket, `training.recommender.repeat`).
    """
    scores = _sequence_scores(model, model.history_sequences(history), users)
    return with_repeat(scores, repeat_of(model, history, users, as_of))


def _sequence_scores(model: Any, sequences: dict[str, np.ndarray], users: np.ndarray) -> np.ndarray:
    empty = np.zeros(0, dtype=np.int64)
    return model.score_sequences([sequences.get(str(u), empty) for u in users])


def recommend_history(
    model: Any,
    history: Any,
    customer_ids: np.ndarray,
    k: int,
    allowed: np.ndarray | None = None,
    excluded: Excluded | None = None,
    as_of: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Top-k products of each customer from their items in `history`.

    Args:
        model: the recommender.
        history: events up to the scoring time.
        customer_ids: the customers.
        k: products per customer.
        allowed: (n_items,) products that may be recommended (None: all).
        excluded: (row in `customer_ids`, item column) pairs never to recommend.
        as_of: the scoring time (the buy-again part's clock; None: from the history alone).

    Returns:
        customer_id, rank (1 = best), product_id, score; at most k rows per customer (fewer when
        fewer products are left).
    """
    scores = masked(history_scores(model, history, customer_ids, as_of), allowed, excluded)
    return ranked(np.asarray(customer_ids, dtype=str), model.index.ids, *top_k(scores, k))


def recommend_inputs(model: Any, inputs: pd.DataFrame, k: int, exclude_seen: bool = False) -> pd.DataFrame:
    """Top-k products of each row of serving inputs (`SASRecRecommender.inputs`: customer_id, items).

    Args:
        model: the recommender.
        inputs: customer_id, items (the customer's recent product ids joined by a blank).
        k: recommendations per customer.
        exclude_seen: leave out the products listed in the customer's items.

    Returns:
        customer_id, rank (1 = best), product_id, score; k rows per customer (fewer when fewer
        products are left).
    """
    sequences = model.input_sequences(inputs)
    excluded = None
    if exclude_seen:
        rows = np.repeat(np.arange(len(sequences)), [len(s) for s in sequences])
        columns = np.concatenate(sequences) - 1 if sequences else np.zeros(0, dtype=np.int64)
        excluded = (rows, columns)
    scores = masked(model.score_sequences(sequences), None, excluded)
    customer_ids = inputs["customer_id"].astype(str).to_numpy()
    return ranked(customer_ids, model.index.ids, *top_k(scores, k))


class HistoryScorer:
    """A fitted recommender scored from a history over given candidates (the protocol's `Recommender`).

    Candidates the model was not fitted on (new products) get the lowest float32 score.

    Args:
        model: the recommender.
        history: the events it may see (a split's history).
        candidates: the product ids to score, in column order.
    """

    def __init__(self, model: Any, history: Any, candidates: np.ndarray) -> None:
        self.model, self.name = model, getattr(model, "name", "model")
        self.sequences = model.history_sequences(history)
        self.history = history
        self.columns = pd.Index(model.index.ids).get_indexer(candidates)
        self.n_candidates = len(candidates)

    def score(self, users: np.ndarray) -> np.ndarray:
        """(len(users), len(candidates)) float32 scores."""
        own = with_repeat(
            _sequence_scores(self.model, self.sequences, users), repeat_of(self.model, self.history, users)
        )
        out = np.full((len(users), self.n_candidates), np.float32(np.finfo(np.float32).min))
        known = self.columns >= 0
        out[:, known] = own[:, self.columns[known]]
        return out


# ---------------------------------------------------------------------------------------------
# recommendations from materialised states


class StateScorer:
    """Top-k products from state vectors: one matrix multiply and top-k per batch of customers.

    Args:
        model: the recommender the states belong to.
        allowed: (n_items,) products that may be recommended (None: all); the others are dropped
            from the item matrix before any multiply.
    """

    def __init__(self, model: Any, allowed: np.ndarray | None = None) -> None:
        self.columns = np.arange(model.index.size) if allowed is None else np.flatnonzero(allowed)
        self.position = np.full(model.index.size, -1, dtype=np.int64)
        self.position[self.columns] = np.arange(len(self.columns))
        self.fused = model.fused_scores(self.columns)

    def scores(self, vectors: np.ndarray, tails: np.ndarray, repeat: RepeatPart | None = None) -> np.ndarray:
        """(B, len(columns)) blended scores of one batch: the fused states plus the buy-again part.

        Args:
            vectors: (B, D) state vectors.
            tails: (B, max_length) their tails (the kNN part reads them).
            repeat: the batch's buy-again part (`SASRecRecommender.repeat_part`), if any.
        """
        scores = self.fused(vectors, tails)
        if repeat is not None:  # sparse over the catalogue: keep the allowed columns only
            values, constant = repeat
            scores += (values[:, self.columns].toarray() + constant[:, None]).astype(scores.dtype)
        return scores

    def top_k(
        self,
        vectors: np.ndarray,
        tails: np.ndarray,
        k: int,
        excluded: Excluded | None = None,
        repeat: RepeatPart | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Best k item columns (0-based codes) of one batch of customers, best first.

        Args:
            vectors: (B, D) state vectors.
            tails: (B, max_length) their tails (the kNN part reads them).
            k: products per customer (at most the allowed ones).
            excluded: (rows, item columns) of the batch never to recommend.
            repeat: the batch's buy-again part (`SASRecRecommender.repeat_part`), if any.

        Returns:
            (B, k) item columns and (B, k) flags: False where fewer than k products were left.
        """
        scores = self.scores(vectors, tails, repeat)
        if excluded is not None:
            rows, columns = excluded
            where = self.position[columns]
            keep = where >= 0
            scores[rows[keep], where[keep]] = -np.inf
        picked, values = top_k(scores, k)
        return self.columns[picked], np.isfinite(values)


def recommend_states(
    model: Any,
    states: Any,
    customer_ids: list[str],
    k: int,
    allowed: np.ndarray | None = None,
    excluded: Excluded | None = None,
    repeat: RepeatPart | None = None,
) -> list[list[str]]:
    """Top-k product ids per customer (best first) from their materialised states.

    Args:
        model: the recommender the states belong to.
        states: its `CustomerStates` (customers without one get the model's no-history state).
        customer_ids: the customers to recommend to.
        k: products per customer.
        allowed: (n_items,) products that may be recommended (None: all).
        excluded: (row in `customer_ids`, item column) pairs never to recommend.
        repeat: the buy-again part of `customer_ids` (`SASRecRecommender.repeat_part` of the
            history at the scoring time; it depends on purchase times, which states do not hold).
    """
    scorer = StateScorer(model, allowed)
    vectors, tails, known = states.take(customer_ids)
    if not known.all():
        vectors[~known] = model.state_vectors(tails[~known])
    mask_rows, mask_cols = (
        excluded if excluded is not None else (np.zeros(0, np.int64), np.zeros(0, np.int64))
    )
    order = np.argsort(mask_rows, kind="stable")
    mask_rows, mask_cols = mask_rows[order], mask_cols[order]
    product_ids = model.index.ids.astype(object)  # Python strings: lists of them build fast
    out: list[list[str]] = []
    with _no_gc_pauses():
        for start in range(0, len(customer_ids), SCORE_BATCH):
            stop = min(start + SCORE_BATCH, len(customer_ids))
            first, last = np.searchsorted(mask_rows, [start, stop])
            batch_excluded = (mask_rows[first:last] - start, mask_cols[first:last])
            batch_repeat = None if repeat is None else (repeat[0][start:stop], repeat[1][start:stop])
            columns, finite = scorer.top_k(
                vectors[start:stop], tails[start:stop], k, batch_excluded, batch_repeat
            )
            ids = product_ids[columns]
            if finite.all():
                out.extend(ids.tolist())
            else:
                out.extend([list(ids[r][finite[r]]) for r in range(len(ids))])
    return out


@contextmanager
def _no_gc_pauses() -> Iterator[None]:
    """Pause the cyclic garbage collector: building 100k small lists would trigger it over and
    over, each pass walking every live object (more time than the lists themselves)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
