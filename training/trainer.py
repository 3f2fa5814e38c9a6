"""One Lightning `Trainer` for every model, built from params.yaml: devices, DDP, precision, early
stopping, per-epoch history and checkpoints that let a killed or SIGTERM-stopped training resume.

SIGTERM (a supervisor stopping `retention train`): Lightning notices it during a fit and stops at
the end of the epoch, after that epoch's checkpoint (`last.ckpt`, written atomically) and history
line; `fit` then raises `TrainingInterrupted` instead of returning as if the fit had finished.
Outside a fit, `stop_on_sigterm` records the signal and `raise_if_stopped` stops at the next
safe point. The checkpoints carry torch's random state, so a resumed fit draws the same batches
and noise as an uninterrupted one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, EarlyStopping, ModelCheckpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

from retention.atomic import atomic_path
from retention.params import TrainerParams
from training.threads import ShareThreads

log = logging.getLogger("retention.training")
HISTORY_FILE = "history.jsonl"  # one JSON line per epoch, written by rank 0
DONE_FILE = "done.json"  # a finished fit: its checkpoints are not resumed, a new fit starts clean
KEY_FILE = "key.json"  # what the fit in this folder trains (a resume of another key starts clean)
CHECKPOINTS = "checkpoints"
_STOP = threading.Event()  # SIGTERM received by `stop_on_sigterm`'s handler


class TrainingInterrupted(RuntimeError):
    """SIGTERM stopped the training; its checkpoints are saved and the same command resumes it."""


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """During the block SIGTERM asks the training to stop at a safe point instead of killing it.

    The handler only records the signal (Lightning adds its own during a fit and calls this one
    too); `fit` and `raise_if_stopped` turn it into `TrainingInterrupted`. The previous handler
    is restored afterwards; `stop_requested` still tells whether the signal came.
    """
    _STOP.clear()
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: _STOP.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop_requested() -> bool:
    """True once SIGTERM reached `stop_on_sigterm`'s handler."""
    return _STOP.is_set()


def raise_if_stopped(what: str) -> None:
    """Raise `TrainingInterrupted` when SIGTERM was received (call between fits)."""
    if _STOP.is_set():
        raise TrainingInterrupted(f"SIGTERM: stopped before {what}")


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
        reused: a finished fit of the same key was loaded, nothing was trained.
    """

    best_path: Path | None
    epochs: int
    seconds_per_epoch: float
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: Path | None = None
    devices: int = 1
    reused: bool = False


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


class StopWhenAsked(Callback):
    """Ends the fit at an epoch's end once SIGTERM reached `stop_on_sigterm`'s handler.

    Lightning stops by itself when the signal comes during the fit; this also covers a signal
    that came just before the fit, before Lightning's own handler was installed. The epoch's
    checkpoint is saved by then (`ModelCheckpoint` and `EarlyStopping` act at validation end);
    an epoch after which the fit ends anyway is let finish, so the fit counts as finished.
    """

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (
            _STOP.is_set()
            and not trainer.should_stop
            and trainer.current_epoch + 1 < (trainer.max_epochs or 0)
        ):
            raise TrainingInterrupted(
                f"SIGTERM: {type(pl_module).__name__} stopped after epoch {trainer.current_epoch}"
            )


class RandomState(Callback):
    """Saves torch's random state in every checkpoint and restores it on resume.

    Without it a resumed fit re-seeds at its start, so its later epochs shuffle (and, under DP,
    add noise) differently from an uninterrupted fit's.
    """

    def state_dict(self) -> dict[str, Any]:
        return {"torch": torch.get_rng_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])


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
            # checked at validation end, before the epoch's checkpoint: a resume restores its state
            EarlyStopping(
                monitor=monitor, mode=mode, patience=params.patience, check_on_train_epoch_end=False
            ),
            checkpoints,
            EpochHistory(run_dir / HISTORY_FILE),
            StopWhenAsked(),  # after EpochHistory: the stopped epoch keeps its history line
            RandomState(),
            ShareThreads(params, torch.get_num_threads(), params.devices),
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


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def _fit_over(trainer: pl.Trainer, params: TrainerParams) -> bool:
    """Whether a fit that SIGTERM stopped at an epoch's end had finished anyway (early stop, last epoch)."""
    return trainer.should_stop or trainer.current_epoch >= params.max_epochs


def fit(
    module: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    params: TrainerParams,
    run_dir: Path,
    monitor: str = "val_loss",
    mode: str = "min",
    key: str = "",
    reuse_finished: bool = False,
) -> FitResult:
    """Train `module`, resuming from run_dir's last checkpoint if an earlier fit of `key` was stopped.

    The caller owns `run_dir`: one folder per model, data and parameters, so a resume continues
    the same training. After the fit the best checkpoint's weights are loaded into `module` (also
    under DDP, where training ran in other processes), ready for prediction in this process.

    Args:
        module, datamodule: what to train on what.
        params: params.yaml `training`.
        run_dir: the fit's folder (checkpoints, history.jsonl).
        monitor, mode: the validation metric of early stopping and of the best checkpoint.
        key: what this fit trains (the caller's hash of data and parameters); the checkpoints of
            another key are not resumed.
        reuse_finished: when run_dir holds a finished fit of `key`, load its best weights instead
            of training again (an interrupted ensemble resuming); otherwise a finished fit starts over.

    Returns:
        The fit's summary (see `FitResult`).

    Raises:
        TrainingInterrupted: SIGTERM stopped the fit before it finished (the checkpoint of its last
            whole epoch is kept: the same call resumes from it).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    last = run_dir / CHECKPOINTS / "last.ckpt"
    done = _read_json(run_dir / DONE_FILE)
    if done is not None and reuse_finished and done.get("key", "") == key and Path(done["best"]).exists():
        return _loaded(module, run_dir, params, Path(done["best"]))
    started = _read_json(run_dir / KEY_FILE) or {}
    if done is not None or started.get("key", "") != key:  # finished, or another fit's: start over
        shutil.rmtree(run_dir / CHECKPOINTS, ignore_errors=True)
        (run_dir / HISTORY_FILE).unlink(missing_ok=True)
        (run_dir / DONE_FILE).unlink(missing_ok=True)
    with atomic_path(run_dir / KEY_FILE) as tmp:
        tmp.write_text(json.dumps({"key": key}))
    raise_if_stopped(f"fitting {type(module).__name__} in {run_dir}")
    resumed_from = last if last.exists() else None
    if resumed_from:
        log.info("resuming %s from %s", type(module).__name__, resumed_from)
    pl.seed_everything(params.seed, workers=True, verbose=False)
    trainer = build_trainer(params, run_dir, monitor, mode)
    try:
        with reused_heap():
            trainer.fit(module, datamodule=datamodule, ckpt_path=resumed_from)
    except SIGTERMException:  # Lightning's: a SystemExit with status 0, which a supervisor takes for success
        _STOP.set()  # also for callers without `stop_on_sigterm`: `raise_if_stopped` sees it
        if not _fit_over(trainer, params):
            raise TrainingInterrupted(
                f"SIGTERM: {type(module).__name__} stopped after epoch {trainer.current_epoch}; "
                f"checkpoint {last}"
            ) from None
    best = run_dir / CHECKPOINTS / "best.ckpt"
    best_path = best if best.exists() else (last if last.exists() else None)
    if best_path is not None:
        state = torch.load(best_path, map_location="cpu", weights_only=False)["state_dict"]
        module.load_state_dict(state)
    history = read_history(run_dir)
    with atomic_path(run_dir / DONE_FILE) as tmp:
        tmp.write_text(json.dumps({"epochs": len(history), "best": str(best_path), "key": key}))
    return _result(history, params, best_path, resumed_from)


def _result(
    history: list[dict[str, float]],
    params: TrainerParams,
    best_path: Path | None,
    resumed_from: Path | None,
    reused: bool = False,
) -> FitResult:
    seconds = sorted(row["seconds"] for row in history) or [0.0]
    return FitResult(
        best_path=best_path,
        epochs=len(history),
        seconds_per_epoch=seconds[len(seconds) // 2],
        history=history,
        resumed_from=resumed_from,
        devices=params.devices,
        reused=reused,
    )


def _loaded(module: pl.LightningModule, run_dir: Path, params: TrainerParams, best: Path) -> FitResult:
    """A finished fit's result, its best weights loaded into `module`."""
    state = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]
    module.load_state_dict(state)
    log.info("loaded the finished fit %s (not trained again)", run_dir)
    return _result(read_history(run_dir), params, best, None, reused=True)
