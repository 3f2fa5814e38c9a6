"""Inner cross-validation on the training log: the blend's weight and interaction scale per arm, by Qini.

Only the training log is ever split here (EVALUATION.md: tuning uses the training log only).
Folds are stratified by (arm, event) like the protocol's outer split, and every candidate is scored
on the same folds, so the choice compares like with like.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from training.uplift.evaluation import qini


class Blendable(Protocol):
    """What the tuner needs of a blend learner (training.uplift.learners.Blend)."""

    params: Any
    control: str
    seed: int
    treatments: list[str]

    def fit_arm(
        self, X: np.ndarray, arm: np.ndarray, event: np.ndarray, treatment: str, alpha: float, scale: float
    ) -> Callable[[np.ndarray], np.ndarray]: ...


def candidates(alphas: list[float], scales: list[float]) -> list[tuple[float, float]]:
    """The (alpha, scale) grid; alpha = 1 (the S-learner alone) ignores the scale, so it appears once."""
    grid = [(a, s) for a in alphas if a < 1 for s in scales]
    return grid + ([(1.0, 0.0)] if 1.0 in alphas else [])


def label(alpha: float, scale: float) -> str:
    """A candidate's name in metrics.json."""
    return "s_learner" if alpha >= 1 else f"alpha={alpha:g} scale={scale:g}"


def inner_folds(
    arm: np.ndarray, event: np.ndarray, folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified (arm, event) folds of the training rows: (fit rows, scored rows) pairs."""
    from sklearn.model_selection import StratifiedKFold

    strata = np.char.add(np.asarray(arm).astype(str), (np.asarray(event) > 0).astype(int).astype(str))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(strata)), strata))


def tune_blend(
    blend: Blendable, X: np.ndarray, arm: np.ndarray, event: np.ndarray, propensity: np.ndarray
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Per treatment arm, the (alpha, scale) with the best mean inner-fold Qini.

    Each fold fits the S-learner once and the logistic model once per scale; every blend of the
    two is then a weighted sum of their predictions, so the grid costs little beyond the fits.

    Returns:
        The choice per arm ({"alpha", "scale"}) and the figures chosen by: per arm, each
        candidate's mean and standard deviation of the inner-fold Qini.
    """
    b = blend.params.blend
    grid = candidates(list(b.alphas), list(b.interaction_scales))
    if len(grid) == 1:
        alpha, scale = grid[0]
        return {t: {"alpha": alpha, "scale": scale} for t in blend.treatments}, {"folds": 0}
    scores: dict[str, dict[tuple[float, float], list[float]]] = {
        t: {c: [] for c in grid} for t in blend.treatments
    }
    need_s = any(a > 0 for a, _ in grid)
    scales = sorted({s for a, s in grid if a < 1})
    for fit_rows, test_rows in inner_folds(arm, event, blend.params.inner_folds, blend.seed):
        for t in blend.treatments:
            pair = test_rows[(arm[test_rows] == t) | (arm[test_rows] == blend.control)]
            treated, y = (arm[pair] == t).astype(int), event[pair]
            X_fit, a_fit, e_fit = X[fit_rows], arm[fit_rows], event[fit_rows]
            if not (_both(treated) and _both(y) and _fittable(a_fit, e_fit, t, blend.control)):
                continue  # a small log's fold may lack an arm or an outcome: it scores nothing
            s_pred = (
                blend.fit_arm(X_fit, a_fit, e_fit, t, 1.0, 0.0)(X[pair]) if need_s else np.zeros(len(pair))
            )
            logit = {s: blend.fit_arm(X_fit, a_fit, e_fit, t, 0.0, s)(X[pair]) for s in scales}
            for alpha, scale in grid:
                score = s_pred if alpha >= 1 else alpha * s_pred + (1 - alpha) * logit[scale]
                scores[t][(alpha, scale)].append(qini(y, score, treated))
    choice, figures = {}, {"folds": blend.params.inner_folds, "metric": "qini"}
    for t in blend.treatments:
        if not any(scores[t].values()):  # no fold could be scored: the most shrunk candidate
            alpha, scale = min(grid, key=lambda c: (c[1], c[0]))
            choice[t], figures[t] = {"alpha": alpha, "scale": scale}, {"scored_folds": 0}
            continue
        means = {c: float(np.mean(v)) for c, v in scores[t].items()}
        best = max(grid, key=lambda c: means[c])  # the first of equals, in grid order
        choice[t] = {"alpha": best[0], "scale": best[1]}
        figures[t] = {
            label(*c): {"mean": round(means[c], 5), "sd": round(float(np.std(scores[t][c])), 5)} for c in grid
        }
    return choice, figures


def _both(values: np.ndarray) -> bool:
    """Whether a 0/1 array holds both values."""
    return bool(len(values)) and values.min() != values.max()


def _fittable(arm: np.ndarray, event: np.ndarray, treatment: str, control: str) -> bool:
    """Whether a fold's training part has both outcomes in the treated and in the control rows."""
    return _both(event[arm == treatment]) and _both(event[arm == control])
