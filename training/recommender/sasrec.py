"""SASRec (Kang & McAuley 2018, "Self-Attentive Sequential Recommendation"): network, training, serving.

Departures from the paper:
- trained with softmax cross-entropy over the whole catalogue (or a shared uniform sample of
  negatives on large catalogues) instead of binary cross-entropy with one negative per position;
  each position may also learn the few items after the next one (`targets_ahead`);
- a history longer than `max_length` gives several training rows instead of only its last window;
- pre-LayerNorm blocks with GELU feed-forward layers and no dropout on attention weights (on CPU
  it costs as much as the attention); output scores tied to the item embeddings;
- optional product-text embeddings (the sentiment feature's frozen sentence encoder) either
  initialise the item embeddings or are projected and added to them ("complement"), so that a
  product nobody interacted with still gets a score that depends on its text;
- optionally blended with the long-term taste of an ALS matrix factorisation folded in from the
  same items, their item-kNN neighbours and the items' popularity, the weights chosen on history
  only (see `SASRecRecommender` and `blend.py`);
- a customer without history (or a fit without any usable sequence) falls back to popularity.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from scipy import sparse
from threadpoolctl import ThreadpoolController
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from retention.params import Params
from training.data import EventLog
from training.protocol import RecSplit
from training.recommender.baselines import interactions, item_similarity, popularity_counts, presence_matrix
from training.recommender.blend import BlendParts, blend_grid, choose_weights, sample_users
from training.recommender.mf import MatrixFactorisation, fold_in
from training.recommender.sequences import (
    PAD,
    ItemIndex,
    NextItemArrays,
    item_sequences,
    next_item_arrays,
    pad_left,
)
from training.recommender.text import text_embeddings
from training.trainer import FitResult, fit

log = logging.getLogger("retention.training")
TextMode = Literal["none", "init", "complement"]
WEIGHTS_FILE = "weights.safetensors"
NET_PREFIX = "net."  # tensors of the network in WEIGHTS_FILE; the ALS item factors sit beside them
ITEM_FACTORS = "mf.item_factors"
SIMILARITY = "knn.similarity."  # + data / indices / indptr of the item-kNN CSR matrix
CONFIG_FILE = "config.json"
ITEMS_SEPARATOR = " "  # `inputs` joins a customer's product ids with it (ids holding one are left out)
NDCG_K = 10  # the cut-off of the per-epoch validation NDCG (the protocol's headline metric)
THREADPOOLS = ThreadpoolController()  # finds the loaded BLAS libraries once, not on every call
TUNING_DIR = "tuning"  # the run_dir subfolder of the inner (history-only) fit that chooses the blend


# ---------------------------------------------------------------------------------------------
# network


@dataclass(frozen=True)
class NetConfig:
    """What it takes to rebuild a `SASRecNet` (saved as JSON beside the weights)."""

    n_items: int
    max_length: int
    hidden_size: int
    blocks: int
    heads: int
    feedforward_size: int
    dropout: float
    init_std: float
    text_mode: TextMode
    text_dim: int


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t sees positions <= t that hold an item."""

    def __init__(self, hidden_size: int, heads: int) -> None:
        super().__init__()
        if hidden_size % heads:
            raise ValueError(f"hidden_size ({hidden_size}) must be a multiple of heads ({heads})")
        self.heads = heads
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.out = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """(B, T, H) -> (B, T, H), or (B, 1, H) for the last position alone with `last_only`."""
        batch, length, hidden = x.shape  # (B, T, H)
        q, k, v = self.qkv(x).view(batch, length, 3, self.heads, hidden // self.heads).permute(2, 0, 3, 1, 4)
        if last_only:
            q, allowed = q[:, :, -1:], allowed[:, :, -1:]
        # No dropout on the attention weights: on CPU it costs as much as the attention itself,
        # and the dropout on the block's output regularises as well.
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)  # (B, heads, T or 1, H/heads)
        return self.out(y.transpose(1, 2).reshape(batch, q.shape[2], hidden))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: causal attention then a position-wise feed-forward layer."""

    def __init__(self, hidden_size: int, heads: int, feedforward_size: int, dropout: float) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(hidden_size)
        self.attention = CausalSelfAttention(hidden_size, heads)
        self.feedforward_norm = nn.LayerNorm(hidden_size)
        self.feedforward = nn.Sequential(
            nn.Linear(hidden_size, feedforward_size),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(feedforward_size, hidden_size),
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """(B, T, H) -> (B, T, H), or (B, 1, H) for the last position alone with `last_only`."""
        attended = self.attention(self.attention_norm(x), allowed, last_only)
        x = (x[:, -1:] if last_only else x) + self.dropout(attended)
        return x + self.dropout(self.feedforward(self.feedforward_norm(x)))


class SASRecNet(nn.Module):
    """Item sequence -> one hidden state per position -> a score for every item of the catalogue.

    Item codes run 1..n_items; 0 is padding (sequences are left-padded, most recent item last).

    Args:
        config: the architecture.
        text: (n_items + 1, text_dim) product-text embeddings, row 0 and rows of products without
            text all zero: kept and projected with "complement", used for the initial item
            embeddings with "init" (and then optional: weights about to be loaded need none).
    """

    def __init__(self, config: NetConfig, text: np.ndarray | None = None) -> None:
        super().__init__()
        self.config = config
        hidden = config.hidden_size
        self.item_embedding = nn.Embedding(config.n_items + 1, hidden, padding_idx=PAD)
        self.position_embedding = nn.Embedding(config.max_length, hidden)
        self.embedding_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            Block(hidden, config.heads, config.feedforward_size, config.dropout) for _ in range(config.blocks)
        )
        self.final_norm = nn.LayerNorm(hidden)
        self.apply(self._init_weights)
        self.text_projection: nn.Linear | None = None
        if text is not None and text.shape != (config.n_items + 1, config.text_dim):
            raise ValueError(f"text embeddings must have shape ({config.n_items + 1}, {config.text_dim})")
        if config.text_mode == "complement":
            if text is None:
                raise ValueError("text_mode complement needs the text embeddings")
            self.register_buffer("text", torch.as_tensor(text, dtype=torch.float32))
            self.text_projection = nn.Linear(config.text_dim, hidden, bias=False)
            nn.init.normal_(self.text_projection.weight, std=config.init_std)
        elif config.text_mode == "init" and text is not None:  # None when loading trained weights
            self._init_from_text(text)
        with torch.no_grad():
            self.item_embedding.weight[PAD].zero_()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=self.config.init_std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def _init_from_text(self, text: np.ndarray) -> None:
        """Item embeddings of products with text start as their text's principal components."""
        has_text = np.abs(text).sum(axis=1) > 0
        if has_text.sum() < 2:
            return
        centred = text[has_text] - text[has_text].mean(axis=0)
        _, _, components = np.linalg.svd(centred, full_matrices=False)
        projected = centred @ components[: self.config.hidden_size].T  # (n_text, <= H)
        projected *= self.config.init_std / max(float(projected.std()), np.finfo(np.float32).tiny)
        with torch.no_grad():
            rows = torch.as_tensor(np.flatnonzero(has_text))
            self.item_embedding.weight[rows, : projected.shape[1]] = torch.as_tensor(
                projected, dtype=torch.float32
            )

    def item_vectors(self) -> torch.Tensor:
        """(n_items + 1, H) output and input vector of every item (row 0: padding)."""
        vectors = self.item_embedding.weight
        if self.text_projection is not None:
            vectors = vectors + self.text_projection(self.text)
        return vectors

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """(B, T) item codes -> (B, T, H) hidden states; position t depends on items[:, :t+1] only."""
        x, allowed = self._embedded(items)
        for block in self.blocks:
            x = block(x, allowed)
        return self.final_norm(x)

    def last_state(self, items: torch.Tensor) -> torch.Tensor:
        """(B, T) item codes -> (B, H) hidden state of the last position (`forward(items)[:, -1]`).

        The last block is evaluated at the last position only: scoring needs nothing else.
        """
        x, allowed = self._embedded(items)
        for block in self.blocks[:-1]:
            x = block(x, allowed)
        return self.final_norm(self.blocks[-1](x, allowed, last_only=True))[:, -1]

    def _embedded(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The first block's input and the (B, 1, T, T) attention mask of `items`."""
        batch, length = items.shape
        if length > self.config.max_length:
            raise ValueError(f"sequences of length {length} exceed max_length {self.config.max_length}")
        is_item = items != PAD  # (B, T)
        positions = torch.arange(self.config.max_length - length, self.config.max_length, device=items.device)
        x = F.embedding(items, self.item_vectors(), padding_idx=PAD) + self.position_embedding(positions)
        x = self.embedding_dropout(x * is_item.unsqueeze(-1))
        causal = torch.ones(length, length, dtype=torch.bool, device=items.device).tril()
        diagonal = torch.eye(length, dtype=torch.bool, device=items.device)
        # A query sees earlier items only; padding sees itself, so no attention row is empty.
        allowed = (causal & (is_item.unsqueeze(1) | diagonal)).unsqueeze(1)  # (B, 1, T, T)
        return x, allowed

    def scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., H) hidden states -> (..., n_items + 1) item scores; padding scores -inf."""
        logits = hidden @ self.item_vectors().T
        logits[..., PAD] = float("-inf")
        return logits

    def score_last(self, items: torch.Tensor) -> torch.Tensor:
        """(B, T) sequences -> (B, n_items) scores of items 1..n after the last position."""
        return self.scores(self.last_state(items))[:, 1:]


# ---------------------------------------------------------------------------------------------
# training


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
        if self.hparams.softmax == "full":
            log_probs = F.log_softmax(self.net.scores(hidden), dim=-1)  # (M, n_items + 1)
            return -log_probs.gather(1, targets)[valid].mean()
        vectors = self.net.item_vectors()
        negatives = torch.randint(1, vectors.shape[0], (self.hparams.negatives,), device=targets.device)
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
        logits = self.net.scores(self.net(inputs)[:, -1])  # (B, n_items + 1)
        loss = F.cross_entropy(logits, targets)
        rank = (logits > logits.gather(1, targets.unsqueeze(1))).sum(1)  # 0 = ranked first
        ndcg = torch.where(
            rank < NDCG_K, 1.0 / torch.log2(rank.float() + 2), torch.zeros_like(rank, dtype=torch.float)
        )
        self.log("val_loss", loss, on_epoch=True, sync_dist=True, batch_size=len(inputs))
        self.log(f"val_ndcg@{NDCG_K}", ndcg.mean(), on_epoch=True, sync_dist=True, batch_size=len(inputs))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.parameters(), lr=self.hparams.learning_rate, weight_decay=self.hparams.weight_decay
        )


class NextItemDataModule(pl.LightningDataModule):
    """Serves `NextItemArrays` (numpy, picklable for ddp_spawn) as tensors built in `setup`.

    Args:
        arrays: the training and validation arrays.
        batch_size: sequences per step.
    """

    def __init__(self, arrays: NextItemArrays, batch_size: int) -> None:
        super().__init__()
        self.arrays = arrays
        self.batch_size = batch_size
        self.train: TensorDataset | None = None
        self.val: TensorDataset | None = None

    def setup(self, stage: str) -> None:
        a = self.arrays
        self.train = TensorDataset(torch.from_numpy(a.train_inputs), torch.from_numpy(a.train_targets))
        self.val = TensorDataset(torch.from_numpy(a.val_inputs), torch.from_numpy(a.val_targets))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val, batch_size=self.batch_size)


# ---------------------------------------------------------------------------------------------
# the recommender


@dataclass(frozen=True)
class SequenceConfig:
    """How histories become sequences at fit and serving time (saved with the model).

    Attributes:
        event_types: the events that make a sequence.
        collapse_repeats: consecutive events on one product count once.
        batch_size: sequences per scoring batch.
    """

    event_types: tuple[str, ...]
    collapse_repeats: bool
    batch_size: int

    @classmethod
    def from_params(cls, params: Params) -> SequenceConfig:
        """The `recommender` section's choices."""
        rec = params.recommender
        return cls(tuple(rec.event_types), rec.collapse_repeats, rec.batch_size)


@dataclass(frozen=True)
class PreferenceBlend:
    """The long-term preference and popularity added to SASRec's scores (saved with the model).

    Attributes:
        weight: the ALS taste's weight against the standardised SASRec scores (0: none).
        alpha: the matrix factorisation's confidence slope (for the fold-in).
        regularisation: its L2 penalty (for the fold-in).
        popularity_weight: the standardised log popularity's weight (0: none).
        knn_weight: the standardised item-kNN score's weight (0: none).
    """

    weight: float
    alpha: float
    regularisation: float
    popularity_weight: float = 0.0
    knn_weight: float = 0.0


def standardised(scores: np.ndarray) -> np.ndarray:
    """Each row shifted to mean 0 and scaled to standard deviation 1 (a constant row becomes 0)."""
    centred = scores - scores.mean(axis=1, keepdims=True)
    return centred / np.maximum(centred.std(axis=1, keepdims=True), np.finfo(np.float32).eps)


class SASRecRecommender:
    """SASRec behind the `Recommender` protocol, plus save/load and the serving inputs.

    With a blend, a score is the standardised SASRec score plus `mf_weight` times the standardised
    score of an implicit ALS model (`mf.py`) whose customer factors are folded in from the same
    items the transformer reads, plus `knn_weight` times the standardised item-kNN score of those
    items (`baselines.py`), plus `popularity_weight` times the standardised log popularity: the
    sequence gives the short-term intent, the factorisation and the neighbours the long-term taste,
    and all work from a serving input alone. `tune` chooses the weights on an inner split of the
    history (see `blend.py`) before `fit`; without it `fit` uses the configured `sasrec.*_weight`.

    Args:
        params: the whole params.yaml (`recommender` for the model, `training` for the Trainer);
            None for a model loaded only to serve.
        run_dir: the fit's folder (checkpoints and history; a killed fit resumes from it).
    """

    name = "sasrec"

    def __init__(self, params: Params | None, run_dir: Path | None) -> None:
        self.params = params
        self.run_dir = run_dir
        self.sequence_config = SequenceConfig.from_params(params) if params is not None else None
        self.index = ItemIndex.from_candidates([])
        self.net: SASRecNet | None = None
        self.popularity = np.zeros(0, dtype=np.float32)
        self.fit_result: FitResult | None = None
        self.sequences: dict[str, np.ndarray] = {}
        self.blend: PreferenceBlend | None = None
        self.item_factors = np.zeros((0, 0), dtype=np.float32)
        self.similarity: sparse.csr_matrix | None = None
        self.tuning: dict[str, Any] | None = None  # what `tune` chose and every weight's inner score

    def tune(self, validation: RecSplit, ks: list[int]) -> dict[str, Any] | None:
        """Choose the blend weights on `validation`, an inner split of the history (`validation_split`).

        A copy of the model is fitted on `validation.history` (checkpoints under run_dir/tuning),
        and every (mf_weight, popularity_weight, knn_weight) of the params' grid is scored by ndcg at the
        smallest K on the validation users; `fit` then uses the best pair.

        Args:
            validation: the split's protocol applied inside its history (never the test window).
            ks: the evaluation cut-offs (the smallest one decides).

        Returns:
            The choice (also kept as `tuning`), or None when the grid holds a single pair or the
            inner fit learns no network (then `fit` uses the configured weights).
        """
        if self.params is None or self.run_dir is None:
            raise RuntimeError("a SASRecRecommender needs params and a run_dir to tune")
        self.tuning = None
        config = self.params.recommender.sasrec
        grid = blend_grid(config)
        if len(grid) < 2:
            return None
        started = time.perf_counter()
        widest = config.model_copy(
            update={
                "mf_weight": max(w[0] for w in grid),
                "popularity_weight": 0.0,
                "knn_weight": max(w[2] for w in grid),
            }
        )
        recommender = self.params.recommender.model_copy(update={"sasrec": widest})
        inner = SASRecRecommender(
            self.params.model_copy(update={"recommender": recommender}), self.run_dir / TUNING_DIR
        )
        log.info(
            "sasrec: choosing the blend on the inner %s split (%d users) of the history",
            validation.protocol,
            len(validation.users),
        )
        inner.fit(validation.history, validation.candidates)
        if inner.net is None:
            log.warning("sasrec: the inner fit learned no network; keeping the configured blend")
            return None
        sample = sample_users(validation, config.tuning_users, self.params.training.seed)
        choice = choose_weights(sample, inner.blend_parts(sample.users), grid, min(ks))
        self.tuning = {
            "protocol": validation.protocol,
            "as_of": None if validation.as_of is None else str(validation.as_of.date()),
            "horizon_days": validation.horizon_days,
            "n_users": len(sample.users),
            **choice,
            "epochs": inner.fit_result.epochs if inner.fit_result else 0,
            "seconds": round(time.perf_counter() - started, 1),
        }
        log.info(
            "sasrec: blend mf_weight=%s popularity_weight=%s knn_weight=%s (inner %s %.4f of %d pairs)",
            choice["mf_weight"],
            choice["popularity_weight"],
            choice["knn_weight"],
            choice["metric"],
            choice["best"],
            len(choice["grid"]),
        )
        return self.tuning

    # -- training -----------------------------------------------------------------------------

    def fit(self, history: EventLog, candidates: np.ndarray) -> None:
        """Train on every customer's item sequence in `history`; each one's last item validates.

        Args:
            history: the events the model may see.
            candidates: sorted product ids to score (the item vocabulary).
        """
        if self.params is None or self.run_dir is None:
            raise RuntimeError("a SASRecRecommender needs params and a run_dir to fit")
        rec, config = self.params.recommender, self.params.recommender.sasrec
        self.sequence_config = SequenceConfig.from_params(self.params)
        self.index = ItemIndex.from_candidates(candidates)
        self.popularity = popularity_counts(history.events, self.index.ids, rec.event_types)
        self.sequences = self._sequences(history)
        arrays = next_item_arrays(
            list(self.sequences.values()), config.max_length, hold_out_last=True, ahead=config.targets_ahead
        )
        self.net, self.fit_result = None, FitResult(best_path=None, epochs=0, seconds_per_epoch=0.0)
        self.blend, self.item_factors = None, np.zeros((0, 0), dtype=np.float32)
        self.similarity = None
        if len(arrays.train_inputs) == 0:
            log.warning("sasrec: no customer has three successive distinct items; scoring by popularity")
            return
        text = None
        if config.text != "none":
            text = text_embeddings(history.products, self.index.ids, rec.text_batch_size)
        torch.manual_seed(self.params.training.seed)  # the initial weights; fit() seeds the rest
        net = SASRecNet(self._net_config(text), _with_padding_row(text))
        module = SASRecModule(net, rec.learning_rate, config.weight_decay, config.softmax, config.negatives)
        log.info(
            "sasrec: %d training and %d validation sequences over %d items",
            len(arrays.train_inputs),
            len(arrays.val_inputs),
            self.index.size,
        )
        trainer_params = self.params.training.model_copy(update={"max_epochs": config.max_epochs})
        self.fit_result = fit(
            module, NextItemDataModule(arrays, rec.batch_size), trainer_params, self.run_dir
        )
        self.net = module.net.cpu().eval()  # predictions run on CPU in this process
        mf_weight, popularity_weight, knn_weight = self._blend_weights()
        if mf_weight > 0:
            factorisation = MatrixFactorisation(self.params)
            factorisation.fit(history, self.index.ids)
            self.item_factors = factorisation.item_factors
        if knn_weight > 0:
            matrix = interactions(history.events, self.index.ids, rec.event_types).matrix
            self.similarity = item_similarity(matrix, rec.item_knn)
        if mf_weight > 0 or popularity_weight > 0 or knn_weight > 0:
            self.blend = PreferenceBlend(
                mf_weight, rec.mf.alpha, rec.mf.regularisation, popularity_weight, knn_weight
            )

    def _blend_weights(self) -> tuple[float, float, float]:
        """(mf, popularity, knn) weights: `tune`'s choice, else the configured ones."""
        if self.tuning is not None:
            return tuple(float(self.tuning[f"{part}_weight"]) for part in ("mf", "popularity", "knn"))  # type: ignore[return-value]
        config = self.params.recommender.sasrec  # type: ignore[union-attr]
        return config.mf_weight, config.popularity_weight, config.knn_weight

    def _net_config(self, text: np.ndarray | None) -> NetConfig:
        config = self.params.recommender.sasrec  # type: ignore[union-attr]
        return NetConfig(
            n_items=self.index.size,
            max_length=config.max_length,
            hidden_size=config.hidden_size,
            blocks=config.blocks,
            heads=config.heads,
            feedforward_size=config.feedforward_size,
            dropout=config.dropout,
            init_std=config.init_std,
            text_mode=config.text if text is not None else "none",
            text_dim=text.shape[1] if text is not None else 0,
        )

    def _sequences(self, history: EventLog) -> dict[str, np.ndarray]:
        config = self._sequence_config()
        return item_sequences(history.events, self.index, config.collapse_repeats, config.event_types)

    def _sequence_config(self) -> SequenceConfig:
        if self.sequence_config is None:
            raise RuntimeError("fit or load the recommender first")
        return self.sequence_config

    # -- scoring ------------------------------------------------------------------------------

    def score(self, users: np.ndarray) -> np.ndarray:
        """(len(users), len(candidates)) float32 scores from each customer's fitted history.

        Customers without history get the popularity counts. Seen items are not masked.
        """
        empty = np.zeros(0, dtype=np.int64)
        return self.score_sequences([self.sequences.get(str(u), empty) for u in users])

    def score_sequences(self, sequences: list[np.ndarray]) -> np.ndarray:
        """Scores of item-code sequences (oldest first); empty sequences get popularity.

        Args:
            sequences: item codes per customer.

        Returns:
            (len(sequences), n_items) float32, column j scoring product `index.ids[j]`.
        """
        out = np.tile(self.popularity, (len(sequences), 1))
        rows = [i for i, s in enumerate(sequences) if len(s)]
        if self.net is None or not rows:
            return out
        # torch's worker threads spin between batches; numpy's BLAS threads would fight them for the
        # cores (2x slower on 2 cores), and the blend's matrices are too small to need them.
        with THREADPOOLS.limit(limits=1, user_api="blas"):
            for batch, recent, scores in self._last_position_scores(sequences, rows):
                out[batch] = self._blended(scores, recent)
        return out

    def _last_position_scores(
        self, sequences: list[np.ndarray], rows: list[int] | np.ndarray
    ) -> Iterator[tuple[list[int] | np.ndarray, list[np.ndarray], np.ndarray]]:
        """Per batch of `rows`: the rows, their last `max_length` items, SASRec's next-item scores."""
        assert self.net is not None
        batch_size = self._sequence_config().batch_size
        self.net.eval()
        with torch.no_grad():
            for start in range(0, len(rows), batch_size):
                batch = rows[start : start + batch_size]
                recent = [sequences[i][-self.net.config.max_length :] for i in batch]
                items = torch.from_numpy(pad_left(recent, max(len(r) for r in recent)))
                yield batch, recent, self.net.score_last(items).numpy()

    def _blended(self, scores: np.ndarray, recent: list[np.ndarray]) -> np.ndarray:
        """Add the folded-in long-term preference and the popularity (see the class docstring)."""
        if self.blend is None:
            return scores
        sasrec, mf, knn = self._parts(scores, recent)
        blend = self.blend
        return (
            sasrec
            + blend.weight * mf
            + blend.knn_weight * knn
            + blend.popularity_weight * self._popularity_part()
        )

    def _parts(
        self, scores: np.ndarray, recent: list[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Standardised SASRec, ALS and item-kNN scores of the same items (zeros for a part not fitted)."""
        mf, knn = np.zeros_like(scores), np.zeros_like(scores)
        if self.blend is not None and self.item_factors.size:
            users = fold_in(
                self.item_factors, [r - 1 for r in recent], self.blend.alpha, self.blend.regularisation
            )
            mf = standardised(users @ self.item_factors.T)
        if self.similarity is not None:
            rows = np.repeat(np.arange(len(recent)), [len(r) for r in recent])
            columns = np.concatenate(recent) - 1 if recent else np.zeros(0, dtype=np.int64)
            binary = presence_matrix(rows, columns, (len(recent), self.index.size))
            knn = standardised(np.asarray((binary @ self.similarity).todense(), dtype=np.float64))
        return standardised(scores), mf, knn

    def _popularity_part(self) -> np.ndarray:
        """(1, n_items) standardised log(1 + distinct customers) of each item."""
        return standardised(np.log1p(self.popularity)[None, :])

    def blend_parts(self, users: np.ndarray) -> BlendParts:
        """Every part of the blended score of `users` (the grid of `tune` recombines them).

        Args:
            users: customers of the fitted history (others score by popularity).
        """
        if self.net is None:
            raise RuntimeError("fit the network first")
        empty = np.zeros(0, dtype=np.int64)
        sequences = [self.sequences.get(str(u), empty) for u in users]
        sasrec = np.tile(self.popularity, (len(users), 1))
        mf, knn = np.zeros_like(sasrec), np.zeros_like(sasrec)
        has_history = np.array([len(s) > 0 for s in sequences], dtype=bool)
        rows = np.flatnonzero(has_history)
        for batch, recent, scores in self._last_position_scores(sequences, rows):
            sasrec[batch], mf[batch], knn[batch] = self._parts(scores, recent)
        return BlendParts(np.asarray(users, dtype=str), sasrec, mf, knn, self._popularity_part(), has_history)

    def score_history(self, history: EventLog, users: np.ndarray) -> np.ndarray:
        """Scores of `users` from their item sequences in `history` (a fitted or loaded model on new data).

        Args:
            history: events up to the scoring time.
            users: customer ids.

        Returns:
            (len(users), n_items) float32, column j scoring product `index.ids[j]`.
        """
        sequences = self.history_sequences(history)
        empty = np.zeros(0, dtype=np.int64)
        return self.score_sequences([sequences.get(str(u), empty) for u in users])

    def history_sequences(self, history: EventLog) -> dict[str, np.ndarray]:
        """Each customer's item codes in `history`, oldest first (the input of `score_sequences`)."""
        return self._sequences(history)

    # -- serving ------------------------------------------------------------------------------

    def inputs(self, history: EventLog, users: np.ndarray) -> pd.DataFrame:
        """The serving input of each customer: their most recent known products, most recent last.

        Args:
            history: events up to now.
            users: the customers to serve.

        Returns:
            customer_id, items (product ids joined by a blank; "" for a customer without history).
        """
        sequences = self._sequences(history)
        length = self.net.config.max_length if self.net is not None else None
        joinable = np.char.find(self.index.ids.astype(str), ITEMS_SEPARATOR) < 0  # per code - 1
        empty = np.zeros(0, dtype=np.int64)
        recent = [sequences.get(str(u), empty) if length else empty for u in users]
        recent = [codes[joinable[codes - 1]][-length:] if len(codes) else codes for codes in recent]
        items = [ITEMS_SEPARATOR.join(self.index.ids[codes - 1]) for codes in recent]
        return pd.DataFrame({"customer_id": np.asarray(users, dtype=str), "items": items})

    def recommend_inputs(self, inputs: pd.DataFrame, k: int, exclude_seen: bool = False) -> pd.DataFrame:
        """Top-k products of each row of `inputs` (see `inputs`).

        Args:
            inputs: customer_id, items.
            k: recommendations per customer.
            exclude_seen: leave out the products listed in the customer's items.

        Returns:
            customer_id, rank (1 = best), product_id, score; k rows per customer (fewer when fewer
            products are left).
        """
        sequences = [self._codes(items) for items in inputs["items"].fillna("").astype(str)]
        scores = self.score_sequences(sequences).astype(np.float64)
        if exclude_seen:
            for row, codes in enumerate(sequences):
                scores[row, codes - 1] = -np.inf
        top = min(k, self.index.size)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :top]
        taken = np.take_along_axis(scores, order, axis=1)
        rows, ranks = np.nonzero(np.isfinite(taken))
        return pd.DataFrame(
            {
                "customer_id": inputs["customer_id"].astype(str).to_numpy()[rows],
                "rank": ranks + 1,
                "product_id": self.index.ids[order[rows, ranks]],
                "score": taken[rows, ranks],
            }
        )

    def _codes(self, items: str) -> np.ndarray:
        codes = self.index.codes(items.split(ITEMS_SEPARATOR)) if items else np.zeros(0, dtype=np.int64)
        return codes[codes != PAD]

    # -- persistence --------------------------------------------------------------------------

    def save(self, path: Path | str) -> None:
        """Write the model to folder `path`: config and id maps as JSON, weights as safetensors.

        Args:
            path: the folder (created; the files in it are replaced).
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        config = {
            "net": None if self.net is None else asdict(self.net.config),
            "sequences": asdict(self._sequence_config()),
            "blend": None if self.blend is None else asdict(self.blend),
            "items": self.index.to_json(),
            "popularity": self.popularity.tolist(),
        }
        (path / WEIGHTS_FILE).unlink(missing_ok=True)
        if self.net is not None:
            tensors = {f"{NET_PREFIX}{k}": v.detach().contiguous() for k, v in self.net.state_dict().items()}
            if self.blend is not None and self.item_factors.size:
                tensors[ITEM_FACTORS] = torch.from_numpy(self.item_factors).contiguous()
            if self.similarity is not None:
                csr = self.similarity.tocsr()
                for part in ("data", "indices", "indptr"):
                    tensors[SIMILARITY + part] = torch.from_numpy(np.ascontiguousarray(getattr(csr, part)))
            save_file(tensors, str(path / WEIGHTS_FILE))
        (path / CONFIG_FILE).write_text(json.dumps(config, indent=1))

    @classmethod
    def load(
        cls, path: Path | str, params: Params | None = None, run_dir: Path | None = None
    ) -> SASRecRecommender:
        """Read a model written by `save`.

        Args:
            path: the folder.
            params: params for a later refit (scoring and serving do not need them).
            run_dir: the folder of a later fit.

        Returns:
            The recommender, ready for `inputs`, `recommend_inputs` and `score_sequences`.
        """
        path = Path(path)
        config = json.loads((path / CONFIG_FILE).read_text())
        model = cls(params, run_dir)
        sequences = config["sequences"]
        model.sequence_config = SequenceConfig(
            tuple(sequences["event_types"]), sequences["collapse_repeats"], sequences["batch_size"]
        )
        model.index = ItemIndex.from_candidates(config["items"])
        model.popularity = np.asarray(config["popularity"], dtype=np.float32)
        if config["net"] is not None:
            tensors = load_file(str(path / WEIGHTS_FILE))
            state = {k[len(NET_PREFIX) :]: v for k, v in tensors.items() if k.startswith(NET_PREFIX)}
            text = state["text"].numpy() if "text" in state else None
            model.net = SASRecNet(NetConfig(**config["net"]), text)
            model.net.load_state_dict(state)
            model.net.eval()
            if config["blend"] is not None:
                model.blend = PreferenceBlend(**config["blend"])
                if ITEM_FACTORS in tensors:
                    model.item_factors = tensors[ITEM_FACTORS].numpy()
                if SIMILARITY + "data" in tensors:
                    data, indices, indptr = (
                        tensors[SIMILARITY + p].numpy() for p in ("data", "indices", "indptr")
                    )
                    shape = (model.index.size, model.index.size)
                    model.similarity = sparse.csr_matrix((data, indices, indptr), shape=shape)
        return model


def _with_padding_row(text: np.ndarray | None) -> np.ndarray | None:
    """Prepend the all-zero embedding of item code 0 (padding)."""
    if text is None:
        return None
    return np.vstack([np.zeros((1, text.shape[1]), dtype=np.float32), text])
