"""The cold-start rule: may the uplift model choose offers yet, given the campaign log?

The log itself (feature_store.campaign_log) holds every eligible customer of every published
campaign as a randomised row; lift.py fills in the outcomes once the horizon has passed.
"""

from __future__ import annotations

import pandas as pd

from retention.params import CampaignParams


def cold_start_reason(logged: pd.DataFrame, has_model: bool, params: CampaignParams) -> str | None:
    """Why the uplift model may not choose offers yet (None when it may)."""
    rule = params.cold_start
    campaigns = logged["campaign_id"].nunique() if len(logged) else 0
    if not has_model:
        return "no uplift model is champion yet (train one with `retention train --model uplift`)"
    if len(logged) < rule.min_outcomes or campaigns < rule.min_campaigns:
        return (
            f"only {len(logged)} randomised outcomes from {campaigns} mature campaign(s); the uplift "
            f"model chooses offers from {rule.min_outcomes} outcomes of {rule.min_campaigns} campaigns "
            "(campaign.cold_start)"
        )
    return None
