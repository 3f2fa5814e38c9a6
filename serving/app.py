"""The retention HTTP API: campaigns and their target lists for marketing, per-customer scores and profiles.

`create_app` builds the FastAPI app from the deployment settings. Every route but `/healthz`,
the OpenAPI schema and the web login needs a token (see `serving.auth`); marketing's read-only
token reads campaigns and scores, the admin token also sees the registry. Customer scores come
from the registry's `champion` models, re-checked at most every `RETENTION_API_MODEL_REFRESH_SECONDS`
(see `serving.models`), and from the customer's own warehouse rows (see `serving.customers`).
Unknown customers and campaigns are 404, bad parameters 422; a missing champion or an online store
that does not match the model is 503 (an operator must act), never a 500. Overload is refused, not
queued: past `RETENTION_API_MAX_CONCURRENCY` requests in flight, or past a request's time budget, the
answer is 503 with `Retry-After` (see `serving.overload`); `/healthz` is exempt and reads cached values.
In front of everything, `serving.security` refuses over-large headers (431) and tokens in URLs (401),
and marks every answer `Cache-Control: no-store` and `nosniff`; a client that keeps presenting wrong
tokens gets 429 with `Retry-After` (`RETENTION_API_AUTH_FAILURES_PER_MINUTE`, see `serving.auth`).
"""

from __future__ import annotations

import gc
import io
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from sqlalchemy import Engine

from feature_store.online_store import open_documents
from pipelines.campaigns.run import EXPORT_FORMATS
from pipelines.campaigns.store import CampaignNotFound, export_csv, export_frame, get_campaign, list_campaigns
from retention.db import create_db_engine
from retention.params import load_params
from retention.paths import adopt_home
from retention.settings import Settings
from serving.auth import REALM, Role, load_tokens, require
from serving.customers import (
    NotScored,
    StaleOnlineStore,
    customer_profile,
)
from serving.health import DatabaseProbe
from serving.models import ChampionModels, NoChampion
from serving.overload import OverloadGuard
from serving.ratelimit import FailureLimiter
from serving.realtime import EventApplier, EventWriter
from serving.results import NoOnlineRow, OverBudget, ServedResults, UnknownCustomer
from serving.schemas import (
    CampaignDetail,
    CampaignId,
    CampaignSummary,
    Churn,
    CustomerId,
    CustomerProfile,
    Health,
    ModelVersions,
    Problem,
    Recommendations,
    download_url,
)
from serving.security import RequestScreen
from serving.settings import ServingSettings

log = logging.getLogger("retention.serving")
API_TITLE = "Retention platform API"
API_VERSION = "1"
DOCS_ASSETS = "/docs-assets"  # Swagger UI and ReDoc files (fastapi-offline's copies)
MAX_RECOMMENDATIONS = 100
DEFAULT_RECOMMENDATIONS = 10
PARQUET_TYPE = "application/vnd.apache.parquet"
HEALTH_PATH = "/healthz"
SCORING_THREADS = 1  # torch intra-op threads of an API process (see the lifespan)

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "missing or invalid token, or a token in the URL"},
    403: {"model": Problem, "description": "the token lacks the role"},
    429: {"model": Problem, "description": "too many wrong tokens from this client: see Retry-After"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "unknown id"}}
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": Problem, "description": "no champion model, or the online store does not match it"}
}


def _engine(request: Request) -> Engine:
    return request.app.state.engine


def _models(request: Request) -> ChampionModels:
    return request.app.state.models


def _results(request: Request) -> ServedResults:
    return request.app.state.results


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    return {
        **{k: row[k] for k in ("campaign_id", "name", "as_of", "published_at", "horizon_days")},
        **{k: row[k] for k in ("n_targets", "n_control", "control_share", "lift")},
        "segments": {str(k): int(v) for k, v in (row["segments"] or {}).items()},
        "model_versions": {str(k): str(v) for k, v in (row["model_versions"] or {}).items()},
    }


def _attachment(campaign_id: str, fmt: str) -> dict[str, str]:
    filename = re.sub(r"[^A-Za-z0-9._-]", "_", campaign_id) + f".{fmt}"
    return {"Content-Disposition": f'attachment; filename="{filename}"'}


def _campaign(engine: Engine, campaign_id: str) -> dict[str, Any]:
    try:
        return get_campaign(engine, campaign_id)
    except CampaignNotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None


def _export(request: Request, campaign_id: str) -> Any:
    params = request.app.state.params
    try:
        return export_frame(
            _engine(request),
            campaign_id,
            risk_deciles=params.campaign.risk_deciles,
            rfm_quantiles=params.features.rfm_quantiles,
        )
    except CampaignNotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None


def _unavailable(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail)


# -- routes -------------------------------------------------------------------------------------

health = APIRouter(tags=["health"])
campaigns = APIRouter(tags=["campaigns"], dependencies=[Depends(require(Role.MARKETING))], responses=ERRORS)
customers = APIRouter(tags=["customers"], dependencies=[Depends(require(Role.MARKETING))], responses=ERRORS)
admin = APIRouter(tags=["admin"], dependencies=[Depends(require(Role.ADMIN))], responses=ERRORS)


@health.get(HEALTH_PATH, response_model=Health, responses={503: {"model": Health}})
async def healthz(request: Request) -> Any:
    """Liveness for the compose health check (no token): the database answers; the served versions.

    On the event loop, not in the worker threads, and from cached values only (`serving.health`), so it
    answers in milliseconds while every worker thread is busy.
    """
    state = "ok" if request.app.state.database_probe.healthy else "database unavailable"
    body = Health(status=state, models=_models(request).served_versions())
    code = status.HTTP_200_OK if state == "ok" else status.HTTP_503_SERVICE_UNAVAILABLE
    return JSONResponse(body.model_dump(), status_code=code)


@campaigns.get("/campaigns", response_model=list[CampaignSummary])
def campaign_list(request: Request) -> list[dict[str, Any]]:
    """Every published campaign, newest as-of first."""
    return [_summary(row) for row in list_campaigns(_engine(request))]


@campaigns.get("/campaigns/{campaign_id}", response_model=CampaignDetail, responses=NOT_FOUND)
def campaign_detail(request: Request, campaign_id: CampaignId) -> dict[str, Any]:
    """One campaign with its selection funnel, hashes and download links."""
    row = _campaign(_engine(request), campaign_id)
    return {
        **_summary(row),
        "funnel": row["funnel"] or {},
        "params_hash": row["params_hash"],
        "content_hash": row["content_hash"],
        "downloads": {fmt: download_url(campaign_id, fmt) for fmt in EXPORT_FORMATS},
    }


@campaigns.get(
    "/campaigns/{campaign_id}/targets.csv",
    response_class=Response,
    responses={**NOT_FOUND, 200: {"content": {"text/csv": {}}, "description": "the marketing export"}},
)
def campaign_csv(request: Request, campaign_id: CampaignId) -> Response:
    """The target list as CSV, rendered now: consent and e-mail are read from the shop at each download,
    e-mail only for consenting customers to contact; formula-like cells neutralised."""
    frame = _export(request, campaign_id)
    return Response(
        export_csv(frame),
        media_type="text/csv; charset=utf-8",
        headers=_attachment(campaign_id, "csv"),
    )


@campaigns.get(
    "/campaigns/{campaign_id}/targets.parquet",
    response_class=Response,
    responses={**NOT_FOUND, 200: {"content": {PARQUET_TYPE: {}}, "description": "the marketing export"}},
)
def campaign_parquet(request: Request, campaign_id: CampaignId) -> Response:
    """The target list as Parquet (same rows and columns as the CSV, rendered now as well)."""
    frame = _export(request, campaign_id)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return Response(buffer.getvalue(), media_type=PARQUET_TYPE, headers=_attachment(campaign_id, "parquet"))


@customers.get(
    "/customers/{customer_id}/recommendations",
    response_model=Recommendations,
    responses={**NOT_FOUND, **UNAVAILABLE},
)
async def customer_recommendations(
    request: Request,
    customer_id: CustomerId,
    k: Annotated[int, Query(ge=1, le=MAX_RECOMMENDATIONS, description="how many products")] = (
        DEFAULT_RECOMMENDATIONS
    ),
    exclude_purchased: Annotated[bool, Query(description="leave out products the customer bought")] = False,
) -> Recommendations:
    """Top-k products the champion recommender picks from the customer's own history (active products only).

    A known customer without any event gets the model's fallback (popularity) ranking. The list is
    the materialised one (`serving.results`), current with the events accepted by `POST /events`;
    one not materialised yet is computed on demand, within the compute budget (else 503).
    """
    results = _results(request)
    try:  # a current list is one key read, answered on the event loop; anything else goes to a thread
        materialised = results.materialised_recommendations(customer_id, k, exclude_purchased)
        if materialised is not None:
            return materialised
        return await run_in_threadpool(results.recommendations, customer_id, k, exclude_purchased)
    except UnknownCustomer:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown customer {customer_id!r}") from None
    except OverBudget as error:
        raise _unavailable(str(error)) from None


@customers.get("/customers/{customer_id}/churn", response_model=Churn, responses={**NOT_FOUND, **UNAVAILABLE})
async def customer_churn(request: Request, customer_id: CustomerId) -> Churn:
    """P(no purchase within the return model's horizon) as of the online store's as-of, with reasons.

    Customers without a purchase before that as-of are not in the scored population: 404 with a
    detail saying so (they are known, but there is nothing to lose yet). The score is the
    materialised one (`serving.results`); one not materialised yet is computed on demand, within
    the compute budget (else 503).
    """
    results = _results(request)
    try:  # as for recommendations: a current answer on the event loop, anything else in a thread
        materialised = results.materialised_churn(customer_id)
        return (
            materialised if materialised is not None else await run_in_threadpool(results.churn, customer_id)
        )
    except UnknownCustomer:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown customer {customer_id!r}") from None
    except NoOnlineRow as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"customer {customer_id!r} {error}") from None
    except NotScored as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"customer {customer_id!r}: {error}") from None
    except (StaleOnlineStore, OverBudget) as error:
        raise _unavailable(str(error)) from None


@customers.get("/customers/{customer_id}/profile", response_model=CustomerProfile, responses=NOT_FOUND)
def customer_profile_route(request: Request, customer_id: CustomerId) -> CustomerProfile:
    """One customer for marketing: segment, RFM scores, tenure, predicted value, churn risk with reasons in
    words, review sentiment, favourite categories, explained recommendations and campaign history.

    No contact details. Parts that cannot be computed (no champion, no purchase yet, a stale online
    store) are empty with a note in `notes`, so the rest is still shown.
    """
    profile = customer_profile(_engine(request), _models(request), request.app.state.params, customer_id)
    if profile is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown customer {customer_id!r}")
    return profile


@admin.get("/admin/models", response_model=ModelVersions)
def model_versions(request: Request) -> ModelVersions:
    """Every registered version with its aliases and gate decision, and the versions this process serves."""
    from training.families import FAMILIES
    from training.registry import versions

    models = _models(request)
    return ModelVersions(
        served=models.served_versions(),
        registry={f.registered_name: versions(models.client, f.registered_name) for f in FAMILIES.values()},
    )


# -- the app ------------------------------------------------------------------------------------


def _no_champion(_: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(error)}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE)


def create_app(settings: Settings | None = None, serving: ServingSettings | None = None) -> FastAPI:
    """The API app for the given settings (default: from the environment).

    Args:
        settings: where the database and the registry are.
        serving: tokens and the model refresh interval.

    Returns:
        The app; the champions are loaded at startup when there are any, else on first use.

    Raises:
        TokensError: no tokens are set or generated (`retention serve` generates them).
        ParamsError: params.yaml is missing or invalid (the profile reads the campaign section).
    """
    from serving.events import events
    from serving.model_health import model_health
    from serving.privacy import privacy
    from serving.web import web

    settings = settings or Settings.from_env()
    adopt_home(settings)  # a moved or copied RETENTION_HOME: MLflow's stored artifact URIs follow it
    serving = serving or ServingSettings.from_env()
    tokens = load_tokens(serving, settings.home)
    params = load_params(settings.params_path)  # the profile's value, RFM scale and list length
    engine = create_db_engine(settings.database_url)
    models = ChampionModels(settings.mlflow_tracking_uri, serving.model_refresh_seconds)
    # materialised answers (RETENTION_ONLINE_STORE: Redis, else the platform database) and real time
    documents = open_documents(settings.online_store_url, engine)
    results = ServedResults(
        engine, documents, models, serving.compute_budget_seconds, serving.model_refresh_seconds
    )
    applier, writer = EventApplier(engine, documents, results), EventWriter(engine)

    probe = DatabaseProbe(engine)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        import torch

        # The models score in several threads of this process beside the event loop (on-demand answers,
        # the event applier): torch's intra-op workers would spin against them for the same cores
        # (measured: a 10-customer rescoring pass took 240 ms with 2 threads on a busy 2-core machine,
        # 20 ms with 1). Parallelism comes from worker processes (RETENTION_API_WORKERS) instead.
        torch.set_num_threads(SCORING_THREADS)
        probe.start()
        for kind in ("return", "recommender"):
            try:
                models.get(kind)
            except NoChampion as error:  # serving campaigns needs no model: start anyway
                log.warning("%s", error)
            except Exception:  # a registry hiccup must not keep the campaigns offline; retried per request
                log.exception("cannot load the %s champion at startup", kind)
        # What is loaded now (modules, models) lives as long as the process: out of the collector's
        # reach, a full collection under load scans only what requests made since (measured: a full
        # collection took 145 ms in a process with MLflow imported, 0.002 ms after the freeze).
        gc.collect()
        gc.freeze()
        yield
        probe.stop()
        writer.close()
        applier.close()
        results.close()
        documents.close()
        engine.dispose()

    # /docs and /redoc with Swagger UI and ReDoc served from the package, not a CDN: they work offline
    app = FastAPIOffline(title=API_TITLE, version=API_VERSION, lifespan=lifespan, static_url=DOCS_ASSETS)
    app.state.settings, app.state.tokens, app.state.engine, app.state.models, app.state.params = (
        settings,
        tokens,
        engine,
        models,
        params,
    )
    app.state.database_probe = probe
    app.state.auth_failures = FailureLimiter(serving.auth_failures_per_minute)
    app.state.results, app.state.events, app.state.event_writer = results, applier, writer
    app.add_exception_handler(NoChampion, _no_champion)
    # outermost: a refused request costs no routing, auth or thread; /healthz bypasses the bound
    app.add_middleware(
        OverloadGuard,
        max_concurrency=serving.max_concurrency,
        timeout_seconds=serving.request_timeout_seconds,
        exempt=(HEALTH_PATH,),
    )
    # added last, so outermost: it also screens and marks what the overload guard answers itself
    app.add_middleware(RequestScreen, is_token=lambda value: tokens.role_of(value) is not None, realm=REALM)
    for router in (health, campaigns, customers, admin, privacy, events, web, model_health):
        app.include_router(router)
    return app
