"""The `recommender` family: the next products of each customer, ranked over the whole catalogue (task 2)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from training.families.base import BacktestRequest, ModelFamily, Scored, sanity_checks

if TYPE_CHECKING:
    import pandas as pd

    from feature_store.events import EventLog, Source
    from retention.params import Params
    from training.protocol import Recommender, RecSplit
    from training.recommender import SASRecRecommender

log = logging.getLogger("retention.training")
INPUT_EXAMPLE_ROWS = 5


class RecommenderFamily(ModelFamily):
    """SASRec (blended with popularity, item-kNN, MF and buy-again) against those baselines alone."""

    name: ClassVar[str] = "recommender"
    experiment: ClassVar[str] = "retention-recommender"
    registered_name: ClassVar[str] = "retention-recommender"
    params_sections: ClassVar[tuple[str, ...]] = ("training", "recommender", "evaluation")
    scores_file: ClassVar[str] = "recommendations.csv"
    score_columns: ClassVar[tuple[str, ...]] = ("user_id", "rank", "item_id", "score")

    def holdout_request(
        self, end: pd.Timestamp, params: Params, out: Path, source: Source = "warehouse"
    ) -> BacktestRequest:
        """Leave-last (each customer's last basket) with the configured `exclude_seen`."""
        return BacktestRequest(
            self.name, "leave-last", None, None, params.evaluation.exclude_seen, out, source
        )

    def split(self, log_: EventLog, request: BacktestRequest) -> RecSplit:
        from training.protocol import leave_last_split, temporal_split

        if request.protocol == "temporal":
            assert request.as_of is not None and request.horizon_days is not None  # request.check
            split = temporal_split(log_, request.as_of, request.horizon_days, request.exclude_seen)
        else:
            split = leave_last_split(log_, request.exclude_seen)
        log.info(
            "%s split: %d test users, %d candidates",
            request.protocol,
            len(split.users),
            len(split.candidates),
        )
        return split

    def model(self, params: Params, work_dir: Path) -> SASRecRecommender:
        from training.recommender import SASRecRecommender

        return SASRecRecommender(params, work_dir / "sasrec")

    def baselines(self, params: Params) -> list[Recommender]:
        from training.recommender import BuyAgain, ItemKNN, MatrixFactorisation, Popularity

        return [Popularity(params), ItemKNN(params), MatrixFactorisation(params), BuyAgain(params)]

    def fit(self, split: RecSplit, model: Recommender, params: Params) -> None:
        """Tune on history only (a model with `tune`), then fit on the split's history.

        The tuning split is the split's own protocol applied inside `split.history`
        (`validation_split`), so nothing at or after the cutoff, nor the split's truth, is used
        (EVALUATION.md). Baselines have no `tune` and are left as they are.
        """
        from training.protocol import ProtocolError
        from training.recommender.blend import validation_split

        tune = getattr(model, "tune", None)
        if callable(tune):
            try:
                tune(validation_split(split), params.evaluation.ks)
            except ProtocolError as error:
                log.warning(
                    "%s: no inner validation split (%s); keeping the configured settings", model.name, error
                )
        model.fit(split.history, split.candidates)

    def score(self, split: RecSplit, model: Recommender, params: Params) -> Scored:
        from training.protocol import ranking_metrics, recommend

        ks = params.evaluation.ks
        recommendations = recommend(split, model, max(ks))
        rows = recommendations.rename(columns={"customer_id": "user_id", "product_id": "item_id"})
        return Scored(ranking_metrics(split, recommendations, ks), rows, rows["score"].to_numpy())

    def plots(
        self, split: RecSplit, scored: Scored, model: Recommender, folder: Path, params: Params
    ) -> list[Path]:
        from training import plots

        return [plots.recall_at_k_plot(_recall_curve(split, scored, params), folder / "recall_at_k.png")]

    def comparison_plots(
        self, split: RecSplit, scored: Mapping[str, Scored], folder: Path, params: Params
    ) -> list[Path]:
        from training import plots

        folder.mkdir(parents=True, exist_ok=True)
        curves = {name: _recall_curve(split, s, params) for name, s in scored.items()}
        return [plots.recall_at_k_plot(curves, folder / "recall_at_k.png")]

    def evaluate_fitted(self, split: RecSplit, model: SASRecRecommender, params: Params) -> dict[str, Any]:
        from training.protocol import ranking_metrics, recommend
        from training.scoring import HistoryScorer

        started = time.perf_counter()
        scorer = HistoryScorer(model, split.history, split.candidates)
        probe = scorer.score(split.users[: params.promotion.latency_customers])
        checks = sanity_checks(probe, time.perf_counter() - started, len(probe), params)
        recommendations = recommend(split, scorer, max(params.evaluation.ks))
        return {"metrics": ranking_metrics(split, recommendations, params.evaluation.ks), "checks": checks}

    def registered_form(
        self, model: SASRecRecommender, split: RecSplit, params: Params
    ) -> tuple[Any, pd.DataFrame]:
        from training.pyfunc import RecommenderPyfunc

        example = model.inputs(split.history, split.users[:INPUT_EXAMPLE_ROWS])
        return RecommenderPyfunc(model, k=max(params.evaluation.ks)), example

    def request_fields(self, request: BacktestRequest, params: Params) -> dict[str, Any]:
        return {"exclude_seen": request.exclude_seen, "ks": params.evaluation.ks}


def _recall_curve(split: RecSplit, scored: Scored, params: Params) -> pd.DataFrame:
    """recall@K of one model's ranked lists for K = 1 .. the largest protocol K."""
    import pandas as pd

    from training.protocol import ranking_metrics

    recommendations = scored.rows.rename(columns={"user_id": "customer_id", "item_id": "product_id"})
    ks = list(range(1, max(params.evaluation.ks) + 1))
    recall = [
        ranking_metrics(split, recommendations[recommendations["rank"] <= k], [k])[f"recall@{k}"] for k in ks
    ]
    return pd.DataFrame({"k": ks, "recall": recall})
