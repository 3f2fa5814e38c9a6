"""The return model's network (a discrete-time hazard of the next purchase), its LightningModule and
DataModule.

Network: an MLP over the customer's tabular features and a GRU over the last L events give the
logit of h = P(purchase within the next bin of w days | the customer's state now). Long horizons
are rolled out (see `fit.py`): the state is aged bin by bin as if no purchase happened, which
is exactly the state the customer would be in, and P(return within H) = 1 - prod_j (1 - h_j)
(the last bin in part when H / w is not whole). Trained as the person-period form of the discrete
survival likelihood (Singer & Willett 1993): one binary cross-entropy term per (customer, cutoff).
"""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence
from torch.utils.data import DataLoader
from typing_extensions import override

from feature_store.core import EVENT_CODES
from training.churn.encoding import SEQUENCE_NUMERIC
from training.churn.privacy import PrivacyPlan, PrivateNetwork, poisson_loader
from training.loaders import TensorBatches, tensor_loader

INPUT_KEYS = ("features", "events", "event_type", "lengths")
BATCH_KEYS = (*INPUT_KEYS, "returned")
HAZARD_CLAMP = 1e-7  # keeps log(1 - h) finite


class ReturnNetwork(nn.Module):
    """Hazard logit of a purchase within the next bin, from tabular features and the event sequence.

    Args:
        n_features: encoded tabular columns.
        hidden_size: width of the tabular MLP.
        sequence_size: GRU state size.
        event_embedding: size of the event-type embedding.
        dropout: dropout of the tabular MLP.
        private: use Opacus's `DPGRU` (per-example gradients for DP-SGD); same weights, state_dict
            keys and outputs as torch's GRU, which `plain` switches back to for inference.
    """

    def __init__(
        self,
        n_features: int,
        hidden_size: int,
        sequence_size: int,
        event_embedding: int,
        dropout: float,
        private: bool = False,
    ) -> None:
        super().__init__()
        self.tabular = nn.Sequential(
            nn.Linear(n_features, hidden_size),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_size, hidden_size),
            nn.ReLU(),
        )
        self.event_type = nn.Embedding(len(EVENT_CODES) + 1, event_embedding, padding_idx=0)
        gru_input = len(SEQUENCE_NUMERIC) + event_embedding
        self.gru: nn.Module = nn.GRU(gru_input, sequence_size, batch_first=True)
        if private:  # torch's GRU runs a fused kernel that Opacus cannot take per-example gradients of
            from opacus.layers import DPGRU  # type: ignore[import-untyped]

            self.gru = DPGRU(gru_input, sequence_size, batch_first=True)
        self.head = nn.Sequential(
            nn.Linear(hidden_size + sequence_size, hidden_size),
            nn.ReLU(),
            nn.Linear(hidden_size, 1),
        )

    def plain(self) -> ReturnNetwork:
        """This network with torch's GRU in place of `DPGRU` (the state_dict keys are the same)."""
        if not isinstance(self.gru, nn.GRU):
            gru = nn.GRU(self.gru.input_size, self.gru.hidden_size, batch_first=True)
            gru.load_state_dict(self.gru.state_dict())
            self.gru = gru
        return self

    def sequence_state(
        self, events: torch.Tensor, event_type: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        """(B, S) GRU state after each customer's last real event (inputs right-padded)."""
        steps = torch.cat([events, self.event_type(event_type)], dim=-1)  # (B, L, 3 + E)
        packed = pack_padded_sequence(steps, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, state = self.gru(packed)  # (1, B, S)
        return state[0]

    def hazard_logit(self, features: torch.Tensor, sequence_state: torch.Tensor) -> torch.Tensor:
        """(B,) hazard logits from (B, F) features and (B, S) sequence states."""
        return self.head(torch.cat([self.tabular(features), sequence_state], dim=-1)).squeeze(-1)

    def forward(
        self, features: torch.Tensor, events: torch.Tensor, event_type: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        """(B,) hazard logits."""
        return self.hazard_logit(features, self.sequence_state(events, event_type, lengths))


def return_probability(hazard: torch.Tensor, bin_days: int, horizon_days: float) -> torch.Tensor:
    """P(purchase within `horizon_days`) = 1 - survival, from (..., K) hazards (K * w >= horizon).

    Args:
        hazard: per-bin hazards, bin j covering [j * w, (j + 1) * w) days.
        bin_days: w.
        horizon_days: H.

    Returns:
        (...,) probabilities; the hazard is taken as constant within the last, partial bin.
    """
    whole = int(horizon_days // bin_days)
    part = horizon_days / bin_days - whole
    log_survival = torch.log1p(-hazard.clamp(max=1 - HAZARD_CLAMP))
    total = log_survival[..., :whole].sum(-1)
    if part > 0:
        total = total + part * log_survival[..., whole]
    return 1 - torch.exp(total)


def bins_for(horizon_days: float, bin_days: int) -> int:
    """Bins needed to cover `horizon_days`."""
    return int(np.ceil(horizon_days / bin_days))


class ReturnModule(pl.LightningModule):
    """Optimisation and logging of a `ReturnNetwork` on next-bin purchase labels.

    Args:
        network: the network (built with `private=True` when `privacy` is given).
        learning_rate: AdamW learning rate.
        weight_decay: AdamW weight decay.
        privacy: train with DP-SGD under this plan (the datamodule must sample Poisson batches);
            the private wrapper is made in `configure_optimizers`, as Opacus's Lightning example does.
    """

    def __init__(
        self,
        network: ReturnNetwork,
        learning_rate: float,
        weight_decay: float,
        privacy: PrivacyPlan | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["network", "privacy"])
        self.network = network
        self.privacy = privacy
        self.private: PrivateNetwork | None = None

    @override
    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.network(*(batch[key] for key in INPUT_KEYS))

    def _shared_step(self, batch: list[torch.Tensor], stage: str) -> torch.Tensor:
        named = dict(zip(BATCH_KEYS, batch, strict=True))
        # training steps go through the private wrapper (its hooks record per-example gradients)
        network = self.private.module if self.private is not None and stage == "train" else self.network
        logits = network(*(named[key] for key in INPUT_KEYS))
        loss = nn.functional.binary_cross_entropy_with_logits(logits, named["returned"])
        self.log(
            f"{stage}_loss", loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=len(batch[0])
        )
        return loss

    @override
    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    @override
    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "val")

    @override
    def configure_optimizers(self) -> torch.optim.Optimizer:
        optimizer = torch.optim.AdamW(
            self.parameters(), lr=self.hparams["learning_rate"], weight_decay=self.hparams["weight_decay"]
        )
        if self.privacy is None:
            return optimizer
        datamodule = getattr(self.trainer, "datamodule", None)
        assert isinstance(datamodule, ReturnDataModule) and datamodule.poisson, "DP needs Poisson batches"
        self.private = PrivateNetwork(self.network, optimizer, datamodule.train_dataloader(), self.privacy)
        return self.private.optimizer

    @override
    def on_train_end(self) -> None:
        self.close_private()

    def close_private(self) -> None:
        """Drop the private wrapper and its hooks (the network stays, trained)."""
        if self.private is not None:
            self.private.close()
            self.private = None


class ReturnDataModule(pl.LightningDataModule):
    """Train and validation rows given as numpy arrays (`BATCH_KEYS`); tensors built in `setup`.

    Args:
        train: arrays of the training rows.
        val: arrays of the validation rows.
        batch_size: rows per step.
        workers: DataLoader worker processes (params.yaml `training.dataloader_workers`).
        poisson: Poisson-sampled training batches (DP-SGD's sampling; `batch_size` is then the
            expected size).
    """

    def __init__(
        self,
        train: dict[str, np.ndarray],
        val: dict[str, np.ndarray],
        batch_size: int,
        workers: int = 0,
        poisson: bool = False,
    ) -> None:
        super().__init__()
        self.train_arrays, self.val_arrays, self.batch_size = train, val, batch_size
        self.workers, self.poisson = workers, poisson
        self.train: TensorBatches | None = None
        self.val: TensorBatches | None = None

    @staticmethod
    def _dataset(arrays: dict[str, np.ndarray]) -> TensorBatches:
        return TensorBatches(*(torch.from_numpy(np.ascontiguousarray(arrays[key])) for key in BATCH_KEYS))

    @override
    def setup(self, stage: str | None = None) -> None:
        self.train = self._dataset(self.train_arrays)
        self.val = self._dataset(self.val_arrays)

    @override
    def train_dataloader(self) -> DataLoader:
        assert self.train is not None, "Lightning calls setup first"
        loader = tensor_loader(self.train, self.batch_size, shuffle=True, workers=self.workers)
        return poisson_loader(loader) if self.poisson else loader

    @override
    def val_dataloader(self) -> DataLoader:
        assert self.val is not None, "Lightning calls setup first"
        return tensor_loader(self.val, self.batch_size, shuffle=False, workers=self.workers)
