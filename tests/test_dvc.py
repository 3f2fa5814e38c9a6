"""`dvc repro` on a fresh copy of the project: every stage runs the `retention` subcommands, the
metrics DVC records are those of the MLflow runs, a second repro is a no-op, the reports are
committed to git (metrics and plot data, not PNGs), and `dvc metrics diff` / `dvc plots diff` compare
two commits and two `dvc exp run -S` experiments with values and plot rows."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT

BIN = Path(sys.executable).parent
STAGES = ["load", "validate", "features", "train_return", "train_recommender", "evaluate"]
GIT = ["git", "-c", "user.email=ci@example.org", "-c", "user.name=ci"]
RETURN_METRICS = "reports/return/metrics.json"
# dvc.yaml's plots: file -> the x and y columns the template draws, one line per `model`
PLOTS = {
    "reports/return/plots/roc.csv": ("fpr", "tpr"),
    "reports/return/plots/pr.csv": ("recall", "precision"),
    "reports/return/plots/reliability.csv": ("p_mean", "observed"),
    "reports/return/plots/gain.csv": ("contacted", "gain"),
    "reports/recommender/plots/recall_at_k.csv": ("k", "recall"),
}


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
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "clone"]):
        subprocess.run([*GIT, *args], cwd=root, check=True, env=env)
    return root, env


def _commit(root: Path, env: dict[str, str], message: str) -> list[str]:
    """Commit the workspace as a developer does after `dvc repro` (.gitignore decides what goes in).

    Returns:
        The committed files under reports/.
    """
    for args in (["add", "-A"], ["commit", "-qm", message]):
        subprocess.run([*GIT, *args], cwd=root, check=True, env=env)
    listed = subprocess.run(
        ["git", "ls-files", "reports"], cwd=root, env=env, capture_output=True, text=True, check=True
    )
    return listed.stdout.split()


def _dvc(args: list[str], root: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        [str(BIN / "dvc"), *args], cwd=root, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, f"dvc {' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def reproduced(project: tuple[Path, dict[str, str]]) -> tuple[Path, dict[str, str], str, list[str]]:
    """The project after its first `dvc repro`, committed, with that repro's output and the committed
    reports (one pipeline run per module: the experiments below change one parameter of it, so only
    the stages that depend on it rerun)."""
    root, env = project
    output = _dvc(["repro"], root, env)
    return root, env, output, _commit(root, env, "repro")


def _plot_rows(shown: dict, path: str) -> list[dict]:
    """The data rows of one plot in `dvc plots show/diff --json` output (every revision's)."""
    (plot,) = shown["data"][path]
    return plot["content"]["data"]["values"]


def _assert_metrics_differ(diff: dict, old: str, new: str) -> None:
    """`dvc metrics diff --json` has the return model's metrics of both revisions, and some changed."""
    changed = diff[RETURN_METRICS]
    assert "registered_version" in changed, (old, new, diff)  # each revision registered its own version
    figures = {k: v for k, v in changed.items() if k not in ("mlflow_run_id", "registered_version")}
    assert figures, (old, new, diff)
    for name, values in figures.items():
        assert isinstance(values["old"], float) and isinstance(values["new"], float), (name, values)
    assert any(v["diff"] != 0 for v in figures.values()), (old, new, figures)


def _assert_plots_have_rows(shown: dict, revisions: list[str]) -> None:
    """Every declared plot has data rows of every revision, with its x and y, a line per model."""
    for path, (x, y) in PLOTS.items():
        rows = _plot_rows(shown, path)
        assert {r["rev"] for r in rows} == set(revisions), (path, revisions)
        assert all(r[x] != "" and r[y] != "" for r in rows), path
        assert len({r["model"] for r in rows}) > 1, path  # the model and its baselines


@pytest.mark.slow  # the whole pipeline (both models trained) through `dvc repro`, then a no-op repro: minutes
def test_dvc_repro_reproduces_the_pipeline_and_its_mlflow_metrics(
    reproduced: tuple[Path, dict[str, str], str, list[str]],
) -> None:
    root, env, output, committed = reproduced  # the first repro of the fresh project
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
    shown = json.loads(_dvc(["metrics", "show", "--json"], root, env))[""]["data"]
    for model in ("return", "recommender"):  # DVC reads the values, not only the paths
        values = shown[f"reports/{model}/metrics.json"]["data"]
        assert values["mlflow_run_id"] and any(isinstance(v, float) for v in values.values()), model
    plotted = json.loads(_dvc(["plots", "show", "--json"], root, env))
    _assert_plots_have_rows(plotted, ["workspace"])
    roc = pd.read_csv(root / "reports" / "return" / "plots" / "roc.csv")  # what the comparison PNG drew
    assert roc["fpr"].between(0, 1).all() and roc.groupby("model")["tpr"].max().eq(1.0).all()
    again = _dvc(["repro"], root, env)
    assert "Running stage" not in again  # nothing changed: nothing runs
    assert {RETURN_METRICS, *PLOTS} <= set(committed)
    assert not [name for name in committed if name.endswith(".png")]  # the PNGs live in MLflow
    lock_check = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_dvc_lock.py"), "--root", str(root)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert lock_check.returncode == 0, lock_check.stderr  # what repro wrote is what the check wants


@pytest.mark.slow  # two experiments retrain the return model: minutes
def test_dvc_experiments_and_commits_compare_by_metrics_and_plots(
    reproduced: tuple[Path, dict[str, str], str, list[str]],
) -> None:
    root, env, _, _ = reproduced  # HEAD is the repro's commit
    _dvc(["exp", "run", "-S", "return.hidden_size=16", "--name", "small-net"], root, env)
    _dvc(["exp", "run", "-S", "return.hidden_size=8", "--name", "tiny-net"], root, env)
    table = json.dumps(json.loads(_dvc(["exp", "show", "--json"], root, env)))
    assert "small-net" in table and '"hidden_size": 16' in table and '"hidden_size": 8' in table
    for old, new in (("HEAD", "small-net"), ("small-net", "tiny-net")):  # the repro'd commit; two experiments
        _assert_metrics_differ(json.loads(_dvc(["metrics", "diff", "--json", old, new], root, env)), old, new)
        _assert_plots_have_rows(
            json.loads(_dvc(["plots", "diff", "--json", old, new], root, env)), [old, new]
        )
    _commit(root, env, "tiny-net")  # the workspace holds the last experiment's results
    _assert_metrics_differ(
        json.loads(_dvc(["metrics", "diff", "--json", "HEAD~1", "HEAD"], root, env)), "HEAD~1", "HEAD"
    )
    _assert_plots_have_rows(
        json.loads(_dvc(["plots", "diff", "--json", "HEAD~1", "HEAD"], root, env)), ["HEAD~1", "HEAD"]
    )
