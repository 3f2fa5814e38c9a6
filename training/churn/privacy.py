"""DP-SGD of the return model's networks (Opacus): the noise of a budget, the private optimiser, the
epsilon spent.

What is protected: one training row, a (customer, cutoff) example. Each step draws a Poisson sample
of the training rows (`DPDataLoader`), clips every row's gradient to `max_grad_norm` and adds
Gaussian noise of std `noise_multiplier x max_grad_norm` (Abadi et al. 2016). The noise is set
before training, by Opacus's RDP accountant, so that every fit of the model (`ensemble` networks
on the same rows, each up to `training.max_epochs`) together spends at most `target_epsilon` at
`delta`; early stopping spends less, and the epsilon reported is what the epochs actually run
spent, all networks composed.
What is not: a customer appears at many cutoffs, so a customer's guarantee is the group privacy
of their rows (`examples_per_customer_max` is logged with the budget). The input scaling
(`InputEncoder`), early stopping and best-epoch choice on the validation rows, and the two-number
Platt calibration fitted on them are computed without noise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import DataLoader

if TYPE_CHECKING:
    from retention.params import DPParams

ACCOUNTANT = (
    "rdp"  # Renyi DP (Mironov 2017): composes the ensemble's fits exactly and never fails to converge
)


@dataclass(frozen=True)
class PrivacyPlan:
    """The noise and clipping of every private fit of one model, fixed before training.

    Attributes:
        target_epsilon: the budget of all fits together.
        delta: the delta of the guarantee.
        max_grad_norm: the per-example clipping norm C.
        noise_multiplier: sigma (noise std = sigma x C), computed by Opacus from the budget.
        sample_rate: q, the chance of a row to be in a step's batch (1 / steps per epoch).
        steps_per_epoch: steps of one epoch (the number of batches of the plain loader).
        planned_steps: steps of all fits if none stopped early (what sigma was computed for).
    """

    target_epsilon: float
    delta: float
    max_grad_norm: float
    noise_multiplier: float
    sample_rate: float
    steps_per_epoch: int
    planned_steps: int


def plan_privacy(
    config: DPParams, rows: int, batch_size: int, customers: int, fits: int, max_epochs: int
) -> PrivacyPlan:
    """The noise that keeps `fits` trainings of up to `max_epochs` on `rows` rows within the budget.

    Args:
        config: params.yaml `return.dp`.
        rows: training rows (each one protected).
        batch_size: the expected rows per step.
        customers: distinct customers of the rows (the default delta is 1 / customers).
        fits: trainings on these rows (the ensemble's networks).
        max_epochs: the most epochs of one fit.

    Returns:
        The plan.
    """
    from opacus.accountants.utils import get_noise_multiplier  # type: ignore[import-untyped]

    steps_per_epoch = math.ceil(rows / batch_size)
    sample_rate = 1 / steps_per_epoch
    delta = config.delta if config.delta is not None else 1 / max(customers, 1)
    planned_steps = fits * max_epochs * steps_per_epoch
    sigma = get_noise_multiplier(
        target_epsilon=config.target_epsilon,
        target_delta=delta,
        sample_rate=sample_rate,
        steps=planned_steps,
        accountant=ACCOUNTANT,
    )
    return PrivacyPlan(
        config.target_epsilon, delta, config.max_grad_norm, sigma, sample_rate, steps_per_epoch, planned_steps
    )


def epsilon_spent(plan: PrivacyPlan, epochs: list[int]) -> float:
    """The epsilon at `plan.delta` of fits that ran `epochs` epochs each (composed by the accountant)."""
    from opacus.accountants import RDPAccountant  # type: ignore[import-untyped]

    accountant = RDPAccountant()
    steps = sum(epochs) * plan.steps_per_epoch
    accountant.history = [(plan.noise_multiplier, plan.sample_rate, steps)] if steps else []
    return float(accountant.get_epsilon(plan.delta)) if steps else 0.0


def privacy_report(plan: PrivacyPlan, epochs: list[int], examples_per_customer_max: int) -> dict[str, Any]:
    """What the model's MLflow run logs as `dp.*`: the epsilon spent beside the plan."""
    return {
        "epsilon": epsilon_spent(plan, epochs),
        **{k: v for k, v in asdict(plan).items() if k != "planned_steps"},
        "steps": sum(epochs) * plan.steps_per_epoch,
        "examples_per_customer_max": examples_per_customer_max,
    }


def poisson_loader(loader: DataLoader) -> DataLoader:
    """`loader` with Poisson sampling: each row joins each step's batch with probability 1 / len(loader)."""
    from opacus.data_loader import DPDataLoader  # type: ignore[import-untyped]

    return DPDataLoader.from_data_loader(loader)


class PrivateNetwork:
    """A network made private for one fit: per-example gradient hooks and a clipping, noising optimiser.

    Not an `nn.Module` on purpose: the LightningModule keeps the plain network as its submodule,
    so checkpoints hold the network's own weights, and this wrapper only exists during training.
    """

    def __init__(
        self, network: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader, plan: PrivacyPlan
    ) -> None:
        from opacus import PrivacyEngine  # type: ignore[import-untyped]

        engine = PrivacyEngine(accountant=ACCOUNTANT)
        # the loader is already Poisson-sampled (`poisson_loader`): Opacus only reads its rate
        self.module, self.optimizer, _ = engine.make_private(
            module=network,
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=plan.noise_multiplier,
            max_grad_norm=plan.max_grad_norm,
            poisson_sampling=False,
        )

    def close(self) -> None:
        """Remove the per-example gradient hooks (the network is then an ordinary module again)."""
        self.module._close()
