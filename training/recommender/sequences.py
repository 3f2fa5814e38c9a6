"""Customer histories as integer item sequences: the id map, the sequence settings, next-item arrays."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from retention.params import Params

PAD = 0  # item code of padding (and of products the id map does not know)


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
class ItemIndex:
    """Product ids <-> item codes 1..n (0 is padding), fixed by the candidates a model was fitted on.

    Attributes:
        ids: the sorted candidate product ids; `ids[code - 1]` is the product of `code`.
    """

    ids: np.ndarray

    @classmethod
    def from_candidates(cls, candidates: Sequence[str] | np.ndarray) -> ItemIndex:
        """The index of the (sorted, distinct) candidate product ids."""
        ids = np.asarray(candidates, dtype=str)
        if np.any(ids[1:] <= ids[:-1]):
            raise ValueError("candidates must be sorted and distinct product ids")
        return cls(ids)

    @property
    def size(self) -> int:
        """Number of products (codes run 1..size)."""
        return len(self.ids)

    def codes(self, product_ids: Sequence[str] | np.ndarray | pd.Series) -> np.ndarray:
        """Item code of each product id, PAD for products outside the index.

        Args:
            product_ids: product ids in any order.

        Returns:
            int64 codes aligned with `product_ids`.
        """
        values = np.asarray(product_ids, dtype=str)
        if self.size == 0:
            return np.full(len(values), PAD, dtype=np.int64)
        where = np.minimum(np.searchsorted(self.ids, values), self.size - 1)
        return np.where(self.ids[where] == values, where + 1, PAD).astype(np.int64)

    def to_json(self) -> list[str]:
        """The ids as a JSON-ready list (the code of each is its position + 1)."""
        return [str(i) for i in self.ids]


def ordered_events(events: pd.DataFrame, event_types: Sequence[str] | None = None) -> pd.DataFrame:
    """Events sorted by customer, then time, then event_id, so equal timestamps keep a stable order.

    Args:
        events: customer_id, product_id, ts, optionally event_type and event_id.
        event_types: keep only these event types (None keeps all).

    Returns:
        customer_id and product_id (str), in sequence order.
    """
    if event_types is not None and "event_type" in events:
        events = events[events["event_type"].isin(list(event_types))]
    keys = ["customer_id", "ts"] + (["event_id"] if "event_id" in events else [])
    frame = events[keys + ["product_id"]].astype({"customer_id": str, "product_id": str})
    frame = frame.sort_values(keys, kind="stable")
    return frame[["customer_id", "product_id"]].reset_index(drop=True)


def item_sequences(
    events: pd.DataFrame,
    index: ItemIndex,
    collapse_repeats: bool,
    event_types: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Each customer's item codes, oldest first.

    Args:
        events: the history (customer_id, product_id, ts, optionally event_type and event_id).
        index: the item codes; products it does not know are dropped.
        collapse_repeats: drop an event on the same product as the customer's previous event, so a
            view -> cart -> purchase of one product is one step (the next-item target is a new step).
        event_types: event types that make a sequence (None: all).

    Returns:
        customer_id -> int64 codes (customers left without any event are absent).
    """
    frame = ordered_events(events, event_types)
    codes = index.codes(frame["product_id"].to_numpy())
    customers = frame["customer_id"].to_numpy()
    keep = codes != PAD
    codes, customers = codes[keep], customers[keep]
    if collapse_repeats and len(codes):
        new_customer = np.r_[True, customers[1:] != customers[:-1]]
        changed = np.r_[True, codes[1:] != codes[:-1]]
        codes, customers = codes[new_customer | changed], customers[new_customer | changed]
    if not len(codes):
        return {}
    starts = np.flatnonzero(np.r_[True, customers[1:] != customers[:-1]])
    return dict(zip(customers[starts], np.split(codes, starts[1:]), strict=True))


def pad_left(sequences: Sequence[np.ndarray], length: int) -> np.ndarray:
    """The last `length` codes of each sequence, right-aligned in a PAD-filled array.

    Args:
        sequences: int code arrays, oldest first.
        length: the padded length L.

    Returns:
        (len(sequences), L) int64, most recent item in the last column.
    """
    out = np.full((len(sequences), length), PAD, dtype=np.int64)
    for row, sequence in enumerate(sequences):
        tail = sequence[-length:]
        if len(tail):
            out[row, length - len(tail) :] = tail
    return out


@dataclass(frozen=True)
class NextItemArrays:
    """Training and validation arrays of next-item prediction (numpy, so they pickle cheaply).

    Attributes:
        train_inputs: (N, L) codes, left-padded.
        train_targets: (N, L, K) the K items that follow the input at each position (the first
            is the next item; PAD where the sequence ends first, and at padded positions).
        val_inputs: (M, L) each validation customer's sequence without its last item.
        val_targets: (M,) that held-out last item.
    """

    train_inputs: np.ndarray
    train_targets: np.ndarray
    val_inputs: np.ndarray
    val_targets: np.ndarray


def following_items(sequence: np.ndarray, ahead: int) -> np.ndarray:
    """(len - 1, ahead): row i holds the `ahead` items after position i, PAD past the end."""
    padded = np.concatenate([sequence[1:], np.full(ahead, PAD, dtype=np.int64)])
    return np.lib.stride_tricks.sliding_window_view(padded, ahead)[: max(len(sequence) - 1, 0)]


def chunk_starts(positions: int, length: int) -> list[tuple[int, int]]:
    """[start, stop) ranges of at most `length` input positions, cut from the end (newest first)."""
    out, stop = [], positions
    while stop > 0:
        out.append((max(stop - length, 0), stop))
        stop = out[-1][0]
    return out


def next_item_arrays(
    sequences: Sequence[np.ndarray], length: int, hold_out_last: bool, ahead: int = 1
) -> NextItemArrays:
    """Input/target arrays; with `hold_out_last` every customer's last item is validation only.

    A history longer than `length` + 1 items gives several training rows, cut from the end, so
    every interaction is a target while each row's attention stays within `length` items.

    Args:
        sequences: per-customer codes, oldest first.
        length: the padded length L.
        hold_out_last: keep each customer's last item out of training and predict it from the
            rest (early stopping); customers need two items for a validation row and three for
            a training row.
        ahead: K, the items after each position that are its targets (1: the next item only).

    Returns:
        The arrays (validation arrays are empty without `hold_out_last`).
    """
    train = [s[:-1] for s in sequences] if hold_out_last else list(sequences)
    inputs, targets = [], []
    for sequence in train:
        following = following_items(sequence, ahead)
        for start, stop in chunk_starts(len(sequence) - 1, length):
            inputs.append(sequence[start:stop])
            targets.append(following[start:stop])
    train_targets = np.full((len(targets), length, ahead), PAD, dtype=np.int64)
    for row, rows in enumerate(targets):
        train_targets[row, length - len(rows) :] = rows
    valid = [s for s in sequences if len(s) >= 2] if hold_out_last else []
    return NextItemArrays(
        train_inputs=pad_left(inputs, length),
        train_targets=train_targets,
        val_inputs=pad_left([s[:-1] for s in valid], length),
        val_targets=np.array([s[-1] for s in valid], dtype=np.int64),
    )
