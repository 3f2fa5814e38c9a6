"""The registry of model families: the one place that lists them.

Adding a family is one new module in this package (a `ModelFamily` subclass) plus one line in
`FAMILIES` below; the CLI, backtests, training, tracking, the gate, the registry and the DAGs
pick it up from here (see docs/architecture.md).
"""

from __future__ import annotations

from training.families.base import BacktestRequest, ModelFamily, Scored, sanity_checks
from training.families.recommender_family import RecommenderFamily
from training.families.return_family import ReturnFamily
from training.families.uplift_family import UpliftFamily

FAMILIES: dict[str, ModelFamily] = {
    family.name: family
    for family in (
        ReturnFamily(),
        RecommenderFamily(),
        UpliftFamily(),
    )
}
FAMILY_NAMES = tuple(FAMILIES)


class UnknownFamily(ValueError):
    """No model family has that name."""


def family(name: str) -> ModelFamily:
    """The family called `name`.

    Raises:
        UnknownFamily: naming the families there are.
    """
    try:
        return FAMILIES[name]
    except KeyError:
        raise UnknownFamily(
            f"unknown model family {name!r}; expected one of: {', '.join(FAMILIES)}"
        ) from None


__all__ = [
    "FAMILIES",
    "FAMILY_NAMES",
    "BacktestRequest",
    "ModelFamily",
    "Scored",
    "UnknownFamily",
    "family",
    "sanity_checks",
]
