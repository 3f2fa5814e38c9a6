"""The promotion gate and registry aliases on a real MLflow registry: a worse challenger is rejected,
a better one promoted, manual promotion and rollback are audited, and concurrent promotions keep
the aliases and the audit consistent."""

from __future__ import annotations

import threading
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from cli.main import app
from feature_store.events import read_event_log
from retention.db import create_db_engine
from retention.params import load_params
from retention.settings import Settings
from training import registry
from training.gate import decide, run_gate
from training.pyfunc import ReturnPyfunc
from training.registry import load_native
from training.tracking import Tracker

runner = CliRunner()
NAME = "retention-return"


@pytest.fixture(scope="module")
def platform(trained_platform, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN001, ANN201
    """A private copy of the trained platform (these tests move aliases); version 1 is the champion."""
    from tests.trained_platform import private_platform

    return private_platform(trained_platform, tmp_path_factory.mktemp("gate-platform"))


@pytest.fixture
def env(platform, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN001, ANN201
    for key, value in platform.env.items():
        monkeypatch.setenv(key, value)
    return platform


def register_variant(platform, noise: float, tmp: Path) -> str:  # noqa: ANN001
    """Register a copy of version 1 whose weights got Gaussian noise (0: an identical copy)."""
    settings = Settings.from_env()
    model = load_native(settings.mlflow_tracking_uri, NAME, "1")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for network in model.networks:
            for weight in network.parameters():
                weight.add_(noise * torch.randn(weight.shape, generator=generator))
    folder = tmp / f"variant-{noise}"
    model.save(folder)
    engine = create_db_engine(settings.database_url)
    history = read_event_log(engine, "warehouse")
    engine.dispose()
    example = model.inputs(history, pd.Timestamp(platform.as_of)).head(3)
    tracker = Tracker(settings.mlflow_tracking_uri, settings.home / "mlartifacts")
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    with mlflow.start_run(experiment_id=tracker.experiment_id("return"), run_name=f"variant {noise}"):
        version = tracker.log_pyfunc(ReturnPyfunc(model), folder, example, NAME)
    registry.set_challenger(tracker.client, NAME, version)
    return version


def _state(platform):  # noqa: ANN001, ANN202
    settings = Settings.from_env()
    client = mlflow.MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    engine = create_db_engine(settings.database_url)
    audit = registry.history(engine, NAME)
    engine.dispose()
    return client, registry.alias_version(client, NAME, registry.CHAMPION), audit


def test_gate_rejects_worse_promotes_better_and_rollback_restores(env, tmp_path: Path) -> None:  # noqa: ANN001
    settings = Settings.from_env()
    params = load_params(settings.params_path)
    engine = create_db_engine(settings.database_url)
    worse = register_variant(env, noise=3.0, tmp=tmp_path)
    decision = run_gate(engine, settings, params, "return")
    assert decision.action == "rejected" and decision.version == worse
    assert decision.reason  # whichever rule stopped it, named with its numbers
    client, champion, audit = _state(env)
    assert champion == "1"
    tags = client.get_model_version(NAME, worse).tags
    assert tags["gate.decision"] == "rejected" and tags["gate.reason"] == decision.reason
    # a few short tags for the registry page, the whole decision in one JSON artifact of the run
    assert (tags["gate.primary_metric"], tags["gate.compared_with"]) == ("roc_auc", "champion v1")
    assert float(tags["gate.margin"]) < 0
    assert not [k for k in tags if k.startswith(("gate.challenger", "gate.champion.", "gate.baseline"))]
    run_id = client.get_model_version(NAME, worse).run_id
    recorded = mlflow.artifacts.load_dict(f"runs:/{run_id}/{tags['gate.decision_file']}")
    assert recorded["action"] == "rejected" and recorded["reason"] == decision.reason
    assert recorded["metrics"]["challenger"]["roc_auc"] < recorded["metrics"]["champion"]["roc_auc"]
    assert recorded["metrics"]["summary"]["margin"] == pytest.approx(float(tags["gate.margin"]), abs=1e-4)
    assert audit[-1]["action"] == "rejected" and audit[-1]["metrics"]["champion"]["roc_auc"] > 0
    # Deciding again is a no-op that returns the recorded decision.
    assert run_gate(engine, settings, params, "return", worse).action == "rejected"
    assert len(_state(env)[2]) == len(audit)

    # A person promotes the worse version anyway; the gate then promotes the better original.
    result = runner.invoke(app, ["models", "promote", worse, "--model", "return", "--reason", "drill"])
    assert result.exit_code == 0, result.output
    better = register_variant(env, noise=0.0, tmp=tmp_path)
    decision = run_gate(engine, settings, params, "return")
    assert decision.action == "promoted" and decision.champion_before == worse, decision.reason
    client, champion, audit = _state(env)
    assert champion == better
    assert registry.alias_version(client, NAME, registry.CHALLENGER) is None  # it serves now

    # Rollback gives the alias back to the version the champion replaced, audited.
    result = runner.invoke(app, ["models", "rollback", "--model", "return", "--reason", "drill"])
    assert result.exit_code == 0, result.output
    client, champion, audit = _state(env)
    assert champion == worse
    assert [a["action"] for a in audit[-3:]] == ["manual_promote", "promoted", "rollback"]
    engine.dispose()


def test_concurrent_promotions_leave_one_consistent_champion(env) -> None:  # noqa: ANN001
    settings = Settings.from_env()
    client = mlflow.MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    versions = [v["version"] for v in registry.versions(client, NAME)]
    current = registry.alias_version(client, NAME, registry.CHAMPION)
    targets = [v for v in versions if v != current][:2]
    assert len(targets) == 2
    errors: list[Exception] = []
    barrier = threading.Barrier(2)

    def promote(version: str) -> None:
        engine = create_db_engine(settings.database_url)
        barrier.wait()
        try:
            registry.promote(engine, client, NAME, version, "concurrency drill", "tester")
        except registry.RegistryError as error:  # lost the race: refused, not half-applied
            errors.append(error)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=promote, args=(v,)) for v in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _, champion, audit = _state(env)
    assert champion == audit[-1]["champion_after"]  # the alias is where the last audited decision put it
    for before, after in zip(audit, audit[1:], strict=False):  # each decision starts where the last ended
        assert after["champion_before"] == before["champion_after"]
    assert len(errors) <= 1 and champion in targets


def test_cli_refuses_unknown_versions_and_empty_reasons(env) -> None:  # noqa: ANN001
    result = runner.invoke(app, ["models", "promote", "99", "--model", "return", "--reason", "x"])
    assert result.exit_code == 2 and "no version 99" in result.output
    result = runner.invoke(app, ["models", "promote", "1", "--model", "return", "--reason", " "])
    assert result.exit_code == 2 and "--reason" in result.output
    result = runner.invoke(app, ["models", "list", "--model", "churn"])
    assert result.exit_code == 2 and "unknown model" in result.output


RULE = load_params(Path(__file__).parents[2] / "params.yaml").promotion


def side(roc: float, pr: float = 0.6, brier: float = 0.15, std: float = 0.1, latency: float = 1.0) -> dict:
    checks = {
        "finite": True,
        "score_std": std,
        "non_degenerate": std >= RULE.min_score_std,
        "latency_ms_per_customer": latency,
        "fast_enough": latency <= RULE.max_latency_ms,
    }
    return {"metrics": {"roc_auc": roc, "pr_auc": pr, "brier": brier}, "checks": checks}


@pytest.mark.parametrize(
    ("challenger", "champion", "baselines", "promoted", "reason"),
    [
        (side(0.80), side(0.78), {}, True, "gain"),
        (side(0.78), side(0.78), {}, False, "gain"),
        (side(0.80, pr=0.50), side(0.78, pr=0.60), {}, False, "pr_auc falls"),
        (side(0.80, brier=0.30), side(0.78), {}, False, "Brier"),
        (side(0.80, std=0.0), side(0.78), {}, False, "degenerate"),
        (side(0.80, latency=1e3), side(0.78), {}, False, "ms per customer"),
        (side(0.80), None, {"recency": {"roc_auc": 0.77}}, True, "first champion"),
        (side(0.76), None, {"recency": {"roc_auc": 0.77}}, False, "must beat the baselines"),
    ],
)
def test_decide_applies_each_rule(challenger, champion, baselines, promoted, reason) -> None:  # noqa: ANN001
    ok, why = decide(RULE.for_family("return"), challenger, champion, baselines)
    assert ok is promoted and reason in why
