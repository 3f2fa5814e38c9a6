"""Matrix factorisation for implicit feedback by alternating least squares (Hu, Koren & Volinsky 2008).

Every customer x item cell is a preference p = 1 if they interacted, else 0, weighted by the
confidence c = 1 + alpha * (number of interactions); each sweep solves the weighted ridge
regressions of all customers, then of all items, exactly (the "conjugate" trick of the paper:
only the cells a row interacted with add to the shared Gram matrix).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from feature_store.events import EventLog
from retention.params import MFParams, Params
from training.recommender.baselines import Interactions, fallback_rows, interactions

FOLD_IN_BATCH = 1024  # customers solved together by `fold_in` (bounds its B x items x f arrays)
SOLVE_BATCH = 1024  # rows whose ridge systems `als_half_step` solves in one call (B x f x f floats)


def als_half_step(confidence: sparse.csr_matrix, fixed: np.ndarray, regularisation: float) -> np.ndarray:
    """Solve every row's factors against the fixed factors of the other side.

    Args:
        confidence: (rows, n_fixed) CSR of alpha * interactions (the confidence above 1).
        fixed: (n_fixed, f) factors held fixed.
        regularisation: the L2 penalty lambda.

    Returns:
        (rows, f) float64 factors minimising sum c (p - x.y)^2 + lambda |x|^2 per row.
    """
    factors = fixed.shape[1]
    gram = fixed.T @ fixed + regularisation * np.eye(factors)  # (f, f) shared by every row
    out = np.zeros((confidence.shape[0], factors))
    for start in range(0, confidence.shape[0], SOLVE_BATCH):
        rows = [
            row
            for row in range(start, min(start + SOLVE_BATCH, confidence.shape[0]))
            if confidence.indptr[row] < confidence.indptr[row + 1]  # no interaction: the minimiser is 0
        ]
        if not rows:
            continue
        systems = np.empty((len(rows), factors, factors))
        targets = np.empty((len(rows), factors, 1))
        for position, row in enumerate(rows):
            span = slice(confidence.indptr[row], confidence.indptr[row + 1])
            weights = confidence.data[span]
            local = fixed[confidence.indices[span]]  # (n_u, f)
            systems[position] = gram + (local * weights[:, None]).T @ local
            targets[position, :, 0] = local.T @ (1.0 + weights)
        # One batched call: the same LAPACK solve of each system as one call per row, less overhead.
        out[rows] = np.linalg.solve(systems, targets)[..., 0]
    return out


def fold_in(
    item_factors: np.ndarray, columns: list[np.ndarray], alpha: float, regularisation: float
) -> np.ndarray:
    """Factors of customers described only by the items they interacted with (no refit needed).

    The same ridge regression a customer sweep of `MatrixFactorisation.fit` solves, so a customer
    seen in training gets the factors training gave them (given the same interactions); solved for
    `FOLD_IN_BATCH` customers at a time with batched matrix products.

    Args:
        item_factors: (n_items, f) fitted item factors.
        columns: per customer, the item columns of their interactions (repeats count).
        alpha: the confidence slope.
        regularisation: the L2 penalty.

    Returns:
        (len(columns), f) float32 customer factors (zeros for an empty list).
    """
    rows = np.repeat(np.arange(len(columns)), [len(c) for c in columns])
    flat = np.concatenate(columns) if columns else np.zeros(0, dtype=np.int64)
    counts = sparse.csr_matrix(
        (np.ones(len(flat)), (rows, flat)), shape=(len(columns), item_factors.shape[0])
    )
    counts.sum_duplicates()
    fixed = item_factors.astype(np.float64)
    gram = fixed.T @ fixed + regularisation * np.eye(fixed.shape[1])
    out = np.zeros((len(columns), fixed.shape[1]))
    for start in range(0, len(columns), FOLD_IN_BATCH):
        block = counts[start : start + FOLD_IN_BATCH]
        lengths = np.diff(block.indptr)
        if not lengths.any():
            continue
        # Each customer's distinct items, left-aligned in (B, widest) arrays; padding weighs 0.
        owner = np.repeat(np.arange(block.shape[0]), lengths)
        position = np.arange(block.nnz) - np.repeat(block.indptr[:-1], lengths)
        items = np.zeros((block.shape[0], lengths.max()), dtype=np.int64)
        confidence = np.zeros(items.shape)
        present = np.zeros(items.shape)
        items[owner, position] = block.indices
        confidence[owner, position] = alpha * block.data
        present[owner, position] = 1.0
        local = fixed[items]  # (B, widest, f)
        systems = gram + np.matmul((local * confidence[..., None]).transpose(0, 2, 1), local)
        targets = np.matmul(local.transpose(0, 2, 1), (present + confidence)[..., None])
        solved = lengths > 0  # no interaction: the minimiser is 0
        out[start + np.flatnonzero(solved)] = np.linalg.solve(systems[solved], targets[solved])[..., 0]
    return out.astype(np.float32)


class MatrixFactorisation:
    """Implicit ALS factors of the history's customer x candidate matrix; score = user . item.

    Args:
        params: params.yaml (`recommender.event_types` and `recommender.mf`).
    """

    name = "mf_als"

    def __init__(self, params: Params) -> None:
        self.params = params.recommender
        self.history: Interactions | None = None
        self.user_factors = np.zeros((0, self.params.mf.factors), dtype=np.float32)
        self.item_factors = np.zeros((0, self.params.mf.factors), dtype=np.float32)
        self.popularity = np.zeros(0, dtype=np.float32)

    def fit(self, history: EventLog, candidates: np.ndarray) -> None:
        """Alternate `iterations` customer and item sweeps on `history`'s interactions."""
        mf: MFParams = self.params.mf
        self.history = interactions(history.events, candidates, self.params.event_types)
        confidence = (self.history.matrix * mf.alpha).tocsr()
        by_item = confidence.T.tocsr()
        rng = np.random.default_rng(mf.seed)
        items = rng.normal(0.0, mf.init_std, size=(len(candidates), mf.factors))
        users = np.zeros((confidence.shape[0], mf.factors))
        for _ in range(mf.iterations):
            users = als_half_step(confidence, items, mf.regularisation)
            items = als_half_step(by_item, users, mf.regularisation)
        self.user_factors = users.astype(np.float32)
        self.item_factors = items.astype(np.float32)
        self.popularity = np.asarray((self.history.matrix > 0).sum(axis=0), dtype=np.float32).ravel()

    def score(self, users: np.ndarray) -> np.ndarray:
        """(len(users), len(candidates)) float32 dot products (popularity for unknown customers)."""
        if self.history is None:
            raise RuntimeError("fit the recommender before scoring")
        rows = self.history.rows(users)
        if len(self.user_factors) == 0:
            return np.tile(self.popularity, (len(users), 1))
        scores = self.user_factors[np.maximum(rows, 0)] @ self.item_factors.T
        return fallback_rows(scores, rows, self.popularity)
