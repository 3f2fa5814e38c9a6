"""One customer's history read from the warehouse, their recommendations, churn score and profile.

Serving reads only the customer's own rows (events, reviews with sentiment, signup date, and the
products they touched), so a request costs a few indexed lookups, not a warehouse scan. The
profile adds the recommended products' catalogue rows, one count of purchases per product of
their categories (to say "popular in ..."), and the customer's campaign rows. It never reads
contact details.

Churn needs care: the return model's inputs include population-relative RFM quantile scores
(`POPULATION_RELATIVE`), which computed on one customer alone would always be the lowest score.
Those values come from the customer's online-store row instead (computed on the whole population
at the online as-of); every other input is computed from the customer's rows exactly as
`ReturnModel.predict` computes it for the whole warehouse. The model rolls each customer's state
forward over the horizon (bins of w days, had nothing happened). In a rolled bin:
- `rfm_r` is exact: every customer's recency grows by the same amount, so ranks do not move;
- `rfm_f` and `rfm_m` are held at their as-of values. They are exact as long as no order of the
  population leaves the longest feature window (365 days) during the horizon; otherwise the
  population's ranks in later bins are unknown to a per-customer reader, and holding the as-of
  score is the closest value it has (the batch `ReturnModel.predict` may then differ slightly).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select

from feature_store.definitions import feature_version
from feature_store.events import EventLog, read_customer_log
from feature_store.online import read_online
from pipelines.campaigns.explain import (
    explain_recommendations,
    predicted_value,
    reason_in_words,
    sentiment_tone,
    value_feature,
)
from pipelines.campaigns.score import active_products
from pipelines.campaigns.store import (
    CONTACT,
    HOLD_OUT,
    category_bestsellers,
    customer_campaigns,
    product_details,
)
from retention.db.warehouse import WAREHOUSE
from retention.params import Params
from serving.models import ChampionModels, NoChampion, ServedModel
from serving.schemas import (
    CampaignEntry,
    ChurnRisk,
    CustomerProfile,
    ExplainedRecommendation,
    FavouriteCategory,
    ModelRef,
    Reason,
    Rfm,
    Sentiment,
)
from training.churn.dataset import CustomerInputs
from training.scoring import churn_frame, recommend_history

POPULATION_RELATIVE = ("rfm_r", "rfm_f", "rfm_m")  # numeric features ranked over the population
FAVOURITE_CATEGORIES = 3  # categories shown on a profile
NOT_CONTACTED = "not contacted (the policy chose no contact)"


class NotScored(LookupError):
    """A known customer the churn model does not score (no purchase before the online as-of)."""


class StaleOnlineStore(RuntimeError):
    """The online store holds another feature version than the return champion was trained on."""


@dataclass(frozen=True)
class ChurnScore:
    """P(no purchase within the horizon) of one customer and the reasons behind it.

    Attributes:
        customer_id: the customer.
        as_of: the scoring time (the online store's as-of).
        horizon_days: H of the model.
        p_churn: 1 - p_return (`training.scoring.p_churn`).
        reasons: the features whose occlusion moves the score most, most first.
        inputs: the model's tabular inputs at as-of (the values the reasons are about).
    """

    customer_id: str
    as_of: datetime
    horizon_days: int
    p_churn: float
    reasons: list[str]
    inputs: dict[str, float | None] = field(default_factory=dict)


def customer_exists(engine: Engine, customer_id: str) -> bool:
    """Whether the warehouse knows the customer."""
    customers = WAREHOUSE["customers"]
    with engine.connect() as connection:
        found = connection.execute(
            select(customers.c.customer_id).where(customers.c.customer_id == customer_id)
        ).first()
    return found is not None


def recommend(
    model: Any, history: EventLog, customer_id: str, k: int, active: set[str], exclude_purchased: bool
) -> pd.DataFrame:
    """The top-k active products of a recommender for one customer (`training.scoring.recommend_history`).

    Args:
        model: a fitted recommender (SASRecRecommender).
        history: the customer's events (a customer without any gets the model's fallback scores).
        customer_id: the customer.
        k: how many products.
        active: the products that may be recommended; the model's other columns are masked.
        exclude_purchased: also mask the products the customer has bought.

    Returns:
        rank (1 = best), product_id, score; at most k rows (fewer when fewer products are allowed).
    """
    ids = np.asarray(model.index.ids).astype(str)
    excluded = None
    if exclude_purchased:
        bought = history.events.loc[history.events["event_type"] == "purchase", "product_id"]
        columns = np.flatnonzero(np.isin(ids, bought.astype(str).unique()))
        excluded = (np.zeros(len(columns), dtype=np.int64), columns)
    allowed = np.isin(ids, list(active))
    top = recommend_history(model, history, np.array([customer_id]), k, allowed, excluded)
    return top.drop(columns="customer_id")


def _population_value(value: Any) -> float:
    return math.nan if value is None else float(value)


def churn_states(
    model: Any, history: EventLog, as_of: datetime, online_features: dict[str, Any]
) -> list[CustomerInputs]:
    """The return model's rolled inputs of one customer, population-relative values from the online row.

    Args:
        model: the fitted `ReturnModel`.
        history: the customer's log.
        as_of: the online store's as-of (nothing at or after it is read).
        online_features: the customer's online feature vector (computed on the whole population).

    Returns:
        One single-row state per bin covering the model's horizon.

    Raises:
        NotScored: the customer has no purchase before `as_of`.
    """
    states = model.states(history, as_of)
    if len(states[0]) == 0:
        raise NotScored(f"customer has no purchase before {as_of:%Y-%m-%d}: not in the scored population")
    relative = {
        name: _population_value(online_features.get(name))
        for name in POPULATION_RELATIVE
        if name in states[0].tabular
    }
    return [replace(state, tabular=state.tabular.assign(**relative)) for state in states]


def churn_score(
    model: Any, history: EventLog, as_of: datetime, online_features: dict[str, Any]
) -> ChurnScore:
    """One customer's churn probability within the model's horizon, with reason codes (see the module doc).

    Raises:
        NotScored: the customer has no purchase before `as_of`.
    """
    states = churn_states(model, history, as_of, online_features)
    row = churn_frame(model.predict_states(states)).iloc[0]
    return ChurnScore(
        customer_id=str(row["customer_id"]),
        as_of=as_of,
        horizon_days=int(model.horizon_days),
        p_churn=float(row["p_churn"]),
        reasons=list(row["reasons"]),
        inputs={str(k): _finite(v) for k, v in states[0].tabular.iloc[0].items()},
    )


def served_churn(
    engine: Engine, models: ChampionModels, customer_id: str, online: dict[str, Any] | None
) -> tuple[ChurnScore, ServedModel]:
    """The return champion's churn score of a known customer at the online store's as-of.

    Args:
        engine: the platform database.
        models: the served champions.
        customer_id: a customer the warehouse knows.
        online: the customer's online-store row (`read_online`).

    Raises:
        NotScored: no online row, or no purchase before its as-of.
        NoChampion: no return model is promoted.
        StaleOnlineStore: the online store's feature version is not the champion's.
    """
    if online is None:
        raise NotScored("no purchase before the online store's as-of: no churn score")
    served = models.get("return")
    expected = feature_version(served.model.params.features)
    if online["feature_version"] != expected:
        raise StaleOnlineStore(
            f"the online store holds feature version {online['feature_version']}, {served.name} "
            f"v{served.version} was trained on {expected}: refresh the online store"
        )
    history = read_customer_log(engine, customer_id, before=online["as_of"])
    return churn_score(served.model, history, online["as_of"], online["features"]), served


# -- the profile ------------------------------------------------------------------------------------


def _finite(value: Any) -> float | None:
    """A number as a float, None for null, NaN, infinities and non-numbers (JSON has no NaN)."""
    if value is None or isinstance(value, bool | str):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _percent(share: Any) -> float | None:
    """A share as a percentage rounded to one decimal (None when unknown)."""
    number = _finite(share)
    return None if number is None else round(number * 100, 1)


def _whole(value: Any) -> int | None:
    number = _finite(value)
    return None if number is None else int(round(number))


def favourite_categories(history: EventLog, top: int = FAVOURITE_CATEGORIES) -> list[FavouriteCategory]:
    """The categories a customer bought most from (by items, then spend), with their last purchase."""
    events = history.events
    lines = events.loc[events["event_type"] == "purchase"].merge(
        history.products[["product_id", "category"]], on="product_id", how="left"
    )
    lines = lines.loc[lines["category"].notna()]
    if lines.empty:
        return []
    grouped = (
        lines.assign(spend=lines["quantity"] * lines["price"])
        .groupby("category")
        .agg(items=("quantity", "sum"), spend=("spend", "sum"), last=("ts", "max"))
        .reset_index()
        .sort_values(["items", "spend", "category"], ascending=[False, False, True], kind="stable")
    )
    top_rows = grouped.head(top)
    return [
        FavouriteCategory(
            category=str(category),
            items=int(items),
            spend=round(_finite(spend) or 0.0, 2),
            last_purchase=last.to_pydatetime(),
        )
        for category, items, spend, last in zip(
            top_rows["category"].tolist(),
            top_rows["items"].tolist(),
            top_rows["spend"].tolist(),
            pd.to_datetime(top_rows["last"]).tolist(),
            strict=True,
        )
    ]


def _rfm(features: dict[str, Any], params: Params) -> Rfm:
    window = max(params.features.windows_days)
    segment = features.get("rfm_segment")
    return Rfm(
        segment=str(segment) if segment else None,
        recency_score=_whole(features.get("rfm_r")),
        frequency_score=_whole(features.get("rfm_f")),
        monetary_score=_whole(features.get("rfm_m")),
        highest_score=params.features.rfm_quantiles,
        recency_days=_finite(features.get("recency_days")),
        window_days=window,
        orders=_whole(features.get(f"frequency_{window}d")),
        spend=_finite(features.get(f"monetary_{window}d")),
    )


def _sentiment(features: dict[str, Any]) -> Sentiment:
    mean = _finite(features.get("sentiment_mean"))
    return Sentiment(
        reviews=_whole(features.get("review_count")) or 0,
        rating_mean=_finite(features.get("rating_mean")),
        sentiment_mean=mean,
        tone=sentiment_tone(mean) if mean is not None else None,
    )


def _churn(
    engine: Engine, models: ChampionModels, customer_id: str, online: dict[str, Any] | None, params: Params
) -> tuple[ChurnRisk | None, str | None]:
    if online is None:  # the profile's first note says why
        return None, None
    try:
        score, served = served_churn(engine, models, customer_id, online)
    except (NotScored, NoChampion, StaleOnlineStore) as error:
        return None, f"churn risk: {error}"
    values = {**online["features"], **score.inputs}
    return (
        ChurnRisk(
            as_of=score.as_of,
            horizon_days=score.horizon_days,
            p_churn=score.p_churn,
            risk_pct=int(round(score.p_churn * 100)),
            reasons=[
                Reason(code=code, text=reason_in_words(code, values, params.features.rfm_quantiles))
                for code in score.reasons
            ],
            feature_version=str(online["feature_version"]),
            model=ModelRef(name=served.name, version=served.version),
        ),
        None,
    )


def _recommendations(
    engine: Engine, models: ChampionModels, customer_id: str, history: EventLog, k: int
) -> tuple[list[ExplainedRecommendation], ModelRef | None, str | None]:
    try:
        served = models.get("recommender")
    except NoChampion as error:
        return [], None, f"recommendations: {error}"
    top = recommend(served.model, history, customer_id, k, active_products(engine), exclude_purchased=False)
    ids = top["product_id"].astype(str).tolist()
    catalogue = pd.concat(
        [product_details(engine, ids), history.products[["product_id", "category", "title"]]],
        ignore_index=True,
    )
    categories = set(catalogue.loc[catalogue["product_id"].isin(ids), "category"].dropna())
    explained = explain_recommendations(
        [customer_id], [ids], history.events, catalogue, category_bestsellers(engine, None, categories)
    )[0]
    return (
        [
            ExplainedRecommendation(
                rank=int(rank),
                product_id=p.product_id,
                title=p.title,
                category=p.category,
                why=p.why,
                score=float(sc),
            )
            for rank, sc, p in zip(top["rank"], top["score"], explained, strict=True)
        ],
        ModelRef(name=served.name, version=served.version),
        None,
    )


def _campaigns(engine: Engine, customer_id: str) -> list[CampaignEntry]:
    actions = {"treatment": CONTACT, "control": HOLD_OUT}
    return [
        CampaignEntry(
            campaign_id=row["campaign_id"],
            as_of=row["as_of"],
            action=actions.get(row["arm"], NOT_CONTACTED),
            offer=row["offer"],
            churn_risk_pct=_whole((_finite(row["p_churn"]) or 0.0) * 100),
            extra_return_chance_pct=_percent(row["uplift_return"]),
            expected_profit=_finite(row["expected_profit"]),
            lift_measured_on=row["lift_measured_on"],
            returned=row["returned"],
            revenue=_finite(row["revenue"]),
        )
        for row in customer_campaigns(engine, customer_id)
    ]


def customer_profile(
    engine: Engine, models: ChampionModels, params: Params, customer_id: str
) -> CustomerProfile | None:
    """Everything marketing may see about one customer (no contact details), or None if unknown.

    Scores come from the served champions (`served_churn`, `recommend`), the segment, RFM scores,
    tenure, value and review sentiment from the online store, the favourite categories from the
    customer's own log, and the campaign history from the platform's campaign rows. A part that
    cannot be computed (no champion, no purchase yet, a stale online store) is left empty with a
    note saying why; the rest is still shown.
    """
    if not customer_exists(engine, customer_id):
        return None
    online = read_online(engine, customer_id)
    features: dict[str, Any] = dict(online["features"]) if online else {}
    history = read_customer_log(engine, customer_id)
    notes: list[str] = []
    churn, note = _churn(engine, models, customer_id, online, params)
    notes += [note] if note else []
    recommendations, recommender, note = _recommendations(
        engine, models, customer_id, history, params.campaign.recommendations
    )
    notes += [note] if note else []
    if online is None:
        notes.insert(0, "no purchase before the online store's as-of: no segment, scores or value yet")
    campaign = params.campaign
    return CustomerProfile(
        customer_id=customer_id,
        features_as_of=online["as_of"] if online else None,
        segment=str(features["rfm_segment"]) if features.get("rfm_segment") else None,
        rfm=_rfm(features, params) if online else None,
        tenure_days=_finite(features.get("tenure_days")),
        predicted_value=(
            round(
                predicted_value(
                    features.get(value_feature(campaign.value_days)),
                    campaign.horizon_days,
                    campaign.value_days,
                ),
                2,
            )
            if online
            else None
        ),
        value_horizon_days=campaign.horizon_days,
        churn=churn,
        sentiment=_sentiment(features) if online else None,
        favourite_categories=favourite_categories(history),
        recommendations=recommendations,
        recommender=recommender,
        campaigns=_campaigns(engine, customer_id),
        notes=notes,
    )
