"""Pure drift statistics: PSI with reference-quantile bins, two-sample KS, chi-square, per-feature status.

Nothing here reads a database or a file. A numeric feature is binned at the reference's quantiles
(`psi_bins` bins, edges fixed by the reference alone, so a rerun against the same reference bins
the same way; missing values are a bin of their own) and compared by PSI and by
`scipy.stats.ks_2samp` on the known values. A categorical feature is compared by PSI over its
categories (the union of both samples, missing as one category) and a chi-square test of the
2 x k contingency table. A feature drifts when both the effect size (PSI) and the test agree:
with tens of thousands of customers any shift is "significant", and with a few dozen a large PSI
can be noise, so neither alone decides.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from retention.params import MonitoringParams

Status = Literal["ok", "warn", "alert"]
STATUS_ORDER: dict[str, int] = {"ok": 0, "warn": 1, "alert": 2}
PSI_FLOOR = 1e-4  # share given to an empty bin, so PSI stays finite (a common convention)
MISSING = "<missing>"


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's drift between the reference and the current sample."""

    feature: str
    kind: Literal["numeric", "categorical"]
    psi: float
    test: Literal["ks", "chi2"]
    statistic: float
    pvalue: float
    reference_rows: int
    current_rows: int
    status: Status

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def worst(statuses: list[Status] | list[str]) -> Status:
    """The most severe of some statuses (ok when there are none)."""
    found = max(statuses, key=STATUS_ORDER.__getitem__, default="ok")
    return "alert" if found == "alert" else "warn" if found == "warn" else "ok"


def psi(reference_shares: np.ndarray, current_shares: np.ndarray) -> float:
    """Population stability index sum((c - r) ln(c / r)) of two share vectors over the same bins.

    Args:
        reference_shares: each bin's share of the reference (sums to 1).
        current_shares: each bin's share of the current sample.

    Returns:
        PSI >= 0 (0: the same distribution; empty bins count as `PSI_FLOOR`).
    """
    r = np.maximum(np.asarray(reference_shares, dtype=float), PSI_FLOOR)
    c = np.maximum(np.asarray(current_shares, dtype=float), PSI_FLOOR)
    return float(np.sum((c - r) * np.log(c / r)))


def quantile_edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """Inner bin edges at the reference's quantiles (duplicates dropped: a discrete feature has fewer bins)."""
    known = reference[np.isfinite(reference)]
    if known.size == 0:
        return np.array([], dtype=float)
    return np.unique(np.quantile(known, np.linspace(0, 1, bins + 1)[1:-1]))


def binned_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Shares of `values` in the bins (-inf, e1], (e1, e2], ..., (ek, inf), then a bin for NaN."""
    finite = np.isfinite(values)
    counts = np.bincount(np.searchsorted(edges, values[finite], side="left"), minlength=edges.size + 1)
    counts = np.append(counts, (~finite).sum()).astype(float)
    return counts / max(values.size, 1)


def _status(psi_value: float, pvalue: float, params: MonitoringParams) -> Status:
    if pvalue >= params.pvalue:  # the test sees no difference: a large PSI is noise
        return "ok"
    if psi_value >= params.psi_alert:
        return "alert"
    return "warn" if psi_value >= params.psi_warn else "ok"


def numeric_drift(
    name: str, reference: pd.Series, current: pd.Series, params: MonitoringParams
) -> FeatureDrift:
    """PSI over the reference's quantile bins and a two-sample KS test of a numeric feature."""
    r = pd.to_numeric(reference, errors="coerce").to_numpy(dtype=float)
    c = pd.to_numeric(current, errors="coerce").to_numpy(dtype=float)
    edges = quantile_edges(r, params.psi_bins)
    value = psi(binned_shares(r, edges), binned_shares(c, edges))
    r_known, c_known = r[np.isfinite(r)], c[np.isfinite(c)]
    if r_known.size and c_known.size:
        test = stats.ks_2samp(r_known, c_known)
        statistic, pvalue = float(test.statistic), float(test.pvalue)
    else:  # nothing known on one side: only the missing share can have moved
        statistic, pvalue = float("nan"), 1.0
    return FeatureDrift(
        name, "numeric", value, "ks", statistic, pvalue, r.size, c.size, _status(value, pvalue, params)
    )


def categorical_drift(
    name: str, reference: pd.Series, current: pd.Series, params: MonitoringParams
) -> FeatureDrift:
    """PSI over the categories and a chi-square test of the 2 x k table of a categorical feature."""
    r = reference.astype(object).where(reference.notna(), MISSING).astype(str)
    c = current.astype(object).where(current.notna(), MISSING).astype(str)
    categories = sorted(set(r) | set(c))
    r_counts = r.value_counts().reindex(categories, fill_value=0).to_numpy(dtype=float)
    c_counts = c.value_counts().reindex(categories, fill_value=0).to_numpy(dtype=float)
    value = psi(r_counts / max(r_counts.sum(), 1), c_counts / max(c_counts.sum(), 1))
    if len(categories) > 1 and r_counts.sum() and c_counts.sum():
        test = stats.chi2_contingency(np.vstack([r_counts, c_counts]))
        statistic, pvalue = float(test.statistic), float(test.pvalue)
    else:  # one category on both sides: nothing to test
        statistic, pvalue = 0.0, 1.0
    return FeatureDrift(
        name, "categorical", value, "chi2", statistic, pvalue, r.size, c.size, _status(value, pvalue, params)
    )


def feature_drift(
    reference: pd.DataFrame, current: pd.DataFrame, params: MonitoringParams
) -> list[FeatureDrift]:
    """The drift of every feature column both frames share (numeric or categorical by the reference's dtype).

    Args:
        reference: the features the model was measured on (one row per customer).
        current: the features of the population it scores now.
        params: the `monitoring` section of params.yaml (bins, thresholds, excluded features).

    Returns:
        One entry per feature, in the reference's column order; `customer_id`, `cutoff`, `as_of`
        and `params.exclude_features` are left out.
    """
    skip = {"customer_id", "cutoff", "as_of", *params.exclude_features}
    out = []
    for name in reference.columns:
        if name in skip or name not in current.columns:
            continue
        if pd.api.types.is_numeric_dtype(reference[name]) and not pd.api.types.is_bool_dtype(reference[name]):
            out.append(numeric_drift(name, reference[name], current[name], params))
        else:
            out.append(categorical_drift(name, reference[name], current[name], params))
    return out


def prediction_drift(reference: np.ndarray, current: np.ndarray, params: MonitoringParams) -> FeatureDrift:
    """The drift of the model's P(return) (a numeric feature called `p_return`; ok below `min_rows`)."""
    drift = numeric_drift("p_return", pd.Series(reference), pd.Series(current), params)
    if min(len(reference), len(current)) < params.min_rows:
        return replace(drift, status="ok")
    return drift
