"""Bearer-token access: a read-only marketing token, an admin token and an events (write) token,
compared in constant time.

Tokens come from the environment (`RETENTION_API_MARKETING_TOKEN`, `RETENTION_API_ADMIN_TOKEN`,
`RETENTION_API_EVENTS_TOKEN`);
when unset, `retention serve` generates them once into `$RETENTION_HOME/secrets/api_tokens.json`
(mode 0600) and the app reads them from there. Tokens are never logged. The web pages send the
same token in an HttpOnly, SameSite=Strict cookie set by the login form, so a browser download
is authorised like an API call.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from serving.settings import ENV_ADMIN_TOKEN, ENV_MARKETING_TOKEN, ServingSettings

TOKENS_FILE = Path("secrets") / "api_tokens.json"  # under RETENTION_HOME
TOKEN_BYTES = 32  # 256 random bits per generated token
COOKIE_NAME = "retention_token"
REALM = 'Bearer realm="retention"'


class Role(StrEnum):
    """What a token may do: marketing reads campaigns and scores; admin also reads the registry; events
    only writes the shop's new events (`POST /events`): a write token no reader holds, and that reads
    nothing."""

    MARKETING = "marketing"
    ADMIN = "admin"
    EVENTS = "events"


GRANTS: dict[Role, frozenset[Role]] = {
    Role.MARKETING: frozenset({Role.MARKETING}),
    Role.ADMIN: frozenset({Role.MARKETING, Role.ADMIN}),
    Role.EVENTS: frozenset({Role.EVENTS}),
}


class TokensError(RuntimeError):
    """The API has no usable tokens."""


@dataclass(frozen=True, repr=False)
class Tokens:
    """The tokens (repr hides them, so they cannot leak into a log by accident).

    Attributes:
        marketing, admin: the read tokens.
        events: the write token of `POST /events`; None: the route refuses every caller.
    """

    marketing: str
    admin: str
    events: str | None = None

    def __post_init__(self) -> None:
        if not self.marketing or not self.admin or self.events == "":
            raise TokensError("API tokens must not be empty")
        given = [t.encode() for t in (self.marketing, self.admin, self.events) if t is not None]
        if any(hmac.compare_digest(a, b) for i, a in enumerate(given) for b in given[i + 1 :]):
            raise TokensError("the marketing, admin and events tokens must differ")

    def __repr__(self) -> str:
        return "Tokens(marketing=***, admin=***, events=***)"

    def role_of(self, presented: str) -> Role | None:
        """The role of a presented token, or None; every token is always compared (constant time)."""
        given = presented.encode()
        is_admin = hmac.compare_digest(given, self.admin.encode())
        is_marketing = hmac.compare_digest(given, self.marketing.encode())
        is_events = self.events is not None and hmac.compare_digest(given, self.events.encode())
        if is_admin:
            return Role.ADMIN
        if is_events:
            return Role.EVENTS
        return Role.MARKETING if is_marketing else None


def tokens_path(home: Path) -> Path:
    """Where generated tokens are kept."""
    return home / TOKENS_FILE


def _from_file(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise TokensError(f"cannot read the API tokens file {path}: {error}") from None
    return {role: str(stored[role]) for role in Role if stored.get(role)}


def load_tokens(serving: ServingSettings, home: Path) -> Tokens:
    """The tokens: each from its environment variable, else from the generated secrets file.

    Raises:
        TokensError: a token is neither set nor generated (run `retention serve` once, or set both).
    """
    stored = _from_file(tokens_path(home))
    marketing = serving.marketing_token or stored.get(Role.MARKETING)
    admin = serving.admin_token or stored.get(Role.ADMIN)
    if not marketing or not admin:
        raise TokensError(
            f"no API tokens: set {ENV_MARKETING_TOKEN} and {ENV_ADMIN_TOKEN}, or run `retention serve` "
            f"once to generate them into {tokens_path(home)}"
        )
    # optional: without it POST /events refuses everyone (RETENTION_API_EVENTS_TOKEN, or the generated file)
    return Tokens(marketing, admin, serving.events_token or stored.get(Role.EVENTS))


def ensure_tokens(serving: ServingSettings, home: Path) -> Path | None:
    """Generate the tokens the environment does not set into the secrets file, once (mode 0600).

    Returns:
        The secrets file when tokens come from it (new or existing), None when the environment
        sets both.
    """
    if serving.marketing_token and serving.admin_token:
        return None
    path = tokens_path(home)
    stored = _from_file(path)
    missing = [
        role for role in Role if role not in stored and not (role is Role.EVENTS and serving.events_token)
    ]
    if not missing:
        return path
    generated = stored | {role: secrets.token_urlsafe(TOKEN_BYTES) for role in missing}
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_suffix(".tmp")
    temporary.unlink(missing_ok=True)
    # created 0600 from the start: the secret is never readable by others, not even briefly
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump({str(role): token for role, token in generated.items()}, handle, indent=1)
    temporary.replace(path)
    return path


# -- FastAPI dependencies ---------------------------------------------------------------------

bearer_scheme = HTTPBearer(auto_error=False, description="The marketing or admin API token.")
cookie_scheme = APIKeyCookie(
    name=COOKIE_NAME, auto_error=False, description="Set by the web login form (/ui/login)."
)


def _unauthorised(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": REALM})


def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    cookie: Annotated[str | None, Depends(cookie_scheme)],
) -> Role:
    """The caller's role from the Authorization header (else the login cookie); 401 if none is valid."""
    presented = credentials.credentials if credentials is not None else cookie
    if not presented:
        raise _unauthorised("missing bearer token")
    role = request.app.state.tokens.role_of(presented)
    if role is None:
        raise _unauthorised("invalid token")
    return role


def require(role: Role) -> Callable[[Role], Role]:
    """A dependency that lets through callers whose token grants `role` (else 403)."""

    def check(granted: Annotated[Role, Depends(principal)]) -> Role:
        if role not in GRANTS[granted]:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this needs the {role} token")
        return granted

    return check
