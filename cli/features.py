"""`retention features`: list the feature registry, materialise features, training sets and sequences."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from cli.context import fail, load_context, open_context

app = typer.Typer(
    help="Feature store: definitions, offline materialisation, online store.", no_args_is_help=True
)

DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]
AsOf = Annotated[
    datetime, typer.Option("--as-of", formats=DATE_FORMATS, help="Point in time (UTC); rows before it only.")
]
Out = Annotated[Path, typer.Option("--out", help="Parquet file to write (replaced atomically).")]


@app.command("list")
def list_features(
    as_json: Annotated[bool, typer.Option("--json", help="Print the registry as JSON.")] = False,
) -> None:
    """Print the feature registry: name, dtype, window and description, and the feature version."""
    from feature_store.definitions import feature_registry, feature_version

    _, params = load_context()
    registry = feature_registry(params.features)
    version = feature_version(params.features)
    if as_json:
        rows = [
            {
                "name": f.name,
                "entity": f.entity,
                "dtype": f.dtype,
                "window_days": f.window_days,
                "description": f.description,
            }
            for f in registry
        ]
        typer.echo(json.dumps({"feature_version": version, "features": rows}, indent=2))
        return
    width = max(len(f.name) for f in registry)
    typer.echo(f"feature_version {version}: {len(registry)} features of entity customer")
    for f in registry:
        window = f"{f.window_days}d" if f.window_days else "-"
        typer.echo(f"{f.name:<{width}}  {f.dtype:<7}  {window:>5}  {f.description}")


@app.command()
def materialize(as_of: AsOf, out: Out | None = None) -> None:
    """Compute every active customer's features as of a date and write them to Parquet."""
    from feature_store.checks import FeatureValidationError, checked_features
    from feature_store.offline import materialize as run
    from retention.quality import QualityService

    settings, params, engine = open_context()
    target = out or settings.home / "features" / f"features_{as_of:%Y%m%dT%H%M%S}.parquet"
    try:
        features = checked_features(engine, as_of, params.features, QualityService(settings.gx_dir))
        written = run(engine, as_of, params.features, target, features=features)
    except FeatureValidationError as error:
        fail(str(error))
    finally:
        engine.dispose()
    typer.echo(
        f"{written.rows:,} customers as of {as_of} (version {written.feature_version}) -> {written.path}"
    )


@app.command("training-set")
def training_set(as_of: AsOf, out: Out) -> None:
    """Write training rows (customer_id, cutoff, features, returned) for the cutoffs before a date."""
    from feature_store.core import training_cutoffs
    from feature_store.offline import training_set as build
    from feature_store.offline import write_parquet

    _, params, engine = open_context()
    try:
        rows = build(engine, as_of, params.features)
    finally:
        engine.dispose()
    written = write_parquet(rows, out, as_of, params.features)
    cutoffs = ", ".join(f"{c:%Y-%m-%d}" for c in training_cutoffs(as_of, params.features))
    rate = rows["returned"].mean() if len(rows) else float("nan")
    typer.echo(f"{written.rows:,} rows, cutoffs {cutoffs}, returned rate {rate:.3f} -> {written.path}")


@app.command()
def sequences(as_of: AsOf, out: Out) -> None:
    """Write the last `sequence_length` events of every customer before a date (long format)."""
    from feature_store.offline import sequences_at, write_parquet

    _, params, engine = open_context()
    try:
        frame = sequences_at(engine, as_of, params.features)
    finally:
        engine.dispose()
    written = write_parquet(frame, out, as_of, params.features)
    typer.echo(f"{written.rows:,} events of {frame['customer_id'].nunique():,} customers -> {written.path}")


@app.command("refresh-online")
def refresh_online(
    as_of: Annotated[
        datetime | None,
        typer.Option(
            "--as-of",
            formats=DATE_FORMATS,
            help="Point in time (UTC); default: the end of the newest published warehouse interval.",
        ),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option("--report", help="Also write a summary of the features as JSON (DVC metrics)."),
    ] = None,
) -> None:
    """Replace the online store with every active customer's features as of a date."""
    import json

    from feature_store.checks import FeatureValidationError, checked_features
    from feature_store.online import refresh_online as refresh
    from pipelines.extract.publish import data_end
    from retention.atomic import atomic_path
    from retention.quality import QualityService

    settings, params, engine = open_context()
    try:
        end = data_end(engine)
        if as_of is not None:
            when = as_of
        elif end is not None:
            when = end.to_pydatetime()
        else:
            fail("no published warehouse interval yet: run `retention extract` first, or give --as-of")
        features = checked_features(engine, when, params.features, QualityService(settings.gx_dir))
        rows = refresh(engine, when, params.features, features=features)
    except FeatureValidationError as error:
        fail(str(error))
    finally:
        engine.dispose()
    typer.echo(f"online store: {rows:,} customers as of {when}")
    if report:
        numeric = features.select_dtypes("number")
        figures = {
            "customers": rows,
            "as_of": str(when),
            **{f"mean_{c}": float(numeric[c].mean()) for c in numeric},
        }
        with atomic_path(report) as tmp:
            tmp.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")


@app.command("materialise-results")
def materialise_results(
    as_of: Annotated[
        datetime | None,
        typer.Option(
            "--as-of",
            formats=DATE_FORMATS,
            help="End of the history the lists read (UTC); default: the newest published interval's end.",
        ),
    ] = None,
    customers: Annotated[
        list[str] | None,
        typer.Option("--customer", help="Recompute only this customer's list (repeatable); default: all."),
    ] = None,
) -> None:
    """Write the champions' answers for serving (churn scores, top-N lists) into the online store.

    The DAGs run this after each extraction and after the gates; only changed documents are written.
    """
    from pipelines.materialise import task_materialise

    written = task_materialise(as_of, customers or None)
    typer.echo(", ".join(f"{kind}: {n:,} documents written" for kind, n in written.items()))
