"""`retention sentiment`: train the review sentiment head, and score warehouse reviews with it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from cli.context import fail, open_context

app = typer.Typer(help="Review text sentiment: train the head, score reviews.", no_args_is_help=True)


@app.command()
def train(
    before: Annotated[
        datetime | None,
        typer.Option(
            "--before",
            formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"],
            help="Use only reviews written before this date (UTC); default: all reviews.",
        ),
    ] = None,
) -> None:
    """Train the sentiment head on rating-labelled warehouse reviews and print its held-out quality."""
    from feature_store.sentiment import SentimentError
    from feature_store.sentiment import train as train_model
    from pipelines.simulate.tone import tone_agreement

    settings, params, engine = open_context()
    try:
        result = train_model(engine, settings, params.sentiment, before, judge_tone=tone_agreement)
    except SentimentError as error:
        fail(str(error))
    finally:
        engine.dispose()
    held = result.held_out
    typer.echo(f"model {result.model_version} saved in {result.path}")
    typer.echo(f"trained on {result.n_train:,} of {result.n_reviews:,} labelled reviews")
    typer.echo(
        f"held out: {held.n:,} reviews ({held.n_positive:,} positive): ROC-AUC {held.roc_auc}, "
        f"accuracy {held.accuracy:.3f}, balanced accuracy {held.balanced_accuracy:.3f}"
    )
    if held.tone:
        tone = held.tone
        means = ", ".join(f"{name} {value:.2f}" for name, value in tone["mean_score"].items())
        typer.echo(
            f"vs simulator text tone: ROC-AUC {tone['roc_auc']}, accuracy {tone['accuracy']}; "
            f"mean score by tone: {means}"
        )


@app.command()
def score() -> None:
    """Score every warehouse review with text that the current model has not scored yet."""
    from feature_store.sentiment import SentimentError, score_reviews

    settings, params, engine = open_context()
    try:
        written = score_reviews(engine, settings, params.sentiment)
    except SentimentError as error:
        fail(str(error))
    finally:
        engine.dispose()
    typer.echo(f"scored {written:,} reviews")
