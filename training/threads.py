"""Thread settings of a training process, from params.yaml `training:` and the cores it may use.

torch's default is one intra-op thread per core the machine has, in every process. Two trainings
sharing a 2-core worker (the `train_models` DAG runs the families in parallel) then run four
spinning OpenMP threads on two cores: each barrier waits for a thread that is not scheduled, and an
epoch of the return model went from 7 s to 370 s. So every training entry point calls
`configure_threads` first: `threads: auto` gives each of `concurrent_trainings` trainings an equal
share of the cores this process may run on (its CPU affinity, which containers and taskset narrow).

`concurrent_trainings: auto` counts instead the trainings running now on this host: each training
holds a `training_slot` (a file named by host and pid under RETENTION_HOME/run/trainings), and
`ShareThreads` re-reads the count at most once a second while it trains. Trainings that run one
after another (`airflow dags test`, a sequential executor) then each get every core, and two that
overlap drop to half each within a second of the second one starting (and back when it ends).
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from retention.params import TrainerParams

log = logging.getLogger("retention.training")


@dataclass(frozen=True)
class ThreadSettings:
    """What a training process uses.

    Attributes:
        cores: cores available to the process.
        intra_op: torch intra-op threads (`torch.set_num_threads`), also the BLAS and OpenMP pools'.
        inter_op: torch inter-op threads (`torch.set_num_interop_threads`).
        dataloader_workers: DataLoader worker processes (0: batches are made in-process).
    """

    cores: int
    intra_op: int
    inter_op: int
    dataloader_workers: int


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


SLOTS = Path("run") / "trainings"  # under RETENTION_HOME
_slots: Path | None = None  # the slot folder of the training this process runs, if it holds one


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def running_trainings(folder: Path) -> int:
    """Trainings holding a slot in `folder` on this host (stale slots of dead processes are removed)."""
    host = socket.gethostname()
    count = 0
    for slot in folder.glob(f"{host}-*"):
        try:
            pid = int(slot.name.rsplit("-", 1)[1])
        except ValueError:
            continue
        if _alive(pid):
            count += 1
        else:  # killed without cleaning up
            slot.unlink(missing_ok=True)
    return count


@contextmanager
def training_slot(home: Path) -> Iterator[Path]:
    """Count this process among the host's running trainings for the block (`concurrent_trainings: auto`)."""
    global _slots
    folder = home / SLOTS
    folder.mkdir(parents=True, exist_ok=True)
    slot = folder / f"{socket.gethostname()}-{os.getpid()}"
    held = slot.exists()  # nested (a gate inside a training): the outer block owns the slot
    slot.touch()
    previous, _slots = _slots, folder
    try:
        yield slot
    finally:
        _slots = previous
        if not held:
            slot.unlink(missing_ok=True)


F = TypeVar("F", bound=Callable[..., Any])


def holds_training_slot(function: F) -> F:
    """Run `function(engine, settings, ...)` inside `training_slot(settings.home)`."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        settings = kwargs["settings"] if "settings" in kwargs else args[1]
        with training_slot(settings.home):
            return function(*args, **kwargs)

    return cast(F, wrapper)


def _sharing(params: TrainerParams, concurrent_trainings: int | None) -> int:
    if concurrent_trainings is not None:
        return concurrent_trainings
    if params.concurrent_trainings != "auto":
        return params.concurrent_trainings
    return max(1, running_trainings(_slots)) if _slots is not None else 1


def thread_settings(
    params: TrainerParams, cores: int | None = None, concurrent_trainings: int | None = None
) -> ThreadSettings:
    """The settings params.yaml asks for on `cores` cores (default: this process's).

    Args:
        params: `threads` (auto or a number), `concurrent_trainings` (a number, or auto: the
            trainings holding a `training_slot` on this host now), `dataloader_workers`.
        cores: the cores to share (tests pass a number).
        concurrent_trainings: overrides params' where the caller knows better (a backtest trains alone).

    Returns:
        intra-op threads = `threads`, or with `auto` cores // concurrent_trainings (at least 1);
        inter-op threads = the same number (only one model runs at a time in a training).
    """
    cores = available_cores() if cores is None else cores
    sharing = _sharing(params, concurrent_trainings)
    threads = max(1, cores // sharing) if params.threads == "auto" else params.threads
    return ThreadSettings(cores, threads, threads, params.dataloader_workers)


def configure_threads(params: TrainerParams, concurrent_trainings: int | None = None) -> ThreadSettings:
    """Apply `thread_settings` to this process's torch, BLAS and OpenMP pools; call it before any
    training or scoring (`concurrent_trainings` as there).

    torch fixes the inter-op pool at its first parallel operation: later calls keep that pool
    (and say so at debug level) but still set the intra-op threads, which can change any time.

    Returns:
        The settings applied.
    """
    import scipy.linalg  # noqa: F401  (scipy and scikit-learn bring their own BLAS and OpenMP
    import sklearn.utils  # noqa: F401  libraries on import; threadpoolctl limits only loaded ones)
    from threadpoolctl import threadpool_limits

    settings = thread_settings(params, concurrent_trainings=concurrent_trainings)
    # numpy/scipy BLAS (the ALS solves) and scikit-learn's OpenMP spin the same way torch's does:
    # ALS took 36 s instead of 5 s with two BLAS threads on a loaded 2-core machine
    threadpool_limits(limits=settings.intra_op)
    torch.set_num_threads(settings.intra_op)
    if torch.get_num_interop_threads() != settings.inter_op:
        try:
            torch.set_num_interop_threads(settings.inter_op)
        except RuntimeError:  # the pool already exists in this process
            log.debug("torch inter-op threads stay %d", torch.get_num_interop_threads())
    log.info(
        "threads: %d intra-op, %d inter-op, %d dataloader workers (%d cores, %d concurrent trainings)",
        settings.intra_op,
        torch.get_num_interop_threads(),
        settings.dataloader_workers,
        settings.cores,
        _sharing(params, concurrent_trainings),
    )
    return settings


class ShareThreads(Callback):
    """Keeps each of a Trainer's processes at its share of the training's intra-op threads.

    `ddp_spawn` workers are fresh processes with torch's default, one thread per core each, so N
    ranks on one training's cores would run N times as many spinning threads as cores: each rank
    takes `threads // processes` (at least 1) when the fit sets up. With `concurrent_trainings:
    auto`, the process holding the training's slot also re-counts the host's running trainings at
    most once a second (at batch starts, in the training thread: torch's thread count is per
    thread) and follows its share as other trainings start and finish.
    """

    def __init__(self, params: TrainerParams, threads: int, processes: int) -> None:
        self.params = params
        self.processes = max(1, processes)
        self.threads = max(1, threads // self.processes)
        self.adaptive = (
            params.threads == "auto" and params.concurrent_trainings == "auto" and _slots is not None
        )
        self.checked = 0.0

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        torch.set_num_threads(self.threads)
        self.checked = time.monotonic()

    def _follow(self) -> None:
        now = time.monotonic()
        if not self.adaptive or now - self.checked < 1.0:
            return
        self.checked = now
        share = max(1, thread_settings(self.params).intra_op // self.processes)
        if share != torch.get_num_threads():
            from threadpoolctl import threadpool_limits

            log.info("threads: %d -> %d (running trainings changed)", torch.get_num_threads(), share)
            torch.set_num_threads(share)
            threadpool_limits(limits=share)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self._follow()

    def on_validation_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any
    ) -> None:
        self._follow()
