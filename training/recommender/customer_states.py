"""Materialised customer states: each customer's state vector under one fitted SASRec, kept with its tail.

A customer's blended score depends only on their last `max_length` items (the "tail") and factors
into a state vector times the model's item matrix (`sasrec/scores.py`). The vector costs a
transformer pass and a ridge solve and changes only when the tail changes, so it is computed once
per history change (`refresh_states`, only for customers whose tail changed) and stored with the
tail it came from; scoring many customers is then a matrix multiply per batch (`training/scoring.py`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from retention.atomic import atomic_path
from training.recommender.sequences import PAD

log = logging.getLogger("retention.training")


class StateModel(Protocol):
    """The fused-state side of a recommender (`SASRecRecommender`)."""

    def state_tails(self, sequences: dict[str, np.ndarray], customer_ids: np.ndarray) -> np.ndarray: ...

    def state_vectors(self, tails: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class CustomerStates:
    """Every customer's state vector, the tail it was computed from and what it is valid for.

    Attributes:
        model_key: the model the vectors belong to (e.g. "retention-recommender/3").
        as_of: the end (exclusive) of the history the tails were read from, ISO format.
        events: sequence events in that history, and
        last_event: the time of its latest one, ISO format ("" for none): together the history's
            fingerprint (a campaign at another as-of over the same data can reuse the states).
        customer_ids: (n,) sorted ids.
        tails: (n, max_length) int32 item codes, left-padded with PAD.
        vectors: (n, D) float32 state vectors (`SASRecRecommender.state_vectors` of the tails).
    """

    model_key: str
    as_of: str
    events: int
    last_event: str
    customer_ids: np.ndarray
    tails: np.ndarray
    vectors: np.ndarray

    def is_current(self, model_key: str, events: int, last_event: str) -> bool:
        """Whether these are `model_key`'s states of a history with this fingerprint."""
        return (self.model_key, self.events, self.last_event) == (model_key, events, last_event)

    def rows(self, customer_ids: Iterable[str]) -> np.ndarray:
        """Row of each customer, -1 for customers without a state (no history)."""
        return positions(self.customer_ids, customer_ids)

    def take(self, customer_ids: Iterable[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(vectors, tails, known) of `customer_ids`.

        A customer without a state (no history) gets an all-PAD tail, a zero vector and `known`
        False: their state is the model's state of that empty tail.
        """
        rows = self.rows(customer_ids)
        known = rows >= 0
        vectors = self.vectors[np.maximum(rows, 0)]
        tails = self.tails[np.maximum(rows, 0)]
        vectors[~known] = 0.0
        tails[~known] = PAD
        return vectors, tails, known

    def save(self, path: Path) -> None:
        """Write to `path` (.npz) atomically: readers see the old or the new states, never a mix."""
        meta = json.dumps(
            {
                "model_key": self.model_key,
                "as_of": self.as_of,
                "events": self.events,
                "last_event": self.last_event,
            }
        )
        with atomic_path(path) as tmp, tmp.open("wb") as handle:
            np.savez(
                handle,
                meta=np.array(meta),
                customer_ids=self.customer_ids.astype(str),
                tails=self.tails,
                vectors=self.vectors,
            )

    @classmethod
    def load(cls, path: Path) -> CustomerStates:
        """Read states written by `save`."""
        with np.load(path, allow_pickle=False) as stored:
            meta = json.loads(str(stored["meta"]))
            return cls(
                meta["model_key"],
                meta["as_of"],
                int(meta["events"]),
                meta["last_event"],
                stored["customer_ids"],
                stored["tails"],
                stored["vectors"],
            )


def positions(keys: Iterable[str] | np.ndarray, values: Iterable[str] | np.ndarray) -> np.ndarray:
    """Position of each of `values` in `keys` (distinct ids), -1 where absent.

    Object-dtype hashing: pandas' default Arrow strings are several times slower to index.
    """
    index = pd.Index(np.asarray(keys, dtype=object))
    return index.get_indexer(np.asarray(values, dtype=object))


def refresh_states(
    model: StateModel,
    model_key: str,
    sequences: dict[str, np.ndarray],
    as_of: pd.Timestamp,
    events: int,
    last_event: str,
    previous: CustomerStates | None = None,
) -> tuple[CustomerStates, int]:
    """The states of every customer in `sequences`, reusing `previous` rows whose tail is unchanged.

    Args:
        model: the fitted or loaded SASRecRecommender.
        model_key: what the states are valid for (a different key reuses nothing).
        sequences: customer id -> item codes, oldest first (`history_sequences`).
        as_of: the end of that history.
        events: the number of sequence events in it, and
        last_event: the time of the latest (see `CustomerStates`).
        previous: states of an earlier history, if any.

    Returns:
        The states and how many customers were (re)computed.
    """
    customer_ids = np.array(sorted(sequences), dtype=str)
    tails = model.state_tails(sequences, customer_ids)
    stale = np.ones(len(customer_ids), dtype=bool)
    kept, kept_from = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)  # reused rows of `previous`
    if previous is not None and previous.model_key == model_key and previous.tails.shape[1] == tails.shape[1]:
        rows = previous.rows(customer_ids)
        known = np.flatnonzero(rows >= 0)
        same = np.all(previous.tails[rows[known]] == tails[known], axis=1)
        kept, kept_from = known[same], rows[known[same]]
        stale[kept] = False
    changed = np.flatnonzero(stale)
    fresh = model.state_vectors(tails[changed])
    vectors = np.zeros((len(customer_ids), fresh.shape[1]), dtype=np.float32)
    vectors[changed] = fresh
    if previous is not None:
        vectors[kept] = previous.vectors[kept_from]
    log.info("customer states: %d of %d customers (re)computed", len(changed), len(customer_ids))
    return CustomerStates(
        model_key, as_of.isoformat(), events, last_event, customer_ids, tails, vectors
    ), len(changed)
