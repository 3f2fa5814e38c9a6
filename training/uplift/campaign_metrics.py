"""Scores of an uplift model on a holdout campaign: Qini and uplift@30% per offer, and policy value.

Per offer, on the rows that got that offer or no contact. A campaign's offers were not drawn with
equal probability (the policy chose most of them; see pipelines/campaigns/select.py), so those
rows are weighted by 1 / propensity: the weighted treated and no-contact groups then stand for
the same population, and a Qini curve measures uplift rather than who the policy picked.
scikit-uplift's `qini_auc_score` (the protocol's metric) takes no weights, so `weighted_qini` is
its computation with weights (same curve, perfect curve and normalisation; with equal weights it
returns sklift's figure, which a test checks). The policy value is the IPW estimate
(training.uplift.evaluation) of giving each holdout customer the offer with the largest positive
predicted effect on revenue.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from retention.params import NO_OFFER
from training.uplift.campaign_model import uplift_columns
from training.uplift.evaluation import best_arms, ipw_value

TOP_SHARE = 0.3  # uplift@30%, as in EVALUATION.md task 3


def weighted_qini_curve(
    y: np.ndarray, score: np.ndarray, treated: np.ndarray, weight: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """sklift's `qini_curve` with row weights: x = weight ranked so far, y = incremental responders."""
    order = np.argsort(score, kind="mergesort")[::-1]
    y, score, treated, weight = y[order], score[order], treated[order], weight[order]
    ends = np.r_[np.where(np.diff(score))[0], score.size - 1]
    w_all = np.cumsum(weight)[ends]
    w_t = np.cumsum(weight * treated)[ends]
    w_c = w_all - w_t
    y_t = np.cumsum(weight * y * treated)[ends]
    y_c = np.cumsum(weight * y * (1 - treated))[ends]
    gain = y_t - y_c * np.divide(w_t, w_c, out=np.zeros_like(w_t), where=w_c != 0)
    return np.r_[0.0, w_all], np.r_[0.0, gain]


def weighted_qini(y: np.ndarray, score: np.ndarray, treated: np.ndarray, weight: np.ndarray) -> float:
    """Qini coefficient with row weights, normalised like sklift's (negative effects allowed)."""
    from sklearn.metrics import auc

    x_model, q_model = weighted_qini_curve(y, score, treated, weight)
    perfect_score = y * treated - y * (1 - treated)  # sklift's perfect ranking, negative_effect=True
    x_best, q_best = weighted_qini_curve(y, perfect_score.astype(float), treated, weight)
    baseline = auc(np.array([0.0, x_best[-1]]), np.array([0.0, q_best[-1]]))
    return float((auc(x_model, q_model) - baseline) / (auc(x_best, q_best) - baseline))


def offer_metrics(holdout: pd.DataFrame, uplift: pd.DataFrame, offer: str) -> dict[str, float]:
    """Propensity-weighted Qini coefficient and uplift@30% of one offer vs no contact (NaN when
    either arm or either outcome is missing)."""
    mask = holdout["offer"].isin([offer, NO_OFFER]).to_numpy()
    y = holdout.loc[mask, "returned"].to_numpy(dtype=float)
    treated = (holdout.loc[mask, "offer"] == offer).to_numpy(dtype=float)
    weight = 1.0 / holdout.loc[mask, "propensity"].to_numpy(dtype=float)
    score = uplift[uplift_columns(offer)[0]].to_numpy(dtype=float)[mask]
    if treated.min(initial=1) == treated.max(initial=0) or y.min(initial=1) == y.max(initial=0):
        return {f"qini.{offer}": float("nan"), f"uplift_at_30.{offer}": float("nan")}
    top = np.argsort(score, kind="mergesort")[::-1][: max(1, int(round(TOP_SHARE * len(score))))]
    t, w, yy = treated[top], weight[top], y[top]
    at_k = (
        float((w * yy * t).sum() / (w * t).sum() - (w * yy * (1 - t)).sum() / (w * (1 - t)).sum())
        if 0 < t.sum() < len(t)
        else float("nan")
    )
    return {f"qini.{offer}": weighted_qini(y, score, treated, weight), f"uplift_at_30.{offer}": at_k}


def best_offers(uplift: pd.DataFrame, offers: list[str]) -> np.ndarray:
    """Per row the offer with the largest positive revenue effect, or no contact."""
    revenue = {uplift_columns(o)[1]: f"uplift_{o}" for o in offers}  # best_arms reads uplift_<arm>
    return best_arms(uplift[list(revenue)].rename(columns=revenue), NO_OFFER)


def campaign_metrics(holdout: pd.DataFrame, uplift: pd.DataFrame, offers: list[str]) -> dict[str, float]:
    """The family's metrics: per-offer Qini and uplift@30%, their mean (`qini`), and policy values."""
    metrics: dict[str, float] = {}
    for offer in offers:
        metrics |= offer_metrics(holdout, uplift, offer)
    qinis = [v for k, v in metrics.items() if k.startswith("qini.") and np.isfinite(v)]
    metrics["qini"] = float(np.mean(qinis)) if qinis else float("nan")
    chosen = best_offers(uplift, offers)
    follows = (holdout["offer"].to_numpy() == chosen).astype(float)
    propensity = holdout["propensity"].to_numpy(dtype=float)
    for outcome in ("returned", "revenue"):
        value = ipw_value(holdout[outcome].to_numpy(dtype=float), follows, propensity)
        metrics[f"policy_value_{outcome}"] = value.value
    metrics["contact_share"] = float((chosen != NO_OFFER).mean()) if len(chosen) else 0.0
    metrics["n_users"] = float(len(holdout))
    return metrics
