"""The champion/challenger gate: only a better model becomes `champion`.

Challenger and champion are scored on the same, most recent holdout window of the validated
warehouse (the split `retention train` evaluates on: the last H days for the return model,
each customer's last basket for the recommender). The rule of each model lives in
params.yaml (`promotion`): a minimum gain in the primary metric, a tolerance on the secondary
ones, a Brier bound, and sanity checks (finite scores, a non-degenerate spread, inference latency).
With no champion yet, the challenger must beat every baseline fitted on that same window.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from retention.params import GateParams, Params
from retention.settings import Settings
from training import registry
from training.backtest import make_split, rec_models, return_models
from training.data import EventLog, read_event_log
from training.protocol import (
    RecSplit,
    ReturnSplit,
    aligned_scores,
    ranking_metrics,
    recommend,
    return_metrics,
)

log = logging.getLogger("retention.gate")


class GateError(RuntimeError):
    """The gate cannot run (no challenger, no data)."""


def load_native(tracking_uri: str, name: str, version: str) -> Any:
    """The native model (`ReturnModel` / `SASRecRecommender`) of a registered version."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.pyfunc.load_model(f"models:/{name}/{version}").unwrap_python_model().model


class HistoryScorer:
    """A fitted recommender scored from a split's history, over the split's candidates.

    Candidates the model was not fitted on (new products) get the lowest score.
    """

    def __init__(self, model: Any, history: EventLog, candidates: np.ndarray) -> None:
        self.model, self.history, self.name = model, history, getattr(model, "name", "model")
        own = pd.Index(model.index.ids)
        self.columns = own.get_indexer(candidates)
        self.n_candidates = len(candidates)

    def score(self, users: np.ndarray) -> np.ndarray:
        own = self.model.score_history(self.history, users)
        out = np.full((len(users), self.n_candidates), np.float32(np.finfo(np.float32).min))
        known = self.columns >= 0
        out[:, known] = own[:, self.columns[known]]
        return out


def _sanity(scores: np.ndarray, seconds: float, n: int, params: Params) -> dict[str, Any]:
    finite = np.isfinite(scores)
    spread = float(np.std(scores[finite])) if finite.any() else 0.0
    latency = 1000.0 * seconds / max(n, 1)
    checks = {
        "finite": bool(finite.all()),
        "score_std": spread,
        "non_degenerate": spread >= params.promotion.min_score_std,
        "latency_ms_per_customer": latency,
        "fast_enough": latency <= params.promotion.max_latency_ms,
    }
    return checks


def evaluate_version(model: Any, split: ReturnSplit | RecSplit, params: Params) -> dict[str, Any]:
    """The holdout metrics and sanity checks of a fitted model (nothing is refitted)."""
    started = time.perf_counter()
    if isinstance(split, ReturnSplit):
        scores = model.predict(split.history, split.as_of, split.horizon_days)
        seconds = time.perf_counter() - started
        raw = scores["p_return"].to_numpy(dtype=float)
        checks = _sanity(raw, seconds, len(raw), params)
        if not checks["finite"]:
            return {"checks": checks}
        return {"metrics": return_metrics(split.returned, aligned_scores(split, scores)), "checks": checks}
    scorer = HistoryScorer(model, split.history, split.candidates)
    probe = scorer.score(split.users[: params.promotion.latency_customers])
    seconds = time.perf_counter() - started
    checks = _sanity(probe, seconds, len(probe), params)
    recommendations = recommend(split, scorer, max(params.evaluation.ks))
    return {"metrics": ranking_metrics(split, recommendations, params.evaluation.ks), "checks": checks}


def baseline_metrics(
    kind: str, split: ReturnSplit | RecSplit, params: Params, work_dir: Path
) -> dict[str, Any]:
    """Each baseline fitted and scored on the holdout split: {name: metrics}."""
    out: dict[str, Any] = {}
    chosen = return_models(params, work_dir) if kind == "return" else rec_models(params, work_dir)
    for role, model in chosen:
        if role != "baseline":
            continue
        if isinstance(split, ReturnSplit):
            model.fit(split.history, split.as_of, split.horizon_days)
            scores = model.predict(split.history, split.as_of, split.horizon_days)
            out[model.name] = return_metrics(split.returned, aligned_scores(split, scores))
        else:
            model.fit(split.history, split.candidates)
            out[model.name] = ranking_metrics(
                split, recommend(split, model, max(params.evaluation.ks)), params.evaluation.ks
            )
    return out


def _broken(side: dict[str, Any]) -> str | None:
    checks = side["checks"]
    if not checks["finite"]:
        return "scores are not all finite"
    if not checks["non_degenerate"]:
        return f"score spread {checks['score_std']:.2g} is degenerate"
    if not checks["fast_enough"]:
        return f"inference takes {checks['latency_ms_per_customer']:.1f} ms per customer"
    return None


def decide(
    rule: GateParams,
    challenger: dict[str, Any],
    champion: dict[str, Any] | None,
    baselines: dict[str, dict[str, float]],
) -> tuple[bool, str]:
    """Apply the promotion rule. Returns (promote, reason)."""
    broken = _broken(challenger)
    if broken:
        return False, f"sanity check failed: {broken}"
    mine = challenger["metrics"]
    primary = mine[rule.primary]
    if not math.isfinite(primary):
        return False, f"{rule.primary} is undefined on the holdout window"
    if rule.max_brier is not None and mine["brier"] > rule.max_brier:
        return False, f"Brier {mine['brier']:.4f} above the bound {rule.max_brier}"
    if champion is None or "metrics" not in champion:
        best_name, best = max(
            ((name, m[rule.primary]) for name, m in baselines.items()),
            key=lambda x: x[1],
            default=("none", -1.0),
        )
        if primary <= best:
            return (
                False,
                f"first champion must beat the baselines: {rule.primary} {primary:.4f} <= {best_name} {best:.4f}",
            )
        return (
            True,
            f"first champion: {rule.primary} {primary:.4f} beats the best baseline ({best_name} {best:.4f})",
        )
    theirs = champion["metrics"]
    gain = primary - theirs[rule.primary]
    if gain <= 0 or gain < rule.min_gain:
        return (
            False,
            f"{rule.primary} {primary:.4f} vs champion {theirs[rule.primary]:.4f}: gain {gain:+.4f} below {rule.min_gain}",
        )
    for metric in rule.secondary:
        drop = theirs[metric] - mine[metric]
        if drop > rule.tolerance:
            return False, f"{metric} falls by {drop:.4f} (tolerance {rule.tolerance})"
    return True, f"{rule.primary} {primary:.4f} vs champion {theirs[rule.primary]:.4f} (gain {gain:+.4f})"


def run_gate(
    engine: Engine,
    settings: Settings,
    params: Params,
    kind: str,
    version: str | None = None,
    as_of: pd.Timestamp | None = None,
) -> registry.Decision:
    """Decide on a challenger: promote it to champion or reject it, recorded in tags and the audit.

    Args:
        engine: the platform database (holdout data and the audit table).
        settings: the MLflow tracking URI.
        params: params.yaml (`promotion` rules).
        kind: "return" or "recommender".
        version: the version to decide on (default: the `challenger` alias).
        as_of: end of the holdout window (default: midnight after the last warehouse event).

    Returns:
        The decision; a version decided before returns its recorded decision (idempotent).
    """
    from mlflow import MlflowClient

    from training.train import holdout_request

    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    name = registry.registered_name(kind)
    version = version or registry.alias_version(client, name, registry.CHALLENGER)
    if version is None:
        raise GateError(f"{name} has no challenger: train a model first (`retention train --model {kind}`)")
    recorded = registry.decision_of(client, name, version)
    if recorded is not None:
        log.info("%s version %s was decided before: %s", name, version, recorded.action)
        return recorded
    champion_version = registry.alias_version(client, name, registry.CHAMPION)
    if champion_version == version:  # e.g. promoted by hand before the gate ran: nothing to decide
        return registry.Decision(name, version, "unchanged", version, version, "already the champion", "gate")
    event_log = read_event_log(engine, "warehouse", before=as_of)
    request = holdout_request(kind, event_log, params, as_of, settings.home / "gate")
    split = make_split(event_log, request)
    challenger = evaluate_version(load_native(settings.mlflow_tracking_uri, name, version), split, params)
    champion = None
    baselines: dict[str, Any] = {}
    if champion_version is not None:
        native = load_native(settings.mlflow_tracking_uri, name, champion_version)
        champion = evaluate_version(native, split, params)
    else:
        baselines = baseline_metrics(kind, split, params, settings.home / "gate" / "baselines")
    promote, reason = decide(params.promotion.for_kind(kind), challenger, champion, baselines)
    metrics = {"challenger": challenger.get("metrics", {}), "challenger_checks": challenger["checks"]}
    if champion is not None:
        metrics |= {"champion": champion.get("metrics", {}), "champion_version": champion_version}
    metrics |= {f"baseline_{k}": v for k, v in baselines.items()}
    decision = registry.Decision(
        name,
        version,
        "promoted" if promote else "rejected",
        champion_version,
        version if promote else champion_version,
        reason,
        "gate",
        metrics,
    )
    return registry.record(engine, client, decision, move_champion=promote)
