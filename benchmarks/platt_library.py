"""Benchmark: the churn model's Platt scaling against scikit-learn's, values and time.

Synthetic hazard logits with a known calibration slope and shift; `training.churn.fit.platt_scaling`
against `LogisticRegression(C=inf)` on the one logit feature and against the sigmoid fit of
`CalibratedClassifierCV(method="sigmoid")` (Platt's smoothed targets). Times: median of 5 runs.

Usage: python benchmarks/platt_library.py
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch
from sklearn.calibration import _sigmoid_calibration  # what CalibratedClassifierCV(method="sigmoid") fits
from sklearn.linear_model import LogisticRegression

from training.churn.fit import platt_scaling

T = TypeVar("T")

CASES = [(2000, 1.5, -0.5), (20000, 0.6, 0.3), (50000, 1.0, -2.0), (5000, 0.05, -1.0), (5000, -0.3, 0.0)]


def _median_s(call: Callable[[], T]) -> tuple[T, float]:
    times = []
    for _ in range(4):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    result = call()
    times.append(time.perf_counter() - start)
    return result, statistics.median(times)


def main() -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    print("n, true (slope, shift): ours | LogisticRegression(C=inf) | CalibratedClassifierCV sigmoid; times")
    for n, slope, shift in CASES:
        x = rng.normal(-2, 1.5, n).astype(np.float32)
        y = (rng.random(n) < 1 / (1 + np.exp(-(slope * x + shift)))).astype(np.float32)
        ours, t_ours = _median_s(lambda: platt_scaling(torch.from_numpy(x), torch.from_numpy(y)))  # noqa: B023
        fitted, t_lr = _median_s(
            lambda: LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000).fit(x[:, None].astype(float), y)  # noqa: B023
        )
        a, b = _sigmoid_calibration(x.astype(float), y)  # p = 1 / (1 + exp(a x + b))
        library = (float(fitted.coef_[0, 0]), float(fitted.intercept_[0]))
        print(
            f"{n}, ({slope}, {shift}): {np.round(ours, 4)} | {np.round(library, 4)} | {np.round((-a, -b), 4)};"
            f" {t_ours * 1e3:.1f} ms | {t_lr * 1e3:.1f} ms"
        )


if __name__ == "__main__":
    main()
