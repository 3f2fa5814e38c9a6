"""DataLoaders over in-memory tensors that index a whole batch at once.

A plain `TensorDataset` behind a `DataLoader` is indexed row by row and the rows are stacked again
by the collate function: on the return model that was a third of each epoch (2M `__getitem__`
calls per backtest). `TensorBatches` takes the batch's index list in one indexing operation per
tensor. The sampler is unchanged (`shuffle` draws the same permutation from the same seed), so the
batches, and the trained weights, are the same as before.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset


class TensorBatches(TensorDataset):
    """A `TensorDataset` whose `__getitems__` returns a batch's tensors directly (see module doc)."""

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        rows = torch.as_tensor(indices, dtype=torch.long)
        return [tensor[rows] for tensor in self.tensors]


def _as_batch(batch: list[torch.Tensor]) -> list[torch.Tensor]:
    """The collate function of `TensorBatches`: the batch is already stacked (module level: picklable)."""
    return batch


def tensor_loader(dataset: TensorBatches, batch_size: int, shuffle: bool, workers: int = 0) -> DataLoader:
    """A DataLoader of `dataset` in batches of `batch_size` rows (a list of tensors per batch).

    Args:
        dataset: the tensors.
        batch_size: rows per batch (the last one may be smaller).
        shuffle: draw a new permutation every epoch.
        workers: DataLoader worker processes (params.yaml `training.dataloader_workers`; 0: in-process).
    """
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        collate_fn=_as_batch,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
