"""Web and API security (issue 17): cross-site form posts, tokens in URLs and logs, uncacheable answers,
header size, the limit on wrong tokens, zoned timestamps, and tokens kept as digests at rest."""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text
from starlette.requests import Request

from serving.app import create_app
from serving.auth import Role, ensure_tokens, load_tokens, read_tokens_file, tokens_path
from serving.ratelimit import FailureLimiter
from serving.security import MAX_HEADER_BYTES, is_same_origin
from serving.settings import DEFAULT_AUTH_FAILURES_PER_MINUTE, ServingSettings, ServingSettingsError
from tests.serving.conftest import (
    ADMIN_TOKEN,
    CAMPAIGN_ID,
    MARKETING_TOKEN,
    SAME_ORIGIN,
    Served,
    auth,
)

EVIL = {"Origin": "https://evil.example"}
FAILURES_ALLOWED = 3  # the limit of the rate-limited apps below (the default is 10)
STARTUP_SECONDS = 20.0


def _app(served: Served, **settings: object) -> FastAPI:
    """Another API app on the served database (no lifespan needed: these routes load no model)."""
    serving = ServingSettings(marketing_token=MARKETING_TOKEN, admin_token=ADMIN_TOKEN, **settings)  # type: ignore[arg-type]
    return create_app(served.settings, serving)


@pytest.fixture
def limited(served: Served) -> FastAPI:
    """An app that allows FAILURES_ALLOWED wrong tokens per minute and client."""
    return _app(served, auth_failures_per_minute=FAILURES_ALLOWED)


def _client(app: FastAPI, address: str) -> TestClient:
    return TestClient(app, client=(address, 50000))


# -- 1. cross-site form posts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [EVIL, {"Referer": "https://evil.example/page"}, {"Origin": "null"}, {}],
    ids=["foreign-origin", "foreign-referer", "null-origin", "no-origin-or-referer"],
)
def test_a_login_post_not_from_our_own_page_is_refused_and_sets_no_cookie(
    served: Served, headers: dict
) -> None:
    # given a valid token posted from another site (or from nowhere the browser would say)
    client = served.client
    client.cookies.clear()
    # when
    response = client.post(
        "/ui/login", data={"token": MARKETING_TOKEN}, headers=headers, follow_redirects=False
    )
    # then it is refused and no session starts
    assert response.status_code == 403
    assert "set-cookie" not in response.headers
    assert "own pages" in response.text


@pytest.mark.parametrize(
    "headers",
    [SAME_ORIGIN, {"Referer": "http://testserver/ui/login"}, {"Origin": "http://TESTSERVER:80"}],
    ids=["origin", "referer-only", "origin-default-port"],
)
def test_a_login_post_from_our_own_page_is_accepted(served: Served, headers: dict) -> None:
    client = served.client
    client.cookies.clear()
    response = client.post(
        "/ui/login", data={"token": MARKETING_TOKEN}, headers=headers, follow_redirects=False
    )
    assert response.status_code == 303 and response.headers["location"] == "/ui/campaigns"
    assert "retention_token=" in response.headers["set-cookie"]
    client.cookies.clear()


def test_a_cross_site_logout_is_refused_and_a_same_site_one_accepted(served: Served) -> None:
    client = served.client
    client.cookies.clear()
    assert (
        client.post(
            "/ui/login", data={"token": MARKETING_TOKEN}, headers=SAME_ORIGIN, follow_redirects=False
        ).status_code
        == 303
    )
    # when another site posts the logout form, the session stays
    refused = client.post("/ui/logout", headers=EVIL, follow_redirects=False)
    assert refused.status_code == 403 and "set-cookie" not in refused.headers
    assert client.get("/ui/campaigns", follow_redirects=False).status_code == 200
    # and our own logout form ends it
    accepted = client.post("/ui/logout", headers=SAME_ORIGIN, follow_redirects=False)
    assert accepted.status_code == 303 and 'retention_token=""' in accepted.headers["set-cookie"]
    client.cookies.clear()


def test_our_pages_let_the_browser_send_their_origin_to_us_only(served: Served) -> None:
    # under `no-referrer` a browser sends "Origin: null" with our own form posts, which we refuse
    page = served.client.get("/ui/login")
    assert page.headers["referrer-policy"] == "same-origin"


def _request(**headers: str) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "POST", "path": "/ui/login", "headers": raw})


def test_same_origin_compares_scheme_default_ports_and_hosts() -> None:
    assert is_same_origin(_request(Host="api.example:8000", Origin="http://api.example:8000"))
    assert is_same_origin(_request(Host="api.example", Origin="https://API.example:443"))
    assert is_same_origin(_request(Host="[::1]:8000", Referer="http://[::1]:8000/ui/login"))
    assert not is_same_origin(_request(Host="api.example:8000", Origin="http://api.example:8001"))
    assert not is_same_origin(_request(Host="api.example", Origin="https://api.example.evil.example"))
    assert not is_same_origin(_request(Host="api.example", Origin="null", Referer="http://api.example/"))
    assert not is_same_origin(_request(Origin="http://api.example"))  # no Host: nothing to compare to
    assert not is_same_origin(_request(Host="api.example", Referer="ftp://api.example/"))


# -- 2. tokens in URLs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [f"token={MARKETING_TOKEN}", f"access_token={MARKETING_TOKEN}", "api_key=anything", f"q={ADMIN_TOKEN}"],
    ids=["token", "access_token", "api_key", "a-token-under-another-name"],
)
def test_a_token_in_the_query_string_is_401_with_a_hint(served: Served, query: str) -> None:
    # given a valid token in the header as well: the one in the URL is exposed all the same
    for path in ("/campaigns", "/healthz", "/ui/login"):
        response = served.client.get(f"{path}?{query}", headers=auth(MARKETING_TOKEN), follow_redirects=False)
        assert response.status_code == 401, (path, response.text)
        assert "Authorization header" in response.json()["detail"]
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_ordinary_query_parameters_still_work(served: Served) -> None:
    with served.engine.connect() as connection:
        customer = connection.execute(text("SELECT min(customer_id) FROM online_features")).scalar_one()
    response = served.client.get(f"/customers/{customer}/recommendations?k=3", headers=auth(MARKETING_TOKEN))
    assert response.status_code == 200 and len(response.json()["recommendations"]) == 3


@contextmanager
def _uvicorn_with_access_log(app: FastAPI, handler: logging.Handler) -> Iterator[str]:
    """The app under a real uvicorn whose access lines also go to `handler`.

    log_config=None keeps uvicorn from replacing the logging setup; the handler is attached to the
    access logger itself, since a uvicorn started earlier in the session may have stopped it propagating.
    """
    access = logging.getLogger("uvicorn.access")
    access.addHandler(handler)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_config=None, log_level="info", access_log=True, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_SECONDS
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(STARTUP_SECONDS)
        access.removeHandler(handler)


def test_no_token_in_a_url_reaches_the_access_log(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    # given the API under uvicorn, its access log captured
    caplog.set_level(logging.INFO)
    with _uvicorn_with_access_log(_app(served), caplog.handler) as url:
        # when tokens are sent in URLs, under a token-like name and under another
        named = httpx.get(f"{url}/campaigns?token={MARKETING_TOKEN}")
        unnamed = httpx.get(f"{url}/campaigns?q={ADMIN_TOKEN}&k=1")
    # then both are refused, and logged without the tokens
    assert named.status_code == unnamed.status_code == 401
    access = sorted({r.getMessage() for r in caplog.records if r.name == "uvicorn.access"})
    assert any("/campaigns?token=***" in line and "401" in line for line in access), access
    assert any("/campaigns?q=***&k=***" in line for line in access), access
    server_side = [
        r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))
    ]  # not our client
    logged = "\n".join(r.getMessage() for r in server_side)
    assert MARKETING_TOKEN not in logged and ADMIN_TOKEN not in logged


# -- 3. response headers, header size, failed-token limit -----------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/campaigns",
        f"/campaigns/{CAMPAIGN_ID}",
        f"/campaigns/{CAMPAIGN_ID}/targets.csv",
        f"/campaigns/{CAMPAIGN_ID}/targets.parquet",
        "/healthz",
    ],
)
def test_answers_and_downloads_are_neither_cached_nor_sniffed(served: Served, path: str) -> None:
    response = served.client.get(path, headers=auth(MARKETING_TOKEN))
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_refusals_are_not_cached_either(served: Served) -> None:
    response = served.client.get("/campaigns")
    assert response.status_code == 401 and response.headers["cache-control"] == "no-store"


def test_over_large_request_headers_are_431(served: Served) -> None:
    # given headers just within the limit and just over it
    padding = "x" * (MAX_HEADER_BYTES - 1024)
    assert served.client.get("/healthz", headers={"X-Padding": padding}).status_code == 200
    response = served.client.get("/healthz", headers={"X-Padding": padding + "x" * 2048})
    assert response.status_code == 431
    assert str(MAX_HEADER_BYTES) in response.json()["detail"]


def test_wrong_bearer_tokens_are_limited_per_client_with_retry_after(limited: FastAPI) -> None:
    guesser, other = _client(limited, "10.0.0.1"), _client(limited, "10.0.0.2")
    # given a client that has presented the allowed number of wrong tokens
    for _ in range(FAILURES_ALLOWED):
        assert guesser.get("/campaigns", headers=auth("guess")).status_code == 401
    # when it tries again, even with the right token
    wrong = guesser.get("/campaigns", headers=auth("guess"))
    right = guesser.get("/campaigns", headers=auth(MARKETING_TOKEN))
    # then it must wait (a right guess is not confirmed either); another client is not affected
    for response in (wrong, right):
        assert response.status_code == 429
        assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert other.get("/campaigns", headers=auth(MARKETING_TOKEN)).status_code == 200
    assert other.get("/campaigns", headers=auth("guess")).status_code == 401


def test_successful_requests_are_not_limited(limited: FastAPI) -> None:
    client = _client(limited, "10.0.0.3")
    for _ in range(FAILURES_ALLOWED * 4):
        assert client.get("/campaigns", headers=auth(MARKETING_TOKEN)).status_code == 200


def test_wrong_tokens_in_the_login_form_are_limited_too(limited: FastAPI) -> None:
    client = _client(limited, "10.0.0.4")
    for _ in range(FAILURES_ALLOWED):
        refused = client.post("/ui/login", data={"token": "guess"}, headers=SAME_ORIGIN)
        assert refused.status_code == 401
    limited_login = client.post(
        "/ui/login", data={"token": MARKETING_TOKEN}, headers=SAME_ORIGIN, follow_redirects=False
    )
    assert limited_login.status_code == 429 and int(limited_login.headers["Retry-After"]) >= 1
    assert "Too many wrong tokens" in limited_login.text and "set-cookie" not in limited_login.headers
    # and the API routes refuse the same client meanwhile (one count per client)
    assert client.get("/campaigns", headers=auth(MARKETING_TOKEN)).status_code == 429


def test_the_limiter_forgets_failures_after_its_window() -> None:
    now = [0.0]
    limiter = FailureLimiter(max_failures=2, window_seconds=60, clock=lambda: now[0])
    limiter.record_failure("a")
    now[0] = 30.0
    limiter.record_failure("a")
    assert limiter.retry_after("a") == 30 and limiter.retry_after("b") is None
    now[0] = 60.5  # the first failure has expired
    assert limiter.retry_after("a") is None
    with pytest.raises(ValueError, match="max_failures"):
        FailureLimiter(max_failures=0)


def test_the_failure_limit_comes_from_the_environment() -> None:
    assert ServingSettings.from_env({}).auth_failures_per_minute == DEFAULT_AUTH_FAILURES_PER_MINUTE == 10
    read = ServingSettings.from_env({"RETENTION_API_AUTH_FAILURES_PER_MINUTE": "25"})
    assert read.auth_failures_per_minute == 25
    with pytest.raises(ServingSettingsError, match="RETENTION_API_AUTH_FAILURES_PER_MINUTE"):
        ServingSettings.from_env({"RETENTION_API_AUTH_FAILURES_PER_MINUTE": "2.5"})


# -- 4. timestamps carry a zone -------------------------------------------------------------------


def _utc(value: str) -> datetime:
    """An OpenAPI date-time: it parses, has a zone, and is UTC."""
    moment = datetime.fromisoformat(value)
    assert moment.utcoffset() == timedelta(0), value
    return moment


def test_timestamps_in_responses_are_utc_with_a_zone(served: Served) -> None:
    headers = auth(MARKETING_TOKEN)
    for campaign in served.client.get("/campaigns", headers=headers).json():
        _utc(campaign["as_of"]), _utc(campaign["published_at"])
    detail = served.client.get(f"/campaigns/{CAMPAIGN_ID}", headers=headers).json()
    assert _utc(detail["as_of"]) == datetime.fromisoformat(f"{served.platform.as_of.isoformat()}+00:00")
    assert detail["published_at"] == "2026-04-01T06:00:00Z"
    with served.engine.connect() as connection:
        customer = connection.execute(text("SELECT min(customer_id) FROM online_features")).scalar_one()
    churn = served.client.get(f"/customers/{customer}/churn", headers=headers)
    assert churn.status_code == 200, churn.text
    _utc(churn.json()["as_of"])
    profile = served.client.get(f"/customers/{customer}/profile", headers=headers).json()
    _utc(profile["features_as_of"]), _utc(profile["churn"]["as_of"])
    for entry in profile["campaigns"]:
        _utc(entry["as_of"])
    for category in profile["favourite_categories"]:
        if category["last_purchase"] is not None:
            _utc(category["last_purchase"])


# -- 5. tokens at rest ----------------------------------------------------------------------------


def test_the_tokens_file_keeps_digests_and_the_tokens_are_shown_once(tmp_path: Path) -> None:
    # given no token in the environment
    home, unset = tmp_path / "home", ServingSettings()
    # when the tokens are generated
    generated = ensure_tokens(unset, home)
    # then each is returned once, the file holds none of them, and the API accepts them
    assert generated is not None and set(generated.generated) == set(Role)
    content = tokens_path(home).read_text()
    assert all(token not in content for token in generated.generated.values())
    assert all(value.startswith("sha256:") for value in json.loads(content).values())
    assert stat.S_IMODE(os.stat(tokens_path(home)).st_mode) == 0o600
    tokens = load_tokens(unset, home)
    assert all(tokens.role_of(token) is role for role, token in generated.generated.items())
    assert all(token not in repr(generated) for token in generated.generated.values())


def test_a_tokens_file_in_clear_still_works_and_serve_migrates_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # given a file written before digests: the tokens in clear
    home, unset = tmp_path / "home", ServingSettings()
    path = tokens_path(home)
    path.parent.mkdir(parents=True, mode=0o700)
    clear = {"marketing": "m" * 43, "admin": "a" * 43, "events": "e" * 43}
    path.write_text(json.dumps(clear))
    # when the API reads it, it works, with a warning to migrate
    with caplog.at_level(logging.WARNING, logger="retention.serving"):
        assert load_tokens(unset, home).role_of("a" * 43) is Role.ADMIN
    assert "in clear" in caplog.text and "retention serve" in caplog.text
    # and when `retention serve` ensures the tokens, the file is rewritten as digests
    migrated = ensure_tokens(unset, home)
    assert migrated is not None and not migrated.generated
    assert {str(role): token for role, token in migrated.migrated.items()} == clear
    assert all(token not in path.read_text() for token in clear.values())
    assert not read_tokens_file(path).clear
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    # then the same tokens still work, and nothing is shown again
    assert load_tokens(unset, home).role_of("m" * 43) is Role.MARKETING
    again = ensure_tokens(unset, home)
    assert again is not None and not again.migrated and not again.generated


def test_serve_shows_migrated_tokens_one_last_time(
    migrated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer
    from typer.testing import CliRunner

    from cli.serve import serve

    # given a clear tokens file in RETENTION_HOME and a serve command whose uvicorn does nothing
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: None)
    for name in ("RETENTION_API_MARKETING_TOKEN", "RETENTION_API_ADMIN_TOKEN", "RETENTION_API_EVENTS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    home = migrated_home.resolve()  # serve refuses a home without a platform database
    path = tokens_path(home)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(json.dumps({"marketing": "m" * 43, "admin": "a" * 43}))
    cli = typer.Typer()
    cli.command()(serve)
    # when serve runs
    result = CliRunner().invoke(cli, [])
    # then it says the file was migrated, shows its tokens once, and generates the missing events token
    assert result.exit_code == 0, result.output
    assert "kept the API tokens in clear" in result.output
    assert f"marketing token: {'m' * 43}" in result.output and f"admin token: {'a' * 43}" in result.output
    assert "events token: " in result.output
    assert "m" * 43 not in path.read_text()
