"""Materialised customer states: each customer's scoring vector under one fitted SASRec blend.

A customer's blended score (`SASRecRecommender.score_sequences`) depends only on their last
`max_length` items (the "tail"). Every part of it except item-kNN is linear in an item matrix once
the per-row standardisation is written out:

    std(h . E^T) = h . E^T / s_h - (h . mean(E)) / s_h,    s_h^2 = h^T Cov(E) h

(population covariance of the item vectors, as `standardised` uses), and likewise for the ALS
taste u . F^T. So the blend is one product z . M^T of a customer vector

    z = [h / s_h,  w_mf u / s_u,  c,  w_pop,  no_history]

(c gathers the row constants) with one item matrix

    M = [E,  F,  1,  standardised log popularity,  popularity counts].

z costs a transformer pass and a ridge solve per customer and changes only when the tail changes,
so it is computed once per history change and stored with the tail it came from; scoring many
customers is then a matrix multiply and top-k per batch (the kNN part, sparse and not low rank, is
added from the stored tails). A customer without history gets `no_history` = 1 alone: the
popularity counts, as in `score_sequences`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import sparse

from retention.atomic import atomic_path
from training.recommender.baselines import presence_matrix
from training.recommender.mf import fold_in
from training.recommender.sequences import PAD, pad_left

log = logging.getLogger("retention.training")
EPS = float(np.finfo(np.float32).eps)  # the floor of a row's standard deviation (as `standardised`)
ENCODE_BATCH = 1024  # tails per transformer pass when computing states


@dataclass(frozen=True)
class CustomerStates:
    """Every customer's state vector, the tail it was computed from and what it is valid for.

    Attributes:
        model_key: the model the vectors belong to (e.g. "retention-recommender/3").
        as_of: the end (exclusive) of the history the tails were read from, ISO format.
        events: sequence events in that history, and
        last_event: the time of its latest one, ISO format ("" for none): together the history's
            fingerprint (a campaign at another as-of over the same data can reuse the states).
        customer_ids: (n,) sorted ids.
        tails: (n, max_length) int32 item codes, left-padded with PAD.
        vectors: (n, D) float32 state vectors (`z` of the module docstring).
    """

    model_key: str
    as_of: str
    events: int
    last_event: str
    customer_ids: np.ndarray
    tails: np.ndarray
    vectors: np.ndarray

    def is_current(self, model_key: str, events: int, last_event: str) -> bool:
        """Whether these are `model_key`'s states of a history with this fingerprint."""
        return (self.model_key, self.events, self.last_event) == (model_key, events, last_event)

    def rows(self, customer_ids: Iterable[str]) -> np.ndarray:
        """Row of each customer, -1 for customers without a state (no history)."""
        return positions(self.customer_ids, customer_ids)

    def take(self, customer_ids: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """(vectors, tails) of `customer_ids`; a customer without a state gets the no-history vector."""
        rows = self.rows(customer_ids)
        vectors = self.vectors[np.maximum(rows, 0)]
        tails = self.tails[np.maximum(rows, 0)]
        unknown = rows < 0
        if unknown.any():
            vectors[unknown] = 0.0
            vectors[unknown, -1] = 1.0  # no history: the popularity counts
            tails[unknown] = PAD
        return vectors, tails

    def save(self, path: Path) -> None:
        """Write to `path` (.npz) atomically: readers see the old or the new states, never a mix."""
        meta = json.dumps(
            {
                "model_key": self.model_key,
                "as_of": self.as_of,
                "events": self.events,
                "last_event": self.last_event,
            }
        )
        with atomic_path(path) as tmp, tmp.open("wb") as handle:
            np.savez(
                handle,
                meta=np.array(meta),
                customer_ids=self.customer_ids.astype(str),
                tails=self.tails,
                vectors=self.vectors,
            )

    @classmethod
    def load(cls, path: Path) -> CustomerStates:
        """Read states written by `save`."""
        with np.load(path, allow_pickle=False) as stored:
            meta = json.loads(str(stored["meta"]))
            return cls(
                meta["model_key"],
                meta["as_of"],
                int(meta["events"]),
                meta["last_event"],
                stored["customer_ids"],
                stored["tails"],
                stored["vectors"],
            )


def positions(keys: Iterable[str] | np.ndarray, values: Iterable[str] | np.ndarray) -> np.ndarray:
    """Position of each of `values` in `keys` (distinct ids), -1 where absent.

    Object-dtype hashing: pandas' default Arrow strings are several times slower to index.
    """
    index = pd.Index(np.asarray(keys, dtype=object))
    return index.get_indexer(np.asarray(values, dtype=object))


def _standardising(vectors: np.ndarray, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per user row: 1 / std and mean of users @ vectors.T over the items, without forming it."""
    users = users.astype(np.float64)
    mean = vectors.mean(axis=0, dtype=np.float64)
    centred = vectors.astype(np.float64) - mean
    covariance = centred.T @ centred / len(vectors)
    variance = np.einsum("bi,ij,bj->b", users, covariance, users)
    scale = 1.0 / np.maximum(np.sqrt(np.maximum(variance, 0.0)), EPS)
    return scale, users @ mean


def item_matrix(model) -> np.ndarray:  # noqa: ANN001 (a SASRecRecommender; imported lazily)
    """(n_items, D) float32 item side M of the fused score (see the module docstring)."""
    columns = []
    if model.net is not None:
        with torch.no_grad():
            columns.append(model.net.item_vectors()[1:].numpy())
        if _has_mf(model):
            columns.append(model.item_factors)
    from training.recommender.sasrec import standardised  # loaded with the model

    popularity = model.popularity.astype(np.float64)
    standardised_log = standardised(np.log1p(popularity)[None, :])[0]
    columns.append(np.stack([np.ones_like(popularity), standardised_log, popularity], axis=1))
    return np.ascontiguousarray(np.hstack(columns), dtype=np.float32)


def _has_mf(model) -> bool:  # noqa: ANN001
    return model.blend is not None and model.item_factors.size > 0


def state_vectors(model, tails: np.ndarray) -> np.ndarray:  # noqa: ANN001
    """(len(tails), D) float32 state vectors z of left-padded tails (all-PAD: no history)."""
    out = np.zeros((len(tails), item_matrix(model).shape[1]), dtype=np.float32)
    out[:, -1] = 1.0  # no history: the popularity counts
    lengths = (tails != PAD).sum(axis=1)
    rows = np.flatnonzero(lengths > 0)
    if model.net is None or not len(rows):
        return out
    from training.recommender.sasrec import THREADPOOLS  # loaded with the model

    hidden_size = model.net.config.hidden_size
    # numpy's BLAS threads would fight torch's spinning workers for the cores (see score_sequences)
    with torch.no_grad(), THREADPOOLS.limit(limits=1, user_api="blas"):
        items = model.net.item_vectors()[1:].numpy()
        model.net.eval()
        for start in range(0, len(rows), ENCODE_BATCH):
            batch = rows[start : start + ENCODE_BATCH]
            longest = int(lengths[batch].max())
            window = torch.from_numpy(tails[batch, tails.shape[1] - longest :].astype(np.int64))
            hidden = model.net.last_state(window).numpy()
            vector = out[batch]
            vector[:, -1] = 0.0
            if model.blend is None:  # raw SASRec scores
                vector[:, :hidden_size] = hidden
                out[batch] = vector
                continue
            scale, mean = _standardising(items, hidden)
            vector[:, :hidden_size] = hidden * scale[:, None]
            constant = -mean * scale
            if _has_mf(model):
                recent = [row[row != PAD] - 1 for row in tails[batch]]
                users = fold_in(model.item_factors, recent, model.blend.alpha, model.blend.regularisation)
                mf_scale, mf_mean = _standardising(model.item_factors, users)
                weight = model.blend.weight
                vector[:, hidden_size : hidden_size + users.shape[1]] = weight * users * mf_scale[:, None]
                constant -= weight * mf_mean * mf_scale
            vector[:, -3] = constant
            vector[:, -2] = model.blend.popularity_weight
            out[batch] = vector
    return out


def tails_of(model, sequences: dict[str, np.ndarray], customer_ids: np.ndarray) -> np.ndarray:  # noqa: ANN001
    """(len(customer_ids), max_length) int32 left-padded last items (all PAD without history)."""
    length = model.net.config.max_length if model.net is not None else 1
    empty = np.zeros(0, dtype=np.int64)
    return pad_left([sequences.get(c, empty) for c in customer_ids], length).astype(np.int32)


def refresh_states(
    model,  # noqa: ANN001
    model_key: str,
    sequences: dict[str, np.ndarray],
    as_of: pd.Timestamp,
    events: int,
    last_event: str,
    previous: CustomerStates | None = None,
) -> tuple[CustomerStates, int]:
    """The states of every customer in `sequences`, reusing `previous` rows whose tail is unchanged.

    Args:
        model: the fitted or loaded SASRecRecommender.
        model_key: what the states are valid for (a different key reuses nothing).
        sequences: customer id -> item codes, oldest first (`history_sequences`).
        as_of: the end of that history.
        events: the number of sequence events in it, and
        last_event: the time of the latest (see `CustomerStates`).
        previous: states of an earlier history, if any.

    Returns:
        The states and how many customers were (re)computed.
    """
    customer_ids = np.array(sorted(sequences), dtype=str)
    tails = tails_of(model, sequences, customer_ids)
    vectors = np.zeros((len(customer_ids), item_matrix(model).shape[1]), dtype=np.float32)
    stale = np.ones(len(customer_ids), dtype=bool)
    if previous is not None and previous.model_key == model_key and previous.tails.shape[1] == tails.shape[1]:
        rows = previous.rows(customer_ids)
        known = np.flatnonzero(rows >= 0)
        same = np.all(previous.tails[rows[known]] == tails[known], axis=1)
        vectors[known[same]] = previous.vectors[rows[known[same]]]
        stale[known[same]] = False
    changed = np.flatnonzero(stale)
    if len(changed):
        vectors[changed] = state_vectors(model, tails[changed])
    log.info("customer states: %d of %d customers (re)computed", len(changed), len(customer_ids))
    return CustomerStates(
        model_key, as_of.isoformat(), events, last_event, customer_ids, tails, vectors
    ), len(changed)


def knn_part(model, tails: np.ndarray) -> tuple[sparse.csr_matrix, np.ndarray]:  # noqa: ANN001
    """The item-kNN part of the blend for `tails`: knn_weight x std(binary @ similarity).

    Returns:
        (sparse scaled scores, per-row constant): the dense part is the sparse one plus the constant.
    """
    rows, columns = np.nonzero(tails != PAD)
    codes = tails[rows, columns].astype(np.int64) - 1
    binary = presence_matrix(rows, codes, (len(tails), model.index.size))
    scores = (binary @ model.similarity).tocsr().astype(np.float64)
    n_items = model.index.size
    mean = np.asarray(scores.sum(axis=1)).ravel() / n_items
    squares = np.asarray(scores.multiply(scores).sum(axis=1)).ravel() / n_items
    scale = model.blend.knn_weight / np.maximum(np.sqrt(np.maximum(squares - mean**2, 0.0)), EPS)
    has_history = (tails != PAD).any(axis=1)
    scale = np.where(has_history, scale, 0.0)
    return sparse.diags(scale) @ scores, -mean * scale


class StateScorer:
    """Top-k products from state vectors: one matrix multiply and top-k per batch of customers.

    Args:
        model: the recommender the states belong to.
        allowed: (n_items,) products that may be recommended (None: all); the others are dropped
            from the item matrix before any multiply.
    """

    def __init__(self, model, allowed: np.ndarray | None = None) -> None:  # noqa: ANN001
        self.model = model
        self.columns = np.arange(model.index.size) if allowed is None else np.flatnonzero(allowed)
        self.position = np.full(model.index.size, -1, dtype=np.int64)
        self.position[self.columns] = np.arange(len(self.columns))
        self.items = torch.from_numpy(item_matrix(model)[self.columns])
        self.knn = model.similarity is not None and model.blend is not None and model.blend.knn_weight > 0

    def top_k(
        self,
        vectors: np.ndarray,
        tails: np.ndarray,
        k: int,
        excluded: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Best k item columns (0-based codes) of one batch of customers, best first.

        Args:
            vectors: (B, D) state vectors.
            tails: (B, max_length) their tails (the kNN part reads them).
            k: products per customer (at most the allowed ones).
            excluded: (rows, item columns) of the batch never to recommend.

        Returns:
            (B, k) item columns and (B, k) flags: False where fewer than k products were left.
        """
        k = min(k, len(self.columns))
        knn = None
        if self.knn:
            knn, constant = knn_part(self.model, tails)
            vectors = vectors.copy()
            vectors[:, -3] += constant.astype(np.float32)
        scores = torch.from_numpy(vectors) @ self.items.T
        if knn is not None:
            knn = knn.tocoo()
            where = self.position[knn.col]
            keep = where >= 0
            scores.index_put_(
                (torch.from_numpy(knn.row[keep].astype(np.int64)), torch.from_numpy(where[keep])),
                torch.from_numpy(knn.data[keep].astype(np.float32)),
                accumulate=True,
            )
        if excluded is not None:
            rows, columns = excluded
            where = self.position[columns]
            keep = where >= 0
            scores[torch.from_numpy(rows[keep]), torch.from_numpy(where[keep])] = float("-inf")
        top = torch.topk(scores, k, dim=1)
        return self.columns[top.indices.numpy()], torch.isfinite(top.values).numpy()
