"""The `campaign.targets` Great Expectations suite: what a list must satisfy before it is published.

Thresholds that depend on the run (the control share band, the list's size cap, the deciles)
reach the suite as `$PARAMETER`s, so the committed suite never changes with params.yaml.
"""

from __future__ import annotations

from typing import Any

import great_expectations.expectations as gxe
import pandas as pd

from pipelines.campaigns.select import ARMS, EXPORTED_ARMS
from retention.params import NO_OFFER, CampaignParams

SUITE_NAME = "campaign.targets"


def campaign_expectations() -> list[Any]:
    """Unique consenting customers, probabilities in [0, 1], arms, offers with their propensities,
    deciles, control share, contacts within budget, products and reasons for every listed customer."""
    return [
        gxe.ExpectColumnValuesToNotBeNull(column="customer_id"),
        gxe.ExpectColumnValuesToBeUnique(column="customer_id"),
        gxe.ExpectColumnSumToBeBetween(
            column="is_contacted", min_value=0, max_value={"$PARAMETER": "max_contacts"}
        ),
        gxe.ExpectColumnValuesToBeInSet(column="offer", value_set={"$PARAMETER": "offers"}),
        gxe.ExpectColumnValuesToNotBeNull(column="propensity"),
        gxe.ExpectColumnValuesToBeBetween(column="propensity", min_value=0.0, max_value=1.0, strict_min=True),
        gxe.ExpectColumnValuesToNotBeNull(column="p_churn"),
        gxe.ExpectColumnValuesToBeBetween(column="p_churn", min_value=0.0, max_value=1.0),
        gxe.ExpectColumnValuesToBeBetween(column="value_at_stake", min_value=0.0),
        gxe.ExpectColumnValuesToBeInSet(column="arm", value_set=list(ARMS)),
        gxe.ExpectColumnValuesToBeBetween(
            column="risk_decile", min_value=1, max_value={"$PARAMETER": "risk_deciles"}
        ),
        gxe.ExpectColumnValuesToBeInSet(column="marketing_consent", value_set=[True]),
        gxe.ExpectColumnMeanToBeBetween(
            column="is_control",
            min_value={"$PARAMETER": "control_share_min"},
            max_value={"$PARAMETER": "control_share_max"},
        ),
        gxe.ExpectColumnValuesToBeBetween(column="n_recommendations", min_value=1),
        gxe.ExpectColumnValuesToBeBetween(column="n_reasons", min_value=1),
    ]


def campaign_suites() -> dict[str, list[Any]]:
    """The suites of this package (for `retention suites`)."""
    return {SUITE_NAME: campaign_expectations()}


def validation_frame(targets: pd.DataFrame, consent: pd.Series) -> pd.DataFrame:
    """The targets with the columns the suite checks: consent now, control flag, list lengths.

    The control share is checked over the policy's own contacts (the explored rows have their
    own, logged, draw); lists are checked on the rows marketing receives.

    Args:
        targets: the staged list.
        consent: marketing_consent indexed by customer_id, read from the shop's customers at validation.
    """
    policy_rows = (targets["policy_offer"] != NO_OFFER) & ~targets["explored"].astype(bool)  # policy_contacts
    exported = targets["arm"].isin(EXPORTED_ARMS)
    return targets.assign(
        marketing_consent=targets["customer_id"].map(consent).fillna(False).astype(bool),
        is_control=(targets["offer"] == NO_OFFER).astype(float).where(policy_rows),
        is_contacted=(targets["offer"] != NO_OFFER).astype(int),
        n_recommendations=targets["recommendations"].map(len).where(exported),
        n_reasons=targets["reasons"].map(len).where(exported),
    )[
        [
            "customer_id",
            "offer",
            "propensity",
            "is_contacted",
            "p_churn",
            "value_at_stake",
            "arm",
            "risk_decile",
            "marketing_consent",
            "is_control",
            "n_recommendations",
            "n_reasons",
        ]
    ]


def policy_contacts(targets: pd.DataFrame) -> int:
    """How many rows the control share is checked over: the policy's own (not explored) contacts."""
    return int(((targets["policy_offer"] != NO_OFFER) & ~targets["explored"].astype(bool)).sum())


def suite_parameters(params: CampaignParams, n_targets: int) -> dict[str, Any]:
    """Values of the suite's $PARAMETERs for a list of `n_targets`.

    The control-share band is the configured tolerance, widened by one customer's share on
    small lists (a list of 7 cannot hold exactly 10 % control).
    """
    slack = params.control_tolerance + (1.0 / n_targets if n_targets else 1.0)
    return {
        "max_contacts": params.max_contacts,
        "offers": [NO_OFFER, *params.offers],
        "risk_deciles": params.risk_deciles,
        "control_share_min": max(0.0, params.control_share - slack),
        "control_share_max": min(1.0, params.control_share + slack),
    }
