"""The figures reviewers compare in the MLflow UI: ROC, PR, reliability, lift/gain, recall@K,
training curves and feature importance. Each function writes one PNG and, beside it, the CSV of
exactly what the PNG draws (`roc.png` and `roc.csv`: DVC renders the CSVs; README, DVC section)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and in Airflow workers

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve  # noqa: E402

FIGSIZE = (5.0, 4.0)
DPI = 100
CSV_DIGITS = "%.6g"  # plot data is committed to git (DVC plots): six significant digits are plenty


def _save(fig: plt.Figure, path: Path, data: pd.DataFrame) -> Path:
    """Write the figure to `path` and the data it draws to `path` with a .csv suffix."""
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    data.to_csv(path.with_suffix(".csv"), index=False, float_format=CSV_DIGITS)
    return path


def reliability_table(returned: np.ndarray, p_return: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Mean prediction and observed rate per equal-width probability bin (empty bins left out).

    scikit-learn's `calibration_curve(strategy="uniform")`; the counts use its binning rule (a
    probability on an edge falls in the lower bin).

    Returns:
        p_mean, observed, count per non-empty bin.
    """
    p = np.asarray(p_return, dtype=float)
    observed, p_mean = calibration_curve(returned, p, n_bins=bins, strategy="uniform")
    count = np.bincount(np.searchsorted(np.linspace(0.0, 1.0, bins + 1)[1:-1], p), minlength=bins)
    return pd.DataFrame({"p_mean": p_mean, "observed": observed, "count": count[count > 0]})


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


def _stacked(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One long table with a `model` column first (DVC's template draws a line per model)."""
    return pd.concat([t.assign(model=label) for label, t in tables.items()], ignore_index=True)[
        ["model", *next(iter(tables.values())).columns]
    ]


def roc_table(returned: np.ndarray, scores: Curves) -> pd.DataFrame:
    """The ROC of each scorer (points that change the curve only).

    Returns:
        model, fpr, tpr, threshold (empty at the curve's start, where nothing is predicted positive).
    """
    tables = {}
    for label, p in _curves(scores).items():
        fpr, tpr, threshold = roc_curve(returned, p, drop_intermediate=True)
        tables[label] = pd.DataFrame(
            {"fpr": fpr, "tpr": tpr, "threshold": np.where(np.isfinite(threshold), threshold, np.nan)}
        )
    return _stacked(tables)


def pr_table(returned: np.ndarray, scores: Curves) -> pd.DataFrame:
    """The precision-recall curve of each scorer (points that change the curve only).

    Returns:
        model, recall, precision, threshold (empty at the curve's end point, recall 0).
    """
    tables = {}
    for label, p in _curves(scores).items():
        precision, recall, threshold = precision_recall_curve(returned, p, drop_intermediate=True)
        tables[label] = pd.DataFrame(
            {"recall": recall, "precision": precision, "threshold": np.append(threshold, np.nan)}
        )
    return _stacked(tables)


def calibration_table(returned: np.ndarray, scores: Mapping[str, np.ndarray], bins: int = 10) -> pd.DataFrame:
    """Reliability of each scorer's probabilities over `bins` quantile bins.

    Returns:
        model, p_mean (mean prediction of the bin), observed (return rate of the bin).
    """
    tables = {}
    for label, p in scores.items():
        observed, p_mean = calibration_curve(returned, np.clip(p, 0, 1), n_bins=bins, strategy="quantile")
        tables[label] = pd.DataFrame({"p_mean": p_mean, "observed": observed})
    return _stacked(tables)


def gain_table(returned: np.ndarray, scores: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Cumulative gain of each scorer by decile (`decile_table`), from the origin.

    Returns:
        model, contacted (share of customers, highest scores first), gain (share of returners captured).
    """
    tables = {}
    for label, p in scores.items():
        table = decile_table(returned, p)
        tables[label] = pd.DataFrame(
            {
                "contacted": np.concatenate([[0.0], table["decile"].to_numpy() / len(table)]),
                "gain": np.concatenate([[0.0], table["cumulative_gain"].to_numpy()]),
            }
        )
    return _stacked(tables)


def roc_plot(returned: np.ndarray, scores: Curves, path: Path) -> Path:
    """ROC of each scorer on the same axes (`roc_table`; its AUC in the legend)."""
    table = roc_table(returned, scores)
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for label, curve in table.groupby("model", sort=False):
        area = auc(curve["fpr"], curve["tpr"])
        ax.plot(curve["fpr"], curve["tpr"], label=f"{label} (AUC = {area:.2f})")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (returned)")
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, path, table)


def pr_plot(returned: np.ndarray, scores: Curves, path: Path) -> Path:
    """Precision-recall of each scorer on the same axes (`pr_table`; average precision in the legend)."""
    table = pr_table(returned, scores)
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for label, curve in table.groupby("model", sort=False):
        ap = average_precision_score(returned, _curves(scores)[str(label)])
        ax.plot(curve["recall"], curve["precision"], drawstyle="steps-post", label=f"{label} (AP = {ap:.2f})")
    ax.axhline(np.mean(returned), linestyle="--", color="grey", label="base rate")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (returned)")
    ax.legend(loc="upper right", fontsize="small")
    return _save(fig, path, table)


def calibration_plot(returned: np.ndarray, scores: Mapping[str, np.ndarray], path: Path) -> Path:
    """Reliability of each scorer's probabilities on the same axes (`calibration_table`, 10 quantile bins)."""
    table = calibration_table(returned, scores)
    fig, ax = plt.subplots(figsize=FIGSIZE)
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfectly calibrated")
    for label, curve in table.groupby("model", sort=False):
        ax.plot(curve["p_mean"], curve["observed"], "s-", label=str(label))
    ax.set(
        xlabel="mean predicted P(return)", ylabel="observed return rate", title="Reliability (test window)"
    )
    ax.legend(loc="upper left", fontsize="small")
    return _save(fig, path, table)


def gain_plot(returned: np.ndarray, scores: Mapping[str, np.ndarray], path: Path) -> Path:
    """Cumulative gain by decile of each scorer on the same axes (`gain_table`)."""
    table = gain_table(returned, scores)
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for label, curve in table.groupby("model", sort=False):
        ax.plot(curve["contacted"], curve["gain"], "o-", label=str(label))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="random")
    ax.set(xlabel="share of customers contacted", ylabel="share of returners", title="Cumulative gain")
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, path, table)


def reliability_plot(table: pd.DataFrame, path: Path, title: str = "Reliability") -> Path:
    """One model's `reliability_table` against the diagonal."""
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
    return _save(fig, path, table)


def lift_gain_plot(table: pd.DataFrame, path: Path) -> Path:
    """One model's `decile_table`: lift by decile and cumulative gain."""
    fig, (lift, gain) = plt.subplots(1, 2, figsize=(2 * FIGSIZE[0], FIGSIZE[1]))
    lift.bar(table["decile"], table["lift"])
    lift.axhline(1.0, linestyle="--", color="grey")
    lift.set(xlabel="decile (1 = highest P(return))", ylabel="lift", title="Lift by decile")
    share = np.concatenate([[0.0], table["decile"].to_numpy() / len(table)])
    gain.plot(share, np.concatenate([[0.0], table["cumulative_gain"].to_numpy()]), "o-", label="model")
    gain.plot([0, 1], [0, 1], "--", color="grey", label="random")
    gain.set(xlabel="share of customers contacted", ylabel="share of returners", title="Cumulative gain")
    gain.legend(loc="lower right")
    return _save(fig, path, table)


def recall_at_k_plot(curves: pd.DataFrame | Mapping[str, pd.DataFrame], path: Path) -> Path:
    """`curves`: k, recall (one row per cut-off), or {label: such a frame} drawn on the same axes."""
    table = _stacked(curves if isinstance(curves, Mapping) else {"model": curves})
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for label, curve in table.groupby("model", sort=False):
        ax.plot(curve["k"], curve["recall"], "o-", label=str(label))
    ax.set(xlabel="K", ylabel="recall@K", title="Recall@K (full catalogue)", ylim=(0, None))
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, path, table)


def training_curves_plot(history: list[dict[str, float]], path: Path) -> Path:
    """Every per-epoch metric whose name ends in `loss` (train and validation) against the epoch."""
    fig, ax = plt.subplots(figsize=FIGSIZE)
    frame = pd.DataFrame(history)
    columns = sorted(c for c in frame.columns if c.endswith("loss"))
    for column in columns:
        ax.plot(frame["epoch"], frame[column], "o-", label=column)
    ax.set(xlabel="epoch", ylabel="loss", title="Training curves")
    if len(frame.columns) > 2:
        ax.legend(loc="upper right")
    return _save(fig, path, frame[[c for c in ("epoch", *columns) if c in frame.columns]])


def importance_plot(importance: pd.DataFrame, path: Path, top: int = 20) -> Path:
    """`importance`: feature, importance; the `top` largest are drawn."""
    shown = importance.sort_values("importance", ascending=True).tail(top)
    fig, ax = plt.subplots(figsize=(FIGSIZE[0] + 1, max(FIGSIZE[1], 0.25 * len(shown) + 1)))
    ax.barh(shown["feature"], shown["importance"])
    ax.set(xlabel="importance", title="Feature importance")
    return _save(fig, path, shown[["feature", "importance"]].iloc[::-1])
