"""Recommenders behind one protocol (fit on history, score every candidate): SASRec and its baselines.

Heavy modules (torch, Lightning) load only when SASRec is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from training.recommender.baselines import ItemKNN, Popularity
from training.recommender.mf import MatrixFactorisation
from training.recommender.repeat import BuyAgain

if TYPE_CHECKING:
    from training.recommender.sasrec import SASRecRecommender

__all__ = ["BuyAgain", "ItemKNN", "MatrixFactorisation", "Popularity", "SASRecRecommender"]


def __getattr__(name: str) -> object:
    if name == "SASRecRecommender":
        from training.recommender.sasrec import SASRecRecommender

        return SASRecRecommender
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
