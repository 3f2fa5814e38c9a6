"""`retention train` under SIGTERM: exit 143 after a checkpoint; the same command resumes without
training the finished networks again, and ends with the networks of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.training.churn.shop import ROOT, tiny_events

NETWORKS = 2
TIMEOUT = 900  # seconds any one command may take (a busy machine is slow)


def _params(folder: Path) -> Path:
    """Two small networks of 12 epochs each (no early stop): the second one is still training
    when the test sees the first one finish."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["training"].update(max_epochs=12, patience=12, threads=1)
    raw["return"].update(ensemble=NETWORKS, hidden_size=16, sequence_size=8, sequence_length=8, batch_size=64)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _home(root: Path, name: str, params: Path, events: Path) -> dict[str, str]:
    """A platform home holding the tiny shop's events (loaded with `retention ingest`)."""
    home = root / name
    home.mkdir()
    env = {
        **os.environ,
        "RETENTION_HOME": str(home),
        "RETENTION_PARAMS": str(params),
        "RETENTION_DATABASE_URL": f"sqlite:///{home / 'retention.db'}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
    }
    env.pop("AIRFLOW_HOME", None)
    for args in (["init"], ["ingest", "--events", str(events)]):
        done = _retention(args, env)
        assert done.returncode == 0, done.stderr
    return env


def _retention(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_command(args), env=env, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)


def _command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "cli.main", *args]


TRAIN = ["train", "--model", "return", "--source", "shop"]


def _member(env: dict[str, str], member: int) -> Path:
    """The folder of a network's validated fit (under RETENTION_HOME/runs/train)."""
    found = list(
        Path(env["RETENTION_HOME"]).glob(f"runs/train/return/*/return_model/member{member}/validation")
    )
    return found[0] if found else Path("/nonexistent")


def _networks(env: dict[str, str]) -> list[dict[str, torch.Tensor]]:
    (model_dir,) = Path(env["RETENTION_HOME"]).glob("models/return/*/model")
    return [torch.load(model_dir / f"network_{i}.pt", weights_only=True) for i in range(NETWORKS)]


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("shop") / "events.csv"
    frame = tiny_events().rename(columns={"customer_id": "user_id", "product_id": "item_id"})
    frame.to_csv(path, index=False)
    return path


@pytest.mark.slow  # three CLI trainings in subprocesses (minutes on 2 cores)
def test_sigterm_exits_143_and_the_rerun_resumes_without_retraining_finished_networks(
    tmp_path: Path, events: Path
) -> None:
    # given: a training that gets SIGTERM once its first network has finished and the second one
    # has saved an epoch (the files under RETENTION_HOME say when)
    params = _params(tmp_path)
    env = _home(tmp_path, "interrupted", params, events)
    process = subprocess.Popen(
        _command(TRAIN), env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + TIMEOUT
    while not (_member(env, 1) / "checkpoints" / "last.ckpt").exists():
        assert process.poll() is None and time.monotonic() < deadline, "the second network never started"
        time.sleep(0.02)
    assert (_member(env, 0) / "done.json").exists()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=TIMEOUT)
    # then: a failure status; the first network finished, the second stopped at a saved epoch
    assert process.returncode == 143, stderr
    assert "interrupted: SIGTERM" in stderr
    assert not (_member(env, 1) / "done.json").exists()
    assert (_member(env, 1) / "checkpoints" / "last.ckpt").exists()
    assert "registered" not in stderr and not list(Path(env["RETENTION_HOME"]).glob("models/return/*/model"))
    finished = _member(env, 0) / "checkpoints" / "best.ckpt"
    finished_at = finished.stat().st_mtime_ns

    # when: the same command runs again
    rerun = _retention(TRAIN, env)
    # then: the first network is loaded, not trained again; the second one is trained to its end
    assert rerun.returncode == 0, rerun.stderr
    assert f"network 1 of {NETWORKS} loaded" in rerun.stderr
    assert f"network 2 of {NETWORKS} trained" in rerun.stderr
    assert "resuming ReturnModule from" in rerun.stderr
    assert "ReturnModule epoch 0:" not in rerun.stderr  # no network started from scratch
    assert finished.stat().st_mtime_ns == finished_at

    # and: the networks equal those of a run that was never interrupted
    uninterrupted = _home(tmp_path, "uninterrupted", params, events)
    assert _retention(TRAIN, uninterrupted).returncode == 0
    for resumed, reference in zip(_networks(env), _networks(uninterrupted), strict=True):
        assert resumed.keys() == reference.keys()
        for name in reference:
            torch.testing.assert_close(resumed[name], reference[name], rtol=0, atol=0)
