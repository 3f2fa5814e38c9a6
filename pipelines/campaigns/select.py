"""Who gets which offer: exclusions, the targeting policy, quotas, the budget, and randomised logging.

Pure functions of a scored customer frame, so every rule is testable without models or a database.

Every customer who passes the hard rules (consent, internal accounts, lapsed, cooldown) is
*eligible* and is logged with the offer they got and its probability (the propensity):
- the **policy** chooses per customer the offer (or no contact) with the largest expected
  incremental profit = uplift on revenue x margin - offer cost (the uplift policy), or, while the
  cold-start rule applies, the default offer for the top customers by value at stake (the risk
  policy); both under the budget and the segment quotas;
- a random **exploration** share gets an offer drawn uniformly from {no contact} + the offers they
  are eligible for, whatever the policy said;
- of the rest the policy contacts, a random **control** share is held out, per risk decile.
Draws are hashes of (campaign id, customer id): random with respect to the customer and
reproducible on rerun. Because every eligible customer has a known, positive probability of every
offer, lift per offer and the value of other policies are estimated without bias (lift.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from retention.params import NO_OFFER, CampaignParams
from training.uplift.campaign_model import uplift_columns

TREATMENT, CONTROL, UNTREATED = "treatment", "control", "untreated"
ARMS = (TREATMENT, CONTROL, UNTREATED)
EXPORTED_ARMS = (TREATMENT, CONTROL)  # marketing gets these; untreated rows are only logged
UPLIFT_POLICY, RISK_POLICY = "uplift", "risk"
# Exclusions in the order they are checked: a customer is counted under the first that applies.
EXCLUSIONS = ("internal_account", "no_consent", "lapsed", "cooldown")
SCORED_COLUMNS = (
    "customer_id",
    "p_churn",
    "predicted_value",
    "segment",
    "recency_days",
    "marketing_consent",
    "email",
)
TIE_TOLERANCE = 1e-9  # expected profits closer than this are a tie (the cheaper offer wins)


class SelectionError(ValueError):
    """The scored frame (or the uplift estimates) lack what selection needs."""


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
    """The first hard exclusion that applies to each customer ("" when none does)."""
    rules = {
        "internal_account": _is_internal(scored, params),
        "no_consent": ~scored["marketing_consent"].fillna(False).astype(bool),
        "lapsed": scored["recency_days"] > params.lapsed_days,
        "cooldown": scored["customer_id"].isin(recently_treated),
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


def offer_eligibility(frame: pd.DataFrame, params: CampaignParams) -> pd.DataFrame:
    """One boolean column per offer: may this customer get it (value floor, segments)?"""
    columns = {}
    for name, offer in params.offers.items():
        allowed = frame["predicted_value"].to_numpy() >= offer.min_predicted_value
        if offer.segments:
            allowed &= frame["segment"].isin(offer.segments).to_numpy()
        columns[name] = allowed
    return pd.DataFrame(columns, index=frame.index)


def base_revenue(frame: pd.DataFrame) -> pd.Series:
    """Expected spend within the horizon without contact: predicted value x P(return)."""
    return frame["predicted_value"] * (1.0 - frame["p_churn"])


def offer_economics(
    frame: pd.DataFrame, uplift: pd.DataFrame | None, params: CampaignParams
) -> dict[str, pd.DataFrame]:
    """Per offer (columns) and customer (rows): incremental P(return), revenue, cost and profit.

    Without uplift estimates (the risk policy) the incremental figures are unknown (NaN) and the
    cost is that of the spend expected without contact.
    """
    offers = list(params.offers)
    nan = pd.DataFrame(np.nan, index=frame.index, columns=offers)
    if uplift is not None:
        missing = [c for o in offers for c in uplift_columns(o) if c not in uplift.columns]
        if missing:
            raise SelectionError(f"uplift estimates lack columns {missing}")
        ret = pd.DataFrame({o: uplift[uplift_columns(o)[0]].to_numpy() for o in offers}, index=frame.index)
        rev = pd.DataFrame({o: uplift[uplift_columns(o)[1]].to_numpy() for o in offers}, index=frame.index)
    else:
        ret, rev = nan, nan
    base = base_revenue(frame).to_numpy()
    spend = rev.fillna(0.0).add(base, axis=0).clip(lower=0.0)
    cost = pd.DataFrame({o: params.offers[o].cost(spend[o]) for o in offers}, index=frame.index)
    profit = rev * params.margin - cost
    return {"uplift_return": ret, "uplift_revenue": rev, "cost": cost, "profit": profit}


@dataclass(frozen=True)
class PolicyChoice:
    """A policy's offer per eligible customer, its priority order and what cut the rest."""

    offer: pd.Series  # offer name or NO_OFFER, indexed like the eligible frame
    priority: pd.Series  # higher = earlier in the list
    counts: dict[str, int]  # candidates, over_quota, over_budget (and not_profitable, ties)


def _cut(
    frame: pd.DataFrame,
    wanted: pd.Series,
    priority: pd.Series,
    cost: pd.Series,
    budget: float,
    params: CampaignParams,
) -> tuple[pd.Series, dict[str, int]]:
    """Keep the wanted customers in priority order within the segment quotas and the budget."""
    order = frame.assign(_p=priority, _cost=cost).loc[wanted.to_numpy()]
    order = order.sort_values(["_p", "customer_id"], ascending=[False, True], kind="stable")
    quota = np.array([params.segment_quotas.get(s, np.inf) for s in order["segment"]], dtype=float)
    within_quota = order.groupby("segment").cumcount().to_numpy() < quota
    spend = np.cumsum(np.where(within_quota, order["_cost"].to_numpy(), 0.0))
    within_budget = within_quota & (spend <= budget + 1e-9)
    kept = pd.Series(False, index=frame.index)
    kept.loc[order.index[within_budget]] = True
    counts = {
        "candidates": int(len(order)),
        "over_quota": int((~within_quota).sum()),
        "over_budget": int(within_quota.sum() - within_budget.sum()),
    }
    return kept, counts


def risk_policy(
    frame: pd.DataFrame, eligible: pd.DataFrame, cost: pd.DataFrame, budget: float, params: CampaignParams
) -> PolicyChoice:
    """Today's ranking: the default offer (or the cheapest allowed) to the most value at stake.

    Customers outside `risk_band` or under `min_value_at_stake` are not contacted.
    """
    low, high = params.risk_band
    value_at_stake = frame["p_churn"] * frame["predicted_value"]
    candidate = frame["p_churn"].between(low, high) & (value_at_stake >= params.min_value_at_stake)
    by_cost = sorted(params.offers, key=lambda o: (o != params.default_offer, params.offers[o].fixed_cost))
    offer = pd.Series(NO_OFFER, index=frame.index, dtype=object)
    for name in reversed(by_cost):  # the preferred allowed offer is applied last
        offer = offer.mask(eligible[name].to_numpy(), name)
    candidate &= offer.ne(NO_OFFER)
    own_cost = pd.Series(
        [cost.at[i, o] if o != NO_OFFER else 0.0 for i, o in offer.items()], index=frame.index, dtype=float
    )
    kept, counts = _cut(frame, candidate, value_at_stake, own_cost, budget, params)
    return PolicyChoice(offer.where(kept, NO_OFFER), value_at_stake, counts)


def uplift_policy(
    frame: pd.DataFrame,
    eligible: pd.DataFrame,
    economics: dict[str, pd.DataFrame],
    budget: float,
    params: CampaignParams,
) -> PolicyChoice:
    """Per customer the allowed offer with the largest positive expected incremental profit.

    Ties (profits within TIE_TOLERANCE) go to the cheaper offer, then to the catalogue's order;
    customers are then taken by that profit, best first, within quotas and the budget.
    """
    profit = economics["profit"].where(eligible.to_numpy())
    cost = economics["cost"]
    offers = list(params.offers)
    best = profit.max(axis=1, skipna=True)
    near_best = profit.ge(best - TIE_TOLERANCE, axis=0) & profit.notna()
    tie_cost = cost.where(near_best.to_numpy())
    offer_pos = np.argmin(np.nan_to_num(tie_cost.to_numpy(), nan=np.inf), axis=1)
    chosen = pd.Series(np.array(offers, dtype=object)[offer_pos], index=frame.index)
    profitable = best.fillna(-np.inf) > 0
    chosen = chosen.where(profitable, NO_OFFER)
    own_cost = pd.Series(cost.to_numpy()[np.arange(len(frame)), offer_pos], index=frame.index).where(
        profitable, 0.0
    )
    kept, counts = _cut(frame, profitable, best.fillna(-np.inf), own_cost, budget, params)
    counts["not_profitable"] = int((~profitable).sum())
    counts["ties"] = int((near_best.sum(axis=1) > 1).loc[kept].sum())
    return PolicyChoice(chosen.where(kept, NO_OFFER), best.fillna(-np.inf), counts)


def assign_control(chosen: pd.DataFrame, campaign: str, share: float) -> np.ndarray:
    """Which of the policy's contacts are held out: per risk decile, the lowest hashes.

    Counts follow the share cumulatively over the deciles, so the whole list's control share is
    within one customer of `share` and each decile's is as close as its size allows.
    """
    control = np.zeros(len(chosen), dtype=bool)
    draw = hash_unit(campaign, chosen["customer_id"])
    seen = held = 0
    for decile in sorted(chosen["risk_decile"].unique()):
        rows = np.flatnonzero(chosen["risk_decile"].to_numpy() == decile)
        seen += len(rows)
        take = int(round(share * seen)) - held
        picked = rows[np.argsort(draw[rows], kind="stable")[: max(take, 0)]]
        control[picked] = True
        held += len(picked)
    return control


def explore(
    frame: pd.DataFrame, eligible: pd.DataFrame, campaign: str, share: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The exploration draw: who explores, the offer drawn, and how many arms each could draw."""
    explored = hash_unit(f"explore|{campaign}", frame["customer_id"]) < share
    pick = hash_unit(f"offer|{campaign}", frame["customer_id"])
    allowed = eligible.to_numpy()
    arms = allowed.sum(axis=1) + 1  # the allowed offers plus no contact
    names = np.array(list(eligible.columns), dtype=object)
    drawn = np.empty(len(frame), dtype=object)
    for row in range(len(frame)):
        options = [NO_OFFER, *names[allowed[row]]]
        drawn[row] = options[int(pick[row] * len(options))]
    return explored, drawn, arms


def propensities(
    offer: np.ndarray, policy_offer: np.ndarray, arms: np.ndarray, exploration: float, control_share: float
) -> np.ndarray:
    """P(the logged offer | customer) under the logging policy (exploration, policy, control)."""
    contacted_by_policy = policy_offer != NO_OFFER
    follow = np.where(
        offer == policy_offer,
        np.where(contacted_by_policy, 1.0 - control_share, 1.0),
        np.where((offer == NO_OFFER) & contacted_by_policy, control_share, 0.0),
    )
    return exploration / arms + (1.0 - exploration) * follow


def select_targets(
    scored: pd.DataFrame,
    params: CampaignParams,
    campaign: str,
    recently_treated: set[str],
    uplift: pd.DataFrame | None = None,
    exploration_share: float | None = None,
) -> tuple[pd.DataFrame, dict[str, object]]:
    """Exclusions, the policy's offers, exploration and control: the campaign's logged rows.

    Args:
        scored: one row per active customer with `SCORED_COLUMNS` (other columns are kept).
        params: the campaign section of params.yaml.
        campaign: the campaign id (seeds the draws).
        recently_treated: customers treated by any campaign within the cooldown.
        uplift: per customer (aligned with `scored`), `uplift_columns(offer)` of every offer; None
            = the cold-start rule applies and the risk policy chooses.
        exploration_share: share of eligible customers whose offer is drawn at random (default:
            params.exploration_share).

    Returns:
        One row per eligible customer (rank 1 = the policy's first choice) with arm, offer,
        policy_offer, risk_offer, propensity, explored, risk_decile, the expected figures of the
        offer (given, or the policy's for hold-outs), and the funnel counts.
    """
    missing = [c for c in SCORED_COLUMNS if c not in scored.columns]
    if missing:
        raise SelectionError(f"scored customers lack columns {missing}")
    if scored["customer_id"].duplicated().any():
        raise SelectionError("scored customers contain duplicate customer ids")
    if uplift is not None and len(uplift) != len(scored):
        raise SelectionError(f"uplift estimates have {len(uplift)} rows for {len(scored)} scored customers")
    share = params.exploration_share if exploration_share is None else exploration_share
    frame = scored.assign(value_at_stake=scored["p_churn"] * scored["predicted_value"])
    reason = exclusion_reasons(frame, params, recently_treated)
    keep = reason.eq("").to_numpy()
    frame = frame.loc[keep].reset_index(drop=True)
    gains = None if uplift is None else uplift.loc[keep].reset_index(drop=True)
    eligible = offer_eligibility(frame, params)
    economics = offer_economics(frame, gains, params)
    budget = params.budget * (1.0 - share)  # the explored contacts spend the rest
    risk = risk_policy(frame, eligible, economics["cost"], budget, params)
    chosen = risk if gains is None else uplift_policy(frame, eligible, economics, budget, params)

    # rank: the policy's contacts first, in its order; then everyone else by the same priority
    order = frame.assign(_in=chosen.offer.ne(NO_OFFER), _p=chosen.priority).sort_values(
        ["_in", "_p", "customer_id"], ascending=[False, False, True], kind="stable"
    )
    frame = frame.loc[order.index].reset_index(drop=True)
    eligible, economics = eligible.loc[order.index], {k: v.loc[order.index] for k, v in economics.items()}
    policy_offer = chosen.offer.loc[order.index].to_numpy()
    frame["policy_offer"] = policy_offer
    frame["risk_offer"] = risk.offer.loc[order.index].to_numpy()
    frame["rank"] = np.arange(1, len(frame) + 1)
    frame["risk_decile"] = risk_deciles(frame["p_churn"], params.risk_deciles)

    explored, drawn, arms = explore(frame, eligible, campaign, share)
    follows = ~explored & (policy_offer != NO_OFFER)
    held = np.zeros(len(frame), dtype=bool)
    held[follows] = assign_control(frame.loc[follows], campaign, params.control_share)
    offer = np.where(explored, drawn, np.where(held, NO_OFFER, policy_offer))
    frame["offer"] = offer
    frame["explored"] = explored
    frame["arm"] = np.where(
        offer != NO_OFFER, TREATMENT, np.where(explored | (policy_offer != NO_OFFER), CONTROL, UNTREATED)
    )
    frame["propensity"] = propensities(offer, policy_offer, arms, share, params.control_share)
    shown = np.where(offer != NO_OFFER, offer, policy_offer)  # a hold-out shows what it would have got
    for column in ("uplift_return", "uplift_revenue"):
        frame[column] = _pick(economics[column], shown)
    frame["expected_profit"] = _pick(economics["profit"], shown)
    frame["expected_cost"] = np.where(offer != NO_OFFER, _pick(economics["cost"], offer), 0.0)
    funnel: dict[str, object] = {
        "scored": int(len(scored)),
        "excluded": {name: int(reason.eq(name).sum()) for name in EXCLUSIONS},
        "eligible": int(len(frame)),
        "policy": RISK_POLICY if gains is None else UPLIFT_POLICY,
        **chosen.counts,
        "selected": int((policy_offer != NO_OFFER).sum()),
        "explored": int(explored.sum()),
        "contacted": int((frame["arm"] == TREATMENT).sum()),
        "control": int((frame["arm"] == CONTROL).sum()),
    }
    return frame, funnel


def _pick(table: pd.DataFrame, offers: np.ndarray) -> np.ndarray:
    """table[row, offers[row]] (NaN where the offer is NO_OFFER)."""
    columns = {name: i for i, name in enumerate(table.columns)}
    position = np.array([columns.get(o, -1) for o in offers], dtype=np.int64)
    values = table.to_numpy(dtype=float)[np.arange(len(table)), np.maximum(position, 0)]
    return np.where(position >= 0, values, np.nan)
