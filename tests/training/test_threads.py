"""Thread settings from params.yaml and the batch-indexed DataLoader of in-memory tensors."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import torch
from pydantic import ValidationError

from retention.params import TrainerParams
from training.loaders import TensorBatches, tensor_loader
from training.threads import available_cores, thread_settings

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
