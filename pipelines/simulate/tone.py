"""Evaluation only: the simulated shop's latent tone of a review text, recovered from its vocabulary.

The simulated shop writes each review text from one tone (negative, neutral, positive) drawn
from the customer's latent satisfaction, independently of the star rating. The tone is read back
from the opening phrase, which gives the sentiment head a label that is not the rating it was
trained on. Texts that are not from the simulator get no tone.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

from pipelines.simulate.vocabulary import REVIEW_OPENINGS

MIN_RECOGNISED_SHARE = 0.95  # below this share of recognised texts the data is not the simulator's


@functools.cache
def _openings() -> list[tuple[re.Pattern[str], str]]:
    patterns = []
    for tone, phrases in REVIEW_OPENINGS.items():
        for phrase in phrases:
            head, tail = (re.escape(part) for part in phrase.split("{noun}"))
            patterns.append((re.compile(f"^{head}.+?{tail}( |$)"), tone))
    return patterns


def text_tone(text: str | None) -> str | None:
    """The simulator tone of a review text, or None when the text is not one of its phrases."""
    if not text:
        return None
    for pattern, tone in _openings():
        if pattern.match(text):
            return tone
    return None


def tone_agreement(texts: Sequence[str], scores: np.ndarray) -> dict | None:
    """How well sentiment scores agree with the simulator's tone of the same texts.

    Args:
        texts: review texts.
        scores: P(positive) for each text.

    Returns:
        None when the texts are not (almost all) simulator texts; otherwise `n`, the share of
        recognised texts, the mean score per tone, the ROC-AUC of positive against negative tone,
        and the accuracy of `score > 0.5` on texts of positive or negative tone.
    """
    tones = np.asarray([text_tone(t) for t in texts], dtype=object)
    recognised = tones != None  # noqa: E711 (element-wise comparison)
    if len(texts) == 0 or recognised.mean() < MIN_RECOGNISED_SHARE:
        return None
    scores = np.asarray(scores, dtype=float)
    polar = np.isin(tones, ["negative", "positive"])
    positive = tones[polar] == "positive"
    two_classes = 0 < positive.sum() < positive.size
    return {
        "n": int(recognised.sum()),
        "recognised_share": round(float(recognised.mean()), 4),
        "mean_score": {
            t: round(float(scores[tones == t].mean()), 4)
            for t in ("negative", "neutral", "positive")
            if (tones == t).any()
        },
        "roc_auc": round(float(roc_auc_score(positive, scores[polar])), 4) if two_classes else None,
        "accuracy": round(float(((scores[polar] > 0.5) == positive).mean()), 4) if polar.any() else None,
    }
