"""The SASRec network: item sequence -> hidden states -> a score for every item (a plain `nn.Module`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from training.recommender.sequences import PAD

TextMode = Literal["none", "init", "complement"]


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
        projected *= self.config.init_std / max(float(projected.std()), float(np.finfo(np.float32).tiny))
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


def with_padding_row(text: np.ndarray | None) -> np.ndarray | None:
    """Prepend the all-zero embedding of item code 0 (padding)."""
    if text is None:
        return None
    return np.vstack([np.zeros((1, text.shape[1]), dtype=np.float32), text])


def warm_start(target: SASRecNet, source: SASRecNet, source_ids: np.ndarray, target_ids: np.ndarray) -> int:
    """Copy `source`'s weights into `target` (same architecture, maybe another catalogue).

    Item embeddings are matched by product id (items new to `target` keep their initial vectors);
    every other weight of the same shape is copied. The text buffer belongs to the target's catalogue
    and is kept.

    Args:
        target: the network about to be trained.
        source: a trained network.
        source_ids: the product id of each of `source`'s item codes (code = position + 1).
        target_ids: likewise for `target`.

    Returns:
        The number of `target` items whose embedding was copied.
    """
    state = target.state_dict()
    for name, value in source.state_dict().items():
        if (
            name not in ("item_embedding.weight", "text")
            and name in state
            and state[name].shape == value.shape
        ):
            state[name] = value.detach().clone()
    position = pd.Index(np.asarray(source_ids, dtype=str)).get_indexer(np.asarray(target_ids, dtype=str))
    known = np.flatnonzero(position >= 0)
    embedding = state["item_embedding.weight"].clone()
    embedding[torch.from_numpy(known + 1)] = source.item_embedding.weight.detach()[
        torch.from_numpy(position[known] + 1)
    ]
    state["item_embedding.weight"] = embedding
    target.load_state_dict(state)
    return len(known)
