"""Server-rendered pages for marketing: log in with a token, list campaigns, open one, download its list.

Plain HTML from Jinja2 templates, no JavaScript. The login form checks the token and keeps it in
an HttpOnly, SameSite=Strict cookie (Secure over HTTPS), so the download buttons can link straight
to the API's export routes. Pages without a valid cookie redirect to the login form.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from pipelines.campaigns.run import EXPORT_FORMATS
from pipelines.campaigns.store import CampaignNotFound, get_campaign, list_campaigns
from serving.auth import COOKIE_NAME, GRANTS, Role
from serving.schemas import CampaignId, download_url

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
COOKIE_MAX_AGE_SECONDS = 8 * 60 * 60  # a working day; then log in again
LOGIN, CAMPAIGNS = "/ui/login", "/ui/campaigns"
# Nothing but the page itself: no scripts at all, styles inline, forms post back to us only.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

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


TEMPLATES.env.filters["lift"] = lift_text


def _page(
    request: Request, template: str, context: dict[str, Any], code: int = status.HTTP_200_OK
) -> Response:
    response = TEMPLATES.TemplateResponse(request, template, context, status_code=code)
    response.headers.update(SECURITY_HEADERS)
    return response


def _role(request: Request) -> Role | None:
    token = request.cookies.get(COOKIE_NAME)
    return request.app.state.tokens.role_of(token) if token else None


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
    """Check the token; on success keep it in the session cookie and go to the campaign list."""
    role = request.app.state.tokens.role_of(token.strip())
    if role is None or Role.MARKETING not in GRANTS[role]:
        return _page(
            request, "login.html", {"error": "That token is not valid."}, status.HTTP_401_UNAUTHORIZED
        )
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


@web.post("/logout")
def logout() -> RedirectResponse:
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
    """One campaign: its numbers, funnel, segments, model versions and downloads."""
    if _role(request) is None:
        return _to_login()
    try:
        row = get_campaign(request.app.state.engine, campaign_id)
    except CampaignNotFound as error:
        return _page(request, "not_found.html", {"message": str(error)}, status.HTTP_404_NOT_FOUND)
    row["downloads"] = {fmt: download_url(campaign_id, fmt) for fmt in EXPORT_FORMATS}
    return _page(request, "campaign.html", {"campaign": row})
