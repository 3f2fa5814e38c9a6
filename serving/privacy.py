"""`POST /admin/customers/forget`: the right to erasure over the API, with the admin token.

The same erasure as `retention customers forget` (`pipelines.privacy.erasure`): every store, one
audit row without personal data, safe to repeat. The token must come in the Authorization header,
never the web login cookie, so no other site can make a logged-in browser post it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import Field

from pipelines.privacy.erasure import MAX_IDS, ErasureError, forget_customers
from retention.params import StrictModel
from serving.auth import Role, require
from serving.schemas import ID_MAX_CHARS, Problem

ACTOR = "api:admin"  # tokens name a role, not a person: the audit row says which door was used

# PRINTABLE, and no surrounding blanks: ids are stored stripped (`check_customer_ids` says the same)
STRIPPED = r"^[^\x00-\x1f\x7f\s](?:[^\x00-\x1f\x7f]*[^\x00-\x1f\x7f\s])?$"
ErasedId = Annotated[str, Field(min_length=1, max_length=ID_MAX_CHARS, pattern=STRIPPED)]


class ForgetRequest(StrictModel):
    customer_ids: list[ErasedId] = Field(min_length=1, max_length=MAX_IDS)


class ForgetResult(StrictModel):
    erasure_id: int = Field(description="the audit row in platform_erasures")
    erased: list[str] = Field(description="ids some table held, now removed everywhere")
    unknown: list[str] = Field(description="ids no table held (never stored, or already forgotten)")
    removed: dict[str, int] = Field(description="rows, records or files changed per store")
    unscrubbable: list[str] = Field(description="binary files that still mention a customer")


def _header_token(request: Request) -> None:
    if not request.headers.get("authorization"):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "erasure takes the admin token in the Authorization header, not the login cookie",
            headers={"WWW-Authenticate": "Bearer"},
        )


privacy = APIRouter(
    tags=["admin"],
    dependencies=[Depends(_header_token), Depends(require(Role.ADMIN))],
    responses={
        401: {"model": Problem, "description": "no bearer token in the Authorization header, or a wrong one"},
        403: {"model": Problem, "description": "not the admin token"},
        429: {"model": Problem, "description": "too many wrong tokens from this client: see Retry-After"},
    },
)


@privacy.post("/admin/customers/forget", response_model=ForgetResult)
async def forget(request: Request, body: ForgetRequest) -> ForgetResult:
    """Forget customers in every store of the platform (right to erasure); repeating it is harmless.

    422 names an id that breaks the id rules, and nothing is changed.
    """
    settings = request.app.state.settings
    try:
        report = await run_in_threadpool(forget_customers, body.customer_ids, ACTOR, settings)
    except ErasureError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    return ForgetResult(
        erasure_id=report.erasure_id,
        erased=report.erased,
        unknown=report.unknown,
        removed=report.removed,
        unscrubbable=report.unscrubbable,
    )
