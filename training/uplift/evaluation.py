"""How good an uplift model is: per-arm ranking metrics (Qini, uplift AUC, uplift@k, deciles) and policy values.

Generic on purpose (numpy/pandas in, floats and dicts out): the backtest, the Hillstrom benchmark
and the campaign pipeline score models the same way. Ranking metrics are scikit-uplift's (the
protocol's, EVALUATION.md task 3), computed per treatment arm on the rows that got that arm or the
control. Policy values are off-policy estimates from randomised logs: inverse propensity weighting
(unbiased, noisy) and doubly robust (an outcome model absorbs much of the noise; still unbiased
when the logged propensities are right, whatever the outcome model).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

TOP_SHARE = 0.3  # uplift@30% (EVALUATION.md)
BINS = 10  # uplift by decile
CURVE_POINTS = 101  # Qini curve points kept for files and plots


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """scikit-uplift 0.5.1 calls a scikit-learn helper deprecated in 1.8 and a pandas keyword deprecated
    in 3.1: warnings about the library's code, one per metric call, that we can do nothing about."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*stable_cumsum.*")
        warnings.filterwarnings("ignore", message=".*inplace keyword.*")
        yield


def pair_rows(arm: np.ndarray, treatment: str, control: str) -> tuple[np.ndarray, np.ndarray]:
    """The rows of one arm-vs-control comparison and, on them, the treated flag (1 = the arm)."""
    arm = np.asarray(arm).astype(str)
    rows = np.flatnonzero((arm == treatment) | (arm == control))
    return rows, (arm[rows] == treatment).astype(int)


def qini(y: np.ndarray, score: np.ndarray, treated: np.ndarray) -> float:
    """Qini coefficient (scikit-uplift `qini_auc_score`, negative effects allowed in the perfect curve)."""
    from sklift.metrics import qini_auc_score

    y, score, treated = np.asarray(y, int), np.asarray(score, float), np.asarray(treated, int)
    with _quiet():
        return float(qini_auc_score(y, score, treated, negative_effect=True))


def ranking_metrics(
    y: np.ndarray, score: np.ndarray, treated: np.ndarray, k: float = TOP_SHARE
) -> dict[str, Any]:
    """Qini, uplift AUC, uplift@k ("overall" strategy) and the uplift of each score decile (best first).

    Args:
        y: binary outcome per row.
        score: the model's uplift (or any ranking score) per row.
        treated: 1 for the treatment arm, 0 for the control.
        k: the top share of uplift@k.
    """
    from sklift.metrics import uplift_at_k, uplift_auc_score, uplift_by_percentile

    y, score, treated = np.asarray(y, int), np.asarray(score, float), np.asarray(treated, int)
    with _quiet():
        deciles = uplift_by_percentile(y, score, treated, strategy="overall", bins=BINS)
        auc = float(uplift_auc_score(y, score, treated))
        at_k = float(uplift_at_k(y, score, treated, strategy="overall", k=k))
    return {
        "qini": qini(y, score, treated),
        "uplift_auc": auc,
        f"uplift_at_{round(100 * k)}": at_k,
        "uplift_by_decile": [float(v) for v in deciles["uplift"].to_numpy()],
        "n": len(y),
        "n_treated": int(treated.sum()),
    }


def qini_points(
    y: np.ndarray, score: np.ndarray, treated: np.ndarray, points: int = CURVE_POINTS
) -> pd.DataFrame:
    """The Qini curve (scikit-uplift `qini_curve`) at `points` evenly spaced shares of the ranked rows.

    Returns:
        `share` (of rows targeted, 0..1) and `qini` (incremental responders, treated-count scaled).
    """
    from sklift.metrics import qini_curve

    with _quiet():
        x, q = qini_curve(np.asarray(y, int), np.asarray(score, float), np.asarray(treated, int))
    x, q = np.concatenate([[0.0], np.asarray(x, float)]), np.concatenate([[0.0], np.asarray(q, float)])
    share = np.linspace(0, 1, points)
    return pd.DataFrame({"share": share, "qini": np.interp(share * x[-1], x, q)})


def plot_qini(curves: dict[str, pd.DataFrame], path: Path, title: str) -> Path:
    """Qini curves (from `qini_points`) of several models with the random line, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(6, 4.5))
    for name, curve in curves.items():
        ax.plot(curve["share"], curve["qini"], label=name)
    if curves:
        last = next(iter(curves.values()))["qini"].iloc[-1]
        ax.plot([0, 1], [0, last], "k--", linewidth=1, label="chance (expected)")
    ax.set(xlabel="share of customers targeted (by score)", ylabel="incremental responders", title=title)
    ax.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def per_arm_metrics(
    y: np.ndarray, arm: np.ndarray, uplift: pd.DataFrame, control: str, treatments: list[str]
) -> dict[str, dict[str, Any]]:
    """`ranking_metrics` of each treatment arm vs the control, keyed by arm.

    Args:
        uplift: one column `uplift_<arm>` per treatment arm, rows aligned with y and arm.
    """
    results = {}
    for treatment in treatments:
        rows, treated = pair_rows(arm, treatment, control)
        score = uplift[f"uplift_{treatment}"].to_numpy(dtype=float)[rows]
        results[treatment] = ranking_metrics(np.asarray(y)[rows], score, treated)
    return results


@dataclass(frozen=True)
class PolicyValue:
    """An estimated value per customer with its standard error and normal-approximation interval."""

    value: float
    se: float
    low: float
    high: float
    n: int

    def to_dict(self) -> dict[str, float]:
        """As plain floats (JSON)."""
        return {k: float(v) for k, v in asdict(self).items()}


def _mean_with_interval(terms: np.ndarray, confidence: float) -> PolicyValue:
    n = len(terms)
    value = float(terms.mean()) if n else float("nan")
    se = float(terms.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    half = NormalDist().inv_cdf(0.5 + confidence / 2) * se
    return PolicyValue(value, se, value - half, value + half, n)


def ipw_value(
    y: np.ndarray, policy_prob: np.ndarray, propensity: np.ndarray, confidence: float = 0.95
) -> PolicyValue:
    """Value per customer of a (possibly random) policy: mean(y x pi(logged arm) / propensity).

    Args:
        y: the logged outcome per row.
        policy_prob: the probability the evaluated policy gives the row's logged arm (0/1 for a
            deterministic policy).
        propensity: the logging probability of the row's arm (> 0).
        confidence: of the interval.
    """
    terms = np.asarray(y, float) * np.asarray(policy_prob, float) / np.asarray(propensity, float)
    return _mean_with_interval(terms, confidence)


def policy_value_ipw(
    y: np.ndarray, arm: np.ndarray, policy: np.ndarray, propensity: np.ndarray, confidence: float = 0.95
) -> PolicyValue:
    """Value per customer of a policy by inverse propensity weighting: mean(y x 1[arm = policy] / propensity).

    Args:
        y: the logged outcome per row.
        arm: the logged arm per row.
        policy: the arm the policy gives each row (the control's name for no treatment).
        propensity: the logging probability of the row's arm.
        confidence: of the interval.
    """
    follows = np.asarray(arm).astype(str) == np.asarray(policy).astype(str)
    return ipw_value(y, follows.astype(float), propensity, confidence)


def _hajek(y: np.ndarray, weight: np.ndarray) -> tuple[float, float]:
    total = weight.sum()
    if total <= 0:
        return float("nan"), float("nan")
    mean = float((weight * y).sum() / total)
    return mean, float((weight**2 * (y - mean) ** 2).sum() / total**2)


def weighted_difference(
    y: np.ndarray,
    arm: np.ndarray,
    propensity: np.ndarray,
    treatment: str,
    control: str,
    confidence: float = 0.95,
) -> dict[str, float]:
    """Lift of one arm over another on logged data: difference of inverse-propensity-weighted
    (Hajek, i.e. self-normalised, which keeps each mean within the outcome's range when
    propensities are small) means, with a normal interval.

    Returns:
        mean_treated, mean_control, lift, se, low, high, n_treated, n_control.
    """
    y, arm, weight = np.asarray(y, float), np.asarray(arm).astype(str), 1.0 / np.asarray(propensity, float)
    in_t, in_c = arm == treatment, arm == control
    mean_t, var_t = _hajek(y[in_t], weight[in_t])
    mean_c, var_c = _hajek(y[in_c], weight[in_c])
    lift, se = mean_t - mean_c, float(np.sqrt(var_t + var_c))
    half = NormalDist().inv_cdf(0.5 + confidence / 2) * se
    return {
        "mean_treated": mean_t,
        "mean_control": mean_c,
        "lift": lift,
        "se": se,
        "low": lift - half,
        "high": lift + half,
        "n_treated": float(in_t.sum()),
        "n_control": float(in_c.sum()),
    }


def policy_value_dr(
    y: np.ndarray,
    arm: np.ndarray,
    policy: np.ndarray,
    propensity: np.ndarray,
    expected: pd.DataFrame,
    confidence: float = 0.95,
) -> PolicyValue:
    """Doubly robust value per customer: mean(mu_pi(x) + 1[arm = pi] / propensity x (y - mu_pi(x))).

    Args:
        expected: an outcome model's E[y | arm, x] per row, one column per arm name (control included),
            fitted on other rows than these (else its errors leak into the estimate).
    """
    policy = np.asarray(policy).astype(str)
    missing = sorted(set(policy) - set(expected.columns))
    if missing:
        raise ValueError(f"the outcome model has no column for arms {missing}")
    columns = expected.columns.get_indexer(pd.Index(policy))
    mu = expected.to_numpy(dtype=float)[np.arange(len(policy)), columns]
    follows = np.asarray(arm).astype(str) == policy
    terms = mu + follows / np.asarray(propensity, float) * (np.asarray(y, float) - mu)
    return _mean_with_interval(terms, confidence)


def best_arms(uplift: pd.DataFrame, control: str) -> np.ndarray:
    """Per row the arm with the largest uplift, or the control when no arm's uplift is positive."""
    arms = np.array([c.removeprefix("uplift_") for c in uplift.columns], dtype=object)
    values = uplift.to_numpy(dtype=float)
    best = arms[np.argmax(values, axis=1)]
    return np.where(values.max(axis=1) > 0, best, control)


def budget_policy(
    uplift: pd.DataFrame, control: str, budget: float, arms: list[str] | None = None
) -> np.ndarray:
    """Each row one arm or the control: the best arm of the rows with the largest positive uplift,
    at most floor(budget x rows) of them treated.

    Args:
        uplift: one column `uplift_<arm>` per treatment arm.
        control: the control arm's name (what untreated rows get).
        budget: the largest share of rows treated, in [0, 1].
        arms: the arms the policy may give (default: every column's).
    """
    if not 0 <= budget <= 1:
        raise ValueError(f"budget must be a share in [0, 1], got {budget}")
    if arms is not None:
        uplift = uplift[[f"uplift_{a}" for a in arms]]
    best = best_arms(uplift, control)
    value = uplift.to_numpy(dtype=float).max(axis=1)
    order = np.argsort(-value, kind="stable")[: int(np.floor(budget * len(uplift) + 1e-9))]
    chosen = order[value[order] > 0]
    policy = np.full(len(uplift), control, dtype=object)
    policy[chosen] = best[chosen]
    return policy
