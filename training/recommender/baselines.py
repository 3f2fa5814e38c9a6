"""The recommendation baselines every report shows: popularity and item-based nearest neighbours."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from feature_store.events import EventLog
from retention.contract import EVENT_TYPES
from retention.params import ItemKNNParams, Params

SIMILARITY_BLOCK = 256  # item rows of the similarity matrix computed densely at a time (bounds memory)


@dataclass(frozen=True)
class Interactions:
    """The customer x candidate matrix of a history.

    Attributes:
        users: sorted customer ids (rows).
        matrix: (len(users), len(candidates)) CSR float32 event counts.
    """

    users: np.ndarray
    matrix: sparse.csr_matrix

    def rows(self, users: np.ndarray) -> np.ndarray:
        """Row of each customer id, -1 for customers without history."""
        return pd.Index(self.users).get_indexer(np.asarray(users, dtype=str))


def interactions(events: pd.DataFrame, candidates: np.ndarray, event_types: Sequence[str]) -> Interactions:
    """Count each customer's events per candidate product.

    Args:
        events: history events (customer_id, product_id, event_type).
        candidates: sorted product ids (columns); events on other products are ignored.
        event_types: the event types counted.

    Returns:
        The interaction matrix.
    """
    events = events[events["event_type"].isin(list(event_types))]
    columns = pd.Index(np.asarray(candidates, dtype=str)).get_indexer(events["product_id"].astype(str))
    known = columns >= 0
    users, rows = np.unique(events["customer_id"].astype(str).to_numpy()[known], return_inverse=True)
    matrix = sparse.csr_matrix(
        (np.ones(known.sum(), dtype=np.float32), (rows, columns[known])), shape=(len(users), len(candidates))
    )
    matrix.sum_duplicates()
    return Interactions(users.astype(str), matrix)


def popularity_counts(events: pd.DataFrame, candidates: np.ndarray, event_types: Sequence[str]) -> np.ndarray:
    """Distinct customers per candidate (float32, aligned with `candidates`)."""
    matrix = interactions(events, candidates, event_types).matrix
    return np.asarray((matrix > 0).sum(axis=0), dtype=np.float32).ravel()


def fallback_rows(scores: np.ndarray, rows: np.ndarray, popularity: np.ndarray) -> np.ndarray:
    """Give customers without history (row -1) the popularity scores, so every score is finite."""
    scores[rows < 0] = popularity
    return scores


class Popularity:
    """Every customer gets the candidates ranked by how many customers interacted with them.

    Args:
        params: params.yaml (`recommender.event_types`); None counts every event type.
    """

    name = "popularity"

    def __init__(self, params: Params | None = None) -> None:
        self.event_types = tuple(params.recommender.event_types) if params is not None else EVENT_TYPES
        self.popularity = np.zeros(0, dtype=np.float32)

    def fit(self, history: EventLog, candidates: np.ndarray) -> None:
        """Count customers per candidate in `history`."""
        self.popularity = popularity_counts(history.events, candidates, self.event_types)

    def score(self, users: np.ndarray) -> np.ndarray:
        """(len(users), len(candidates)) float32: the same popularity row for everyone."""
        return np.tile(self.popularity, (len(users), 1))


def item_similarity(matrix: sparse.csr_matrix, params: ItemKNNParams) -> sparse.csr_matrix:
    """Shrunk cosine similarity between items, `neighbours` largest per item, self-similarity left out.

    Args:
        matrix: customer x item interactions (only presence counts).
        params: neighbours and shrinkage.

    Returns:
        (n_items, n_items) CSR: row i holds the items most similar to item i.
    """
    binary = (matrix > 0).astype(np.float32).tocsc()
    co_counts = (binary.T @ binary).tocsr()  # (I, I) customers who interacted with both
    norms = np.sqrt(np.asarray(co_counts.diagonal(), dtype=np.float32))
    n_items = matrix.shape[1]
    keep = min(params.neighbours, max(n_items - 1, 0))
    rows, columns, values = [], [], []
    for start in range(0, n_items, SIMILARITY_BLOCK):
        stop = min(start + SIMILARITY_BLOCK, n_items)
        co = co_counts[start:stop].toarray()  # (b, I)
        similarity = co / np.maximum(np.outer(norms[start:stop], norms), np.finfo(np.float32).tiny)
        similarity *= co / (co + params.shrinkage) if params.shrinkage > 0 else 1.0
        similarity[np.arange(stop - start), np.arange(start, stop)] = 0.0
        if keep == 0:
            continue
        top = np.argpartition(-similarity, keep - 1, axis=1)[:, :keep]
        top_values = np.take_along_axis(similarity, top, axis=1)
        nonzero = top_values > 0
        rows.append(np.repeat(np.arange(start, stop), keep)[nonzero.ravel()])
        columns.append(top[nonzero])
        values.append(top_values[nonzero])
    if not rows:
        return sparse.csr_matrix((n_items, n_items), dtype=np.float32)
    return sparse.csr_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(columns))), shape=(n_items, n_items)
    )


class ItemKNN:
    """Scores a candidate by its similarity to the items in the customer's history (Sarwar et al. 2001).

    Args:
        params: params.yaml (`recommender.event_types` and `recommender.item_knn`).
    """

    name = "item_knn"

    def __init__(self, params: Params) -> None:
        self.params = params.recommender
        self.history: Interactions | None = None
        self.similarity: sparse.csr_matrix | None = None
        self.popularity = np.zeros(0, dtype=np.float32)

    def fit(self, history: EventLog, candidates: np.ndarray) -> None:
        """Build the interaction matrix and the item-item similarities of `history`."""
        self.history = interactions(history.events, candidates, self.params.event_types)
        self.similarity = item_similarity(self.history.matrix, self.params.item_knn)
        self.popularity = np.asarray((self.history.matrix > 0).sum(axis=0), dtype=np.float32).ravel()

    def score(self, users: np.ndarray) -> np.ndarray:
        """(len(users), len(candidates)) float32: summed similarity to each customer's items."""
        if self.history is None or self.similarity is None:
            raise RuntimeError("fit the recommender before scoring")
        rows = self.history.rows(users)
        if self.history.matrix.shape[0] == 0:  # nobody has history: popularity (all zero) for all
            return np.tile(self.popularity, (len(users), 1))
        binary = (self.history.matrix[np.maximum(rows, 0)] > 0).astype(np.float32)
        # row i of `similarity` lists the neighbours of item i, so X @ S sums over the customer's items
        scores = np.asarray((binary @ self.similarity).todense(), dtype=np.float32)
        return fallback_rows(scores, rows, self.popularity)


def presence_matrix(rows: np.ndarray, columns: np.ndarray, shape: tuple[int, int]) -> sparse.csr_matrix:
    """(customers x items) CSR with 1 where a customer interacted with an item (repeats count once,
    as in `ItemKNN`): the input of the item-kNN part of SASRec's blend."""
    binary = sparse.csr_matrix((np.ones(len(columns), dtype=np.float32), (rows, columns)), shape=shape)
    binary.sum_duplicates()
    binary.data[:] = 1.0
    return binary
