"""Thread settings from params.yaml and the batch-indexed DataLoader of in-memory tensors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError

from retention.params import TrainerParams
from training import threads
from training.loaders import TensorBatches, tensor_loader
from training.threads import (
    SLOTS,
    ShareThreads,
    available_cores,
    running_trainings,
    thread_settings,
    training_slot,
)

BASE: dict[str, Any] = {
    "accelerator": "cpu",
    "devices": 1,
    "strategy": "auto",
    "precision": "32-true",
    "max_epochs": 2,
    "patience": 1,
    "seed": 7,
}


def _params(**changes: Any) -> TrainerParams:
    return TrainerParams(**{**BASE, **changes})


def test_auto_shares_the_cores_between_concurrent_trainings() -> None:
    assert thread_settings(_params(threads="auto", concurrent_trainings=2), cores=2).intra_op == 1
    assert thread_settings(_params(threads="auto", concurrent_trainings=2), cores=8).intra_op == 4
    assert thread_settings(_params(threads="auto", concurrent_trainings=3), cores=8).inter_op == 2
    assert thread_settings(_params(threads="auto", concurrent_trainings=4), cores=2).intra_op == 1  # never 0
    # a caller that trains alone (a backtest) takes every core
    assert (
        thread_settings(
            _params(threads="auto", concurrent_trainings=2), cores=8, concurrent_trainings=1
        ).intra_op
        == 8
    )


def test_a_number_wins_over_the_core_count() -> None:
    settings = thread_settings(_params(threads=3, concurrent_trainings=2, dataloader_workers=1), cores=16)
    assert (settings.intra_op, settings.dataloader_workers, settings.cores) == (3, 1, 16)


def test_params_without_the_new_keys_still_validate() -> None:
    # a model saved before `threads` existed stores a `training` section without it
    params = TrainerParams(**BASE)
    assert (params.threads, params.concurrent_trainings, params.dataloader_workers) == ("auto", 1, 0)
    with pytest.raises(ValidationError):
        _params(threads=0)
    with pytest.raises(ValidationError):
        _params(threads="many")
    with pytest.raises(ValidationError, match="concurrent_trainings"):
        _params(concurrent_trainings=0)


@pytest.fixture
def other_training(tmp_path: Path) -> Iterator[Path]:
    """A slot held by another live process of this host (a sleeping child)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    slot = tmp_path / SLOTS / f"{socket.gethostname()}-{child.pid}"
    slot.parent.mkdir(parents=True, exist_ok=True)
    slot.touch()
    try:
        yield slot
    finally:
        child.kill()
        child.wait()


def test_auto_concurrency_counts_the_trainings_running_on_this_host(
    tmp_path: Path, other_training: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(threads, "available_cores", lambda: 8)
    auto = _params(threads="auto", concurrent_trainings="auto")
    other_training.unlink()
    with training_slot(tmp_path) as slot:  # alone: every core
        assert slot.name == f"{socket.gethostname()}-{os.getpid()}"
        assert running_trainings(tmp_path / SLOTS) == 1
        assert thread_settings(auto).intra_op == 8
        other_training.touch()  # a second training starts: half each
        assert thread_settings(auto).intra_op == 4
    assert not slot.exists()  # released
    assert running_trainings(tmp_path / SLOTS) == 1  # the other one


def test_slots_of_dead_processes_are_not_counted(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = tmp_path / SLOTS / f"{socket.gethostname()}-{int(dead.stdout)}"
    stale.parent.mkdir(parents=True)
    stale.touch()
    assert running_trainings(tmp_path / SLOTS) == 0
    assert not stale.exists()


def test_a_training_follows_its_share_when_another_starts_and_ends(
    tmp_path: Path, other_training: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    other_training.unlink()
    before = torch.get_num_threads()
    try:
        with training_slot(tmp_path):
            callback = ShareThreads(_params(threads="auto", concurrent_trainings="auto"), 4, 1)
            callback.setup(None, None, "fit")  # type: ignore[arg-type]
            assert torch.get_num_threads() == 4
            other_training.touch()
            callback.checked -= 2  # a second has passed
            callback.on_train_batch_start(None, None)  # type: ignore[arg-type]
            assert torch.get_num_threads() == 2
            other_training.unlink()
            callback.on_train_batch_start(None, None)  # type: ignore[arg-type]
            assert torch.get_num_threads() == 2  # re-counted at most once a second
            callback.checked -= 2
            callback.on_validation_batch_start(None, None)  # type: ignore[arg-type]
            assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(before)


def test_ranks_of_a_data_parallel_fit_split_the_training_share() -> None:
    callback = ShareThreads(_params(threads="auto", concurrent_trainings=1), 4, 2)
    assert callback.threads == 2 and not callback.adaptive


def test_configure_threads_sets_torch_in_a_fresh_process() -> None:
    code = (
        "import torch\n"
        "from retention.params import TrainerParams\n"
        "from training.threads import configure_threads\n"
        f"p = TrainerParams(**{BASE!r}, threads=1, concurrent_trainings=2)\n"
        "s = configure_threads(p)\n"
        "from threadpoolctl import threadpool_info\n"
        "pools = {i['num_threads'] for i in threadpool_info()}\n"
        "print(torch.get_num_threads(), torch.get_num_interop_threads(), s.intra_op, *sorted(pools))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1", "1", "1"]  # torch, and every BLAS / OpenMP pool
    assert available_cores() >= 1


def test_tensor_loader_gives_the_same_batches_as_a_plain_loader() -> None:
    x, y = torch.arange(50).reshape(25, 2), torch.arange(25)
    torch.manual_seed(3)
    batched = [[t.clone() for t in batch] for batch in tensor_loader(TensorBatches(x, y), 4, shuffle=True)]
    torch.manual_seed(3)
    plain = list(
        torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4, shuffle=True)
    )
    assert len(batched) == len(plain) == 7
    for (bx, by), (px, py) in zip(batched, plain, strict=True):
        assert torch.equal(bx, px) and torch.equal(by, py)
