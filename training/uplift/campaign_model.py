"""The campaign uplift model and its baselines: per offer, the effect vs no contact on return and revenue.

Inputs are what the campaign logged per customer at its as-of: the feature-store row, P(churn)
and predicted value (missing values filled with the training medians). Each model is one uplift
learner of training.uplift.registry per outcome (returned; revenue), trained on the log's arms
(the offers, control = no contact) with the logged propensities: the model is
`uplift.learner` (params.yaml; `blend`, the learner that led on the Hillstrom reference), the
baselines are the protocol's: random scores, the response model (P(outcome | offer)) and the
risk ranking (least likely to return untreated first).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from retention.params import NO_OFFER

if TYPE_CHECKING:
    from retention.params import UpliftParams

SCORE_COLUMNS = ("p_churn", "predicted_value")  # logged beside the features: inputs too
MIN_ARM_ROWS = 20  # fewest logged rows of an arm that it is learnt from


def feature_matrix(rows: pd.DataFrame, columns: list[str] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The numeric model inputs of logged rows (their `features` dicts plus the scores).

    Args:
        rows: campaign-log rows (or scored customers) with `features` dicts and SCORE_COLUMNS, or
            already flat columns (the pyfunc's input).
        columns: the training columns (scoring reuses them; absent ones are NaN).

    Returns:
        The matrix (NaN where a value is missing) and its columns.
    """
    if "features" in rows:
        features = pd.DataFrame(list(rows["features"]), index=rows.index)
        table = pd.concat(
            [rows[list(SCORE_COLUMNS)], features.drop(columns=list(SCORE_COLUMNS), errors="ignore")], axis=1
        )
    else:
        table = rows
    numeric = table.apply(pd.to_numeric, errors="coerce").astype(float)
    if columns is None:
        columns = sorted(c for c in numeric.columns if numeric[c].notna().any() and numeric[c].nunique() > 1)
    return numeric.reindex(columns=columns), columns


def uplift_columns(offer: str) -> tuple[str, str]:
    """An offer's columns in the model's output: incremental P(return), incremental revenue."""
    return f"uplift_return_{offer}", f"uplift_revenue_{offer}"


def uplift_frame(offers: list[str], returns: np.ndarray, revenue: np.ndarray) -> pd.DataFrame:
    """The campaign's uplift columns (`uplift_columns` of every offer)."""
    data = {}
    for i, offer in enumerate(offers):
        ret, rev = uplift_columns(offer)
        data[ret], data[rev] = returns[:, i], revenue[:, i]
    return pd.DataFrame(data)


class CampaignUplift:
    """One uplift learner per outcome (returned, revenue), by name from training.uplift.registry."""

    def __init__(self, learner: str, params: UpliftParams, offers: list[str]) -> None:
        self.name = learner
        self.params = params
        self.offers = list(offers)
        self.columns: list[str] = []
        self.medians: pd.Series = pd.Series(dtype=float)
        self.learners: dict[str, Any] = {}

    def _inputs(self, rows: pd.DataFrame) -> np.ndarray:
        matrix = feature_matrix(rows, self.columns)[0]
        return matrix.fillna(self.medians).fillna(0.0).to_numpy()

    def fit(self, rows: pd.DataFrame) -> CampaignUplift:
        """Learn from logged rows (offer, propensity, returned, revenue, features).

        Raises:
            ValueError: the log lacks rows with or without contact.
        """
        from training.uplift.registry import make_learner

        matrix, self.columns = feature_matrix(rows)
        self.medians = matrix.median()
        offer = rows["offer"].astype(str).to_numpy()
        if not (offer == NO_OFFER).any() or (offer == NO_OFFER).all():
            raise ValueError("the campaign log needs rows with and without contact to learn effects")
        # An offer whose rows lack either outcome teaches nothing (and a learner cannot be fitted
        # on it): it keeps a zero effect until later campaigns log more of it.
        kept = [
            o
            for o in set(offer)
            if (offer == o).sum() >= MIN_ARM_ROWS and rows.loc[offer == o, "returned"].nunique() == 2
        ]
        if NO_OFFER not in kept or len(kept) < 2:
            raise ValueError(
                f"the campaign log has too few rows with both outcomes per arm (at least {MIN_ARM_ROWS} "
                "for no contact and one offer) to learn effects"
            )
        rows = rows.loc[np.isin(offer, kept)]
        offer = offer[np.isin(offer, kept)]
        inputs = self._inputs(rows)
        propensity = rows["propensity"].to_numpy(dtype=float)
        self.learners = {
            outcome: make_learner(self.name, self.params, NO_OFFER).fit(
                inputs, offer, rows[outcome].to_numpy(dtype=float), propensity
            )
            for outcome in ("returned", "revenue")
        }
        return self

    def predict_offers(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Per row and offer: incremental P(return) and incremental revenue vs no contact (an offer
        never logged keeps a zero effect)."""
        inputs = self._inputs(rows)
        effects = {}
        for outcome, learner in self.learners.items():
            found = np.zeros((len(rows), len(self.offers)))
            if len(rows):
                predicted = learner.predict_uplift(inputs)
                for j, offer in enumerate(self.offers):
                    if f"uplift_{offer}" in predicted:
                        found[:, j] = predicted[f"uplift_{offer}"].to_numpy()
            effects[outcome] = found
        return uplift_frame(self.offers, effects["returned"], effects["revenue"])

    def describe(self) -> dict[str, Any]:
        """What each outcome's learner chose (for the run's parameters)."""
        return {outcome: learner.describe() for outcome, learner in self.learners.items()}

    def save(self, folder: Path) -> None:
        """Pickle the fitted learners beside a JSON description (the MLflow artifact).

        cloudpickle (MLflow's own serialiser) because the blend keeps its fitted parts as closures.
        """
        import cloudpickle

        folder.mkdir(parents=True, exist_ok=True)
        with (folder / "uplift.pkl").open("wb") as out:
            cloudpickle.dump(self, out)
        (folder / "uplift.json").write_text(
            json.dumps({"learner": self.name, "offers": self.offers, "columns": self.columns}, default=str)
        )

    @staticmethod
    def load(folder: Path) -> CampaignUplift:
        """The model saved by `save`."""
        with (folder / "uplift.pkl").open("rb") as source:
            model: CampaignUplift = pickle.load(source)  # noqa: S301 - our own artifact
        return model
