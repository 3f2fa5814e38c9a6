"""A toy regression model and data module for the trainer's tests (picklable for ddp_spawn)."""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class ToyData(pl.LightningDataModule):
    """y = x . w + noise, split 80/20."""

    def __init__(self, rows: int = 512, seed: int = 0) -> None:
        super().__init__()
        rng = np.random.default_rng(seed)
        self.x = rng.normal(size=(rows, 4)).astype(np.float32)
        self.y = (
            self.x @ np.array([1.0, -2.0, 0.5, 3.0], dtype=np.float32) + 0.1 * rng.normal(size=rows)
        ).astype(np.float32)

    def setup(self, stage: str | None = None) -> None:
        cut = int(0.8 * len(self.x))
        self.train = TensorDataset(torch.from_numpy(self.x[:cut]), torch.from_numpy(self.y[:cut]))
        self.val = TensorDataset(torch.from_numpy(self.x[cut:]), torch.from_numpy(self.y[cut:]))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train, batch_size=32, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val, batch_size=64)


class ToyModel(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(4, 1)

    def _loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self.net(x).squeeze(-1), y)

    def training_step(self, batch, batch_idx):  # noqa: ANN001, ANN201
        loss = self._loss(batch)
        self.log("train_loss", loss, on_epoch=True, on_step=False, sync_dist=True)
        # the intra-op threads of the process running this step, averaged over the ranks
        self.log("threads", float(torch.get_num_threads()), on_epoch=True, on_step=False, sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx):  # noqa: ANN001, ANN201
        self.log("val_loss", self._loss(batch), sync_dist=True)

    def configure_optimizers(self):  # noqa: ANN201
        return torch.optim.SGD(self.parameters(), lr=0.05)
