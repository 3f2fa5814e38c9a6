"""The API's deployment settings (tokens, address, model refresh, workers, overload control and the limit on
failed token attempts), read from environment variables.

Like `retention.settings`, these are environment settings, not model parameters: they differ per
deployment and two of them are secrets, so they never go into params.yaml.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

ENV_MARKETING_TOKEN = "RETENTION_API_MARKETING_TOKEN"
ENV_ADMIN_TOKEN = "RETENTION_API_ADMIN_TOKEN"
ENV_HOST = "RETENTION_API_HOST"
ENV_PORT = "RETENTION_API_PORT"
ENV_MODEL_REFRESH = "RETENTION_API_MODEL_REFRESH_SECONDS"
ENV_EVENTS_TOKEN = "RETENTION_API_EVENTS_TOKEN"
ENV_COMPUTE_BUDGET = "RETENTION_API_COMPUTE_BUDGET_SECONDS"
ENV_WORKERS = "RETENTION_API_WORKERS"
ENV_MAX_CONCURRENCY = "RETENTION_API_MAX_CONCURRENCY"
ENV_REQUEST_TIMEOUT = "RETENTION_API_REQUEST_TIMEOUT_SECONDS"
ENV_AUTH_FAILURES = "RETENTION_API_AUTH_FAILURES_PER_MINUTE"

DEFAULT_HOST = "127.0.0.1"  # loopback: exposing the API is a deliberate choice (compose sets 0.0.0.0)
DEFAULT_PORT = 8000
DEFAULT_MODEL_REFRESH_SECONDS = 30.0  # how stale the served champion may be after a promotion
# A score that is not materialised (or stale) is computed on demand if it takes at most this long.
DEFAULT_COMPUTE_BUDGET_SECONDS = 2.0
DEFAULT_WORKERS = 1  # uvicorn worker processes; each loads the champions and has its own concurrency bound
# In-flight requests per worker. The handlers share one GIL, so admitting more adds no throughput, only
# queueing: under overload an admitted request waits about this many service times. Below anyio's 40
# worker threads, so an admitted request never waits for a thread; high enough that a burst after a
# scheduling hiccup (requests piling up while the process was descheduled) is not refused (8 was).
DEFAULT_MAX_CONCURRENCY = 32
DEFAULT_REQUEST_TIMEOUT_SECONDS = 10.0  # a request not answered by then gets 503 and its work is dropped
# Wrong tokens (API header, cookie or login form) one client may present per minute before it gets 429. A
# person mistyping a token stays far below; a guesser is slowed to this many tries a minute per worker.
DEFAULT_AUTH_FAILURES_PER_MINUTE = 10
MAX_PORT = 65535


class ServingSettingsError(ValueError):
    """An API environment variable holds a value that cannot be used."""


@dataclass(frozen=True)
class ServingSettings:
    """Resolved API settings.

    Attributes:
        marketing_token: the read-only token (None: taken from the secrets file).
        admin_token: the admin token (None: taken from the secrets file).
        host: the address `retention serve` binds.
        port: its port.
        model_refresh_seconds: the champion alias is re-read at most this often (0: every request).
        workers: uvicorn worker processes `retention serve` starts.
        max_concurrency: requests in flight per worker; more are refused with 503 and `Retry-After`.
        request_timeout_seconds: a request's time budget; past it the client gets 503 and the work is dropped.
        events_token: the write token of `POST /events` (None: taken from the secrets file, if any).
        compute_budget_seconds: how long a request may compute a score that is not materialised
            (or is stale) before it answers 503.
        auth_failures_per_minute: wrong tokens a client (by address) may present within a minute, from
            `RETENTION_API_AUTH_FAILURES_PER_MINUTE` (default 10); past it every token attempt of that
            client, right or wrong, is answered 429 with `Retry-After` until its oldest failure is a
            minute old. Correct tokens never count. Kept per worker process (`workers` multiplies it).
    """

    marketing_token: str | None = None
    admin_token: str | None = None
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    model_refresh_seconds: float = DEFAULT_MODEL_REFRESH_SECONDS
    workers: int = DEFAULT_WORKERS
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    request_timeout_seconds: float = DEFAULT_REQUEST_TIMEOUT_SECONDS
    events_token: str | None = None
    compute_budget_seconds: float = DEFAULT_COMPUTE_BUDGET_SECONDS
    auth_failures_per_minute: int = DEFAULT_AUTH_FAILURES_PER_MINUTE

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ServingSettings:
        """Read the settings from environment variables, falling back to the defaults.

        Raises:
            ServingSettingsError: a port or refresh interval that is not a (non-negative) number, a
                worker count, concurrency bound or failure limit that is not a positive integer, a time
                budget that is not positive.
        """
        env = os.environ if environ is None else environ
        return cls(
            marketing_token=env.get(ENV_MARKETING_TOKEN) or None,
            admin_token=env.get(ENV_ADMIN_TOKEN) or None,
            host=env.get(ENV_HOST) or DEFAULT_HOST,
            port=_port(env),
            model_refresh_seconds=_number(env, ENV_MODEL_REFRESH, DEFAULT_MODEL_REFRESH_SECONDS),
            workers=_positive_int(env, ENV_WORKERS, DEFAULT_WORKERS),
            max_concurrency=_positive_int(env, ENV_MAX_CONCURRENCY, DEFAULT_MAX_CONCURRENCY),
            request_timeout_seconds=_positive(env, ENV_REQUEST_TIMEOUT, DEFAULT_REQUEST_TIMEOUT_SECONDS),
            events_token=env.get(ENV_EVENTS_TOKEN) or None,
            compute_budget_seconds=_positive(env, ENV_COMPUTE_BUDGET, DEFAULT_COMPUTE_BUDGET_SECONDS),
            auth_failures_per_minute=_positive_int(env, ENV_AUTH_FAILURES, DEFAULT_AUTH_FAILURES_PER_MINUTE),
        )


def _port(env: os._Environ[str] | dict[str, str]) -> int:
    port = _number(env, ENV_PORT, DEFAULT_PORT)
    if not port.is_integer() or port > MAX_PORT:
        raise ServingSettingsError(f"{ENV_PORT} must be a port number (0..{MAX_PORT}), got {port:g}")
    return int(port)


def _positive_int(env: os._Environ[str] | dict[str, str], name: str, default: int) -> int:
    value = _positive(env, name, default)
    if not value.is_integer():
        raise ServingSettingsError(f"{name} must be a positive integer, got {env.get(name)!r}")
    return int(value)


def _positive(env: os._Environ[str] | dict[str, str], name: str, default: float) -> float:
    value = _number(env, name, default)
    if value == 0:
        raise ServingSettingsError(f"{name} must be positive, got {env.get(name)!r}")
    return value


def _number(env: os._Environ[str] | dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return float(default)
    try:
        value = float(raw)
    except ValueError:
        raise ServingSettingsError(f"{name} must be a number, got {raw!r}") from None
    if value < 0:
        raise ServingSettingsError(f"{name} must not be negative, got {raw!r}")
    return value
