"""Thread settings of a training process, from params.yaml `training:` and the cores it may use.

torch's default is one intra-op thread per core the machine has, in every process. Two trainings
sharing a 2-core worker (the `train_models` DAG runs the families in parallel) then run four
spinning OpenMP threads on two cores: each barrier waits for a thread that is not scheduled, and an
epoch of the return model went from 7 s to 370 s. So every training entry point calls
`configure_threads` first: `threads: auto` gives each of `concurrent_trainings` trainings an equal
share of the cores this process may run on (its CPU affinity, which containers and taskset narrow).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

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


def thread_settings(
    params: TrainerParams, cores: int | None = None, concurrent_trainings: int | None = None
) -> ThreadSettings:
    """The settings params.yaml asks for on `cores` cores (default: this process's).

    Args:
        params: `threads` (auto or a number), `concurrent_trainings`, `dataloader_workers`.
        cores: the cores to share (tests pass a number).
        concurrent_trainings: overrides params' where the caller knows better (a backtest trains alone).

    Returns:
        intra-op threads = `threads`, or with `auto` cores // concurrent_trainings (at least 1);
        inter-op threads = the same number (only one model runs at a time in a training).
    """
    cores = available_cores() if cores is None else cores
    sharing = params.concurrent_trainings if concurrent_trainings is None else concurrent_trainings
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
        params.concurrent_trainings if concurrent_trainings is None else concurrent_trainings,
    )
    return settings
