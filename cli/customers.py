"""`retention customers`: personal-data requests about individual customers (the right to erasure)."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer

from cli.context import fail

app = typer.Typer(help="Personal-data requests: forget customers (right to erasure).", no_args_is_help=True)


@app.command()
def forget(
    customer_ids: Annotated[list[str], typer.Argument(help="The customers' ids, as the shop knows them.")],
    actor: Annotated[
        str | None, typer.Option(help="Who asked, for the audit row (default: the operating-system user).")
    ] = None,
) -> None:
    """Remove customers from every store: source, warehouse, features, online store, campaign lists,
    exports, quarantine, staging and the files under the home. Safe to repeat; unknown ids are listed."""
    from pipelines.privacy.erasure import ErasureError, forget_customers
    from retention.context import SchemaBehind

    try:
        report = forget_customers(customer_ids, actor or getpass.getuser())
    except (ErasureError, SchemaBehind) as error:
        fail(str(error))
    removed = ", ".join(f"{store} {n:,}" for store, n in sorted(report.removed.items())) or "nothing"
    typer.echo(f"erasure {report.erasure_id}: {len(report.erased)} customer(s) forgotten; removed: {removed}")
    if report.unknown:
        typer.echo(f"not found (never stored, or already forgotten): {', '.join(report.unknown)}")
    for path in report.unscrubbable:
        typer.echo(f"warning: a binary file still mentions a forgotten customer; delete it: {path}", err=True)
