"""The churn model's Platt scaling equals scikit-learn's unpenalised logistic regression where that
fits a positive scale, and keeps the scale positive where it does not (why it is not sklearn's)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from training.churn.fit import platt_scaling


def _data(slope: float, intercept: float, n: int = 4000) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(7)
    logits = rng.normal(-2.0, 1.5, n).astype(np.float32)
    returned = (rng.random(n) < 1 / (1 + np.exp(-(slope * logits + intercept)))).astype(np.float32)
    return torch.from_numpy(logits), torch.from_numpy(returned)


def _sklearn(logits: torch.Tensor, returned: torch.Tensor) -> tuple[float, float]:
    fitted = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000)
    fitted.fit(logits.numpy()[:, None].astype(float), returned.numpy())
    return float(fitted.coef_[0, 0]), float(fitted.intercept_[0])


@pytest.mark.parametrize(("slope", "intercept"), [(1.5, -0.5), (0.6, 0.3), (0.05, -1.0)])
def test_platt_scaling_equals_logistic_regression(slope: float, intercept: float) -> None:
    logits, returned = _data(slope, intercept)
    scale, shift = platt_scaling(logits, returned)
    expected_scale, expected_shift = _sklearn(logits, returned)
    assert scale == pytest.approx(expected_scale, abs=1e-3)
    assert shift == pytest.approx(expected_shift, abs=1e-3)


def test_platt_scaling_never_reverses_the_ranking() -> None:
    logits, returned = _data(-0.3, 0.0)  # a network whose ranking is backwards on validation
    assert _sklearn(logits, returned)[0] < 0  # the library would reverse it
    scale, _ = platt_scaling(logits, returned)
    assert 0 < scale < 1e-2
