"""The API's path parameters and response models (they make the OpenAPI schema that clients and
schemathesis read), and the links responses carry."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Path
from pydantic import Field

from retention.params import StrictModel

ID_MAX_CHARS = 64  # the warehouse's id columns
CAMPAIGN_ID_MAX_CHARS = 128  # platform_campaigns.campaign_id
PRINTABLE = r"^[^\x00-\x1f\x7f]+$"  # ids never hold control characters (PostgreSQL refuses NUL)

CustomerId = Annotated[
    str, Path(min_length=1, max_length=ID_MAX_CHARS, pattern=PRINTABLE, description="e.g. C0000123")
]
CampaignId = Annotated[str, Path(min_length=1, max_length=CAMPAIGN_ID_MAX_CHARS, pattern=PRINTABLE)]


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
    as_of: datetime
    published_at: datetime
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
    as_of: datetime = Field(description="the online store's as-of the score is computed at")
    horizon_days: int
    p_churn: float = Field(ge=0, le=1, description="P(no purchase within horizon_days of as_of)")
    reasons: list[str] = Field(description="return-model features that move the score most, most first")
    feature_version: str
    model: ModelRef


class ModelVersions(StrictModel):
    """Admin view of the registry and of what this process serves."""

    served: dict[str, str | None]
    registry: dict[str, list[dict[str, Any]]]


class Problem(StrictModel):
    detail: str
