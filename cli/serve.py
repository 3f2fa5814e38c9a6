"""`retention serve`: run the HTTP API (and its web pages) under uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from serving.settings import ENV_HOST, ENV_PORT, ENV_WORKERS, MAX_PORT, ServingSettings, ServingSettingsError


def _defaults() -> ServingSettings:
    try:
        return ServingSettings.from_env()
    except ServingSettingsError as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None


def serve(
    host: Annotated[
        str | None, typer.Option(help=f"Address to bind (default: ${ENV_HOST} or 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=MAX_PORT, help=f"Port (default: ${ENV_PORT} or 8000).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help=f"Worker processes (default: ${ENV_WORKERS} or 1).")
    ] = None,
) -> None:
    """Serve campaigns, target lists and customer scores over HTTP (bearer tokens; see /docs).

    Tokens not set in RETENTION_API_MARKETING_TOKEN / RETENTION_API_ADMIN_TOKEN are generated once
    into $RETENTION_HOME/secrets/api_tokens.json (mode 0600); the file's path is printed, never a token.
    Each worker refuses requests past RETENTION_API_MAX_CONCURRENCY in flight with 503 + Retry-After.
    """
    import uvicorn

    from retention.settings import Settings
    from serving.auth import ensure_tokens

    serving = _defaults()
    settings = Settings.from_env()
    generated = ensure_tokens(serving, settings.home)
    if generated is not None:
        typer.echo(f"API tokens: {generated} (readable by you only)")
    uvicorn.run(
        "serving.app:create_app",
        factory=True,
        host=host or serving.host,
        port=serving.port if port is None else port,
        workers=workers or serving.workers,
        log_level="info",
    )
