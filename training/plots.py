"""The figures reviewers compare in the MLflow UI: ROC, PR, reliability, lift/gain, recall@K,
training curves and feature importance. Each function writes one PNG and returns its path."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and in Airflow workers

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.calibration import CalibrationDisplay  # noqa: E402
from sklearn.metrics import PrecisionRecallDisplay, RocCurveDisplay  # noqa: E402

FIGSIZE = (5.0, 4.0)
DPI = 100


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def reliability_table(returned: np.ndarray, p_return: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Mean prediction and observed rate per equal-width probability bin (empty bins left out).

    Returns:
        p_mean, observed, count per non-empty bin.
    """
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p_return, edges[1:-1]), 0, bins - 1)
    frame = pd.DataFrame({"bin": which, "p": p_return, "y": returned})
    table = frame.groupby("bin").agg(p_mean=("p", "mean"), observed=("y", "mean"), count=("y", "size"))
    return table.reset_index(drop=True)


def decile_table(returned: np.ndarray, score: np.ndarray, groups: int = 10) -> pd.DataFrame:
    """Lift and cumulative gain by score decile (decile 1 = highest scores).

    Returns:
        decile, count, rate, lift (rate / base rate), cumulative_gain (share of positives captured).
    """
    order = np.argsort(-np.asarray(score), kind="stable")
    y = np.asarray(returned, dtype=float)[order]
    decile = np.arange(len(y)) * groups // max(len(y), 1) + 1
    frame = pd.DataFrame({"decile": decile, "y": y}).groupby("decile")["y"].agg(["size", "mean", "sum"])
    base = y.mean() if len(y) else 0.0
    return pd.DataFrame(
        {
            "decile": frame.index,
            "count": frame["size"].to_numpy(),
            "rate": frame["mean"].to_numpy(),
            "lift": frame["mean"].to_numpy() / base if base else np.nan,
            "cumulative_gain": frame["sum"].cumsum().to_numpy() / max(y.sum(), 1.0),
        }
    )


Curves = Mapping[str, np.ndarray] | np.ndarray  # {label: scores} (a model and its baselines), or one model's


def _curves(scores: Curves) -> Mapping[str, np.ndarray]:
    return scores if isinstance(scores, Mapping) else {"model": scores}


def roc_plot(returned: np.ndarray, scores: Curves, path: Path) -> Path:
    """ROC of each scorer on the same axes (scikit-learn's display)."""
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for label, p in _curves(scores).items():
        RocCurveDisplay.from_predictions(returned, p, name=label, ax=ax)
    ax.plot([0, 1], [0, 1], "--", color="grey", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (returned)")
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, path)


def pr_plot(returned: np.ndarray, scores: Curves, path: Path) -> Path:
    """Precision-recall of each scorer on the same axes (scikit-learn's display)."""
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for label, p in _curves(scores).items():
        PrecisionRecallDisplay.from_predictions(returned, p, name=label, ax=ax)
    ax.axhline(np.mean(returned), linestyle="--", color="grey", label="base rate")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (returned)")
    ax.legend(loc="upper right", fontsize="small")
    return _save(fig, path)


def calibration_plot(returned: np.ndarray, scores: Mapping[str, np.ndarray], path: Path) -> Path:
    """Reliability of each scorer's probabilities on the same axes (scikit-learn's display, 10 quantile bins)."""
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for label, p in scores.items():
        CalibrationDisplay.from_predictions(
            returned, np.clip(p, 0, 1), n_bins=10, strategy="quantile", name=label, ax=ax
        )
    ax.set(
        xlabel="mean predicted P(return)", ylabel="observed return rate", title="Reliability (test window)"
    )
    ax.legend(loc="upper left", fontsize="small")
    return _save(fig, path)


def gain_plot(returned: np.ndarray, scores: Mapping[str, np.ndarray], path: Path) -> Path:
    """Cumulative gain by decile of each scorer on the same axes (`decile_table`)."""
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for label, p in scores.items():
        table = decile_table(returned, p)
        share = np.concatenate([[0.0], table["decile"].to_numpy() / len(table)])
        ax.plot(share, np.concatenate([[0.0], table["cumulative_gain"].to_numpy()]), "o-", label=label)
    ax.plot([0, 1], [0, 1], "--", color="grey", label="random")
    ax.set(xlabel="share of customers contacted", ylabel="share of returners", title="Cumulative gain")
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, path)


def reliability_plot(table: pd.DataFrame, path: Path, title: str = "Reliability") -> Path:
    fig, ax = plt.subplots(figsize=FIGSIZE)
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect")
    ax.plot(table["p_mean"], table["observed"], "o-", label="model")
    ax.set(
        xlabel="mean predicted P(return)",
        ylabel="observed return rate",
        title=title,
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.legend(loc="upper left")
    return _save(fig, path)


def lift_gain_plot(table: pd.DataFrame, path: Path) -> Path:
    fig, (lift, gain) = plt.subplots(1, 2, figsize=(2 * FIGSIZE[0], FIGSIZE[1]))
    lift.bar(table["decile"], table["lift"])
    lift.axhline(1.0, linestyle="--", color="grey")
    lift.set(xlabel="decile (1 = highest P(return))", ylabel="lift", title="Lift by decile")
    share = np.concatenate([[0.0], table["decile"].to_numpy() / len(table)])
    gain.plot(share, np.concatenate([[0.0], table["cumulative_gain"].to_numpy()]), "o-", label="model")
    gain.plot([0, 1], [0, 1], "--", color="grey", label="random")
    gain.set(xlabel="share of customers contacted", ylabel="share of returners", title="Cumulative gain")
    gain.legend(loc="lower right")
    return _save(fig, path)


def recall_at_k_plot(curves: pd.DataFrame | Mapping[str, pd.DataFrame], path: Path) -> Path:
    """`curves`: k, recall (one row per cut-off), or {label: such a frame} drawn on the same axes."""
    shown = curves if isinstance(curves, Mapping) else {"model": curves}
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for label, curve in shown.items():
        ax.plot(curve["k"], curve["recall"], "o-", label=label)
    ax.set(xlabel="K", ylabel="recall@K", title="Recall@K (full catalogue)", ylim=(0, None))
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, path)


def training_curves_plot(history: list[dict[str, float]], path: Path) -> Path:
    """Every per-epoch metric whose name ends in `loss` (train and validation) against the epoch."""
    fig, ax = plt.subplots(figsize=FIGSIZE)
    frame = pd.DataFrame(history)
    for column in sorted(c for c in frame.columns if c.endswith("loss")):
        ax.plot(frame["epoch"], frame[column], "o-", label=column)
    ax.set(xlabel="epoch", ylabel="loss", title="Training curves")
    if len(frame.columns) > 2:
        ax.legend(loc="upper right")
    return _save(fig, path)


def importance_plot(importance: pd.DataFrame, path: Path, top: int = 20) -> Path:
    """`importance`: feature, importance; the `top` largest are drawn."""
    shown = importance.sort_values("importance", ascending=True).tail(top)
    fig, ax = plt.subplots(figsize=(FIGSIZE[0] + 1, max(FIGSIZE[1], 0.25 * len(shown) + 1)))
    ax.barh(shown["feature"], shown["importance"])
    ax.set(xlabel="importance", title="Feature importance")
    return _save(fig, path)
