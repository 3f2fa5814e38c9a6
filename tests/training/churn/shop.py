"""A tiny seeded shop (regular and fading buyers) and fast return-model params for the churn tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from retention.params import Params, load_params

ROOT = Path(__file__).resolve().parents[3]
START = pd.Timestamp("2026-01-01")
AS_OF = pd.Timestamp("2026-05-01")
HORIZON = 28


def tiny_events(customers: int = 60, days: int = 150, seed: int = 7) -> pd.DataFrame:
    """Purchases (and a few views) of customers whose buying rate differs and who may stop.

    Half the customers are regular (a purchase every ~8 days, rarely stopping), the others buy
    every ~20 days and stop after a random time, so recency and frequency carry the signal.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(customers):
        regular = c % 2 == 0
        gap, stop = (8.0, days * 2.0) if regular else (20.0, rng.uniform(10, days))
        t = rng.uniform(0, 30)
        n = 0
        while t < min(days, stop):
            ts = START + pd.Timedelta(days=float(t))
            order = f"o{c}-{n}"
            rows.append((f"c{c:03d}", "p1", "view", ts - pd.Timedelta(minutes=5), 1, np.nan, None))
            rows.append((f"c{c:03d}", f"p{n % 3}", "purchase", ts, 1 + n % 2, 10.0 + c % 5, order))
            t += rng.exponential(gap)
            n += 1
    return pd.DataFrame(
        rows, columns=["customer_id", "product_id", "event_type", "ts", "quantity", "price", "order_id"]
    )


def fast_params(**return_model: object) -> Params:
    """params.yaml with a small, quick return model (one network, few epochs)."""
    params = load_params(ROOT / "params.yaml")
    model = params.return_.model_copy(
        update={"ensemble": 1, "hidden_size": 16, "sequence_size": 8, "sequence_length": 8, "batch_size": 64}
        | return_model
    )
    training = params.training.model_copy(
        update={"max_epochs": 3, "patience": 2, "accelerator": "cpu", "devices": 1}
    )
    return params.model_copy(update={"return_": model, "training": training})
