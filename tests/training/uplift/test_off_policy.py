"""Off-policy estimates on randomised data whose answer is known by construction."""

from __future__ import annotations

import numpy as np

from training.uplift.evaluation import ipw_value, weighted_difference


def logged(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two customer types, three arms logged with unequal, known probabilities."""
    rng = np.random.default_rng(seed)
    kind = rng.random(n) < 0.5
    probs = np.where(kind[:, None], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6])  # arms a, b, c
    draw = (rng.random(n)[:, None] > np.cumsum(probs, axis=1)).sum(axis=1)
    arm = np.array(["a", "b", "c"])[draw]
    # true return rates: arm b helps type True (+0.3), hurts type False (-0.1)
    rate = np.where(arm == "b", np.where(kind, 0.6, 0.1), np.where(kind, 0.3, 0.2))
    outcome = (rng.random(n) < rate).astype(float)
    return kind, arm, probs[np.arange(n), draw], outcome


def test_ipw_recovers_the_value_of_a_policy_never_logged_as_such() -> None:
    kind, arm, propensity, outcome = logged(200_000, 0)
    # policy: b to type True, a to type False -> true value 0.5 * 0.6 + 0.5 * 0.2 = 0.4
    follows = np.where(kind, arm == "b", arm == "a").astype(float)
    estimate = ipw_value(outcome, follows, propensity)
    assert estimate.low <= 0.4 <= estimate.high
    assert estimate.se < 0.005
    naive = outcome[follows == 1].mean()  # ignoring the propensities is biased here
    assert abs(naive - 0.4) > 5 * estimate.se


def test_the_weighted_lift_recovers_the_average_effect_and_its_interval_covers() -> None:
    covered = 0
    for seed in range(40):
        _, arm, propensity, outcome = logged(20_000, seed)
        lift = weighted_difference(outcome, arm, propensity, "b", "a", 0.9)
        covered += lift["low"] <= 0.1 <= lift["high"]  # 0.5 * 0.3 + 0.5 * -0.1
    assert 30 <= covered <= 40  # about 90 % of 40
