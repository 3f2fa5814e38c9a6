"""Server-rendered pages for marketing: log in with a token, list campaigns, open one, download its list,
open a customer's profile.

Plain HTML from Jinja2 templates, no JavaScript. The login form checks the token and keeps it in
an HttpOnly, SameSite=Strict cookie (Secure over HTTPS), so the download buttons can link straight
to the API's export routes. Pages without a valid cookie redirect to the login form.

The login and logout forms accept posts from our own pages only (`serving.security.is_same_origin`:
the browser's `Origin`, else `Referer`, must name this host; a post with neither is refused), so no
other site can log a visitor in with its own token or out. For that the pages' Referrer-Policy is
`same-origin`: under `no-referrer` a browser sends `Origin: null` even on our own form posts. Wrong
tokens, in the form or in a cookie, count towards the client's limit (`serving.auth.authenticate`).

A campaign page shows the policy (uplift, or the cold-start risk rule) with the summary's
explanation, contacts and hold-outs, the offer mix, cost, expected extra returns and profit with
their intervals, the measured lift overall and per offer once the horizon has passed, and the top
rows of the export (without e-mail addresses), rendered at each view: a customer whose consent was
withdrawn in the shop shows as not to be contacted at once. Figures come from
`platform_campaigns.summary` (`pipelines.campaigns.summary.summarise`) and `lift`
(`pipelines.campaigns.lift.measure_lift`), all optional: a campaign published before offers has
summary `{}` and a lift without `per_offer`. Counts and the offer mix come from the target rows
themselves (`campaign_overview`).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from pipelines.campaigns.run import EXPORT_FORMATS
from pipelines.campaigns.store import (
    EXPORT_DESCRIPTIONS,
    CampaignNotFound,
    campaign_overview,
    export_frame,
    get_campaign,
    list_campaigns,
)
from retention.quality import DATA_DOCS_SITE
from serving.auth import COOKIE_NAME, GRANTS, Role, TooManyFailures, authenticate, too_many_failures
from serving.customers import customer_profile
from serving.schemas import CampaignId, CustomerId, download_url
from serving.security import is_same_origin

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
COOKIE_MAX_AGE_SECONDS = 8 * 60 * 60  # a working day; then log in again
LOGIN, CAMPAIGNS = "/ui/login", "/ui/campaigns"
PREVIEW_ROWS = 20  # top rows of the export shown on a campaign page
PREVIEW_COLUMNS = [  # the export's columns a marketer reads first (never the e-mail address)
    "rank",
    "customer_id",
    "action",
    "offer",
    "churn_risk_pct",
    "risk_decile_meaning",
    "extra_return_chance_pct",
    "expected_profit_eur",
    "reasons",
    "recommended_products",
]
POLICIES = {
    "uplift": "uplift: each customer gets the offer (or no contact) with the largest expected extra profit",
    "risk": "risk (cold-start rule): the default offer goes to the most value at stake, until the uplift "
    "model has enough randomised history",
}
SUMMARY_NOTES = ("hold_out_note", "budget_note", "interval_note")  # sentences shown under the figures
SUMMARY_SHOWN = (  # summary keys the page shows in their own place (or from the target rows)
    "policy",
    "policy_reason",
    "cold_start",
    "offer_mix",
    "arms",
    "offers",
    "expected_cost",
    "incremental_profit",
    "incremental_returns",
    *SUMMARY_NOTES,
)
# Nothing but the page itself: no scripts at all, styles inline, forms post back to us only. Our URLs
# (campaign and customer ids) go to no other site; our own forms carry their Origin (see the docstring).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
CROSS_ORIGIN = (
    "This form only accepts posts from this site's own pages (the browser sent no Origin or Referer "
    "naming this site). Open the login page of this site and try again."
)

web = APIRouter(prefix="/ui", include_in_schema=False)


def lift_text(lift: dict[str, Any] | None) -> str:
    """A campaign's measured lift for the table: "pending" until measured, else the lift and its interval.

    The fields are those `pipelines.campaigns.lift.lift_estimate` stores.
    """
    if not lift:
        return "pending"
    interval = ""
    if lift["ci_low"] is not None and lift["ci_high"] is not None:
        interval = f" [{lift['ci_low']:+.3f}, {lift['ci_high']:+.3f}]"
    return "n/a (an empty arm)" if lift["lift"] is None else f"{lift['lift']:+.3f}{interval}"


def euros_text(amount: Any) -> str:
    """An amount in EUR for a page ("-" when unknown)."""
    if amount is None or not isinstance(amount, int | float):
        return "-"
    return f"€{amount:,.2f}"


def _interval(raw: Any) -> tuple[float | None, float | None]:
    if isinstance(raw, list | tuple) and len(raw) == 2 and all(isinstance(v, int | float) for v in raw):
        return float(raw[0]), float(raw[1])
    return None, None


def _estimate(summary: dict[str, Any], key: str, confidence: float) -> dict[str, Any] | None:
    value = summary.get(key)
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    low, high = _interval(summary.get(f"{key}_interval"))
    return {"estimate": float(value), "low": low, "high": high, "confidence": confidence}


def summary_view(summary: dict[str, Any] | None, confidence: float) -> dict[str, Any]:
    """The parts of a campaign's `summary` (`pipelines.campaigns.summary.summarise`) the page shows.

    Robust to `{}` or null (campaigns published before offers) and to missing keys.

    Args:
        summary: the campaign row's summary.
        confidence: the level of its intervals (params.campaign.lift_confidence).

    Returns:
        cost (EUR or None); profit and returns ({"estimate", "low", "high", "confidence"} or
        None); reason (why the policy, or None); notes (the summary's other sentences); other
        (the remaining scalar keys, shown as they are).
    """
    summary = summary or {}
    cost = summary.get("expected_cost")
    return {
        "cost": cost if isinstance(cost, int | float) else None,
        "profit": _estimate(summary, "incremental_profit", confidence),
        "returns": _estimate(summary, "incremental_returns", confidence),
        "reason": summary.get("policy_reason") or None,
        "notes": [summary[k] for k in SUMMARY_NOTES if isinstance(summary.get(k), str) and summary[k]],
        "other": {
            k: v
            for k, v in summary.items()
            if k not in SUMMARY_SHOWN and not k.endswith("_interval") and not isinstance(v, dict | list)
        },
    }


def _with_interval(estimate: dict[str, Any] | None, show: Any) -> str:
    if not estimate or estimate.get("estimate") is None:
        return "not estimated"
    text = show(estimate["estimate"])
    if estimate.get("low") is not None and estimate.get("high") is not None:
        level = (
            f"{estimate['confidence']:.0%} " if isinstance(estimate.get("confidence"), int | float) else ""
        )
        text += f" ({level}interval {show(estimate['low'])} to {show(estimate['high'])})"
    return text


def profit_text(estimate: dict[str, Any] | None) -> str:
    """Expected profit with its interval: "€1,234.00 (95% interval €800.00 to €1,650.00)"."""
    return _with_interval(estimate, euros_text)


def returns_text(estimate: dict[str, Any] | None) -> str:
    """Expected extra returning customers with its interval: "12.3 (95% interval 4.1 to 20.5)"."""
    return _with_interval(estimate, lambda v: f"{v:,.1f}")


def offer_lifts(lift: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Measured lift per offer ({} until measured, and for campaigns measured before offers).

    Returns:
        {offer: {"returned": lift text, "revenue": EUR lift text, "n": customers who got it}}
        from `lift["per_offer"]` (`pipelines.campaigns.lift.offer_lifts`).
    """
    per_offer = (lift or {}).get("per_offer")
    if not isinstance(per_offer, dict):
        return {}
    shown = {}
    for offer, figures in per_offer.items():
        if not isinstance(figures, dict):
            continue
        returned, revenue = figures.get("returned"), figures.get("revenue")
        shown[str(offer)] = {
            "returned": lift_text(returned) if isinstance(returned, dict) and "lift" in returned else "n/a",
            "revenue": revenue_lift_text(revenue) if isinstance(revenue, dict) else "n/a",
            "n": figures.get("n"),
        }
    return shown


def revenue_lift_text(lift: dict[str, Any]) -> str:
    """A revenue lift per customer in EUR with its interval ("n/a" when undefined)."""
    if lift.get("lift") is None:
        return "n/a"
    text = f"{lift['lift']:+,.2f} EUR"
    if lift.get("ci_low") is not None and lift.get("ci_high") is not None:
        text += f" [{lift['ci_low']:+,.2f}, {lift['ci_high']:+,.2f}]"
    return text


def cell_text(value: Any) -> str:
    """An export cell for a page: blank for missing values."""
    if value is None or (isinstance(value, float) and value != value):  # NaN
        return ""
    return str(value)


TEMPLATES.env.filters["lift"] = lift_text
TEMPLATES.env.filters["euros"] = euros_text
TEMPLATES.env.filters["profit"] = profit_text
TEMPLATES.env.filters["returns"] = returns_text
TEMPLATES.env.filters["cell"] = cell_text


def _page(
    request: Request, template: str, context: dict[str, Any], code: int = status.HTTP_200_OK
) -> Response:
    response = TEMPLATES.TemplateResponse(request, template, context, status_code=code)
    response.headers.update(SECURITY_HEADERS)
    return response


def _role(request: Request) -> Role | None:
    """The role of the login cookie (None: no valid one); 429 for a client with too many wrong tokens."""
    token = request.cookies.get(COOKIE_NAME)
    if not token:
        return None
    try:
        return authenticate(request, token)
    except TooManyFailures as error:
        raise too_many_failures(error) from None


def _refused(request: Request, error: str, code: int, headers: dict[str, str] | None = None) -> Response:
    response = _page(request, "login.html", {"error": error}, code)
    response.headers.update(headers or {})
    return response


def _to_login() -> RedirectResponse:
    return RedirectResponse(LOGIN, status_code=status.HTTP_303_SEE_OTHER)


@web.get("", response_class=HTMLResponse)
def home() -> RedirectResponse:
    return RedirectResponse(CAMPAIGNS, status_code=status.HTTP_303_SEE_OTHER)


@web.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> Response:
    return _page(request, "login.html", {"error": None})


@web.post("/login", response_class=HTMLResponse)
def login(request: Request, token: Annotated[str, Form(max_length=512)]) -> Response:
    """Check the token; on success keep it in the session cookie and go to the campaign list.

    403 for a post from another site (or one that does not say where it comes from), 429 (with
    `Retry-After`) for a client that has presented too many wrong tokens within the last minute.
    """
    if not is_same_origin(request):
        return _refused(request, CROSS_ORIGIN, status.HTTP_403_FORBIDDEN)
    try:
        role = authenticate(request, token.strip())
    except TooManyFailures as error:
        wait = {"Retry-After": str(error.retry_after)}
        message = f"Too many wrong tokens: try again in {error.retry_after} seconds."
        return _refused(request, message, status.HTTP_429_TOO_MANY_REQUESTS, wait)
    if role is None or Role.MARKETING not in GRANTS[role]:
        return _refused(request, "That token is not valid.", status.HTTP_401_UNAUTHORIZED)
    response = RedirectResponse(CAMPAIGNS, status_code=status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        COOKIE_NAME,
        token.strip(),
        max_age=COOKIE_MAX_AGE_SECONDS,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@web.post("/logout", response_class=HTMLResponse)
def logout(request: Request) -> Response:
    """Forget the session cookie (403 for a post from another site, which must not log anyone out)."""
    if not is_same_origin(request):
        return _refused(request, CROSS_ORIGIN, status.HTTP_403_FORBIDDEN)
    response = _to_login()
    response.delete_cookie(COOKIE_NAME, path="/")
    return response


@web.get("/campaigns", response_class=HTMLResponse)
def campaigns_page(request: Request) -> Response:
    """The campaign table: id, as-of, size, segments, control share, lift or "pending", downloads."""
    if _role(request) is None:
        return _to_login()
    rows = list_campaigns(request.app.state.engine)
    for row in rows:
        row["downloads"] = {fmt: download_url(row["campaign_id"], fmt) for fmt in EXPORT_FORMATS}
    return _page(request, "campaigns.html", {"campaigns": rows})


@web.get("/campaigns/{campaign_id}", response_class=HTMLResponse)
def campaign_page(request: Request, campaign_id: CampaignId) -> Response:
    """One campaign: policy, contacts and hold-outs, offer mix, money, lift, top targets, funnel, downloads."""
    if _role(request) is None:
        return _to_login()
    try:
        row = get_campaign(request.app.state.engine, campaign_id)
    except CampaignNotFound as error:
        return _page(request, "not_found.html", {"message": str(error)}, status.HTTP_404_NOT_FOUND)
    engine = request.app.state.engine
    row["downloads"] = {fmt: download_url(campaign_id, fmt) for fmt in EXPORT_FORMATS}
    params = request.app.state.params
    preview = export_frame(
        engine,
        campaign_id,
        limit=PREVIEW_ROWS,
        risk_deciles=params.campaign.risk_deciles,
        rfm_quantiles=params.features.rfm_quantiles,
    )
    context = {
        "campaign": row,
        "lift_measured_on": f"{row['as_of'] + timedelta(days=row['horizon_days']):%Y-%m-%d}",
        "policy": POLICIES.get(row.get("policy") or "risk", row.get("policy")),
        "summary": summary_view(row.get("summary"), params.campaign.lift_confidence),
        "overview": campaign_overview(engine, campaign_id),
        "offer_lifts": offer_lifts(row.get("lift")),
        "preview": preview[PREVIEW_COLUMNS].to_dict("records"),
        "columns": {c: EXPORT_DESCRIPTIONS[c] for c in PREVIEW_COLUMNS},
    }
    return _page(request, "campaign.html", context)


@web.get("/customers/{customer_id}", response_class=HTMLResponse)
def customer_page(request: Request, customer_id: CustomerId) -> Response:
    """One customer's profile (the API's `/customers/{id}/profile`, as a page; no contact details)."""
    if _role(request) is None:
        return _to_login()
    state = request.app.state
    profile = customer_profile(state.engine, state.models, state.params, customer_id)
    if profile is None:
        return _page(
            request,
            "not_found.html",
            {"message": f"unknown customer {customer_id!r}"},
            status.HTTP_404_NOT_FOUND,
        )
    return _page(request, "customer.html", {"profile": profile})


# GX renders its pages with scripts and styles from CDNs (bootstrap, jQuery, vega): they are not
# loaded here (offline machines, and no third-party script on our origin); the pages read plainly.
DATA_DOCS_HEADERS = {
    **SECURITY_HEADERS,
    "Content-Security-Policy": "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "frame-ancestors 'none'",
}


@web.get("/data-docs/{page:path}", response_class=HTMLResponse)
def data_docs(request: Request, page: str) -> Response:
    """The GX Data Docs of the platform's validations (extraction batches, features, campaign lists)."""
    if _role(request) is None:
        return _to_login()
    site = (request.app.state.settings.gx_dir / DATA_DOCS_SITE).resolve()
    if page in ("", "index.html"):  # GX's own index lists its pages with CDN scripts only: ours is plain
        return _page(request, "data_docs.html", {"validations": validation_pages(site)})
    file = (site / page).resolve()
    if not file.is_relative_to(site) or not file.is_file():  # no path outside the site
        message = "no Data Docs yet: they are written by the first extraction or campaign validation"
        return _page(
            request, "not_found.html", {"message": message if not page else f"no page {page!r}"}, 404
        )
    return FileResponse(file, headers=DATA_DOCS_HEADERS)


def validation_pages(site: Path, limit: int = 500) -> list[dict[str, str]]:
    """The Data Docs validation pages, newest first: suite, validated at (UTC), link.

    GX writes `validations/<suite as folders>/<batch>/<run time>/<page>.html`.
    """
    pages = []
    for path in (site / "validations").glob("**/*.html"):
        parts = path.relative_to(site / "validations").parts
        if len(parts) < 4:
            continue
        stamp = parts[-2]  # e.g. 20261130T054550.863673Z
        shown = f"{stamp[0:4]}-{stamp[4:6]}-{stamp[6:8]} {stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}"
        link = "/ui/data-docs/" + path.relative_to(site).as_posix()
        pages.append({"suite": ".".join(parts[:-3]), "validated_at": shown, "stamp": stamp, "link": link})
    return sorted(pages, key=lambda p: p["stamp"], reverse=True)[:limit]
