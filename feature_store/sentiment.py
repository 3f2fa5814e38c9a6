"""Review text sentiment: a frozen sentence encoder plus a logistic-regression head on weak labels.

Training (`train`) reads warehouse reviews written before a cutoff, labels them from their star
rating (high = positive, low = negative, the middle left out), fits the head on the unit-length
embeddings with both classes weighted equally (ratings skew positive; equal weights keep 0.5 the
neutral point, so a clearly negative text scores low), reports held-out quality and saves the head with a JSON card under
`<home>/models/sentiment/`. The saved head is frozen: scoring (`score_reviews`) only loads it, and
a new head comes only from an explicit retraining, which changes `model_version` and so makes
the next scoring pass rescore every review.

The score of a review is P(positive) in [0, 1] under equal class priors, stored in
`review_sentiment`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select, text

from feature_store.sentiment_encoder import EMBEDDING_DIM, ENCODER_NAME, encode
from retention.atomic import atomic_path
from retention.params import SentimentParams
from retention.settings import Settings

log = logging.getLogger(__name__)

MODEL_SUBDIR = Path("models") / "sentiment"
HEAD_FILE = "head.npz"
CARD_FILE = "card.json"


class SentimentError(RuntimeError):
    """Training or scoring cannot proceed (too few labelled reviews, no trained model...)."""


@dataclass(frozen=True)
class HeldOut:
    """Quality of the head on the held-out labelled reviews.

    Attributes:
        n: held-out reviews.
        n_positive: those labelled positive (`1 - n_positive / n` is the majority-class accuracy).
        roc_auc: ROC-AUC of the score against the rating label (None with a single class).
        accuracy: share of reviews where `score > 0.5` matches the rating label.
        balanced_accuracy: mean of that share over the two classes.
        tone: what the caller's `judge_tone` made of the held-out scores (for the simulated shop:
            agreement with its latent text tone, `pipelines.simulate.tone`), or None.
    """

    n: int
    n_positive: int
    roc_auc: float | None
    accuracy: float
    balanced_accuracy: float
    tone: dict | None


@dataclass(frozen=True)
class SentimentModel:
    """A trained head: P(positive) = sigmoid(embedding . coef + intercept)."""

    coef: np.ndarray  # (EMBEDDING_DIM,)
    intercept: float
    card: dict

    @property
    def model_version(self) -> str:
        return self.card["model_version"]

    def score(self, embeddings: np.ndarray) -> np.ndarray:
        """P(positive) of each embedding row (N, EMBEDDING_DIM) -> (N,)."""
        return 1.0 / (1.0 + np.exp(-(embeddings.astype(np.float64) @ self.coef + self.intercept)))

    def score_texts(self, texts: list[str], batch_size: int) -> np.ndarray:
        """P(positive) of each text."""
        return self.score(encode(texts, batch_size))


@dataclass(frozen=True)
class TrainResult:
    """What `train` produced: the model's version, where it is, and its held-out quality."""

    model_version: str
    path: Path
    n_reviews: int  # labelled reviews used (train + held out)
    n_train: int
    held_out: HeldOut
    card: dict


def model_dir(settings: Settings) -> Path:
    """Folder of the sentiment head and its card."""
    return settings.home / MODEL_SUBDIR


def weak_labels(ratings: pd.Series, params: SentimentParams) -> pd.Series:
    """Rating-based labels: 1 (positive), 0 (negative) or <NA> (in between, left out)."""
    labels = pd.Series(pd.NA, index=ratings.index, dtype="Int64")
    labels[ratings >= params.positive_min_rating] = 1
    labels[ratings <= params.negative_max_rating] = 0
    return labels


def read_reviews(engine: Engine, before: datetime | None = None) -> pd.DataFrame:
    """Warehouse reviews with non-empty text written before `before` (all without it), by review_id."""
    from retention.db.warehouse import WAREHOUSE

    reviews = WAREHOUSE["reviews"]
    query = (
        select(reviews.c.review_id, reviews.c.ts, reviews.c.rating, reviews.c.text)
        .where(reviews.c.text.is_not(None), reviews.c.text != "")
        .order_by(reviews.c.review_id)
    )
    if before is not None:  # typed bind: compares correctly with SQLite's text timestamps
        query = query.where(reviews.c.ts < before)
    with engine.connect() as connection:
        frame = pd.read_sql_query(query, connection)
    frame["ts"] = pd.to_datetime(frame["ts"])
    return frame[frame["text"].str.strip() != ""].reset_index(drop=True)


ToneJudge = Callable[[Sequence[str], np.ndarray], dict | None]


def train(
    engine: Engine,
    settings: Settings,
    params: SentimentParams,
    trained_before: datetime | None = None,
    judge_tone: ToneJudge | None = None,
) -> TrainResult:
    """Fit the sentiment head on weakly labelled warehouse reviews and save it (replacing any old one).

    Args:
        engine: the platform database.
        settings: where the model goes (`<home>/models/sentiment/`).
        params: the `sentiment` section of params.yaml.
        trained_before: only reviews with ts before this (naive UTC) are used, so features of
            earlier dates never see later labels; None uses every review.
        judge_tone: an extra check of the held-out scores against the texts (the simulator's
            latent tone); its result is reported as `held_out.tone`.

    Returns:
        The model version, its folder and its held-out metrics.

    Raises:
        SentimentError: fewer than `min_reviews` labelled reviews, or only one class among them.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score
    from sklearn.model_selection import train_test_split

    reviews = read_reviews(engine, trained_before)
    reviews["label"] = weak_labels(reviews["rating"], params)
    labelled = reviews.dropna(subset=["label"]).reset_index(drop=True)
    labels = labelled["label"].astype(int).to_numpy()
    period = f"before {trained_before:%Y-%m-%d %H:%M}" if trained_before else "all time"
    log.info(
        "sentiment: %s reviews with text (%s), %s labelled (%s positive)",
        f"{len(reviews):,}",
        period,
        f"{len(labelled):,}",
        f"{int(labels.sum()):,}",
    )
    _check_trainable(labels, params)

    train_idx, held_idx = train_test_split(
        np.arange(len(labelled)),
        test_size=params.holdout_share,
        random_state=params.seed,
        stratify=labels,
    )
    embeddings = encode(labelled["text"].tolist(), params.batch_size)
    head = LogisticRegression(
        C=params.regularisation, class_weight="balanced", max_iter=1000, random_state=params.seed
    )
    head.fit(embeddings[train_idx], labels[train_idx])
    model = SentimentModel(
        coef=head.coef_[0].astype(np.float64), intercept=float(head.intercept_[0]), card={}
    )

    scores = model.score(embeddings[held_idx])
    y_held = labels[held_idx]
    held_out = HeldOut(
        n=len(held_idx),
        n_positive=int(y_held.sum()),
        roc_auc=round(float(roc_auc_score(y_held, scores)), 4) if len(set(y_held)) == 2 else None,
        accuracy=round(float(accuracy_score(y_held, scores > 0.5)), 4),
        balanced_accuracy=round(float(balanced_accuracy_score(y_held, scores > 0.5)), 4),
        tone=judge_tone(labelled["text"].iloc[held_idx].tolist(), scores) if judge_tone else None,
    )
    card: dict[str, Any] = {
        "model_version": _version(model.coef, model.intercept, params),
        "encoder": ENCODER_NAME,
        "params": params.model_dump(mode="json"),
        "trained_before": trained_before.isoformat() if trained_before else None,
        "period": {"first_ts": str(labelled["ts"].min()), "last_ts": str(labelled["ts"].max())},
        "n_reviews": len(labelled),
        "n_train": len(train_idx),
        "n_positive": int(labels.sum()),
        "held_out": asdict(held_out),
        "trained_at": datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    path = _save(SentimentModel(model.coef, model.intercept, card), model_dir(settings))
    log.info(
        "sentiment model %s: held-out ROC-AUC %s, accuracy %.3f on %s reviews",
        card["model_version"],
        held_out.roc_auc,
        held_out.accuracy,
        held_out.n,
    )
    return TrainResult(
        model_version=card["model_version"],
        path=path,
        n_reviews=len(labelled),
        n_train=len(train_idx),
        held_out=held_out,
        card=card,
    )


def load_model(settings: Settings) -> SentimentModel:
    """The saved sentiment head.

    Raises:
        SentimentError: no model has been trained, or its files do not belong together.
    """
    folder = model_dir(settings)
    head_path, card_path = folder / HEAD_FILE, folder / CARD_FILE
    if not head_path.exists() or not card_path.exists():
        raise SentimentError(f"no sentiment model in {folder}: run `retention sentiment train` first")
    card = json.loads(card_path.read_text())
    with np.load(head_path) as arrays:
        coef, intercept, version = arrays["coef"], float(arrays["intercept"]), str(arrays["model_version"])
    if version != card["model_version"] or coef.shape != (EMBEDDING_DIM,):
        raise SentimentError(f"{folder}: head {version} does not match card {card['model_version']}; retrain")
    return SentimentModel(coef=coef, intercept=intercept, card=card)


def score_reviews(engine: Engine, settings: Settings, params: SentimentParams) -> int:
    """Score every warehouse review with text that the saved model has not scored yet.

    A review is (re)scored when it has no `review_sentiment` row, a row from another model
    version, or was updated after it was scored. Reviews without text get no row. All rows are
    written in one transaction; a second call with nothing new writes nothing.

    Returns:
        The number of review_sentiment rows written.
    """
    from retention.clock import utc_now
    from retention.db.warehouse import ReviewSentiment
    from retention.db.writes import write_frame

    model = load_model(settings)
    sql = text(
        "SELECT r.review_id, r.text FROM wh_reviews r "
        "LEFT JOIN review_sentiment s ON s.review_id = r.review_id "
        "WHERE r.text IS NOT NULL AND r.text <> '' "
        "AND (s.review_id IS NULL OR s.model_version <> :version OR r.updated_at > s.scored_at) "
        "ORDER BY r.review_id"
    )
    with engine.connect() as connection:
        todo = pd.read_sql_query(sql, connection, params={"version": model.model_version})
    todo = todo[todo["text"].str.strip() != ""]
    if todo.empty:
        log.info("sentiment: nothing to score with model %s", model.model_version)
        return 0
    log.info("sentiment: scoring %s reviews with model %s", f"{len(todo):,}", model.model_version)
    frame = pd.DataFrame(
        {
            "review_id": todo["review_id"].to_numpy(),
            "score": model.score_texts(todo["text"].tolist(), params.batch_size),
            "model_version": model.model_version,
            "scored_at": utc_now(),
        }
    )
    with engine.begin() as connection:
        written = write_frame(connection, ReviewSentiment.__table__, frame, mode="upsert")
    log.info("sentiment: wrote %s scores", f"{written:,}")
    return written


def _check_trainable(labels: np.ndarray, params: SentimentParams) -> None:
    if len(labels) < params.min_reviews:
        raise SentimentError(
            f"only {len(labels)} labelled reviews (rating >= {params.positive_min_rating} or "
            f"<= {params.negative_max_rating}) with text; training needs at least {params.min_reviews}"
        )
    counts = np.bincount(labels, minlength=2)
    if counts.min() < 2:
        raise SentimentError(
            f"labelled reviews hold {counts[1]} positive and {counts[0]} negative: "
            "training needs at least 2 of each class"
        )


def _version(coef: np.ndarray, intercept: float, params: SentimentParams) -> str:
    digest = hashlib.sha256()
    digest.update(np.asarray(coef, dtype=np.float64).round(10).tobytes())
    digest.update(repr(round(intercept, 10)).encode())
    digest.update(
        json.dumps({"encoder": ENCODER_NAME, **params.model_dump(mode="json")}, sort_keys=True).encode()
    )
    return digest.hexdigest()[:12]


def _save(model: SentimentModel, folder: Path) -> Path:
    """Write head then card, each atomically; `load_model` rejects a head and card that differ."""
    # A file object, not a path: np.savez would append ".npz" to the temporary name.
    with atomic_path(folder / HEAD_FILE) as tmp, tmp.open("wb") as handle:
        np.savez(handle, coef=model.coef, intercept=model.intercept, model_version=model.model_version)
    with atomic_path(folder / CARD_FILE) as tmp:
        tmp.write_text(json.dumps(model.card, indent=2, sort_keys=True) + "\n")
    return folder
