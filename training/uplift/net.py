"""A multi-treatment uplift network: shared trunk, one outcome head per arm (control included), optional propensity head.

After TARNet (Shalit, Johansson & Sontag 2017, "Estimating individual treatment effect:
generalization bounds and algorithms") and DragonNet (Shi, Blei & Veitch 2019): the trunk learns
what the arms have in common, each head the outcome under its arm, and uplift is a head minus the
control's head. Departures: no representation-balancing penalty (the logs are randomised); rows are
weighted by 1 / logged propensity (normalised to mean 1), so a log that over-samples an arm still
trains each head on its arm's population; the propensity head is a regulariser only (its
prediction is not used, the logged propensities are known). Amount outcomes are learnt on the
scale of their standard deviation with a squared loss.

Small and CPU-fast by design: one thread, a few thousand steps at most, seeded.
"""

from __future__ import annotations

import copy
import logging
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, EarlyStopping
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from typing_extensions import override

from training.uplift.learners import Standardiser, UpliftLearner

if TYPE_CHECKING:
    from retention.params import UpliftNetParams, UpliftParams


class TARNet(nn.Module):
    """x -> trunk -> one outcome per arm (B, K), and arm logits (B, K) when the propensity head is on."""

    def __init__(
        self, inputs: int, arms: int, hidden: int, head: int, dropout: float, propensity: bool
    ) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Linear(inputs, hidden), nn.ELU(), nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ELU()
        )
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(hidden, head), nn.ELU(), nn.Linear(head, 1)) for _ in range(arms)
        )
        self.propensity = nn.Linear(hidden, arms) if propensity else None

    @override
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        shared = self.trunk(x)  # (B, H)
        outcomes = torch.cat([head(shared) for head in self.heads], dim=1)  # (B, K)
        logits = self.propensity(shared) if self.propensity is not None else None  # (B, K)
        return outcomes, logits


class UpliftNetModule(pl.LightningModule):
    """Optimisation and logging of a TARNet: weighted outcome loss of the logged arm's head (+ propensity CE)."""

    def __init__(
        self, net: TARNet, binary: bool, learning_rate: float, weight_decay: float, propensity_weight: float
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        self.net = net
        self.binary = binary

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[0]

    def _shared_step(self, batch: tuple[torch.Tensor, ...], stage: str) -> torch.Tensor:
        x, arm, y, weight = batch
        outcomes, logits = self.net(x)
        logged = outcomes.gather(1, arm[:, None]).squeeze(1)  # (B,) the logged arm's head
        if self.binary:
            loss = nn.functional.binary_cross_entropy_with_logits(logged, y, reduction="none")
        else:
            loss = (logged - y) ** 2
        total = (weight * loss).sum() / weight.sum()
        if logits is not None and self.hparams["propensity_weight"] > 0:
            total = total + self.hparams["propensity_weight"] * nn.functional.cross_entropy(logits, arm)
        self.log(f"{stage}_loss", total, on_epoch=True, on_step=False, prog_bar=False, batch_size=len(x))
        return total

    @override
    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    @override
    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "val")

    @override
    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.parameters(), lr=self.hparams["learning_rate"], weight_decay=self.hparams["weight_decay"]
        )


class UpliftDataModule(pl.LightningDataModule):
    """The training log as tensors; `setup` holds out a seeded share for early stopping."""

    def __init__(
        self,
        X: np.ndarray,
        arm: np.ndarray,
        y: np.ndarray,
        weight: np.ndarray,
        params: UpliftNetParams,
        seed: int,
    ) -> None:
        super().__init__()
        self.arrays = (X, arm, y, weight)
        self.params = params
        self.seed = seed

    @override
    def setup(self, stage: str) -> None:
        X, arm, y, weight = self.arrays
        order = np.random.default_rng(self.seed).permutation(len(X))
        held = max(1, int(round(self.params.validation_share * len(X))))
        parts = {"val": order[:held], "train": order[held:]}
        self.sets = {
            name: TensorDataset(
                torch.as_tensor(X[rows], dtype=torch.float32),
                torch.as_tensor(arm[rows], dtype=torch.long),
                torch.as_tensor(y[rows], dtype=torch.float32),
                torch.as_tensor(weight[rows], dtype=torch.float32),
            )
            for name, rows in parts.items()
        }

    @override
    def train_dataloader(self) -> DataLoader[Any]:
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            self.sets["train"], batch_size=self.params.batch_size, shuffle=True, generator=generator
        )

    @override
    def val_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.sets["val"], batch_size=4 * self.params.batch_size)


class KeepBest(Callback):
    """Keeps the weights of the epoch with the lowest validation loss in memory (no checkpoint files)."""

    def __init__(self) -> None:
        self.best = float("inf")
        self.state: dict[str, torch.Tensor] | None = None
        self.epoch = -1

    @override
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loss = trainer.callback_metrics.get("val_loss")
        if loss is not None and float(loss) < self.best:
            self.best, self.epoch = float(loss), trainer.current_epoch
            self.state = copy.deepcopy(pl_module.state_dict())


class UpliftNet(UpliftLearner):
    """The network behind the learner interface (`--learner net`)."""

    name = "net"

    def __init__(self, params: UpliftParams, control: str, seed: int | None = None) -> None:
        super().__init__(params, control, seed)
        self.epochs = 0

    def _fit(self, X: np.ndarray, arm: np.ndarray, y: np.ndarray, propensity: np.ndarray) -> None:
        p = self.params.net
        torch.set_num_threads(1)
        pl.seed_everything(self.seed, workers=True, verbose=False)
        self.arms = [self.control, *self.treatments]  # head 0 is the control
        index = np.searchsorted(np.array(self.arms[1:]), arm) + 1
        index[arm == self.control] = 0
        self.scale = 1.0 if self.binary else float(y.std() or 1.0)
        weight = 1.0 / propensity
        self.inputs = Standardiser().fit(X)
        net = TARNet(X.shape[1], len(self.arms), p.hidden_size, p.head_size, p.dropout, p.propensity_head)
        self.module = UpliftNetModule(net, self.binary, p.learning_rate, p.weight_decay, p.propensity_weight)
        data = UpliftDataModule(
            self.inputs.transform(X), index, y / self.scale, weight / weight.mean(), p, self.seed
        )
        best = KeepBest()
        logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(
            logging.WARNING
        )  # no banner lines
        trainer = pl.Trainer(
            accelerator="cpu",
            devices=1,
            max_epochs=p.max_epochs,
            callbacks=[EarlyStopping(monitor="val_loss", patience=p.patience), best],
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            deterministic=True,
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*number of training batches.*")
            trainer.fit(self.module, datamodule=data)
        if best.state is not None:
            self.module.load_state_dict(best.state)
        self.epochs, self.best_epoch, self.best_loss = trainer.current_epoch, best.epoch, best.best

    def _predict(self, X: np.ndarray) -> np.ndarray:
        self.module.eval()
        with torch.no_grad():
            out = self.module(torch.as_tensor(self.inputs.transform(X), dtype=torch.float32))
        expected = torch.sigmoid(out) if self.binary else out * self.scale  # (B, K)
        return (expected[:, 1:] - expected[:, :1]).numpy()

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            **self.params.net.model_dump(),
            "epochs": self.epochs,
            "best_epoch": getattr(self, "best_epoch", None),
            "best_val_loss": getattr(self, "best_loss", None),
        }
