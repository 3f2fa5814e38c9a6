"""What a campaign expects to achieve, in the words and figures its summary and page show.

Expected incremental returns and profit are sums of the uplift model's per-customer estimates over
the contacted customers. Their interval is the outcome noise around those expectations: each
contacted customer's incremental return is a difference of two Bernoulli outcomes (with and
without the offer), so the variance of the total is the sum of p1(1-p1) + p0(1-p0). It does not
include the model's own error, which the lift measured after the horizon reveals (lift.py).
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from pipelines.campaigns.select import CONTROL, RISK_POLICY, TREATMENT, UNTREATED
from retention.params import NO_OFFER, CampaignParams


def _interval(total: float, variance: float, confidence: float) -> list[float | None]:
    if not np.isfinite(total) or not np.isfinite(variance):
        return [None, None]
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    half = z * float(np.sqrt(max(variance, 0.0)))
    return [round(total - half, 2), round(total + half, 2)]


def expected_outcomes(targets: pd.DataFrame, params: CampaignParams) -> dict[str, Any]:
    """Expected incremental returns, revenue, cost and profit of the contacts, with intervals."""
    contacted = targets.loc[targets["arm"] == TREATMENT]
    cost = float(contacted["expected_cost"].sum())
    if contacted["uplift_return"].isna().all():
        return {"expected_cost": round(cost, 2), "incremental_returns": None, "incremental_profit": None}
    p0 = (1.0 - contacted["p_churn"]).clip(0, 1).to_numpy()
    p1 = (p0 + contacted["uplift_return"].fillna(0.0).to_numpy()).clip(0, 1)
    returns = float(np.nansum(p1 - p0))
    returns_var = float(np.sum(p1 * (1 - p1) + p0 * (1 - p0)))
    revenue = float(contacted["uplift_revenue"].fillna(0.0).sum())
    profit = float(contacted["expected_profit"].fillna(0.0).sum())
    # Revenue noise: a returning customer's spend is about their predicted value; scale the
    # return variance by the mean squared value (a first-order approximation, stated as such).
    value_sq = float(np.mean(np.square(contacted["predicted_value"].to_numpy()))) if len(contacted) else 0.0
    profit_var = returns_var * value_sq * params.margin**2
    return {
        "expected_cost": round(cost, 2),
        "incremental_returns": round(returns, 2),
        "incremental_returns_interval": _interval(returns, returns_var, params.lift_confidence),
        "incremental_revenue": round(revenue, 2),
        "incremental_profit": round(profit, 2),
        "incremental_profit_interval": _interval(profit, profit_var, params.lift_confidence),
        "interval_note": "outcome noise around the model's expectations; model error shows in the measured lift",
    }


def budget_note(funnel: dict[str, Any], params: CampaignParams, share: float) -> str:
    """Why the list has the size it has, in a sentence."""
    over = int(funnel.get("over_budget", 0))
    quota = int(funnel.get("over_quota", 0))
    parts = [
        f"{funnel['selected']} customers chosen by the {funnel['policy']} policy within a budget of "
        f"{params.budget * (1 - share):,.2f} (the budget less the {share:.0%} explored at random)"
    ]
    if over:
        parts.append(f"{over} more would have been worth contacting but did not fit the budget")
    if quota:
        parts.append(f"{quota} were left out by segment quotas")
    if funnel.get("not_profitable"):
        parts.append(f"{funnel['not_profitable']} had no offer with a positive expected profit")
    if funnel.get("ties"):
        parts.append(f"{funnel['ties']} had offers tied on expected profit: the cheaper offer was chosen")
    return "; ".join(parts) + "."


def summarise(
    targets: pd.DataFrame, funnel: dict[str, Any], params: CampaignParams, share: float, why: str
) -> dict[str, Any]:
    """The campaign's summary: policy and why, offer mix, arm counts, costs, expected figures."""
    contacted = targets.loc[targets["arm"] == TREATMENT]
    return {
        "policy": funnel["policy"],
        "policy_reason": why,
        "exploration_share": share,
        "offer_mix": {str(k): int(v) for k, v in contacted["offer"].value_counts().sort_index().items()},
        "arms": {arm: int((targets["arm"] == arm).sum()) for arm in (TREATMENT, CONTROL, UNTREATED)},
        "explored": int(targets["explored"].sum()),
        "hold_out_note": "customers marked 'hold out' are the randomised control group: do not contact them",
        "budget": params.budget,
        "budget_note": budget_note(funnel, params, share),
        **expected_outcomes(targets, params),
        "offers": {name: offer.model_dump() for name, offer in params.offers.items()} | {NO_OFFER: None},
        "cold_start": funnel["policy"] == RISK_POLICY,
    }
