"""`dvc repro` on a fresh copy of the project: every stage runs the `retention` subcommands, the
metrics DVC records are those of the MLflow runs, a second repro is a no-op, and `dvc exp run -S`
changes a parameter."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml

from tests.conftest import ROOT

BIN = Path(sys.executable).parent
STAGES = ["load", "validate", "features", "train_return", "train_recommender", "evaluate"]


def _copy_project(target: Path) -> None:
    """The project's files as a fresh clone has them (tracked, plus new files not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A git repository with the project, small training parameters, and its environment."""
    root = tmp_path_factory.mktemp("dvc") / "clone"
    _copy_project(root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["simulate"].update(customers=300, days=60)
    params["training"].update(max_epochs=2)
    params["recommender"]["sasrec"].update(max_epochs=2)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "RETENTION_HOME": str(root / "var"),
        "RETENTION_PARAMS": str(root / "params.yaml"),  # the installed package reads the clone's file
    }
    for name in ("RETENTION_DATABASE_URL", "MLFLOW_TRACKING_URI", "AIRFLOW_HOME"):
        env.pop(name, None)
    git = ["git", "-c", "user.email=ci@example.org", "-c", "user.name=ci"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "clone"]):
        subprocess.run([*git, *args], cwd=root, check=True, env=env)
    return root, env


def _dvc(args: list[str], root: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        [str(BIN / "dvc"), *args], cwd=root, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, f"dvc {' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def reproduced(project: tuple[Path, dict[str, str]]) -> tuple[Path, dict[str, str], str]:
    """The project after its first `dvc repro`, with that repro's output (one pipeline run per module:
    the experiment below changes one parameter of it, so only the stages that depend on it rerun)."""
    root, env = project
    return root, env, _dvc(["repro"], root, env)


@pytest.mark.slow  # the whole pipeline (both models trained) through `dvc repro`, then a no-op repro: minutes
def test_dvc_repro_reproduces_the_pipeline_and_its_mlflow_metrics(
    reproduced: tuple[Path, dict[str, str], str],
) -> None:
    root, env, output = reproduced  # the first repro of the fresh project
    for stage in STAGES:
        assert f"Running stage '{stage}'" in output
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'var' / 'mlflow.db'}")
    for model in ("return", "recommender"):
        recorded = json.loads((root / "reports" / model / "metrics.json").read_text())
        logged = client.get_run(recorded.pop("mlflow_run_id")).data.metrics
        recorded.pop("registered_version")
        assert recorded, model
        for name, value in recorded.items():  # MLflow spells "@" as "_at_"
            assert logged[name.replace("@", "_at_")] == pytest.approx(value), (model, name)
        gate = json.loads((root / "reports" / "gate" / f"{model}.json").read_text())
        assert gate["action"] in ("promoted", "rejected") and gate["reason"]
    shown = json.loads(_dvc(["metrics", "show", "--json"], root, env))
    assert shown  # DVC reads every metrics file it declared
    again = _dvc(["repro"], root, env)
    assert "Running stage" not in again  # nothing changed: nothing runs


@pytest.mark.slow
def test_dvc_exp_run_sets_a_parameter(reproduced: tuple[Path, dict[str, str], str]) -> None:
    root, env, _ = reproduced
    _dvc(["exp", "run", "-S", "return.hidden_size=16", "--name", "small-net"], root, env)
    table = json.dumps(json.loads(_dvc(["exp", "show", "--json"], root, env)))
    assert "small-net" in table and '"hidden_size": 16' in table
