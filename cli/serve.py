"""`retention serve`: run the HTTP API (and its web pages) under uvicorn."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from serving.settings import ENV_HOST, ENV_PORT, ENV_WORKERS, MAX_PORT, ServingSettings, ServingSettingsError

if TYPE_CHECKING:
    from serving.auth import TokensFile


def _defaults() -> ServingSettings:
    try:
        return ServingSettings.from_env()
    except ServingSettingsError as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None


def _show_once(tokens_file: TokensFile) -> None:
    """Print the tokens generated or migrated just now: the file keeps digests, so this is the only copy."""
    if tokens_file.migrated:
        typer.echo(
            f"{tokens_file.path} kept the API tokens in clear; it now keeps only their SHA-256 digests. "
            "The tokens still work; copy them now, they are not shown again:"
        )
        for role, token in tokens_file.migrated.items():
            typer.echo(f"  {role} token: {token}")
    if tokens_file.generated:
        typer.echo("New API tokens; copy them now (e.g. into a password manager), they are not shown again:")
        for role, token in tokens_file.generated.items():
            typer.echo(f"  {role} token: {token}")
    typer.echo(f"API token digests: {tokens_file.path} (readable by you only)")


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

    Tokens not set in RETENTION_API_MARKETING_TOKEN / RETENTION_API_ADMIN_TOKEN are generated once and
    printed once; $RETENTION_HOME/secrets/api_tokens.json (mode 0600) keeps only their SHA-256 digests.
    A file of the old format (tokens in clear) is rewritten as digests, its tokens printed one last time.
    Each worker refuses requests past RETENTION_API_MAX_CONCURRENCY in flight with 503 + Retry-After.
    """
    import uvicorn

    from retention.context import require_current_schema
    from retention.settings import Settings
    from serving.auth import ensure_tokens

    serving = _defaults()
    settings = Settings.from_env()
    require_current_schema(settings)  # a missing or unreachable database: one line before any worker starts
    tokens_file = ensure_tokens(serving, settings.home)
    if tokens_file is not None:
        _show_once(tokens_file)
    uvicorn.run(
        "serving.app:create_app",
        factory=True,
        host=host or serving.host,
        port=serving.port if port is None else port,
        workers=workers or serving.workers,
        log_level="info",
    )
