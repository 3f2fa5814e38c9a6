"""A randomised three-arm campaign log with known, heterogeneous effects (shared by the uplift tests)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retention.params import UpliftParams, load_params
from tests.conftest import ROOT

CONTROL = "none"


@dataclass
class Synthetic:
    X: np.ndarray
    arm: np.ndarray
    y: np.ndarray
    propensity: np.ndarray
    effect: dict[str, np.ndarray]  # the true E[y | arm, x] - E[y | control, x]
    base: np.ndarray  # the true E[y | control, x]


def campaign(n: int = 6000, seed: int = 0, binary: bool = True) -> Synthetic:
    """Arm `coupon` helps only customers with x1 > 0 (+0.25); arm `mail` hurts everyone a little (-0.08).

    Amounts (binary=False) are the 0/1 outcome times an exponential amount of mean 10, so their
    effects are 10 x the binary ones.
    """
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    arm = rng.choice(np.array([CONTROL, "coupon", "mail"]), size=n, p=[0.4, 0.3, 0.3])
    base = 0.3 + 0.1 * np.tanh(X[:, 0])
    effect = {"coupon": 0.25 * (X[:, 1] > 0), "mail": np.full(n, -0.08)}
    mean = base + np.select([arm == "coupon", arm == "mail"], [effect["coupon"], effect["mail"]], 0.0)
    bought = (rng.random(n) < mean).astype(float)
    y = bought if binary else bought * rng.exponential(10.0, n)  # spend-like: mostly 0, else about 10
    if not binary:
        effect = {k: 10 * v for k, v in effect.items()}
        base = 10 * base
    propensity = np.select([arm == CONTROL], [0.4], 0.3)
    return Synthetic(X, arm, y, propensity, effect, base)


def small_params(**changes: object) -> UpliftParams:
    """params.yaml's uplift section with fewer trees and epochs (the code paths, quickly)."""
    params = load_params(ROOT / "params.yaml").uplift
    net = params.net.model_copy(update={"max_epochs": 8, "batch_size": 256})
    return params.model_copy(update={"trees": 60, "min_leaf_rows": 100, "net": net, **changes})
