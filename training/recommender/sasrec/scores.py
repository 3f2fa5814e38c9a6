"""SASRec's blended score, written once: dense per batch of sequences, or fused as states x items.

With a blend, a customer's score of every item is

    std(SASRec) + mf_weight * std(ALS taste) + knn_weight * std(item-kNN) + popularity_weight * std(log popularity)

where std standardises each customer's row (`standardised`), the ALS taste is folded in from the
items the transformer reads (`mf.fold_in`) and the item-kNN score sums those items' neighbours. A
customer without history gets the popularity counts; without a blend the score is SASRec's raw one.

The score depends only on the customer's last `max_length` items (the "tail"). Every part except
item-kNN is linear in an item matrix once the per-row standardisation is written out:

    std(h . E^T) = h . E^T / s_h - (h . mean(E)) / s_h,    s_h^2 = h^T Cov(E) h

(population covariance of the item vectors, as `standardised` uses), and likewise for the ALS
taste u . F^T. So the blend is one product z . M^T of a customer's state vector

    z = [h / s_h,  mf_weight u / s_u,  c,  popularity_weight,  no_history]

(c gathers the row constants) with one item matrix

    M = [E,  F,  1,  standardised log popularity,  popularity counts].

z costs a transformer pass and a ridge solve per customer and changes only when the tail changes,
so it can be computed once and stored (`customer_states.py`); scoring is then a matrix multiply per
batch, plus the kNN part (sparse, not low rank) added from the tails (`FusedScores`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from scipy import sparse
from threadpoolctl import ThreadpoolController

from training.recommender.baselines import presence_matrix
from training.recommender.mf import fold_in
from training.recommender.sasrec.net import SASRecNet
from training.recommender.sequences import PAD, pad_left

THREADPOOLS = ThreadpoolController()  # finds the loaded BLAS libraries once, not on every call
EPS = float(np.finfo(np.float32).eps)  # the floor of a row's standard deviation
ENCODE_BATCH = 1024  # tails per transformer pass when computing state vectors
# The last three columns of the fused form (z and M above): the row constant, the popularity part
# and the no-history fallback.
ONES, POPULARITY, NO_HISTORY = -3, -2, -1


@dataclass(frozen=True)
class PreferenceBlend:
    """The long-term preference and popularity added to SASRec's scores (saved with the model).

    Attributes:
        mf_weight: the ALS taste's weight against the standardised SASRec scores (0: none).
        alpha: the matrix factorisation's confidence slope (for the fold-in).
        regularisation: its L2 penalty (for the fold-in).
        popularity_weight: the standardised log popularity's weight (0: none).
        knn_weight: the standardised item-kNN score's weight (0: none).
        repeat_weight: the standardised buy-again score's weight (0: none; added by the caller
            from the customer's purchases, `SASRecRecommender.repeat_part`).
    """

    mf_weight: float
    alpha: float
    regularisation: float
    popularity_weight: float = 0.0
    knn_weight: float = 0.0
    repeat_weight: float = 0.0


def standardised(scores: np.ndarray) -> np.ndarray:
    """Each row shifted to mean 0 and scaled to standard deviation 1 (a constant row becomes 0)."""
    centred = scores - scores.mean(axis=1, keepdims=True)
    return centred / np.maximum(centred.std(axis=1, keepdims=True), np.finfo(np.float32).eps)


class BlendedScores:
    """The scores of a fitted (or loaded) SASRec and its blend, dense or fused.

    Args:
        net: the network (None: every customer scores by popularity).
        popularity: (n_items,) distinct customers per item.
        blend: the blend's weights (None: SASRec's raw scores).
        item_factors: (n_items, f) ALS item factors ((0, 0): no ALS part).
        similarity: (n_items, n_items) item-kNN similarity (None: no kNN part).
        batch_size: sequences per transformer pass of the dense scores.
    """

    def __init__(
        self,
        net: SASRecNet | None,
        popularity: np.ndarray,
        blend: PreferenceBlend | None,
        item_factors: np.ndarray,
        similarity: sparse.csr_matrix | None,
        batch_size: int,
    ) -> None:
        self.net = net
        self.popularity = popularity
        self.blend = blend
        self.item_factors = item_factors
        self.similarity = similarity
        self.batch_size = batch_size
        self.n_items = len(popularity)

    @property
    def has_mf(self) -> bool:
        """Whether the blend holds the ALS taste."""
        return self.blend is not None and self.item_factors.size > 0

    @property
    def has_knn(self) -> bool:
        """Whether the blend holds the item-kNN part."""
        return self.similarity is not None and self.blend is not None and self.blend.knn_weight > 0

    # -- dense --------------------------------------------------------------------------------

    def of_sequences(self, sequences: list[np.ndarray]) -> np.ndarray:
        """(len(sequences), n_items) float32 blended scores of item-code sequences (oldest first).

        Empty sequences get the popularity counts. Seen items are not masked.
        """
        out = np.tile(self.popularity, (len(sequences), 1))
        rows = [i for i, s in enumerate(sequences) if len(s)]
        if self.net is None or not rows:
            return out
        # torch's worker threads spin between batches; numpy's BLAS threads would fight them for the
        # cores (2x slower on 2 cores), and the blend's matrices are too small to need them.
        with THREADPOOLS.limit(limits=1, user_api="blas"):
            for batch, recent, scores in self._last_position_scores(sequences, rows):
                out[batch] = self._blended(scores, recent)
        return out

    def parts(self, sequences: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The blend's parts of each sequence: standardised SASRec, ALS and kNN scores, has_history.

        Rows without history hold the popularity counts as SASRec part and zeros as the others.
        """
        if self.net is None:
            raise RuntimeError("fit the network first")
        sasrec = np.tile(self.popularity, (len(sequences), 1))
        mf, knn = np.zeros_like(sasrec), np.zeros_like(sasrec)
        has_history = np.array([len(s) > 0 for s in sequences], dtype=bool)
        rows = np.flatnonzero(has_history)
        for batch, recent, scores in self._last_position_scores(sequences, rows):
            sasrec[batch], mf[batch], knn[batch] = self._parts(scores, recent)
        return sasrec, mf, knn, has_history

    def popularity_part(self) -> np.ndarray:
        """(1, n_items) standardised log(1 + distinct customers) of each item."""
        return standardised(np.log1p(self.popularity)[None, :])

    def _last_position_scores(
        self, sequences: list[np.ndarray], rows: list[int] | np.ndarray
    ) -> Iterator[tuple[list[int] | np.ndarray, list[np.ndarray], np.ndarray]]:
        """Per batch of `rows`: the rows, their last `max_length` items, SASRec's next-item scores."""
        assert self.net is not None
        self.net.eval()
        with torch.no_grad():
            for start in range(0, len(rows), self.batch_size):
                batch = rows[start : start + self.batch_size]
                recent = [sequences[i][-self.net.config.max_length :] for i in batch]
                items = torch.from_numpy(pad_left(recent, max(len(r) for r in recent)))
                yield batch, recent, self.net.score_last(items).numpy()

    def _blended(self, scores: np.ndarray, recent: list[np.ndarray]) -> np.ndarray:
        """Add the folded-in long-term preference and the popularity (see the module docstring)."""
        if self.blend is None:
            return scores
        sasrec, mf, knn = self._parts(scores, recent)
        blend = self.blend
        return (
            sasrec
            + blend.mf_weight * mf
            + blend.knn_weight * knn
            + blend.popularity_weight * self.popularity_part()
        )

    def _parts(
        self, scores: np.ndarray, recent: list[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Standardised SASRec, ALS and item-kNN scores of the same items (zeros for a part not fitted)."""
        mf, knn = np.zeros_like(scores), np.zeros_like(scores)
        if self.has_mf:
            assert self.blend is not None
            users = fold_in(
                self.item_factors, [r - 1 for r in recent], self.blend.alpha, self.blend.regularisation
            )
            mf = standardised(users @ self.item_factors.T)
        if self.similarity is not None:
            rows = np.repeat(np.arange(len(recent)), [len(r) for r in recent])
            columns = np.concatenate(recent) - 1 if recent else np.zeros(0, dtype=np.int64)
            binary = presence_matrix(rows, columns, (len(recent), self.n_items))
            knn = standardised(np.asarray((binary @ self.similarity).todense(), dtype=np.float64))
        return standardised(scores), mf, knn

    # -- fused --------------------------------------------------------------------------------

    @property
    def state_size(self) -> int:
        """D, the width of a state vector and of the item matrix."""
        hidden = self.net.config.hidden_size if self.net is not None else 0
        factors = self.item_factors.shape[1] if self.net is not None and self.has_mf else 0
        return hidden + factors + 3

    def tails(self, sequences: dict[str, np.ndarray], customer_ids: np.ndarray) -> np.ndarray:
        """(len(customer_ids), max_length) int32 left-padded last items (all PAD without history)."""
        length = self.net.config.max_length if self.net is not None else 1
        empty = np.zeros(0, dtype=np.int64)
        return pad_left([sequences.get(c, empty) for c in customer_ids], length).astype(np.int32)

    def item_matrix(self) -> np.ndarray:
        """(n_items, D) float32 item side M of the fused score (see the module docstring)."""
        columns = []
        if self.net is not None:
            with torch.no_grad():
                columns.append(self.net.item_vectors()[1:].numpy())
            if self.has_mf:
                columns.append(self.item_factors)
        popularity = self.popularity.astype(np.float64)
        standardised_log = standardised(np.log1p(popularity)[None, :])[0]
        columns.append(np.stack([np.ones_like(popularity), standardised_log, popularity], axis=1))
        return np.ascontiguousarray(np.hstack(columns), dtype=np.float32)

    def state_vectors(self, tails: np.ndarray) -> np.ndarray:
        """(len(tails), D) float32 state vectors z of left-padded tails (all-PAD: no history)."""
        out = np.zeros((len(tails), self.state_size), dtype=np.float32)
        out[:, NO_HISTORY] = 1.0  # no history: the popularity counts
        lengths = (tails != PAD).sum(axis=1)
        rows = np.flatnonzero(lengths > 0)
        if self.net is None or not len(rows):
            return out
        hidden_size = self.net.config.hidden_size
        # numpy's BLAS threads would fight torch's spinning workers for the cores (see `of_sequences`)
        with torch.no_grad(), THREADPOOLS.limit(limits=1, user_api="blas"):
            items = self.net.item_vectors()[1:].numpy()
            self.net.eval()
            for start in range(0, len(rows), ENCODE_BATCH):
                batch = rows[start : start + ENCODE_BATCH]
                longest = int(lengths[batch].max())
                window = torch.from_numpy(tails[batch, tails.shape[1] - longest :].astype(np.int64))
                hidden = self.net.last_state(window).numpy()
                vector = out[batch]
                vector[:, NO_HISTORY] = 0.0
                if self.blend is None:  # raw SASRec scores
                    vector[:, :hidden_size] = hidden
                    out[batch] = vector
                    continue
                scale, mean = _standardising(items, hidden)
                vector[:, :hidden_size] = hidden * scale[:, None]
                constant = -mean * scale
                if self.has_mf:
                    recent = [row[row != PAD] - 1 for row in tails[batch]]
                    users = fold_in(self.item_factors, recent, self.blend.alpha, self.blend.regularisation)
                    mf_scale, mf_mean = _standardising(self.item_factors, users)
                    weight = self.blend.mf_weight
                    vector[:, hidden_size : hidden_size + users.shape[1]] = weight * users * mf_scale[:, None]
                    constant -= weight * mf_mean * mf_scale
                vector[:, ONES] = constant
                vector[:, POPULARITY] = self.blend.popularity_weight
                out[batch] = vector
        return out

    def knn_part(self, tails: np.ndarray) -> tuple[sparse.csr_matrix, np.ndarray]:
        """The item-kNN part of the blend for `tails`: knn_weight x std(binary @ similarity).

        Returns:
            (sparse scaled scores, per-row constant): the dense part is the sparse one plus the constant.
        """
        assert self.similarity is not None and self.blend is not None
        rows, columns = np.nonzero(tails != PAD)
        codes = tails[rows, columns].astype(np.int64) - 1
        binary = presence_matrix(rows, codes, (len(tails), self.n_items))
        scores = (binary @ self.similarity).tocsr().astype(np.float64)
        mean = np.asarray(scores.sum(axis=1)).ravel() / self.n_items
        squares = np.asarray(scores.multiply(scores).sum(axis=1)).ravel() / self.n_items
        scale = self.blend.knn_weight / np.maximum(np.sqrt(np.maximum(squares - mean**2, 0.0)), EPS)
        has_history = (tails != PAD).any(axis=1)
        scale = np.where(has_history, scale, 0.0)
        return sparse.diags(scale) @ scores, -mean * scale


class FusedScores:
    """Blended scores of state vectors over some item columns: one matrix multiply per batch.

    Args:
        scores: the model's blended scores.
        columns: the item columns (0-based codes) to score (None: all); the item matrix keeps only
            these rows, so products never recommended cost nothing.
    """

    def __init__(self, scores: BlendedScores, columns: np.ndarray | None = None) -> None:
        self.scores = scores
        self.columns = np.arange(scores.n_items) if columns is None else np.asarray(columns, dtype=np.int64)
        self.position = np.full(scores.n_items, -1, dtype=np.int64)
        self.position[self.columns] = np.arange(len(self.columns))
        self.items = torch.from_numpy(scores.item_matrix()[self.columns])

    def __call__(self, vectors: np.ndarray, tails: np.ndarray) -> np.ndarray:
        """(B, len(columns)) scores of one batch, in the dtype of `vectors`.

        Args:
            vectors: (B, D) state vectors.
            tails: (B, max_length) their tails (the kNN part reads them).
        """
        knn = None
        if self.scores.has_knn:
            knn, constant = self.scores.knn_part(tails)
            vectors = vectors.copy()
            vectors[:, ONES] += constant.astype(vectors.dtype)
        states = torch.from_numpy(vectors)
        out = states @ self.items.to(states.dtype).T
        if knn is not None:
            knn = knn.tocoo()
            where = self.position[knn.col]
            keep = where >= 0
            out.index_put_(
                (torch.from_numpy(knn.row[keep].astype(np.int64)), torch.from_numpy(where[keep])),
                torch.from_numpy(knn.data[keep].astype(vectors.dtype)),
                accumulate=True,
            )
        return out.numpy()


def _standardising(vectors: np.ndarray, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per user row: 1 / std and mean of users @ vectors.T over the items, without forming it."""
    users = users.astype(np.float64)
    mean = vectors.mean(axis=0, dtype=np.float64)
    centred = vectors.astype(np.float64) - mean
    covariance = centred.T @ centred / len(vectors)
    variance = np.einsum("bi,ij,bj->b", users, covariance, users)
    scale = 1.0 / np.maximum(np.sqrt(np.maximum(variance, 0.0)), EPS)
    return scale, users @ mean
