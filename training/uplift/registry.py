"""The uplift learners by name (`--learner`): the library meta-learners, the baselines, ours and the network."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from training.uplift.learners import (
    Blend,
    ClassTransformation,
    DRLearner,
    RandomScores,
    ResponseModel,
    RiskModel,
    SLearner,
    TLearner,
    UpliftLearner,
    XLearner,
)
from training.uplift.net import UpliftNet

if TYPE_CHECKING:
    from retention.params import UpliftParams

LEARNERS: dict[str, Callable[[UpliftParams, str, int | None], UpliftLearner]] = {
    "random": RandomScores,
    "risk": RiskModel,
    "response": ResponseModel,
    "s_learner": SLearner,
    "t_learner": TLearner,
    "x_learner": XLearner,
    "dr_learner": DRLearner,
    "class_transformation": ClassTransformation,
    "blend": Blend,
    "net": UpliftNet,
}
BASELINES = ("random", "risk", "response")


def make_learner(name: str, params: UpliftParams, control: str, seed: int | None = None) -> UpliftLearner:
    """A learner by name.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    if name not in LEARNERS:
        raise ValueError(f"--learner must be one of: {', '.join(LEARNERS)} (got '{name}')")
    return LEARNERS[name](params, control, seed)
