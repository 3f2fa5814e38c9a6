"""The API's deployment settings (tokens, address, model refresh), read from environment variables.

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

DEFAULT_HOST = "127.0.0.1"  # loopback: exposing the API is a deliberate choice (compose sets 0.0.0.0)
DEFAULT_PORT = 8000
DEFAULT_MODEL_REFRESH_SECONDS = 30.0  # how stale the served champion may be after a promotion
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
    """

    marketing_token: str | None = None
    admin_token: str | None = None
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    model_refresh_seconds: float = DEFAULT_MODEL_REFRESH_SECONDS

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ServingSettings:
        """Read the settings from environment variables, falling back to the defaults.

        Raises:
            ServingSettingsError: a port or refresh interval that is not a (non-negative) number.
        """
        env = os.environ if environ is None else environ
        return cls(
            marketing_token=env.get(ENV_MARKETING_TOKEN) or None,
            admin_token=env.get(ENV_ADMIN_TOKEN) or None,
            host=env.get(ENV_HOST) or DEFAULT_HOST,
            port=_port(env),
            model_refresh_seconds=_number(env, ENV_MODEL_REFRESH, DEFAULT_MODEL_REFRESH_SECONDS),
        )


def _port(env: os._Environ[str] | dict[str, str]) -> int:
    port = _number(env, ENV_PORT, DEFAULT_PORT)
    if not port.is_integer() or port > MAX_PORT:
        raise ServingSettingsError(f"{ENV_PORT} must be a port number (0..{MAX_PORT}), got {port:g}")
    return int(port)


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
