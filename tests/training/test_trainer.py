"""The shared Trainer: params.yaml settings, DDP on CPU with two processes, resume after a kill."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from retention.params import TrainerParams
from tests.training.toy import ToyData, ToyModel
from training.trainer import DONE_FILE, build_trainer, fit, read_history

WEIGHTS = torch.tensor([1.0, -2.0, 0.5, 3.0])


def _params(**changes: object) -> TrainerParams:
    base = {
        "accelerator": "cpu",
        "devices": 1,
        "strategy": "auto",
        "precision": "32-true",
        "max_epochs": 6,
        "patience": 3,
        "seed": 7,
    }
    return TrainerParams(**{**base, **changes})


def test_trainer_follows_params(tmp_path: Path) -> None:
    trainer = build_trainer(_params(devices=2, max_epochs=3), tmp_path)
    assert trainer.max_epochs == 3
    assert type(trainer.strategy).__name__ == "DDPStrategy"  # auto + 2 CPU devices -> ddp_spawn
    assert trainer.num_devices == 2


def test_fit_learns_and_writes_history(tmp_path: Path) -> None:
    model = ToyModel()
    result = fit(model, ToyData(), _params(), tmp_path)
    assert result.epochs == 6 and len(result.history) == 6
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < losses[0] / 10
    assert torch.allclose(model.net.weight.data[0], WEIGHTS, atol=0.2)
    assert result.best_path is not None and result.best_path.exists()


def test_ddp_two_processes_match_one(tmp_path: Path) -> None:
    """Two gloo processes on CPU reach the quality of one (synced val_loss, weights back in this process)."""
    single, double = ToyModel(), ToyModel()
    one = fit(single, ToyData(), _params(max_epochs=8), tmp_path / "one")
    two = fit(double, ToyData(), _params(max_epochs=8, devices=2, strategy="ddp_spawn"), tmp_path / "two")
    assert two.devices == 2 and two.epochs == 8
    assert two.history[-1]["val_loss"] < 0.1
    assert abs(two.history[-1]["val_loss"] - one.history[-1]["val_loss"]) < 0.05
    assert torch.allclose(double.net.weight.data[0], WEIGHTS, atol=0.2)  # the spawned fit's weights came back


def test_spawned_ranks_share_the_trainings_threads(tmp_path: Path) -> None:
    """A spawned worker starts with torch's one thread per core; each rank gets threads // devices instead."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # what configure_threads gave this training
    try:
        result = fit(ToyModel(), ToyData(), _params(max_epochs=1, devices=2, strategy="ddp_spawn"), tmp_path)
    finally:
        torch.set_num_threads(before)
    assert result.history[-1]["threads"] == 1.0


def test_killed_fit_resumes_from_its_last_checkpoint(tmp_path: Path) -> None:
    first = fit(ToyModel(), ToyData(), _params(max_epochs=3, patience=10), tmp_path)
    assert first.epochs == 3
    (tmp_path / DONE_FILE).unlink()  # as if the process had been killed before finishing
    resumed = fit(ToyModel(), ToyData(), _params(max_epochs=5, patience=10), tmp_path)
    assert resumed.resumed_from is not None
    epochs = [row["epoch"] for row in read_history(tmp_path)]
    assert epochs == [0, 1, 2, 3, 4]  # continued at epoch 3, did not start over
    assert resumed.history[3]["train_loss"] < first.history[0]["train_loss"] / 5  # with the trained weights


def test_finished_fit_is_not_resumed(tmp_path: Path) -> None:
    fit(ToyModel(), ToyData(), _params(max_epochs=2), tmp_path)
    again = fit(ToyModel(), ToyData(), _params(max_epochs=2), tmp_path)
    assert again.resumed_from is None and again.epochs == 2
    assert json.loads((tmp_path / DONE_FILE).read_text())["epochs"] == 2


@pytest.mark.parametrize("precision", ["bf16-mixed"])
def test_mixed_precision_runs_on_cpu(tmp_path: Path, precision: str) -> None:
    """The GPU setting (bf16) is accepted by the same code path; on CPU it is autocast too."""
    result = fit(ToyModel(), ToyData(), _params(max_epochs=2, precision=precision), tmp_path)
    assert result.epochs == 2 and result.history[-1]["val_loss"] < result.history[0]["train_loss"]
