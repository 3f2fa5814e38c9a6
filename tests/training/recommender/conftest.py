"""Tiny event logs and small, fast parameters for the recommender tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feature_store.events import EventLog, event_log_from_frames
from retention.params import Params, load_params

ROOT = Path(__file__).resolve().parents[3]
DAY0 = pd.Timestamp("2026-01-01")


def small_params(**sasrec: object) -> Params:
    """params.yaml with a SASRec small enough to train in seconds on a few dozen customers."""
    params = load_params(ROOT / "params.yaml")
    model = params.recommender.sasrec.model_copy(
        update={
            "max_length": 8,
            "hidden_size": 16,
            "feedforward_size": 32,
            "dropout": 0.0,
            "max_epochs": 40,
            **sasrec,
        }
    )
    recommender = params.recommender.model_copy(
        update={"batch_size": 16, "learning_rate": 0.01, "sasrec": model}
    )
    training = params.training.model_copy(update={"patience": 40, "accelerator": "cpu", "devices": 1})
    return params.model_copy(update={"recommender": recommender, "training": training})


def log_from_sequences(
    sequences: dict[str, list[str]], products: pd.DataFrame | None = None, start: pd.Timestamp = DAY0
) -> EventLog:
    """One purchase per item, a day apart, in the given order per customer."""
    rows = [
        {"customer_id": customer, "product_id": item, "ts": start + pd.Timedelta(days=day)}
        for customer, items in sequences.items()
        for day, item in enumerate(items)
    ]
    return event_log_from_frames(pd.DataFrame(rows), products=products)


def pattern_sequences(customers: int, seed: int) -> dict[str, list[str]]:
    """Random items from p00..p19, except that `a` is always followed by `b` (and `c` by `d`)."""
    rng = np.random.default_rng(seed)
    fillers = [f"p{i:02d}" for i in range(20)]
    out = {}
    for customer in range(customers):
        items: list[str] = []
        while len(items) < 10:
            if rng.random() < 0.3:
                items += ["a", "b"] if rng.random() < 0.5 else ["c", "d"]
            else:
                items.append(str(rng.choice(fillers)))
        out[f"u{customer:03d}"] = items
    return out


@pytest.fixture
def pattern_log() -> EventLog:
    """60 customers whose histories always go a -> b and c -> d."""
    return log_from_sequences(pattern_sequences(60, seed=0))
