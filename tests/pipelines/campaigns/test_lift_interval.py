"""The campaign lift's interval (statsmodels) equals the closed-form Wald interval of a difference."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pytest

from pipelines.campaigns.lift import lift_estimate


@pytest.mark.parametrize(
    ("returned_t", "n_t", "returned_c", "n_c", "confidence"),
    [(42, 100, 35, 100, 0.95), (380, 900, 31, 100, 0.9), (5, 5, 0, 3, 0.95), (1, 7, 6, 11, 0.99)],
)
def test_lift_interval_is_the_wald_interval(
    returned_t: int, n_t: int, returned_c: int, n_c: int, confidence: float
) -> None:
    treated = np.r_[np.ones(returned_t, int), np.zeros(n_t - returned_t, int)]
    control = np.r_[np.ones(returned_c, int), np.zeros(n_c - returned_c, int)]
    estimate = lift_estimate(treated, control, confidence)
    r_t, r_c = returned_t / n_t, returned_c / n_c
    half = NormalDist().inv_cdf(0.5 + confidence / 2) * np.sqrt(r_t * (1 - r_t) / n_t + r_c * (1 - r_c) / n_c)
    assert estimate["lift"] == pytest.approx(r_t - r_c)
    assert estimate["ci_low"] == pytest.approx(r_t - r_c - half, abs=1e-12)
    assert estimate["ci_high"] == pytest.approx(r_t - r_c + half, abs=1e-12)
