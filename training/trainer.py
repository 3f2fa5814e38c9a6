"""One Lightning `Trainer` for every model, built from params.yaml: devices, DDP, precision, early
stopping, per-epoch history and checkpoints that let a killed training resume."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, EarlyStopping, ModelCheckpoint

from retention.params import TrainerParams

log = logging.getLogger("retention.training")
HISTORY_FILE = "history.jsonl"  # one JSON line per epoch, written by rank 0
DONE_FILE = "done.json"  # a finished fit: its checkpoints are not resumed, a new fit starts clean
CHECKPOINTS = "checkpoints"


@dataclass(frozen=True)
class FitResult:
    """What a fit did.

    Attributes:
        best_path: the checkpoint with the lowest monitored metric (its weights are loaded).
        epochs: epochs run in total (including those before a resume).
        seconds_per_epoch: median wall time of the epochs this process ran.
        history: per epoch: epoch, seconds, and every logged metric (train_loss, val_loss, ...).
        resumed_from: the checkpoint this fit continued from, if any.
        devices: processes that trained.
    """

    best_path: Path | None
    epochs: int
    seconds_per_epoch: float
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: Path | None = None
    devices: int = 1


class EpochHistory(Callback):
    """Writes one line per epoch (time and synced metrics) to run_dir/history.jsonl on rank 0."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._started = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metrics = {
            k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1
        }
        row = {"epoch": trainer.current_epoch, "seconds": time.perf_counter() - self._started, **metrics}
        with self.path.open("a") as out:
            out.write(json.dumps(row) + "\n")
        shown = " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))
        log.info(
            "%s epoch %d: %s (%.1fs)", type(pl_module).__name__, trainer.current_epoch, shown, row["seconds"]
        )


class RankThreads(Callback):
    """Gives each of the trainer's processes its share of the training's intra-op threads.

    `training.threads.configure_threads` sets the threads of the process that builds the Trainer;
    `ddp_spawn` workers are fresh processes with torch's default, one thread per core each, so N
    ranks on one training's cores would run N times as many spinning threads as cores. Each rank
    takes `threads // processes` (at least 1) when the fit sets up.
    """

    def __init__(self, threads: int, processes: int) -> None:
        self.threads = max(1, threads // max(1, processes))

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        torch.set_num_threads(self.threads)


def is_primary() -> bool:
    """True in the process that writes files and logs to MLflow: rank 0.

    Under `strategy="ddp"` Lightning re-launches the whole command once per extra device (with
    RANK / LOCAL_RANK set); every rank then runs the same fits, but only rank 0 may write and log.
    Under `ddp_spawn` the workers never return here, so this process is the only one.
    """
    from pytorch_lightning.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def build_trainer(
    params: TrainerParams, run_dir: Path, monitor: str = "val_loss", mode: str = "min"
) -> pl.Trainer:
    """A Trainer as params.yaml `training:` says, checkpointing into run_dir/checkpoints.

    Args:
        params: accelerator, devices, strategy, precision, max_epochs, patience.
        run_dir: where checkpoints and history.jsonl go.
        monitor: the validation metric of early stopping and of the best checkpoint.
        mode: "min" or "max" for `monitor`.
    """
    # Lightning's banner lines (GPU/TPU available, tips) would bury our one line per epoch.
    logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)
    checkpoints = ModelCheckpoint(
        dirpath=run_dir / CHECKPOINTS,
        filename="best",
        monitor=monitor,
        mode=mode,
        save_top_k=1,
        save_last=True,
    )
    strategy: Any = params.strategy
    if params.strategy == "auto" and params.devices > 1:
        strategy = "ddp_spawn" if params.accelerator == "cpu" else "ddp"
    return pl.Trainer(
        accelerator=params.accelerator,
        devices=params.devices,
        strategy=strategy,
        precision=params.precision,
        max_epochs=params.max_epochs,
        callbacks=[
            EarlyStopping(monitor=monitor, mode=mode, patience=params.patience),
            checkpoints,
            EpochHistory(run_dir / HISTORY_FILE),
            RankThreads(torch.get_num_threads(), params.devices),
        ],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        deterministic=False,
    )


# glibc mallopt parameters (malloc.h) and their defaults
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4
DEFAULT_TRIM_THRESHOLD, DEFAULT_TOP_PAD, DEFAULT_MMAP_MAX = 128 * 1024, 128 * 1024, 65536
HEAP_TOP_PAD = 256 * 1024 * 1024  # heap grown by at least this much at a time during a fit


@contextmanager
def reused_heap() -> Iterator[None]:
    """During the block, large CPU tensors are carved out of a heap that is kept, not mmap'ed afresh.

    glibc serves every allocation above its mmap threshold (at most 32 MB) with a fresh mmap and
    returns it on free, so each training step pays the kernel's page faults and page zeroing again
    for every large activation and gradient (SASRec's full softmax allocates several (positions x
    items) buffers per step: a quarter of its CPU time). Inside the block large blocks come from
    the heap and freed memory stays there for the next step; the defaults are restored and the
    heap trimmed afterwards. No effect on the numbers; a no-op off glibc.
    """
    libc = _glibc()
    if libc is not None:
        libc.mallopt(M_MMAP_MAX, 0)
        libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
        libc.mallopt(M_TOP_PAD, HEAP_TOP_PAD)
    try:
        yield
    finally:
        if libc is not None:
            libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
            libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)
            libc.mallopt(M_TOP_PAD, DEFAULT_TOP_PAD)
            libc.malloc_trim(0)


def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has mallopt and malloc_trim), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - glibc only (musl lacks it)
        libc.mallopt, libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def read_history(run_dir: Path) -> list[dict[str, float]]:
    """The per-epoch lines of a run folder (the last line per epoch wins after a resume)."""
    path = run_dir / HISTORY_FILE
    if not path.exists():
        return []
    rows = {row["epoch"]: row for row in map(json.loads, path.read_text().splitlines())}
    return [rows[epoch] for epoch in sorted(rows)]


def fit(
    module: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    params: TrainerParams,
    run_dir: Path,
    monitor: str = "val_loss",
    mode: str = "min",
) -> FitResult:
    """Train `module`, resuming from run_dir's last checkpoint if an earlier fit was killed.

    The caller owns `run_dir`: one folder per model, data and parameters, so a resume continues
    the same training. After the fit the best checkpoint's weights are loaded into `module` (also
    under DDP, where training ran in other processes), ready for prediction in this process.

    Returns:
        The fit's summary (see `FitResult`).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    last = run_dir / CHECKPOINTS / "last.ckpt"
    if (run_dir / DONE_FILE).exists():  # a finished fit of earlier weights: start over
        shutil.rmtree(run_dir / CHECKPOINTS, ignore_errors=True)
        (run_dir / HISTORY_FILE).unlink(missing_ok=True)
        (run_dir / DONE_FILE).unlink()
    resumed_from = last if last.exists() else None
    if resumed_from:
        log.info("resuming %s from %s", type(module).__name__, resumed_from)
    pl.seed_everything(params.seed, workers=True, verbose=False)
    trainer = build_trainer(params, run_dir, monitor, mode)
    with reused_heap():
        trainer.fit(module, datamodule=datamodule, ckpt_path=resumed_from)
    best = run_dir / CHECKPOINTS / "best.ckpt"
    best_path = best if best.exists() else (last if last.exists() else None)
    if best_path is not None:
        state = torch.load(best_path, map_location="cpu", weights_only=False)["state_dict"]
        module.load_state_dict(state)
    history = read_history(run_dir)
    seconds = sorted(row["seconds"] for row in history) or [0.0]
    (run_dir / DONE_FILE).write_text(json.dumps({"epochs": len(history), "best": str(best_path)}))
    return FitResult(
        best_path=best_path,
        epochs=len(history),
        seconds_per_epoch=seconds[len(seconds) // 2],
        history=history,
        resumed_from=resumed_from,
        devices=params.devices,
    )
