"""Request hygiene in front of every route: over-large headers, tokens in URLs, uncacheable answers, and
the same-origin check of the web forms.

`RequestScreen` is a pure ASGI middleware, outermost, so it also screens what the overload guard or
FastAPI would answer themselves:

- request headers over `MAX_HEADER_BYTES` in all are 431 (before any parsing or routing);
- a query parameter that looks like a token (by its name, or because its value is one of the
  API's tokens) is 401 with a hint to use the Authorization header. A URL ends up in access logs,
  proxy logs and browser history, so a token there is refused rather than used, and the refused
  query is redacted in the request's scope: uvicorn writes its access line from that same scope
  after the response, so the token never reaches the log;
- every response gets `Cache-Control: no-store` and `X-Content-Type-Options: nosniff` unless the
  route set its own: the answers carry customer data (the exports carry e-mail addresses) that no
  browser or proxy cache should keep, and none is meant to be content-sniffed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import unquote_plus, urlsplit

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.overload import send_problem

# Request headers in all (names and values). Browsers send 1-2 KiB; a web-page session adds a ~100-byte
# cookie. Below uvicorn's own limit (h11: 16 KiB), so the client gets a clear 431 rather than a 400.
MAX_HEADER_BYTES = 8 * 1024
# Query parameter names a token hides behind (token, access_token, api_key, auth, X-Session, ...).
TOKEN_LIKE_NAME = re.compile(r"token|auth|key|secret|passw|bearer|jwt|session|credential|signature", re.I)
REDACTED = "***"
RESPONSE_HEADERS = ((b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff"))
QUERY_TOKEN_HINT = (
    "tokens are refused in the URL, where logs and browser history keep them: "
    "send it in the Authorization header (Authorization: Bearer <token>)"
)
DEFAULT_PORTS = {"http": "80", "https": "443"}


class RequestScreen:
    """Refuse over-large headers (431) and tokens in the query string (401); mark answers uncacheable.

    Args:
        app: the wrapped ASGI app.
        is_token: whether a string is one of the API's tokens (compared in constant time).
        realm: the `WWW-Authenticate` challenge of a 401.
        max_header_bytes: the most request header bytes (names and values) accepted.
    """

    def __init__(
        self,
        app: ASGIApp,
        is_token: Callable[[str], bool],
        realm: str,
        max_header_bytes: int = MAX_HEADER_BYTES,
    ) -> None:
        self.app = app
        self.is_token = is_token
        self.realm = realm
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _marked(send)
        size = sum(len(name) + len(value) for name, value in scope["headers"])
        if size > self.max_header_bytes:
            detail = f"request headers are limited to {self.max_header_bytes} bytes in all, got {size}"
            await send_problem(send, 431, detail)
            return
        query = scope.get("query_string", b"").decode("latin-1")
        if query and self._exposes_a_token(query):
            scope["query_string"] = _redacted(query).encode("latin-1")  # what the access log will show
            await send_problem(send, 401, QUERY_TOKEN_HINT, {"www-authenticate": self.realm})
            return
        await self.app(scope, receive, send)

    def _exposes_a_token(self, query: str) -> bool:
        pairs = [_pair(part) for part in query.split("&") if part]
        # every value is compared (no early exit): the answer must not tell which one matched
        matches = [self.is_token(value) for _, value in pairs if value]
        return any(TOKEN_LIKE_NAME.search(name) for name, _ in pairs) or any(matches)


def is_same_origin(request: Request) -> bool:
    """Whether a form post comes from one of our own pages: its `Origin` names this host, or, when the
    browser sent no `Origin`, its `Referer` does.

    A post with neither (or `Origin: null`, what a browser sends from a page that hides its origin)
    is refused: every browser in use sends `Origin` on a form post to a page whose Referrer-Policy
    is `same-origin` (ours), so only a forged or stripped request lacks both, and OWASP's CSRF
    cheat sheet recommends refusing those. The host is the `Host` header the browser sent, which a
    cross-site page cannot set; behind a proxy, the proxy must pass it on (nginx: `proxy_set_header
    Host $host`).
    """
    sent = request.headers.get("origin") or request.headers.get("referer")
    host = request.headers.get("host")
    if not sent or not host:
        return False
    origin = urlsplit(sent)
    if origin.scheme not in DEFAULT_PORTS or not origin.netloc:
        return False  # "null", or not a web origin at all
    return _authority(origin.scheme, origin.netloc) == _authority(origin.scheme, host)


def _authority(scheme: str, netloc: str) -> str:
    """host:port, lower case, with the scheme's default port spelt out (so "h" and "h:80" agree)."""
    netloc = netloc.lower().rsplit("@", 1)[-1]
    host, _, port = netloc.rpartition(":") if not netloc.endswith("]") else (netloc, "", "")
    if not host or not port.isdigit():
        host, port = netloc, DEFAULT_PORTS[scheme]
    return f"{host}:{port}"


def _pair(part: str) -> tuple[str, str]:
    name, _, value = part.partition("=")
    return unquote_plus(name), unquote_plus(value)


def _redacted(query: str) -> str:
    return "&".join(f"{part.partition('=')[0]}={REDACTED}" if part else part for part in query.split("&"))


def _marked(send: Send) -> Send:
    async def marked(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            present = {name.lower() for name, _ in headers}
            headers += [(name, value) for name, value in RESPONSE_HEADERS if name not in present]
            message = {**message, "headers": headers}
        await send(message)

    return marked
