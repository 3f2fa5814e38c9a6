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
from typing import Any

import pandas as pd
from sqlalchemy import Engine

from retention.params import GateParams, Params
from retention.settings import Settings
from training import registry
from training.families import ModelFamily, family
from training.threads import configure_threads, holds_training_slot

log = logging.getLogger("retention.gate")


class GateError(RuntimeError):
    """The gate cannot run (no challenger, no data)."""


def baseline_metrics(chosen: ModelFamily, split: Any, params: Params) -> dict[str, dict[str, float]]:
    """Each baseline of the family fitted and scored on the holdout split: {name: metrics}."""
    out = {}
    for baseline in chosen.applicable_baselines(params, getattr(split, "exclude_seen", None)):
        chosen.fit(split, baseline, params)
        out[baseline.name] = chosen.score(split, baseline, params).metrics
    return out


def recorded_baselines(
    client: Any, chosen: ModelFamily, version: str, request: Any, fingerprint: str, params: Params
) -> dict[str, dict[str, float]] | None:
    """The baseline metrics logged as child runs of the version's training run, if that run was
    evaluated on exactly this holdout (same data fingerprint, window and parameters); else None."""
    from training.backtest import run_tags
    from training.tracking import protocol_metric

    run_id = client.get_model_version(chosen.registered_name, version).run_id
    if not run_id:
        return None
    run = client.get_run(run_id)
    expected = run_tags(request, fingerprint, params, "model")[0].as_dict()
    same = ("data_fingerprint", "cutoff", "horizon_days", "protocol", "params_hash")
    if any(run.data.tags.get(key) != expected[key] for key in same):
        return None
    children = client.search_runs(
        [run.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{run_id}' and tags.role = 'baseline'",
    )
    found = {child.data.params.get("model"): child.data.metrics for child in children}
    wanted = [b.name for b in chosen.applicable_baselines(params, request.exclude_seen)]
    if any(name not in found for name in wanted):
        return None
    return {name: {protocol_metric(k): v for k, v in found[name].items()} for name in wanted}


def comparison(
    rule: GateParams,
    challenger: dict[str, Any],
    champion: dict[str, Any] | None,
    champion_version: str | None,
    baselines: dict[str, dict[str, float]],
) -> dict[str, Any]:
    """What the decision compared, in a few fields: the primary metric, against what, and the margin.

    The challenger is compared with the champion when there is one, else with the best baseline.
    """
    mine = challenger.get("metrics", {}).get(rule.primary, float("nan"))
    if champion is not None and "metrics" in champion:
        against, theirs = f"champion v{champion_version}", champion["metrics"][rule.primary]
    else:
        best = max(baselines.items(), key=lambda item: item[1][rule.primary], default=None)
        against, theirs = (f"baseline {best[0]}", best[1][rule.primary]) if best else ("none", float("nan"))
    return {"primary_metric": rule.primary, "value": mine, "compared_with": against, "margin": mine - theirs}


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


@holds_training_slot
def run_gate(
    engine: Engine,
    settings: Settings,
    params: Params,
    family_name: str,
    version: str | None = None,
    as_of: pd.Timestamp | None = None,
) -> registry.Decision:
    """Decide on a challenger: promote it to champion or reject it, recorded in tags and the audit.

    Args:
        engine: the platform database (holdout data and the audit table).
        settings: the MLflow tracking URI.
        params: params.yaml (`promotion` rules).
        family_name: a registered model family (`training.families`).
        version: the version to decide on (default: the `challenger` alias).
        as_of: end of the holdout window (default: midnight after the last warehouse event).

    Returns:
        The decision; a version decided before returns its recorded decision (idempotent).
    """
    from mlflow import MlflowClient

    configure_threads(params.training)  # scoring runs the networks too
    chosen = family(family_name)
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    name = chosen.registered_name
    version = version or registry.alias_version(client, name, registry.CHALLENGER)
    if version is None:
        raise GateError(
            f"{name} has no challenger: train a model first (`retention train --model {chosen.name}`)"
        )
    recorded = registry.decision_of(client, name, version)
    if recorded is not None:
        log.info("%s version %s was decided before: %s", name, version, recorded.action)
        return recorded
    champion_version = registry.alias_version(client, name, registry.CHAMPION)
    if champion_version == version:  # e.g. promoted by hand before the gate ran: nothing to decide
        return registry.Decision(name, version, "unchanged", version, version, "already the champion", "gate")
    event_log = chosen.read(engine, "warehouse", as_of)
    end = pd.Timestamp(as_of) if as_of else chosen.data_end(event_log)
    request = chosen.holdout_request(end, params, settings.home / "gate")
    split = chosen.split(event_log, request)
    native = registry.load_native(settings.mlflow_tracking_uri, name, version)
    challenger = chosen.evaluate_fitted(split, native, params)
    champion = None
    baselines: dict[str, Any] = {}
    if champion_version is not None:
        native = registry.load_native(settings.mlflow_tracking_uri, name, champion_version)
        champion = chosen.evaluate_fitted(split, native, params)
    else:  # the baselines the training scored on this very holdout, or fitted now
        logged = recorded_baselines(client, chosen, version, request, event_log.fingerprint(), params)
        baselines = logged if logged is not None else baseline_metrics(chosen, split, params)
    rule = params.promotion.for_family(chosen.name)
    promote, reason = decide(rule, challenger, champion, baselines)
    metrics = {"challenger": challenger.get("metrics", {}), "challenger_checks": challenger["checks"]}
    if champion is not None:
        metrics |= {"champion": champion.get("metrics", {}), "champion_version": champion_version}
    metrics |= {f"baseline_{k}": v for k, v in baselines.items()}
    metrics["summary"] = comparison(rule, challenger, champion, champion_version, baselines)
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
