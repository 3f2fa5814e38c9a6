"""The hazard network, the rollout probability and the Lightning wrappers."""

from __future__ import annotations

import numpy as np
import torch

from training.churn.model import (
    BATCH_KEYS,
    INPUT_KEYS,
    ReturnDataModule,
    ReturnModule,
    ReturnNetwork,
    bins_for,
    return_probability,
)

FEATURES, LENGTH, WIDTH = 5, 6, 7


def _arrays(rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs where the first feature decides whether the customer buys in the next bin."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(rows, FEATURES)).astype(np.float32)
    lengths = rng.integers(1, LENGTH + 1, size=rows)
    real = np.arange(LENGTH)[None, :] < lengths[:, None]
    return {
        "features": features,
        "events": (rng.normal(size=(rows, LENGTH, 3)) * real[..., None]).astype(np.float32),
        "event_type": (3 * real).astype(np.int64),
        "lengths": lengths.astype(np.int64),
        "returned": (features[:, 0] > 0).astype(np.float32),
    }


def _network() -> ReturnNetwork:
    torch.manual_seed(0)
    return ReturnNetwork(FEATURES, 16, 8, 4, 0.0)


def test_network_gives_one_finite_logit_per_customer() -> None:
    # given
    arrays = {k: torch.from_numpy(v) for k, v in _arrays(9).items()}
    network = _network()
    # when
    logits = network(*(arrays[k] for k in INPUT_KEYS))
    state = network.sequence_state(arrays["events"], arrays["event_type"], arrays["lengths"])
    # then
    assert logits.shape == (9,)
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(network.hazard_logit(arrays["features"], state), logits)


def test_sequence_state_ignores_padding() -> None:
    # given: the same two events, once with padding garbage after them
    arrays = {k: torch.from_numpy(v) for k, v in _arrays(1).items()}
    arrays["lengths"] = torch.tensor([2])
    padded = {k: v.clone() for k, v in arrays.items()}
    padded["events"][0, 2:] = 99.0
    network = _network()
    # when
    state = network.sequence_state(arrays["events"], arrays["event_type"], arrays["lengths"])
    other = network.sequence_state(padded["events"], padded["event_type"], padded["lengths"])
    # then
    torch.testing.assert_close(state, other)


def test_return_probability_is_a_probability_that_grows_with_the_horizon() -> None:
    # given
    hazard = torch.sigmoid(torch.randn(20, 10))
    # when
    p = torch.stack([return_probability(hazard, WIDTH, h) for h in (1, 7, 10.5, 30, 70)], dim=1)
    # then
    assert ((p >= 0) & (p <= 1)).all()
    assert (p[:, 1:] >= p[:, :-1]).all()
    torch.testing.assert_close(p[:, 1], hazard[:, 0])  # one whole bin: its hazard
    torch.testing.assert_close(p[:, 4], 1 - torch.prod(1 - hazard, dim=1))  # all ten bins


def test_bins_cover_the_horizon() -> None:
    assert bins_for(273, 7) == 39 and bins_for(274, 7) == 40 and bins_for(1, 7) == 1


def test_training_steps_reduce_the_loss() -> None:
    # given
    data = ReturnDataModule(_arrays(256), _arrays(64, seed=1), batch_size=32)
    data.setup("fit")
    module = ReturnModule(_network(), learning_rate=0.01, weight_decay=0.0)
    optimiser = module.configure_optimizers()
    named = dict(zip(BATCH_KEYS, next(iter(data.val_dataloader())), strict=True))

    def loss() -> float:
        with torch.no_grad():
            return torch.nn.functional.binary_cross_entropy_with_logits(
                module(named), named["returned"]
            ).item()

    before = loss()
    # when
    for _ in range(3):
        for step in data.train_dataloader():
            optimiser.zero_grad()
            module.training_step(step, 0).backward()
            optimiser.step()
    # then
    assert loss() < 0.7 * before


def test_data_module_builds_tensors_in_setup_only() -> None:
    # given
    data = ReturnDataModule(_arrays(10), _arrays(4), batch_size=3)
    assert data.train is None
    # when
    data.setup("fit")
    # then
    assert len(data.train) == 10 and len(data.val) == 4
    first = next(iter(data.train_dataloader()))
    assert len(first) == len(BATCH_KEYS) and first[0].shape == (3, FEATURES)
