"""The `return` family: P(a customer purchases again within H days), scored by EVALUATION.md task 1."""

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
    from training.churn import ReturnModel
    from training.protocol import ReturnScorer, ReturnSplit

log = logging.getLogger("retention.training")
INPUT_EXAMPLE_ROWS = 5


class ReturnFamily(ModelFamily):
    """The return model (a survival network) against recency, frequency and RFM-boosting baselines."""

    name: ClassVar[str] = "return"
    experiment: ClassVar[str] = "retention-return"
    registered_name: ClassVar[str] = "retention-return"
    params_sections: ClassVar[tuple[str, ...]] = ("training", "return", "features")
    scores_file: ClassVar[str] = "churn_scores.csv"
    score_columns: ClassVar[tuple[str, ...]] = ("user_id", "p_return")

    def check(self, request: BacktestRequest) -> None:
        from training.protocol import ProtocolError

        if request.protocol != "temporal":
            raise ProtocolError("--model return uses --protocol temporal (a cutoff and a horizon)")
        super().check(request)

    def holdout_request(
        self, end: pd.Timestamp, params: Params, out: Path, source: Source = "warehouse"
    ) -> BacktestRequest:
        """Scored at end - H on the last H days (features.horizon_days)."""
        import pandas as pd

        horizon = params.features.horizon_days
        return BacktestRequest(
            self.name, "temporal", end - pd.Timedelta(days=horizon), horizon, False, out, source
        )

    def split(self, log_: EventLog, request: BacktestRequest) -> ReturnSplit:
        from training.protocol import return_split

        assert request.as_of is not None and request.horizon_days is not None  # request.check
        split = return_split(log_, request.as_of, request.horizon_days)
        log.info(
            "return split at %s, H=%sd: %d users, base rate %.3f",
            request.as_of.date(),
            request.horizon_days,
            len(split.population),
            split.returned.mean(),
        )
        return split

    def model(self, params: Params, work_dir: Path) -> ReturnModel:
        from training.churn import ReturnModel

        return ReturnModel(params, work_dir / "return_model")

    def baselines(self, params: Params) -> list[ReturnScorer]:
        from training.churn import FrequencyBaseline, RecencyBaseline, RfmBoostingBaseline

        return [RecencyBaseline(params), FrequencyBaseline(params), RfmBoostingBaseline(params)]

    def fit(self, split: ReturnSplit, model: ReturnScorer, params: Params) -> None:
        model.fit(split.history, split.as_of, split.horizon_days)

    def score(self, split: ReturnSplit, model: ReturnScorer, params: Params) -> Scored:
        import pandas as pd

        from training.protocol import aligned_scores, return_metrics

        p = aligned_scores(split, model.predict(split.history, split.as_of, split.horizon_days))
        rows = pd.DataFrame({"user_id": split.population, "p_return": p})
        return Scored(return_metrics(split.returned, p), rows, p)

    def plots(
        self, split: ReturnSplit, scored: Scored, model: ReturnScorer, folder: Path, params: Params
    ) -> list[Path]:
        import pandas as pd

        from training import plots

        y, p = split.returned, scored.scores
        figures = [
            plots.roc_plot(y, p, folder / "roc.png"),
            plots.pr_plot(y, p, folder / "pr.png"),
            plots.reliability_plot(
                plots.reliability_table(y, p), folder / "reliability.png", "Reliability (test window)"
            ),
            plots.lift_gain_plot(plots.decile_table(y, p), folder / "lift_gain.png"),
        ]
        importance = getattr(model, "feature_importance", None)  # the return model's, not the baselines'
        if isinstance(importance, pd.DataFrame) and len(importance):
            figures.append(plots.importance_plot(importance, folder / "feature_importance.png"))
        validation = getattr(model, "validation", None)
        if isinstance(validation, dict) and isinstance(validation.get("reliability"), pd.DataFrame):
            title = f"Reliability (validation, h={validation.get('horizon_days')}d)"
            figures.append(
                plots.reliability_plot(
                    validation["reliability"], folder / "reliability_validation.png", title
                )
            )
        return figures

    def comparison_plots(
        self, split: ReturnSplit, scored: Mapping[str, Scored], folder: Path, params: Params
    ) -> list[Path]:
        from training import plots

        folder.mkdir(parents=True, exist_ok=True)
        y, scores = split.returned, {name: s.scores for name, s in scored.items()}
        return [
            plots.roc_plot(y, scores, folder / "roc.png"),
            plots.pr_plot(y, scores, folder / "pr.png"),
            plots.calibration_plot(y, scores, folder / "reliability.png"),
            plots.gain_plot(y, scores, folder / "gain.png"),
        ]

    def evaluate_fitted(self, split: ReturnSplit, model: ReturnScorer, params: Params) -> dict[str, Any]:
        from training.protocol import aligned_scores, return_metrics

        started = time.perf_counter()
        scores = model.predict(split.history, split.as_of, split.horizon_days)
        raw = scores["p_return"].to_numpy(dtype=float)
        checks = sanity_checks(raw, time.perf_counter() - started, len(raw), params)
        if not checks["finite"]:
            return {"checks": checks}
        return {"metrics": return_metrics(split.returned, aligned_scores(split, scores)), "checks": checks}

    def registered_form(
        self, model: ReturnModel, split: ReturnSplit, params: Params
    ) -> tuple[Any, pd.DataFrame]:
        from training.pyfunc import ReturnPyfunc

        return ReturnPyfunc(model), model.inputs(split.history, split.as_of).head(INPUT_EXAMPLE_ROWS)
