"""Bearer-token access: a read-only marketing token, an admin token and an events (write) token,
compared in constant time, with a per-client limit on wrong tokens.

Tokens come from the environment (`RETENTION_API_MARKETING_TOKEN`, `RETENTION_API_ADMIN_TOKEN`,
`RETENTION_API_EVENTS_TOKEN`);
when unset, `retention serve` generates them once, shows them once to the operator, and keeps
only their SHA-256 digests in `$RETENTION_HOME/secrets/api_tokens.json` (mode 0600), so the file
alone lets nobody in. The process itself holds digests only. A file written before digests (the
tokens in clear) is still read, with a warning, and `retention serve` rewrites it as digests,
showing its tokens one last time. Tokens are never logged, and are refused in URLs
(`serving.security`). The web pages send the same token in an HttpOnly, SameSite=Strict cookie set
by the login form, so a browser download is authorised like an API call. A client that presents
`RETENTION_API_AUTH_FAILURES_PER_MINUTE` wrong tokens within a minute gets 429 (`serving.ratelimit`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from serving.ratelimit import FailureLimiter
from serving.settings import ENV_ADMIN_TOKEN, ENV_MARKETING_TOKEN, ServingSettings

log = logging.getLogger("retention.serving")

TOKENS_FILE = Path("secrets") / "api_tokens.json"  # under RETENTION_HOME
TOKEN_BYTES = 32  # 256 random bits per generated token
# How the file keeps a token. A plain SHA-256 is enough: the generated tokens carry 256 random bits,
# so no dictionary or brute force reaches one from its digest; a salted slow hash (scrypt) protects
# guessable passwords, and would cost every request its tens of milliseconds.
DIGEST_PREFIX = "sha256:"
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


class TooManyFailures(Exception):
    """The client has presented too many wrong tokens lately; it may try again in `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many wrong tokens from this client: try again in {retry_after} s")
        self.retry_after = retry_after


def token_digest(token: str) -> bytes:
    """The SHA-256 digest a token is kept and compared as."""
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True, repr=False)
class Tokens:
    """The digests of the tokens (never the tokens themselves; repr shows neither).

    Build it from clear tokens with `Tokens.of`.

    Attributes:
        digests: each role's token digest; marketing and admin always, events optional (without it,
            `POST /events` refuses every caller).
    """

    digests: Mapping[Role, bytes]

    def __post_init__(self) -> None:
        if Role.MARKETING not in self.digests or Role.ADMIN not in self.digests:
            raise TokensError("API tokens need a marketing and an admin token")
        given = list(self.digests.values())
        if any(hmac.compare_digest(a, b) for i, a in enumerate(given) for b in given[i + 1 :]):
            raise TokensError("the marketing, admin and events tokens must differ")

    @classmethod
    def of(cls, marketing: str, admin: str, events: str | None = None) -> Tokens:
        """The tokens from their clear values (the events token is optional).

        Raises:
            TokensError: a token is empty, or two are the same.
        """
        if not marketing or not admin or events == "":
            raise TokensError("API tokens must not be empty")
        clear = {Role.MARKETING: marketing, Role.ADMIN: admin, Role.EVENTS: events}
        return cls({role: token_digest(token) for role, token in clear.items() if token is not None})

    def __repr__(self) -> str:
        return "Tokens(marketing=***, admin=***, events=***)"

    def role_of(self, presented: str) -> Role | None:
        """The role of a presented token, or None; every digest is always compared (constant time)."""
        given = token_digest(presented)
        matches = {role: hmac.compare_digest(given, digest) for role, digest in self.digests.items()}
        for role in (Role.ADMIN, Role.EVENTS, Role.MARKETING):
            if matches.get(role):
                return role
        return None


@dataclass(frozen=True)
class StoredTokens:
    """What the secrets file holds: each role's digest, and the roles it still keeps in clear (old format)."""

    digests: dict[Role, bytes] = field(default_factory=dict)
    clear: dict[Role, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class TokensFile:
    """What `ensure_tokens` did to the secrets file: the tokens to show the operator, once.

    Attributes:
        path: the secrets file (digests only).
        generated: tokens generated now, by role.
        migrated: tokens the file kept in clear until now (now digests), by role.
    """

    path: Path
    generated: dict[Role, str] = field(default_factory=dict, repr=False)
    migrated: dict[Role, str] = field(default_factory=dict, repr=False)


def tokens_path(home: Path) -> Path:
    """Where generated tokens are kept (as digests)."""
    return home / TOKENS_FILE


def read_tokens_file(path: Path) -> StoredTokens:
    """The secrets file's tokens: digests as written, and clear tokens of the old format digested.

    Raises:
        TokensError: the file cannot be read or parsed.
    """
    if not path.exists():
        return StoredTokens()
    try:
        stored = json.loads(path.read_text())
        digests, clear = {}, {}
        for role in Role:
            value = stored.get(role)
            if not value:
                continue
            if str(value).startswith(DIGEST_PREFIX):
                digests[role] = bytes.fromhex(str(value).removeprefix(DIGEST_PREFIX))
            else:  # written before digests: the token itself
                clear[role] = str(value)
                digests[role] = token_digest(str(value))
    except (OSError, ValueError, AttributeError) as error:
        raise TokensError(f"cannot read the API tokens file {path}: {error}") from None
    return StoredTokens(digests, clear)


def load_tokens(serving: ServingSettings, home: Path) -> Tokens:
    """The tokens: each from its environment variable, else from the generated secrets file.

    Raises:
        TokensError: a token is neither set nor generated (run `retention serve` once, or set both).
    """
    path = tokens_path(home)
    stored = read_tokens_file(path)
    if stored.clear:
        log.warning(
            "%s keeps API tokens in clear (the format before digests): run `retention serve` once to "
            "rewrite it with their digests only",
            path,
        )
    from_env = {
        Role.MARKETING: serving.marketing_token,
        Role.ADMIN: serving.admin_token,
        Role.EVENTS: serving.events_token,  # optional: without it POST /events refuses everyone
    }
    if any(token == "" for token in from_env.values()):
        raise TokensError("API tokens must not be empty")
    digests = stored.digests | {role: token_digest(token) for role, token in from_env.items() if token}
    if Role.MARKETING not in digests or Role.ADMIN not in digests:
        raise TokensError(
            f"no API tokens: set {ENV_MARKETING_TOKEN} and {ENV_ADMIN_TOKEN}, or run `retention serve` "
            f"once to generate them into {path}"
        )
    return Tokens(digests)


def ensure_tokens(serving: ServingSettings, home: Path) -> TokensFile | None:
    """Generate the tokens the environment does not set, once, and keep their digests in the secrets
    file (mode 0600); a file of the old format (tokens in clear) is rewritten as digests.

    Returns:
        The secrets file with the tokens to show the operator now (generated or migrated; they
        cannot be read back later), or None when the environment sets both read tokens and there
        is no file to migrate.
    """
    path = tokens_path(home)
    stored = read_tokens_file(path)
    from_env = bool(serving.marketing_token and serving.admin_token)
    missing = [
        role
        for role in Role
        if not from_env and role not in stored.digests and not (role is Role.EVENTS and serving.events_token)
    ]
    if not missing and not stored.clear:
        return None if from_env else TokensFile(path)
    generated = {role: secrets.token_urlsafe(TOKEN_BYTES) for role in missing}
    _write_digests(path, stored.digests | {role: token_digest(token) for role, token in generated.items()})
    return TokensFile(path, generated, stored.clear)


def _write_digests(path: Path, digests: dict[Role, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_suffix(".tmp")
    temporary.unlink(missing_ok=True)
    # created 0600 from the start: even the digests are nobody else's business
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(
            {str(role): DIGEST_PREFIX + digest.hex() for role, digest in digests.items()}, handle, indent=1
        )
    temporary.replace(path)


def client_of(request: Request) -> str:
    """The address failed attempts are counted against (uvicorn's `--proxy-headers` makes it the real one)."""
    return request.client.host if request.client else "unknown"


def authenticate(request: Request, presented: str) -> Role | None:
    """The role of a presented token, counting a wrong one against the client.

    Raises:
        TooManyFailures: the client is over its limit of wrong tokens; the token is not even
            compared, so a guess that happens to be right is not confirmed either.
    """
    limiter: FailureLimiter = request.app.state.auth_failures
    client = client_of(request)
    wait = limiter.retry_after(client)
    if wait is not None:
        raise TooManyFailures(wait)
    role = request.app.state.tokens.role_of(presented)
    if role is None:
        limiter.record_failure(client)
    return role


# -- FastAPI dependencies ---------------------------------------------------------------------

bearer_scheme = HTTPBearer(auto_error=False, description="The marketing or admin API token.")
cookie_scheme = APIKeyCookie(
    name=COOKIE_NAME, auto_error=False, description="Set by the web login form (/ui/login)."
)


def _unauthorised(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": REALM})


def too_many_failures(error: TooManyFailures) -> HTTPException:
    """The 429 answer to a client over its limit of wrong tokens."""
    return HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS, str(error), headers={"Retry-After": str(error.retry_after)}
    )


async def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    cookie: Annotated[str | None, Depends(cookie_scheme)],
) -> Role:
    """The caller's role from the Authorization header (else the login cookie); 401 if none is valid, 429
    if the client has presented too many wrong tokens within the last minute.

    Async, as is `require`'s check: neither does I/O, and a sync dependency would cost every request
    a hop to a worker thread (measured: benchmarks/serving_load.py).
    """
    presented = credentials.credentials if credentials is not None else cookie
    if not presented:
        raise _unauthorised("missing bearer token")
    try:
        role = authenticate(request, presented)
    except TooManyFailures as error:
        raise too_many_failures(error) from None
    if role is None:
        raise _unauthorised("invalid token")
    return role


def require(role: Role) -> Callable[[Role], Awaitable[Role]]:
    """A dependency that lets through callers whose token grants `role` (else 403)."""

    async def check(granted: Annotated[Role, Depends(principal)]) -> Role:
        if role not in GRANTS[granted]:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this needs the {role} token")
        return granted

    return check
