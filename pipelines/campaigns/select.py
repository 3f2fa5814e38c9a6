"""Who gets a campaign: exclusions, value at stake, quotas, the budget cap and the control group.

Pure functions of a scored customer frame, so every rule is testable without models or a database.
The control group is drawn per risk decile by a hash of (campaign id, customer id): random with
respect to the customer, reproducible on rerun, and stratified so treated and control have the
same risk mix (the lift estimate is then not biased by risk).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from retention.params import CampaignParams

TREATMENT, CONTROL = "treatment", "control"
# Exclusion reasons in the order they are checked: a customer is counted under the first that applies.
EXCLUSIONS = ("internal_account", "no_consent", "lapsed", "cooldown", "outside_risk_band", "low_value")
SCORED_COLUMNS = (
    "customer_id",
    "p_churn",
    "predicted_value",
    "segment",
    "recency_days",
    "marketing_consent",
    "email",
)


class SelectionError(ValueError):
    """The scored frame lacks what selection needs."""


def campaign_id(name: str, as_of: pd.Timestamp) -> str:
    """The campaign id: name + as-of date (a rerun for the same interval gets the same id)."""
    return f"{name}-{pd.Timestamp(as_of):%Y-%m-%d}"


def hash_unit(campaign: str, customer_ids: pd.Series) -> np.ndarray:
    """A uniform number in [0, 1) per customer, fixed by (campaign id, customer id)."""
    digests = [
        int.from_bytes(hashlib.sha256(f"{campaign}|{c}".encode()).digest()[:8], "big") for c in customer_ids
    ]
    return np.array(digests, dtype=np.float64) / 2.0**64


def _is_internal(scored: pd.DataFrame, params: CampaignParams) -> pd.Series:
    domains = tuple(f"@{d.lower()}" for d in params.internal_email_domains)
    email = scored["email"].fillna("").str.lower()
    by_mail = email.str.endswith(domains) if domains else pd.Series(False, index=scored.index)
    prefixes = tuple(params.internal_id_prefixes)
    by_id = (
        scored["customer_id"].str.startswith(prefixes) if prefixes else pd.Series(False, index=scored.index)
    )
    return by_mail | by_id


def exclusion_reasons(scored: pd.DataFrame, params: CampaignParams, recently_treated: set[str]) -> pd.Series:
    """The first exclusion that applies to each customer ("" when none does)."""
    low, high = params.risk_band
    rules = {
        "internal_account": _is_internal(scored, params),
        "no_consent": ~scored["marketing_consent"].fillna(False).astype(bool),
        "lapsed": scored["recency_days"] > params.lapsed_days,
        "cooldown": scored["customer_id"].isin(recently_treated),
        "outside_risk_band": ~scored["p_churn"].between(low, high),
        "low_value": scored["p_churn"] * scored["predicted_value"] < params.min_value_at_stake,
    }
    reason = pd.Series("", index=scored.index, dtype=object)
    for name in reversed(EXCLUSIONS):  # the earliest rule wins, so it is applied last
        reason = reason.mask(rules[name].to_numpy(), name)
    return reason


def risk_deciles(p_churn: pd.Series, deciles: int) -> np.ndarray:
    """1 (lowest risk of the list) .. `deciles`, equal-sized by rank (ties broken by position)."""
    if len(p_churn) == 0:
        return np.zeros(0, dtype=np.int64)
    ranks = p_churn.rank(method="first").to_numpy() - 1
    return (np.floor(ranks * deciles / len(p_churn)) + 1).astype(np.int64)


def assign_control(targets: pd.DataFrame, campaign: str, params: CampaignParams) -> np.ndarray:
    """The arm of each target: per risk decile, the customers with the lowest hash are control.

    Counts follow the share cumulatively over the deciles, so the whole list's control share is
    within one customer of `control_share` and each decile's is as close as its size allows.
    """
    arm = np.full(len(targets), TREATMENT, dtype=object)
    draw = hash_unit(campaign, targets["customer_id"])
    seen = held = 0
    for decile in sorted(targets["risk_decile"].unique()):
        rows = np.flatnonzero(targets["risk_decile"].to_numpy() == decile)
        seen += len(rows)
        take = int(round(params.control_share * seen)) - held
        chosen = rows[np.argsort(draw[rows], kind="stable")[: max(take, 0)]]
        arm[chosen] = CONTROL
        held += len(chosen)
    return arm


def select_targets(
    scored: pd.DataFrame, params: CampaignParams, campaign: str, recently_treated: set[str]
) -> tuple[pd.DataFrame, dict[str, object]]:
    """Apply the exclusions, rank by value at stake, then quotas and the budget; draw the control arm.

    Args:
        scored: one row per active customer with `SCORED_COLUMNS` (other columns are kept).
        params: the campaign section of params.yaml.
        campaign: the campaign id (seeds the control draw).
        recently_treated: customers treated by any campaign within the cooldown.

    Returns:
        The targets (rank 1 = most value at stake, with arm and risk_decile) and the funnel counts.
    """
    missing = [c for c in SCORED_COLUMNS if c not in scored.columns]
    if missing:
        raise SelectionError(f"scored customers lack columns {missing}")
    if scored["customer_id"].duplicated().any():
        raise SelectionError("scored customers contain duplicate customer ids")
    frame = scored.assign(value_at_stake=scored["p_churn"] * scored["predicted_value"])
    reason = exclusion_reasons(frame, params, recently_treated)
    eligible = frame.loc[reason.eq("").to_numpy()].sort_values(
        ["value_at_stake", "customer_id"], ascending=[False, True], kind="stable"
    )
    quota = np.array([params.segment_quotas.get(s, np.inf) for s in eligible["segment"]], dtype=float)
    within_quota = eligible.groupby("segment").cumcount().to_numpy() < quota
    chosen = eligible.loc[within_quota].head(params.max_targets).reset_index(drop=True)
    chosen["rank"] = np.arange(1, len(chosen) + 1)
    chosen["risk_decile"] = risk_deciles(chosen["p_churn"], params.risk_deciles)
    chosen["arm"] = assign_control(chosen, campaign, params)
    funnel: dict[str, object] = {
        "scored": int(len(frame)),
        "excluded": {name: int(reason.eq(name).sum()) for name in EXCLUSIONS},
        "eligible": int(len(eligible)),
        "over_quota": int((~within_quota).sum()),
        "over_budget": int(within_quota.sum() - len(chosen)),
        "selected": int(len(chosen)),
        "control": int((chosen["arm"] == CONTROL).sum()),
    }
    return chosen, funnel
