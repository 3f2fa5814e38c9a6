"""MLflow pyfunc wrappers: the registered form of the return model and the recommender.

The wrapper holds no weights when pickled; `load_context` loads them from the logged model folder
(weights, id maps and scalers saved by the model's own `save`), so serving cannot drift from training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.pyfunc import PythonModel

from training.scoring import recommend_inputs


class _Wrapper(PythonModel):
    def __init__(self, model: Any = None) -> None:
        self._model = model

    def __getstate__(self) -> dict[str, Any]:  # the weights travel as the artifact folder, not a pickle
        return {"_model": None}

    def _load(self, path: Path) -> Any:
        raise NotImplementedError

    def load_context(self, context: Any) -> None:
        self._model = self._load(Path(context.artifacts["model_dir"]))

    @property
    def model(self) -> Any:
        """The native model (`ReturnModel` or `SASRecRecommender`) behind the pyfunc."""
        return self._model


class ReturnPyfunc(_Wrapper):
    """Input: the model's flat input frame (`ReturnModel.inputs`). Output: customer_id, p_return, reason codes."""

    def _load(self, path: Path) -> Any:
        from training.churn import ReturnModel

        return ReturnModel.load(path)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        return self._model.predict_inputs(model_input)


class RecommenderPyfunc(_Wrapper):
    """Input: customer_id, items (space-joined recent product ids). Output: customer_id, rank, product_id, score.

    `params={"k": n}` sets the list length (default `k` given at logging time).
    """

    def __init__(self, model: Any = None, k: int = 10) -> None:
        super().__init__(model)
        self.k = k

    def __getstate__(self) -> dict[str, Any]:
        return {"_model": None, "k": self.k}

    def _load(self, path: Path) -> Any:
        from training.recommender import SASRecRecommender

        return SASRecRecommender.load(path)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        k = int((params or {}).get("k", self.k))
        return recommend_inputs(self._model, model_input, k)


class UpliftPyfunc(_Wrapper):
    """Input: logged-row columns (p_churn, predicted_value and the feature columns, flat).
    Output: uplift_return_<offer>, uplift_revenue_<offer> per offer."""

    def _load(self, path: Path) -> Any:
        from training.uplift.campaign_model import CampaignUplift

        return CampaignUplift.load(path)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        return self._model.predict_offers(model_input)
