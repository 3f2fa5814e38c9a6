"""`retention backtest --task uplift`: files in, files out (EVALUATION.md task 3).

Reads a training campaign log and a customers file, fits one learner on the log (tuning, if any,
on the log alone), and writes `uplift_scores.csv` (user_id, `uplift_<arm>` per treatment arm,
best_arm) and `metrics.json` (the learner, its parameters, the inner cross-validated figures it
chose by, the dataset fingerprint). Anyone can score the output against the customers' outcomes.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from retention.atomic import atomic_path
from training.uplift.data import FeatureEncoder, LogFormat, read_campaign_log, read_customers, shared_features
from training.uplift.evaluation import best_arms
from training.uplift.registry import make_learner

if TYPE_CHECKING:
    from retention.params import UpliftParams

log = logging.getLogger("retention.training")
SCORES_FILE = "uplift_scores.csv"
METRICS_FILE = "metrics.json"


@dataclass(frozen=True)
class UpliftBacktestRequest:
    """What to fit and score (the command's options)."""

    train: Path
    test: Path
    control: str
    outcome: str
    out: Path
    arm_col: str = "arm"
    id_col: str = "user_id"
    fmt: LogFormat = "log"
    learner: str | None = None  # None: params.yaml uplift.learner


@dataclass(frozen=True)
class UpliftBacktestResult:
    """What the backtest wrote."""

    scores: Path
    metrics: Path
    learner: str
    treatments: list[str]
    n_train: int
    n_test: int
    fit_seconds: float


def run_uplift_backtest(request: UpliftBacktestRequest, params: UpliftParams) -> UpliftBacktestResult:
    """Fit the learner on the training log, score the customers, write the two files.

    Raises:
        UpliftDataError: a bad log or customers file (the message names the problem).
        ValueError: an unknown learner.
    """
    name = request.learner or params.learner
    make_learner(name, params, request.control)  # an unknown name fails before any reading
    features = shared_features(
        request.train, request.test, request.fmt, request.id_col, request.arm_col, request.outcome
    )
    campaign = read_campaign_log(
        request.train,
        request.outcome,
        request.control,
        features=features,
        fmt=request.fmt,
        arm_col=request.arm_col,
        id_col=request.id_col,
    )
    user_id, customers = read_customers(request.test, features, fmt=request.fmt, id_col=request.id_col)
    log.info(
        "uplift backtest: %d logged rows, arms %s vs %r, %d customers",
        len(campaign),
        list(campaign.treatments),
        request.control,
        len(user_id),
    )
    encoder = FeatureEncoder().fit(campaign.features)
    started = time.perf_counter()
    learner = make_learner(name, params, request.control).fit(
        encoder.transform(campaign.features), campaign.arm.to_numpy(), campaign.outcome, campaign.propensity
    )
    seconds = time.perf_counter() - started
    uplift = learner.predict_uplift(encoder.transform(customers))
    scores = pd.concat([user_id.reset_index(drop=True), uplift], axis=1)
    scores["best_arm"] = best_arms(uplift, request.control)
    request.out.mkdir(parents=True, exist_ok=True)
    with atomic_path(request.out / SCORES_FILE) as tmp:
        scores.to_csv(tmp, index=False)
    description = learner.describe()
    metrics: dict[str, Any] = {
        "task": "uplift",
        "learner": name,
        "parameters": {k: v for k, v in description.items() if k != "inner_cv"},
        "inner_cv": description.get("inner_cv"),
        "effect_sizes": learner.effect_sizes,
        "dataset_fingerprint": campaign.fingerprint(),
        "train": str(request.train),
        "test": str(request.test),
        "outcome": request.outcome,
        "control": request.control,
        "treatments": list(campaign.treatments),
        "propensity": "logged"
        if "propensity" in pd.read_csv(request.train, nrows=0).columns
        else "arm share",
        "features": list(features),
        "encoded_features": encoder.names,
        "n_train": len(campaign),
        "n_test": len(user_id),
        "fit_seconds": round(seconds, 2),
    }
    with atomic_path(request.out / METRICS_FILE) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2, default=str) + "\n")
    log.info("uplift backtest: %s fitted in %.1fs; files in %s", name, seconds, request.out)
    return UpliftBacktestResult(
        request.out / SCORES_FILE,
        request.out / METRICS_FILE,
        name,
        list(campaign.treatments),
        len(campaign),
        len(user_id),
        seconds,
    )
