"""The API's path parameters and response models (they make the OpenAPI schema that clients and
schemathesis read), and the links responses carry.

Times are `UtcDateTime`: the database keeps naive UTC, and OpenAPI's `date-time` (RFC 3339) needs a
zone, so a naive time is read as UTC and every time is written in UTC with its zone
(`2026-05-01T00:00:00Z`).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Path
from pydantic import AfterValidator, Field

from retention.params import StrictModel

ID_MAX_CHARS = 64  # the warehouse's id columns
CAMPAIGN_ID_MAX_CHARS = 128  # platform_campaigns.campaign_id
PRINTABLE = r"^[^\x00-\x1f\x7f]+$"  # ids never hold control characters (PostgreSQL refuses NUL)

CustomerId = Annotated[
    str, Path(min_length=1, max_length=ID_MAX_CHARS, pattern=PRINTABLE, description="e.g. C0000123")
]
CampaignId = Annotated[str, Path(min_length=1, max_length=CAMPAIGN_ID_MAX_CHARS, pattern=PRINTABLE)]


def as_utc(moment: datetime) -> datetime:
    """The same instant in UTC, with its zone; a naive time is taken to be UTC already (as stored)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


UtcDateTime = Annotated[datetime, AfterValidator(as_utc)]


def download_url(campaign_id: str, fmt: str) -> str:
    """The API path of a campaign's target list in `fmt` (one of `EXPORT_FORMATS`)."""
    return f"/campaigns/{quote(campaign_id, safe='')}/targets.{fmt}"


class ModelRef(StrictModel):
    """The registered model version that produced an answer."""

    name: str
    version: str


class Health(StrictModel):
    status: str = Field(description="ok when the database answers")
    models: dict[str, str | None] = Field(description="champion version last loaded per registered model")


class CampaignSummary(StrictModel):
    """A published campaign, as listed."""

    campaign_id: str
    name: str
    as_of: UtcDateTime
    published_at: UtcDateTime
    horizon_days: int
    n_targets: int
    n_control: int
    control_share: float = Field(description="realised share of the list held out as control")
    segments: dict[str, int] = Field(description="targets per segment")
    model_versions: dict[str, str] = Field(description="registered model -> version used")
    lift: dict[str, Any] | None = Field(description="measured once the horizon has passed; null until then")


class CampaignDetail(CampaignSummary):
    """One campaign with its selection funnel and provenance."""

    funnel: dict[str, Any] = Field(description="scored, excluded by reason, eligible, selected")
    params_hash: str
    content_hash: str
    downloads: dict[str, str] = Field(description="format -> URL of the target list")


class Recommendation(StrictModel):
    rank: int = Field(ge=1)
    product_id: str
    score: float


class Recommendations(StrictModel):
    customer_id: str
    k: int
    model: ModelRef
    recommendations: list[Recommendation]


class Churn(StrictModel):
    customer_id: str
    as_of: UtcDateTime = Field(description="the online store's as-of the score is computed at")
    horizon_days: int
    p_churn: float = Field(ge=0, le=1, description="P(no purchase within horizon_days of as_of)")
    reasons: list[str] = Field(description="return-model features that move the score most, most first")
    feature_version: str
    model: ModelRef


class Reason(StrictModel):
    code: str = Field(description="the return-model feature (reason code)")
    text: str = Field(description="the reason in words, with the customer's own value")


class ChurnRisk(StrictModel):
    """The served churn score with its reasons in words."""

    as_of: UtcDateTime = Field(description="the online store's as-of the score is computed at")
    horizon_days: int
    p_churn: float = Field(ge=0, le=1, description="P(no purchase within horizon_days of as_of)")
    risk_pct: int = Field(ge=0, le=100, description="p_churn as a rounded percentage")
    reasons: list[Reason] = Field(description="most important first")
    feature_version: str
    model: ModelRef


class Rfm(StrictModel):
    """Recency, frequency and monetary quantile scores (1 = worst .. highest_score) and their values."""

    segment: str | None = Field(description="RFM segment named from the R and F scores")
    recency_score: int | None
    frequency_score: int | None
    monetary_score: int | None
    highest_score: int
    recency_days: float | None = Field(description="days since the last purchase")
    window_days: int = Field(description="the window of orders and spend")
    orders: int | None
    spend: float | None = Field(description="EUR")


class Sentiment(StrictModel):
    reviews: int = Field(ge=0)
    rating_mean: float | None = Field(description="mean star rating, 1..5")
    sentiment_mean: float | None = Field(description="mean P(positive) of the review texts")
    tone: str | None = Field(description="negative | mixed | positive")


class FavouriteCategory(StrictModel):
    category: str
    items: int = Field(description="items bought in the category")
    spend: float = Field(description="EUR (lines with a known price)")
    last_purchase: UtcDateTime | None


class ExplainedRecommendation(StrictModel):
    rank: int = Field(ge=1)
    product_id: str
    title: str | None
    category: str | None
    why: str = Field(description='e.g. "bought Wool scarf" or "popular in garden"')
    score: float


class CampaignEntry(StrictModel):
    """One campaign the customer was logged in: what they got and how they responded."""

    campaign_id: str
    as_of: UtcDateTime
    action: str = Field(description="contact | hold out — do not contact | not contacted")
    offer: str | None = Field(description="the offer sent (contacts only)")
    churn_risk_pct: int | None = Field(description="P(churn) at the campaign's as-of, %")
    extra_return_chance_pct: float | None = Field(description="expected incremental P(return), % points")
    expected_profit: float | None = Field(description="EUR")
    lift_measured_on: date
    returned: bool | None = Field(description="bought within the horizon; null until measured")
    revenue: float | None = Field(description="EUR spent within the horizon; null until measured")


class CustomerProfile(StrictModel):
    """One customer as marketing may see them (no contact details)."""

    customer_id: str
    features_as_of: UtcDateTime | None = Field(description="as-of of the online store row; null: none")
    segment: str | None
    rfm: Rfm | None
    tenure_days: float | None
    predicted_value: float | None = Field(description="EUR expected within value_horizon_days")
    value_horizon_days: int
    churn: ChurnRisk | None = Field(description="null: not scored (see notes)")
    sentiment: Sentiment | None
    favourite_categories: list[FavouriteCategory]
    recommendations: list[ExplainedRecommendation]
    recommender: ModelRef | None
    campaigns: list[CampaignEntry] = Field(description="newest first")
    notes: list[str] = Field(description="why a part is empty")


class ModelVersions(StrictModel):
    """Admin view of the registry and of what this process serves."""

    served: dict[str, str | None]
    registry: dict[str, list[dict[str, Any]]]


class Problem(StrictModel):
    detail: str
