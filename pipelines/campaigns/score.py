"""Score every active customer with the champion models: P(churn), reasons, value and products.

Customer features come from the feature store computed at the campaign's as-of (point-in-time
correct, so a rerun or backfill of an old interval scores what was known then).

The champions are loaded by alias from the MLflow registry, so a promotion changes what the next
campaign uses without any code or configuration change. Recommendations are the champion
recommender's top-K over the full catalogue, restricted to active products the customer has not
bought within `recent_purchase_days` unless it is due for reorder (its repurchase interval, learned
from the log, has passed since the customer's last purchase of it), ranked from the customers'
materialised states (one matrix multiply and top-k per batch; see `pipelines/campaigns/state_cache.py`
and `training/scoring.py`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select

from feature_store.events import EventLog
from pipelines.campaigns.explain import predicted_value, value_feature
from pipelines.campaigns.reorder import recent_purchase_mask
from pipelines.campaigns.store import customer_contacts
from retention.db.warehouse import WAREHOUSE
from retention.params import Params
from retention.settings import Settings
from training.recommender.customer_states import CustomerStates
from training.scoring import churn_frame, churn_scores, recommend_states, repeat_of

log = logging.getLogger("retention.campaigns")


class CampaignError(RuntimeError):
    """A campaign cannot be built (no champion, stale features, bad parameters)."""


@dataclass(frozen=True)
class Champions:
    """The serving models and their registry versions."""

    return_model: Any
    return_version: str
    recommender: Any
    recommender_version: str
    extra_versions: dict[str, str] = field(default_factory=dict)  # optional models used (uplift)

    @property
    def versions(self) -> dict[str, str]:
        from training.families import family

        return {
            family("return").registered_name: self.return_version,
            family("recommender").registered_name: self.recommender_version,
        }


def champion_versions(settings: Settings) -> dict[str, str]:
    """The `champion` version of every family a campaign requires, by family (return, recommender).

    Raises:
        CampaignError: a model has no champion yet (train it and run the gate first).
    """
    from mlflow import MlflowClient

    from training.families import FAMILIES
    from training.registry import CHAMPION, alias_version

    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    found: dict[str, str] = {}
    for kind, chosen in FAMILIES.items():
        if not chosen.campaign_requires:
            continue
        version = alias_version(client, chosen.registered_name, CHAMPION)
        if version is None:
            raise CampaignError(
                f"{chosen.registered_name} has no champion: train it and run "
                f"`retention models gate --model {kind}`"
            )
        found[kind] = version
    return found


def load_version(settings: Settings, kind: str, version: str) -> Any:
    """The native model of family `kind` at a registered version (pinned: never the moving alias)."""
    from training.families import family
    from training.registry import load_native

    return load_native(settings.mlflow_tracking_uri, family(kind).registered_name, version)


def load_champions(settings: Settings, versions: dict[str, str] | None = None) -> Champions:
    """Load both champions: the `champion` versions, or the given ones (by family).

    Raises:
        CampaignError: a model has no champion yet (train it and run the gate first).
    """
    versions = versions or champion_versions(settings)
    return Champions(
        load_version(settings, "return", versions["return"]),
        versions["return"],
        load_version(settings, "recommender", versions["recommender"]),
        versions["recommender"],
    )


def active_products(engine: Engine) -> set[str]:
    """Ids of the products on sale (the warehouse catalogue's `active` flag)."""
    table = WAREHOUSE["products"]
    with engine.connect() as connection:
        return set(connection.execute(select(table.c.product_id).where(table.c.active.is_(True))).scalars())


def recommend_products(
    model: Any,
    states: CustomerStates,
    history: EventLog,
    customer_ids: list[str],
    k: int,
    as_of: pd.Timestamp,
    recent_purchase_days: int,
    active: set[str],
    intervals: np.ndarray | None = None,
) -> list[list[str]]:
    """Top-k product ids per customer (best first) over the full catalogue.

    Scores come from the customers' materialised states (`pipelines.campaigns.state_cache`): one
    matrix multiply and top-k per batch (`training.scoring.recommend_states`). Products outside
    `active` and those the customer bought within `recent_purchase_days` are masked, except a
    product due for reorder: one with a repurchase interval (`reorder_intervals`) that has passed
    since the customer last bought it (a durable, without an interval, stays masked). A model with a
    buy-again part adds it from the customers' purchases in `history` at as-of.

    Args:
        model: the recommender the states belong to.
        states: its current customer states (customers without one score by popularity).
        history: the log before as-of (the recent purchases, the repurchase intervals).
        customer_ids: the customers to recommend to.
        k: products per customer.
        as_of: the scoring time.
        recent_purchase_days: how far back a purchase excludes its product.
        active: the products on sale.
        intervals: (n_items,) repurchase interval per model column (`reorder_intervals`), NaN for
            none; None masks every recent purchase, due or not.
    """
    allowed = np.isin(model.index.ids, np.array(sorted(active), dtype=str))
    excluded = recent_purchase_mask(
        history, customer_ids, model.index.ids, as_of, recent_purchase_days, intervals
    )
    repeat = repeat_of(model, history, np.asarray(customer_ids, dtype=str), as_of)
    return recommend_states(model, states, customer_ids, k, allowed, excluded, repeat)


def churn_of(model: Any, history: EventLog, as_of: pd.Timestamp, horizon_days: int, units: list[Any]) -> Any:
    """`churn_scores` of the customers in `units` (lists of ids), the model run once per unit.

    The inputs hold population-relative features, so they are built from the whole history; only
    the model (the expensive part: a rollout per horizon bin, and once more per feature for the
    reason codes) runs, on one unit's rows at a time. A customer's score then depends only on its
    unit, never on what else was scored: the same unit gives the same bits in any shard.
    """
    states = model.states(history, as_of, horizon_days)
    ids = states[0].customer_id.astype(str)
    frames = [
        model.predict_states(
            [s.take(np.flatnonzero(np.isin(ids, np.asarray(unit, dtype=str)))) for s in states], horizon_days
        )
        for unit in units
    ]
    return churn_frame(pd.concat(frames, ignore_index=True))


def score_customers(
    engine: Engine,
    history: EventLog,
    features: pd.DataFrame,
    return_model: Any,
    params: Params,
    as_of: pd.Timestamp,
    units: list[Any] | None = None,
) -> pd.DataFrame:
    """Every active customer with P(churn), reasons, value and contact flags.

    Args:
        engine: the platform database (contact flags).
        history: the warehouse log before as-of.
        features: the feature store's table as of as-of (one row per customer to score).
        return_model: the return model's champion.
        params: params.yaml.
        as_of: the scoring time.
        units: `features`' customer ids in groups, the model run once per group (`churn_of`: how
            a shard scores); None scores everyone the model finds in `history` at once.

    Returns:
        customer_id, p_churn, reasons, predicted_value, segment, recency_days, marketing_consent,
        email (the last two only for exclusions; they are not stored with targets).
    """
    campaign = params.campaign
    value_column = value_feature(campaign.value_days)
    if campaign.value_days not in params.features.windows_days:
        raise CampaignError(
            f"campaign.value_days {campaign.value_days} must be one of features.windows_days "
            f"{params.features.windows_days} (it reads the feature {value_column})"
        )
    if features.empty:
        raise CampaignError(f"no customer has a purchase before {as_of}: nobody to score")
    chosen = features[["customer_id", value_column, "rfm_segment", "recency_days"]]
    churn = (
        churn_scores(return_model, history, as_of, campaign.horizon_days)
        if units is None
        else churn_of(return_model, history, as_of, campaign.horizon_days, units)
    )
    frame = chosen.merge(churn, on="customer_id", how="inner", validate="one_to_one")
    if len(frame) != len(chosen):
        raise CampaignError(f"the return model scored {len(frame)} of {len(chosen)} active customers")
    frame = frame.assign(
        predicted_value=predicted_value(frame[value_column], campaign.horizon_days, campaign.value_days),
        segment=frame["rfm_segment"].fillna("unknown").astype(str),
    )
    contacts = customer_contacts(engine, frame["customer_id"].tolist())
    frame = frame.merge(contacts, on="customer_id", how="left", validate="one_to_one")
    log.info("scored %d active customers as of %s", len(frame), as_of)
    return frame[
        [
            "customer_id",
            "p_churn",
            "reasons",
            "predicted_value",
            "segment",
            "recency_days",
            "marketing_consent",
            "email",
        ]
    ]


def uplift_champion_version(settings: Settings) -> str | None:
    """The uplift family's `champion` version, or None before it has one."""
    from mlflow import MlflowClient

    from training.families import FAMILIES
    from training.registry import CHAMPION, alias_version

    chosen = FAMILIES.get("uplift")
    if chosen is None:
        return None
    return alias_version(
        MlflowClient(tracking_uri=settings.mlflow_tracking_uri), chosen.registered_name, CHAMPION
    )


def _json_value(value: object) -> float | str | None:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return None
    return value if isinstance(value, float | int) else str(value)


def feature_snapshot(features: pd.DataFrame, customer_ids: pd.Series) -> list[dict[str, float | str | None]]:
    """The feature-store row each customer was scored with, as JSON-ready dicts (logged per target)."""
    table = features.set_index("customer_id")
    numeric = table.select_dtypes("number").astype(float).round(6)
    other = table.drop(columns=numeric.columns).astype(object)
    rows = pd.concat([numeric, other], axis=1).reindex(customer_ids.to_numpy())
    return [{str(k): _json_value(v) for k, v in record.items()} for record in rows.to_dict("records")]


def uplift_estimates(
    model: Any, scored: pd.DataFrame, features: pd.DataFrame, params: Params
) -> pd.DataFrame:
    """The uplift champion's per-offer estimates for the scored customers (aligned with `scored`).

    Raises:
        CampaignError: the model does not know an offer of the catalogue (retrain it).
    """
    inputs = scored[["customer_id", "p_churn", "predicted_value", "segment"]].merge(
        features, on="customer_id", how="left", validate="one_to_one", suffixes=("", "_feature")
    )
    missing = sorted(set(params.campaign.offers) - set(model.offers))
    if missing:
        raise CampaignError(f"the uplift champion was trained without offers {missing}: retrain it")
    estimates = model.predict_offers(inputs)
    return estimates.set_index(inputs["customer_id"]).reindex(scored["customer_id"]).reset_index(drop=True)
