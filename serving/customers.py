"""One customer's history read from the warehouse, and their recommendations and churn score.

Serving reads only the customer's own rows (events, reviews with sentiment, signup date, and the
products they touched), so a request costs a few indexed lookups, not a warehouse scan.

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
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select

from feature_store.events import EventLog
from retention.db.warehouse import WAREHOUSE
from training.churn.dataset import CustomerInputs
from training.scoring import churn_frame, recommend_history

POPULATION_RELATIVE = ("rfm_r", "rfm_f", "rfm_m")  # numeric features ranked over the population


class NotScored(LookupError):
    """A known customer the churn model does not score (no purchase before the online as-of)."""


@dataclass(frozen=True)
class ChurnScore:
    """P(no purchase within the horizon) of one customer and the reasons behind it.

    Attributes:
        customer_id: the customer.
        as_of: the scoring time (the online store's as-of).
        horizon_days: H of the model.
        p_churn: 1 - p_return (`training.scoring.p_churn`).
        reasons: the features whose occlusion moves the score most, most first.
    """

    customer_id: str
    as_of: datetime
    horizon_days: int
    p_churn: float
    reasons: list[str]


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
    )
