"""Typed, validated view of `params.yaml`, the single home of pipeline and model parameters."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

# A simulated product's repurchase interval is at least this many days and each rebuy moves by at most
# this share of it, so a customer's successive rebuys fall on distinct days (pipelines/simulate/days.py).
MIN_REPURCHASE_DAYS = 7.0
MAX_REPURCHASE_JITTER = 0.4


class StrictModel(BaseModel):
    """Frozen, and a misspelt or unknown key fails validation (params sections, API models)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class SegmentParams(StrictModel):
    """One latent customer type of the shop simulator."""

    share: float = Field(gt=0, le=1)
    visits_per_week: float = Field(gt=0, le=7)
    weekly_churn_hazard: float = Field(gt=0, lt=1)
    satisfaction: tuple[float, float]

    @field_validator("satisfaction")
    @classmethod
    def _positive_beta(cls, value: tuple[float, float]) -> tuple[float, float]:
        if min(value) <= 0:
            raise ValueError("satisfaction Beta parameters must both be > 0")
        return value


def _weights(value: dict[str, float], what: str) -> dict[str, float]:
    if not value or min(value.values()) < 0 or sum(value.values()) <= 0:
        raise ValueError(f"{what} needs at least one positive weight and none negative")
    return value


class SegmentResponseParams(StrictModel):
    """How one latent segment of the simulated shop reacts to a retention contact."""

    persuade: float = Field(ge=0, le=1)
    responsiveness: float = Field(ge=0)


class OfferResponseParams(StrictModel):
    """What one offer does to the simulated customers who get it."""

    strength: float = Field(ge=0)
    visit_boost: float = Field(ge=0)
    purchase_lift: float = Field(ge=0)
    discount: float = Field(ge=0, lt=1)
    annoy: float = Field(ge=0, le=1)


class ResponseParams(StrictModel):
    """The simulated shop's response to retention campaigns (pipelines/simulate/response.py)."""

    postpone_days: float = Field(gt=0)
    annoy_satisfaction: float = Field(gt=0, le=1)
    segments: dict[Literal["loyal", "at_risk", "lapsed"], SegmentResponseParams]
    offers: dict[str, OfferResponseParams] = Field(min_length=1)

    @field_validator("offers")
    @classmethod
    def _offer_names(cls, value: dict[str, OfferResponseParams]) -> dict[str, OfferResponseParams]:
        bad = [name for name in value if name == NO_OFFER or not re.fullmatch(r"[a-z][a-z0-9_]*", name)]
        if bad:
            raise ValueError(
                f"response offer names must be lowercase identifiers other than '{NO_OFFER}': {bad}"
            )
        return value

    @model_validator(mode="after")
    def _probabilities(self) -> ResponseParams:
        # one uniform draw per contact decides annoyed | persuaded | neither, so they must fit in [0, 1];
        # a purchase rate raised by the lift must stay a probability
        too_big = [
            f"{offer} x {segment}"
            for offer, o in self.offers.items()
            for segment, s in self.segments.items()
            if o.annoy + s.persuade * o.strength > 1 or o.purchase_lift * s.responsiveness > 1
        ]
        if too_big:
            raise ValueError(
                "annoy + persuade x strength and purchase_lift x responsiveness must be at most 1: "
                + ", ".join(too_big)
            )
        return self


class RepurchaseParams(StrictModel):
    """Repurchase cycles of consumables in the simulated shop (pipelines/simulate/days.py)."""

    days: dict[str, float]
    spread: float = Field(ge=0)
    jitter: float = Field(ge=0, le=MAX_REPURCHASE_JITTER)
    habit_share: float = Field(ge=0, le=1)
    probability: float = Field(ge=0, le=1)

    @field_validator("days")
    @classmethod
    def _long_enough(cls, value: dict[str, float]) -> dict[str, float]:
        short = sorted(name for name, days in value.items() if days < MIN_REPURCHASE_DAYS)
        if short:
            raise ValueError(f"repurchase days must be at least {MIN_REPURCHASE_DAYS:g}: {', '.join(short)}")
        return value


class DriftParams(StrictModel):
    """A drift injected into the simulated shop from one day on, to test monitoring (pipelines/simulate)."""

    from_day: int = Field(ge=0)  # first simulation day with the drift (day 0 is `start`)
    price_factor: float = Field(default=1.0, gt=0)  # list prices are multiplied by this from that day
    new_segment_share: float = Field(default=0.0, ge=0, le=1)  # share of later signups in the new segment
    new_segment_visit_factor: float = Field(default=3.0, gt=0)  # their visit rate x this
    new_segment_category: str | None = None  # their favourite category (None: the least popular one)


class SimulateParams(StrictModel):
    """Parameters of `retention simulate` (see params.yaml for the meaning of each)."""

    customers: int = Field(ge=1)
    days: int = Field(ge=1)
    seed: int = Field(ge=0)
    start: date
    products: int = Field(ge=1)
    prior_signup_days: int = Field(ge=0)
    chunk_days: int = Field(ge=1)
    segments: dict[Literal["loyal", "at_risk", "lapsed"], SegmentParams]
    satisfaction_hazard_effect: float = Field(ge=0)
    activity_heterogeneity: float = Field(gt=0)
    decline_days: float = Field(gt=0)
    weekday_factors: tuple[float, float, float, float, float, float, float]
    hour_weights: list[float] = Field(min_length=24, max_length=24)
    promo_day_rate: float = Field(ge=0, le=1)
    promo_discount: float = Field(ge=0, lt=1)
    promo_visit_boost: float = Field(ge=0)
    promo_cart_boost: float = Field(ge=1)
    views_per_session: float = Field(ge=1)
    view_gap_seconds: float = Field(gt=0)
    favourite_category_share: float = Field(ge=0, le=1)
    popularity_skew: float = Field(ge=1)
    cart_rate: float = Field(gt=0, le=1)
    purchase_rate: float = Field(gt=0, le=1)
    extra_quantity_mean: float = Field(ge=0)
    review_rate: float = Field(ge=0, le=1)
    rating_noise: float = Field(ge=0)
    sentiment_noise: float = Field(ge=0)
    sentiment_cutoffs: tuple[float, float]
    review_delay_hours: tuple[float, float]
    consent_rate: float = Field(ge=0, le=1)
    countries: dict[str, float]
    categories: dict[str, float]
    price_median: dict[str, float]
    price_spread: float = Field(ge=0)
    inactive_product_share: float = Field(ge=0, lt=1)
    response: ResponseParams
    repurchase: RepurchaseParams | None = None  # None: no cycles (shops stored before they existed)
    drift: DriftParams | None = None  # None: no drift (the default); see pipelines/simulate/world.py

    @field_validator("countries", "categories")
    @classmethod
    def _check_weights(cls, value: dict[str, float], info: ValidationInfo) -> dict[str, float]:
        return _weights(value, str(info.field_name))

    @model_validator(mode="after")
    def _consistent(self) -> SimulateParams:
        shares = sum(s.share for s in self.segments.values())
        if abs(shares - 1) > 1e-6:
            raise ValueError(f"segment shares must sum to 1, got {shares:g}")
        missing = sorted(set(self.categories) - set(self.price_median))
        if missing:
            raise ValueError(f"price_median has no entry for categories: {', '.join(missing)}")
        if self.products < len(self.categories):
            raise ValueError("products must be at least the number of categories")
        if set(self.response.segments) != set(self.segments):
            raise ValueError("response.segments must name the same segments as segments")
        unknown = sorted(set(self.repurchase.days) - set(self.categories)) if self.repurchase else []
        if unknown:
            raise ValueError(f"repurchase.days names unknown categories: {', '.join(unknown)}")
        drift_category = self.drift.new_segment_category if self.drift else None
        if drift_category is not None and drift_category not in self.categories:
            raise ValueError(f"drift.new_segment_category names an unknown category: {drift_category}")
        return self


class PlausibleParams(StrictModel):
    """Plausible source values: ingest refuses a file with others, extraction quarantines a batch."""

    earliest_date: date
    future_days: int = Field(ge=0)
    max_text_chars: int = Field(ge=1)


class IngestParams(StrictModel):
    """Parameters of `retention ingest`."""

    default_event_type: Literal["view", "cart", "purchase"]
    placeholder_item: str = Field(min_length=1)
    max_reported_rows: int = Field(ge=1)
    plausible: PlausibleParams


class NullShares(StrictModel):
    """Warning-level null shares tolerated in optional columns."""

    price: float = Field(ge=0, le=1)
    order_id: float = Field(ge=0, le=1)
    review_text: float = Field(ge=0, le=1)


class ExtractParams(StrictModel):
    """Parameters of the extraction DAG and its validation suites."""

    lateness_hours: int = Field(ge=0)
    volume_window: int = Field(ge=1)
    volume_min_history: int = Field(ge=1)
    volume_band: tuple[float, float]
    price_max: float = Field(gt=0)
    quantity_max: int = Field(ge=1)
    max_null_share: NullShares
    quarantine_max_rows: int = Field(ge=1)
    plausible: PlausibleParams

    @model_validator(mode="after")
    def _band(self) -> ExtractParams:
        low, high = self.volume_band
        if not 0 <= low < 1 < high:
            raise ValueError(f"volume_band must satisfy 0 <= low < 1 < high, got {list(self.volume_band)}")
        return self


class FeatureParams(StrictModel):
    """Parameters of the feature store."""

    windows_days: list[int] = Field(min_length=1)
    trend_days: int = Field(ge=1)
    rfm_quantiles: int = Field(ge=2, le=10)
    sequence_length: int = Field(ge=1)
    horizon_days: int = Field(ge=1)
    training_cutoffs: int = Field(ge=1)
    history_days: int = Field(ge=1)
    activity_days: int = Field(ge=1)
    discount_tolerance: float = Field(ge=0, lt=1)

    @model_validator(mode="after")
    def _windows(self) -> FeatureParams:
        if min(self.windows_days) < 1 or len(set(self.windows_days)) != len(self.windows_days):
            raise ValueError("windows_days must be distinct positive day counts")
        if max(self.windows_days) > self.history_days or 2 * self.trend_days > self.history_days:
            raise ValueError("history_days must cover the longest window and twice trend_days")
        if self.activity_days > self.history_days:
            raise ValueError("history_days must cover activity_days")
        return self


class SentimentParams(StrictModel):
    """Parameters of the review sentiment model."""

    positive_min_rating: int = Field(ge=1, le=5)
    negative_max_rating: int = Field(ge=1, le=5)
    holdout_share: float = Field(gt=0, lt=1)
    regularisation: float = Field(gt=0)
    min_reviews: int = Field(ge=2)
    batch_size: int = Field(ge=1)
    seed: int = Field(ge=0)

    @model_validator(mode="after")
    def _labels(self) -> SentimentParams:
        if self.negative_max_rating >= self.positive_min_rating:
            raise ValueError("negative_max_rating must be below positive_min_rating")
        return self


class TrainerParams(StrictModel):
    """The Lightning `Trainer` shared by every model (see training/trainer.py)."""

    accelerator: Literal["auto", "cpu", "gpu"]
    devices: int = Field(ge=1)
    strategy: Literal["auto", "ddp", "ddp_spawn"]
    precision: Literal["32-true", "bf16-mixed", "16-mixed"]
    max_epochs: int = Field(ge=1)
    patience: int = Field(ge=1)
    seed: int = Field(ge=0)
    # defaults keep models saved before these keys loadable (their `training` section lacks them)
    threads: int | Literal["auto"] = Field(default="auto")
    # auto: the trainings running now on this host (`training.threads.training_slot`)
    concurrent_trainings: int | Literal["auto"] = Field(default=1)
    dataloader_workers: int = Field(default=0, ge=0)

    @field_validator("threads", "concurrent_trainings")
    @classmethod
    def _positive_or_auto(cls, value: int | str, info: ValidationInfo) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"{info.field_name} must be 'auto' or at least 1")
        return value


class DPParams(StrictModel):
    """DP-SGD of the return model's networks (training/churn/privacy.py, Opacus)."""

    enabled: bool = False
    target_epsilon: float = Field(default=3.0, gt=0)
    delta: float | None = Field(default=None, gt=0, lt=1)  # None: 1 / training customers
    max_grad_norm: float = Field(default=1.0, gt=0)


class ReturnModelParams(StrictModel):
    """The return / churn model (training/churn)."""

    batch_size: int = Field(ge=1)
    learning_rate: float = Field(gt=0)
    reason_codes: int = Field(ge=1)
    weight_decay: float = Field(ge=0)
    bin_days: int = Field(ge=1)
    cutoff_stride: int = Field(ge=1)
    max_cutoffs: int = Field(ge=1)
    max_examples: int = Field(ge=1)
    validation_share: float = Field(gt=0, lt=1)
    sequence_length: int = Field(ge=1)
    hidden_size: int = Field(ge=1)
    sequence_size: int = Field(ge=1)
    event_embedding: int = Field(ge=1)
    dropout: float = Field(ge=0, lt=1)
    ensemble: int = Field(ge=1)
    refit: bool
    reliability_bins: int = Field(ge=2)
    baseline_window_share: float = Field(gt=0, le=1)
    baseline_cutoffs: int = Field(ge=1)
    boosting_iterations: int = Field(ge=1)
    boosting_learning_rate: float = Field(gt=0)
    boosting_max_depth: int = Field(ge=1)
    dp: DPParams = Field(default_factory=DPParams)  # default: models saved before DP stay loadable

    @model_validator(mode="after")
    def _dp_without_refit(self) -> ReturnModelParams:
        # the refit trains on more rows (another sampling rate): its budget is not planned
        if self.dp.enabled and self.refit:
            raise ValueError("dp.enabled needs refit: false")
        return self


class SASRecParams(StrictModel):
    """The sequential transformer (training/recommender/sasrec/)."""

    max_length: int = Field(ge=2)
    hidden_size: int = Field(ge=1)
    blocks: int = Field(ge=1)
    heads: int = Field(ge=1)
    feedforward_size: int = Field(ge=1)
    dropout: float = Field(ge=0, lt=1)
    init_std: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    softmax: Literal["full", "sampled"]
    negatives: int = Field(ge=1)
    targets_ahead: int = Field(ge=1)
    text: Literal["none", "init", "complement"]
    mf_weight: float = Field(ge=0)
    popularity_weight: float = Field(ge=0)
    mf_weights: list[float] = Field(default_factory=list)
    popularity_weights: list[float] = Field(default_factory=list)
    knn_weight: float = Field(ge=0)
    knn_weights: list[float] = Field(default_factory=list)
    repeat_weight: float = Field(default=0.0, ge=0)
    repeat_weights: list[float] = Field(default_factory=list)
    tuning_users: int = Field(ge=1)
    max_epochs: int = Field(ge=1)
    # the final fit starts from the tuning fit's weights (False: from scratch, as before this key)
    warm_start: bool = False

    @field_validator("mf_weights", "popularity_weights", "knn_weights", "repeat_weights")
    @classmethod
    def _grid(cls, value: list[float]) -> list[float]:
        if any(w < 0 for w in value):
            raise ValueError("blend weights must be >= 0")
        return sorted(set(value))

    @model_validator(mode="after")
    def _heads(self) -> SASRecParams:
        if self.hidden_size % self.heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be a multiple of heads ({self.heads})")
        return self


class MFParams(StrictModel):
    """Implicit-feedback matrix factorisation, alternating least squares (training/recommender/mf.py)."""

    factors: int = Field(ge=1)
    regularisation: float = Field(gt=0)
    alpha: float = Field(gt=0)
    iterations: int = Field(ge=1)
    init_std: float = Field(gt=0)
    seed: int = Field(ge=0)


class ItemKNNParams(StrictModel):
    """Item-based nearest neighbours (training/recommender/baselines.py)."""

    neighbours: int = Field(ge=1)
    shrinkage: float = Field(ge=0)


class BuyAgainParams(StrictModel):
    """The buy-again score: the personal baseline and the recommender's part (training/recommender/repeat.py)."""

    event_types: list[Literal["view", "cart", "purchase"]] = Field(min_length=1)
    half_life_days: float = Field(gt=0)
    half_life_days_grid: list[float] = Field(default_factory=list)
    not_due_weight: float = Field(ge=0, le=1)
    min_repeats: int = Field(ge=1)
    default_gap_days: float = Field(gt=0)
    tuning_users: int = Field(ge=1)

    @field_validator("half_life_days_grid")
    @classmethod
    def _positive(cls, value: list[float]) -> list[float]:
        if any(w <= 0 for w in value):
            raise ValueError("half-lives must be > 0")
        return sorted(set(value))


class RecommenderParams(StrictModel):
    """The recommenders (training/recommender)."""

    batch_size: int = Field(ge=1)
    learning_rate: float = Field(gt=0)
    event_types: list[Literal["view", "cart", "purchase"]] = Field(min_length=1)
    collapse_repeats: bool
    text_batch_size: int = Field(ge=1)
    sasrec: SASRecParams
    mf: MFParams
    item_knn: ItemKNNParams
    buy_again: BuyAgainParams


class EvaluationParams(StrictModel):
    """The offline evaluation protocol (../docs/EVALUATION.md)."""

    ks: list[int] = Field(min_length=1)
    exclude_seen: bool


class GateParams(StrictModel):
    """The promotion rule of one registered model."""

    primary: str
    min_gain: float = Field(ge=0)
    secondary: list[str]
    tolerance: float = Field(ge=0)
    max_brier: float | None = Field(default=None, gt=0, le=1)


class PromotionParams(StrictModel):
    """The champion/challenger gate (training/registry.py)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, serialize_by_alias=True)

    return_: GateParams = Field(alias="return")
    recommender: GateParams
    uplift: GateParams
    min_score_std: float = Field(ge=0)
    max_latency_ms: float = Field(gt=0)
    latency_customers: int = Field(ge=1)

    def for_family(self, family: str) -> GateParams:
        """The rule of a model family (its section here is spelt as the family)."""
        rule: GateParams = getattr(self, section_field(family, type(self)))
        return rule


NO_OFFER = "none"  # the control arm: no contact


class OfferParams(StrictModel):
    """One treatment of the offer catalogue: what it costs and who may get it."""

    fixed_cost: float = Field(ge=0)
    order_share: float = Field(ge=0, lt=1)
    min_predicted_value: float = Field(ge=0)
    segments: list[str]

    def cost(self, revenue: float | Any) -> float | Any:
        """The offer's cost for a customer who spends `revenue` within the horizon."""
        return self.fixed_cost + self.order_share * revenue


class ColdStartParams(StrictModel):
    """When the uplift model may not yet choose offers."""

    min_outcomes: int = Field(ge=0)
    min_campaigns: int = Field(ge=0)
    exploration_share: float = Field(ge=0, le=1)


class CampaignParams(StrictModel):
    """The weekly retention campaign (pipelines/campaigns)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    schedule: str
    max_feature_age_hours: int = Field(ge=0)
    horizon_days: int = Field(ge=1)
    risk_band: tuple[float, float]
    value_days: int = Field(ge=1)
    min_value_at_stake: float = Field(ge=0)
    cooldown_days: int = Field(ge=0)
    lapsed_days: int = Field(ge=1)
    internal_email_domains: list[str]
    internal_id_prefixes: list[str]
    budget: float = Field(gt=0)
    segment_quotas: dict[str, int]
    control_share: float = Field(gt=0, lt=1)
    control_tolerance: float = Field(ge=0, lt=1)
    risk_deciles: int = Field(ge=1)
    recommendations: int = Field(ge=1)
    recent_purchase_days: int = Field(ge=0)
    lift_confidence: float = Field(gt=0, lt=1)
    margin: float = Field(gt=0, le=1)
    exploration_share: float = Field(ge=0, le=1)
    default_offer: str
    loop_weeks: int = Field(ge=0)
    # Scoring split by a hash of the customer id (pipelines/campaigns/shards.py); the list is the same.
    shards: int = Field(1, ge=1, le=64)
    scoring_unit: int = Field(1024, ge=1)  # active customers per bucket (what a model scores at once)
    cold_start: ColdStartParams
    offers: dict[str, OfferParams] = Field(min_length=1)

    @field_validator("offers")
    @classmethod
    def _offer_names(cls, value: dict[str, OfferParams]) -> dict[str, OfferParams]:
        bad = [name for name in value if name == NO_OFFER or not re.fullmatch(r"[a-z][a-z0-9_]*", name)]
        if bad:
            raise ValueError(f"offer names must be lowercase identifiers other than '{NO_OFFER}': {bad}")
        return value

    @model_validator(mode="after")
    def _default_offer_known(self) -> CampaignParams:
        if self.default_offer not in self.offers:
            raise ValueError(f"default_offer '{self.default_offer}' is not in offers {sorted(self.offers)}")
        return self

    @field_validator("risk_band")
    @classmethod
    def _band(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= value[0] <= value[1] <= 1:
            raise ValueError("risk_band must be [low, high] with 0 <= low <= high <= 1")
        return value

    @property
    def max_contacts(self) -> int:
        """The most customers one list may contact within the budget (at the cheapest offer)."""
        cheapest = min(offer.fixed_cost for offer in self.offers.values())
        return int(self.budget // cheapest) if cheapest > 0 else 2**31 - 1


class UpliftBlendParams(StrictModel):
    """Ours: per arm, a weighted mean of an S-learner and an interaction logistic model (training/uplift)."""

    s_learning_rate: float = Field(gt=0)
    s_l2: float = Field(ge=0)
    logistic_c: float = Field(gt=0)
    alphas: list[float] = Field(min_length=1)
    interaction_scales: list[float] = Field(min_length=1)

    @field_validator("alphas")
    @classmethod
    def _shares(cls, value: list[float]) -> list[float]:
        if any(not 0 <= a <= 1 for a in value):
            raise ValueError("alphas must lie in [0, 1]")
        return sorted(set(value))

    @field_validator("interaction_scales")
    @classmethod
    def _scales(cls, value: list[float]) -> list[float]:
        if any(s < 0 for s in value):
            raise ValueError("interaction_scales must be >= 0")
        return sorted(set(value))


class UpliftNetParams(StrictModel):
    """The multi-treatment network (training/uplift/net.py)."""

    hidden_size: int = Field(ge=1)
    head_size: int = Field(ge=1)
    dropout: float = Field(ge=0, lt=1)
    learning_rate: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    batch_size: int = Field(ge=1)
    max_epochs: int = Field(ge=1)
    patience: int = Field(ge=1)
    validation_share: float = Field(gt=0, lt=1)
    propensity_head: bool
    propensity_weight: float = Field(ge=0)


class UpliftParams(StrictModel):
    """The uplift learners of `retention backtest --task uplift` and benchmarks/uplift_hillstrom.py."""

    learner: str = Field(min_length=1)
    seed: int = Field(ge=0)
    n_jobs: int = Field(ge=1)
    trees: int = Field(ge=1)
    leaves: int = Field(ge=2)
    min_leaf_rows: int = Field(ge=1)
    learning_rate: float = Field(gt=0)
    l2: float = Field(ge=0)
    inner_folds: int = Field(ge=2)
    campaign_min_leaf_rows: int = Field(ge=1)
    blend: UpliftBlendParams
    net: UpliftNetParams


class PrivacyParams(StrictModel):
    """Retention periods of personal and raw data, enforced by the housekeeping task (pipelines/privacy)."""

    raw_events_days: int = Field(ge=1)
    quarantine_days: int = Field(ge=1)
    staging_days: int = Field(ge=1)
    exports_days: int = Field(ge=1)


class OperationsParams(StrictModel):
    """How Airflow runs the platform's tasks (every task is idempotent, so retrying one is safe)."""

    retries: int = Field(ge=0)
    retry_delay_seconds: int = Field(ge=1)
    max_retry_delay_seconds: int = Field(ge=1)
    task_timeout_minutes: int = Field(ge=1)
    training_timeout_minutes: int = Field(ge=1)


class MonitoringParams(StrictModel):
    """Drift and realised-quality checks of the champion return model (pipelines/monitoring)."""

    psi_bins: int = Field(default=10, ge=2)
    psi_warn: float = Field(default=0.1, gt=0)
    psi_alert: float = Field(default=0.25, gt=0)
    pvalue: float = Field(default=0.001, gt=0, lt=1)
    min_rows: int = Field(default=200, ge=2)
    alert_features: int = Field(default=1, ge=1)
    max_auc_drop: float = Field(default=0.05, ge=0)
    max_brier_rise: float = Field(default=0.03, ge=0)
    exclude_features: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ordered(self) -> MonitoringParams:
        if self.psi_alert < self.psi_warn:
            raise ValueError("monitoring.psi_alert must be at least psi_warn")
        return self


class Params(StrictModel):
    """All of params.yaml. A model family's section is spelt as the family (`return`, `recommender`)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, serialize_by_alias=True)

    simulate: SimulateParams
    ingest: IngestParams
    extract: ExtractParams
    features: FeatureParams
    sentiment: SentimentParams
    training: TrainerParams
    return_: ReturnModelParams = Field(alias="return")
    recommender: RecommenderParams
    evaluation: EvaluationParams
    promotion: PromotionParams
    campaign: CampaignParams
    uplift: UpliftParams
    privacy: PrivacyParams
    operations: OperationsParams
    monitoring: MonitoringParams = Field(default_factory=MonitoringParams)  # pipelines/monitoring

    @model_validator(mode="after")
    def _raw_events_cover_features(self) -> Params:
        # housekeeping must not delete events the features still read
        if self.privacy.raw_events_days < self.features.history_days:
            raise ValueError(
                f"privacy.raw_events_days ({self.privacy.raw_events_days}) must be at least "
                f"features.history_days ({self.features.history_days})"
            )
        return self


def saved_params(raw: dict[str, Any], needed: tuple[str, ...]) -> Params:
    """The parameters a saved model was trained with, validating only the sections it needs.

    A model file outlives params.yaml's schema: sections added (or changed) after the model was
    saved must not make it unloadable, so only `needed` sections are validated and the others
    are left out.

    Args:
        raw: the params dictionary stored with the model.
        needed: the sections the model reads after loading.

    Raises:
        ParamsError: a needed section is missing or invalid.
    """
    raw = {LEGACY_SECTIONS.get(name, name): value for name, value in raw.items()}
    sections: dict[str, BaseModel] = {}
    for name in needed:
        field_name = section_field(name)
        if name not in raw:
            raise ParamsError(f"the saved model's parameters lack the {name!r} section")
        section_type = Params.model_fields[field_name].annotation
        assert isinstance(section_type, type) and issubclass(section_type, BaseModel)
        try:
            sections[field_name] = section_type.model_validate(raw[name])
        except ValidationError as error:
            raise ParamsError(f"the saved model's {name!r} parameters are invalid: {error}") from None
    return Params.model_construct(None, **sections)


LEGACY_SECTIONS = {"return_model": "return"}  # section names of models saved by earlier versions


def section_field(section: str, model: type[BaseModel] | None = None) -> str:
    """The attribute of a params.yaml section (`return` -> `return_`) in `model` (default: `Params`).

    Raises:
        ParamsError: no such section.
    """
    for name, field in (model or Params).model_fields.items():
        if (field.alias or name) == section:
            return name
    raise ParamsError(f"params.yaml has no section {section!r}")


def params_sections(params: Params, sections: Iterable[str]) -> dict[str, Any]:
    """The named sections of `params` as plain data, keyed by their params.yaml spelling."""
    fields = {section_field(section) for section in sections}
    return params.model_dump(mode="json", include=fields)


class ParamsError(ValueError):
    """params.yaml is missing, unreadable or invalid; the message names the offending keys."""


def load_params(path: str | Path) -> Params:
    """Read and validate a params file.

    Args:
        path: the YAML file (normally params.yaml at the project root).

    Returns:
        The validated parameters.

    Raises:
        ParamsError: the file is missing, is not YAML, or a key is unknown, missing or out of range.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: parameters file not found (set RETENTION_PARAMS)") from None
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML: {error}") from None
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in error.errors()
        )
        raise ParamsError(f"{path}: invalid parameters: {problems}") from None
