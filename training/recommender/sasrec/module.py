"""SASRec's training plumbing: the LightningModule (optimisation, loss, metrics) and its DataModule."""

from __future__ import annotations

from typing import Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from training.loaders import TensorBatches, tensor_loader
from training.recommender.sasrec.net import SASRecNet
from training.recommender.sequences import PAD, NextItemArrays

NDCG_K = 10  # the cut-off of the per-epoch validation NDCG (the protocol's headline metric)


class SASRecModule(pl.LightningModule):
    """Next-item training of a `SASRecNet` with full or sampled softmax cross-entropy.

    Args:
        net: the network.
        learning_rate: AdamW learning rate.
        weight_decay: AdamW weight decay.
        softmax: "full" scores every item at every position; "sampled" scores the targets against
            `negatives` items drawn uniformly per step and shared by the batch.
        negatives: sampled negatives per step (used by "sampled" only).
    """

    def __init__(
        self,
        net: SASRecNet,
        learning_rate: float,
        weight_decay: float,
        softmax: Literal["full", "sampled"],
        negatives: int,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        self.net = net

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """(B, T) sequences -> (B, n_items) scores of the next item."""
        return self.net.score_last(items)

    def _loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of every (position, following item) pair.

        Args:
            inputs: (B, T) sequences.
            targets: (B, T, K) the K items after each position (PAD: none).
        """
        has_target = targets[..., 0] != PAD  # (B, T)
        hidden = self.net(inputs)[has_target]  # (M, H): only positions with a next item
        targets = targets[has_target]  # (M, K)
        valid = targets != PAD
        if self.hparams["softmax"] == "full":
            # Items 1..n only: the padding column would score -inf (`net.scores`), adding nothing to
            # the softmax but a masked copy of the (M, n_items + 1) logits and of their gradient.
            logits = hidden @ self.net.item_vectors()[1:].T  # (M, n_items), column j = item j + 1
            log_probs = F.log_softmax(logits, dim=-1)
            return -log_probs.gather(1, (targets - 1).clamp(min=0))[valid].mean()
        vectors = self.net.item_vectors()
        negatives = torch.randint(1, vectors.shape[0], (self.hparams["negatives"],), device=targets.device)
        negative = hidden @ vectors[negatives].T  # (M, negatives)
        for column in targets.T:  # a negative that is one of the row's targets is no negative
            negative = negative.masked_fill(negatives.unsqueeze(0) == column.unsqueeze(1), float("-inf"))
        positive = (hidden.unsqueeze(1) * vectors[targets]).sum(-1)  # (M, K)
        # -log softmax of each positive against [itself, negatives]
        others = torch.logsumexp(negative, dim=1, keepdim=True)  # (M, 1)
        return (torch.logaddexp(positive, others) - positive)[valid].mean()

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        inputs, targets = batch  # (B, T), (B, T, K)
        loss = self._loss(inputs, targets)
        self.log("train_loss", loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=len(inputs))
        return loss

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        inputs, targets = batch  # (B, T), (B,): each sequence's held-out last item
        logits = self.net.scores(self.net.last_state(inputs))  # (B, n_items + 1)
        loss = F.cross_entropy(logits, targets)
        rank = (logits > logits.gather(1, targets.unsqueeze(1))).sum(1)  # 0 = ranked first
        ndcg = torch.where(
            rank < NDCG_K, 1.0 / torch.log2(rank.float() + 2), torch.zeros_like(rank, dtype=torch.float)
        )
        self.log("val_loss", loss, on_epoch=True, sync_dist=True, batch_size=len(inputs))
        self.log(f"val_ndcg@{NDCG_K}", ndcg.mean(), on_epoch=True, sync_dist=True, batch_size=len(inputs))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.parameters(), lr=self.hparams["learning_rate"], weight_decay=self.hparams["weight_decay"]
        )


class NextItemDataModule(pl.LightningDataModule):
    """Serves `NextItemArrays` (numpy, picklable for ddp_spawn) as tensors built in `setup`.

    Args:
        arrays: the training and validation arrays.
        batch_size: sequences per step.
        workers: DataLoader worker processes (params.yaml `training.dataloader_workers`).
    """

    def __init__(self, arrays: NextItemArrays, batch_size: int, workers: int = 0) -> None:
        super().__init__()
        self.arrays = arrays
        self.batch_size = batch_size
        self.workers = workers
        self.train: TensorBatches | None = None
        self.val: TensorBatches | None = None

    def setup(self, stage: str) -> None:
        a = self.arrays
        self.train = TensorBatches(torch.from_numpy(a.train_inputs), torch.from_numpy(a.train_targets))
        self.val = TensorBatches(torch.from_numpy(a.val_inputs), torch.from_numpy(a.val_targets))

    def train_dataloader(self) -> DataLoader:
        assert self.train is not None, "setup() builds the datasets first"
        return tensor_loader(self.train, self.batch_size, shuffle=True, workers=self.workers)

    def val_dataloader(self) -> DataLoader:
        assert self.val is not None, "setup() builds the datasets first"
        return tensor_loader(self.val, self.batch_size, shuffle=False, workers=self.workers)
