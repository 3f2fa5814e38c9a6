"""The platform's decision tables: model promotions (audit) and published retention campaigns.

Campaign targets hold pseudonymous customer ids, scores, reasons and recommendations only: contact
details stay in the customer table and are joined at export time, for consenting customers only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from retention.db.base import ID, Base


class ModelDecision(Base):
    """Audit log of the registry: every gate decision, manual promotion and rollback."""

    __tablename__ = "platform_model_decisions"

    decision_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    registered_name: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[str] = mapped_column(String(32))  # the version the decision is about
    action: Mapped[str] = mapped_column(String(32))  # promoted | rejected | manual_promote | rollback
    champion_before: Mapped[str | None] = mapped_column(String(32))
    champion_after: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)  # both sides' holdout metrics and the checks
    actor: Mapped[str] = mapped_column(String(64))  # "gate" or the person's name
    decided_at: Mapped[datetime] = mapped_column(DateTime)


class ModelLock(Base):
    """One row per registered model; promotions update it first, which serialises them."""

    __tablename__ = "platform_model_locks"

    registered_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(128))
    locked_at: Mapped[datetime | None] = mapped_column(DateTime)


class Campaign(Base):
    """A published retention-campaign target list (id = name + as-of; a rerun replaces it)."""

    __tablename__ = "platform_campaigns"

    campaign_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    as_of: Mapped[datetime] = mapped_column(DateTime, index=True)
    horizon_days: Mapped[int] = mapped_column(Integer)  # return window the lift is measured over
    published_at: Mapped[datetime] = mapped_column(DateTime)
    n_targets: Mapped[int] = mapped_column(Integer)
    n_control: Mapped[int] = mapped_column(Integer)
    control_share: Mapped[float] = mapped_column(Float)  # realised share of the list held out
    segments: Mapped[dict[str, int]] = mapped_column(JSON)  # {segment: targets}
    model_versions: Mapped[dict[str, str]] = mapped_column(JSON)  # {registered model: version}
    params_hash: Mapped[str] = mapped_column(String(64))  # of the campaign section of params.yaml
    content_hash: Mapped[str] = mapped_column(
        String(64)
    )  # of the target rows (a rerun that matches is a no-op)
    funnel: Mapped[dict[str, Any]] = mapped_column(JSON)  # scored, excluded by reason, eligible, selected
    exports: Mapped[dict[str, str]] = mapped_column(JSON)  # {format: path}
    lift: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # measured once the horizon has passed
    policy: Mapped[str] = mapped_column(String(16), default="risk")  # uplift | risk (the cold-start rule)
    summary: Mapped[dict[str, Any]] = mapped_column(
        JSON, default=dict
    )  # offer mix, costs, expected profit with interval, why the policy was chosen


class CampaignTarget(Base):
    """One eligible customer of a campaign, as logged for unbiased estimates later.

    `arm`: treatment (contacted with `offer`), control (held out at random: must not be contacted)
    or untreated (the policy chose no contact and no exploration draw changed it; not exported).
    `offer` is what the customer got (`none` = no contact), `propensity` the logged probability of
    exactly that offer, so every later estimate (lift per offer, off-policy values, the uplift
    model's training set) can weight by it. `features` are the inputs the policy saw at as-of.
    `returned` / `revenue` are filled when the horizon has passed.
    """

    __tablename__ = "platform_campaign_targets"

    campaign_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ID, primary_key=True)
    arm: Mapped[str] = mapped_column(String(16))  # treatment | control
    rank: Mapped[int] = mapped_column(Integer)  # 1 = most value at stake
    segment: Mapped[str] = mapped_column(String(32))
    risk_decile: Mapped[int] = mapped_column(Integer)  # 1 = lowest P(churn) of the list .. 10
    p_churn: Mapped[float] = mapped_column(Float)
    predicted_value: Mapped[float] = mapped_column(Float)
    value_at_stake: Mapped[float] = mapped_column(Float)
    reasons: Mapped[list[str]] = mapped_column(JSON)  # the return model's top features
    recommendations: Mapped[list[str]] = mapped_column(JSON)  # product ids, best first
    offer: Mapped[str] = mapped_column(String(32), default="none")  # the offer given; none = no contact
    policy_offer: Mapped[str] = mapped_column(String(32), default="none")  # what the policy chose
    risk_offer: Mapped[str] = mapped_column(String(32), default="none")  # what the risk ranking would give
    propensity: Mapped[float] = mapped_column(Float, default=1.0)  # P(offer | customer) when logged
    explored: Mapped[bool] = mapped_column(Boolean, default=False)  # offer drawn at random
    uplift_return: Mapped[float | None] = mapped_column(Float)  # expected incremental P(return)
    uplift_revenue: Mapped[float | None] = mapped_column(Float)  # expected incremental revenue
    expected_profit: Mapped[float | None] = mapped_column(Float)  # uplift_revenue x margin - cost
    features: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # model inputs at as-of
    returned: Mapped[bool | None] = mapped_column(Boolean)  # purchased within the horizon
    revenue: Mapped[float | None] = mapped_column(Float)  # spend within the horizon


class Erasure(Base):
    """Audit of a right-to-erasure request: when, by whom, how many customers, rows removed per store.

    Holds no personal data: no customer id, e-mail or digest of either.
    """

    __tablename__ = "platform_erasures"

    erasure_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    erased_at: Mapped[datetime] = mapped_column(DateTime)
    actor: Mapped[str] = mapped_column(String(64))
    n_customers: Mapped[int] = mapped_column(Integer)
    removed: Mapped[dict[str, int]] = mapped_column(JSON)  # {store: rows or files removed}


class MonitoringRun(Base):
    """One monitoring run of a model at an as-of (a rerun for the same as-of replaces it).

    Drift compares the population the model scores at `as_of` with the one it was measured on at
    training (`reference_as_of`); realised quality scores its past campaign predictions whose
    horizon has passed. No customer id is stored.
    """

    __tablename__ = "platform_monitoring"

    registered_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    as_of: Mapped[datetime] = mapped_column(DateTime, primary_key=True)
    version: Mapped[str] = mapped_column(String(32))  # the champion monitored
    reference_as_of: Mapped[datetime] = mapped_column(DateTime)  # its training run's cutoff
    n_reference: Mapped[int] = mapped_column(Integer)
    n_current: Mapped[int] = mapped_column(Integer)
    feature_drift: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # per feature: psi, test, p, status
    psi_max: Mapped[float | None] = mapped_column(Float)
    prediction_drift: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # P(return): psi, ks, status
    realised: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # campaign, metrics vs training, status
    status: Mapped[str] = mapped_column(String(16))  # ok | warn | alert
    retrain: Mapped[bool] = mapped_column(Boolean)  # a threshold was crossed: the retrain Asset was due
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    computed_at: Mapped[datetime] = mapped_column(DateTime)
