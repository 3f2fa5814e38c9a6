"""The `uplift` family: per offer, the effect of a campaign contact vs none, learnt from the campaign log.

The model is training.uplift.campaign_model.CampaignUplift: one learner of training.uplift per
outcome (return, revenue), named by params.yaml `uplift.learner`.

Its data is not the event log but the platform's own randomised campaign history
(feature_store.campaign_log): the latest campaign whose horizon has passed is the holdout, the
earlier ones train. Metrics per offer on the holdout: Qini coefficient and uplift@30%
(EVALUATION.md task 3); `qini` (their mean over offers) is what the gate compares, against the
champion and against the random, response-model and risk-ranking baselines.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

from training.families.base import BacktestRequest, ModelFamily, Scored, sanity_checks

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from feature_store.campaign_log import CampaignLog
    from feature_store.events import Source
    from retention.params import Params, UpliftParams
    from training.uplift.campaign_model import CampaignUplift

log = logging.getLogger("retention.training")
INPUT_EXAMPLE_ROWS = 5


@dataclass(frozen=True)
class UpliftSplit:
    """Earlier campaigns (train) and the latest measured one (holdout)."""

    train: pd.DataFrame
    holdout: pd.DataFrame
    offers: list[str]


class UpliftFamily(ModelFamily):
    """`uplift.learner` per outcome (the blend) against random, response-model and risk baselines."""

    name: ClassVar[str] = "uplift"
    experiment: ClassVar[str] = "retention-uplift"
    registered_name: ClassVar[str] = "retention-uplift"
    params_sections: ClassVar[tuple[str, ...]] = ("uplift", "campaign")
    scores_file: ClassVar[str] = "uplift_scores.csv"
    score_columns: ClassVar[tuple[str, ...]] = ("user_id", "best_arm")
    campaign_requires: ClassVar[bool] = False

    def check(self, request: BacktestRequest) -> None:
        """Any request: the holdout is the latest measured campaign (or the one as of --as-of)."""

    def read(self, engine: Engine, source: Source, before: Any) -> CampaignLog:
        from feature_store.campaign_log import read_campaign_log

        return read_campaign_log(engine, before=pd.Timestamp(before) if before is not None else None)

    def data_end(self, data: Any) -> pd.Timestamp:
        from training.protocol import ProtocolError

        if not len(data.rows):
            raise ProtocolError(
                "no campaign has a measured outcome yet: the uplift model needs the platform's own "
                "randomised campaigns (the cold-start rule targets by risk meanwhile)"
            )
        return pd.Timestamp(data.rows["as_of"].max())

    def holdout_request(
        self, end: pd.Timestamp, params: Params, out: Path, source: Source = "warehouse"
    ) -> BacktestRequest:
        """The latest measured campaign (as-of `end`) is the holdout."""
        return BacktestRequest(self.name, "temporal", end, params.campaign.horizon_days, False, out, source)

    def split(self, log_: Any, request: BacktestRequest) -> UpliftSplit:
        from training.protocol import ProtocolError

        rows = log_.rows
        as_of = request.as_of if request.as_of is not None else self.data_end(log_)
        latest = rows["as_of"] == as_of
        if not latest.any() or latest.all():
            raise ProtocolError(
                f"the uplift model needs at least two measured campaigns (train on the earlier, hold "
                f"out the latest); the log has {rows['campaign_id'].nunique()}"
            )
        offers = sorted(set(rows["offer"]) - {"none"})
        split = UpliftSplit(
            rows.loc[~latest].reset_index(drop=True), rows.loc[latest].reset_index(drop=True), offers
        )
        log.info(
            "uplift split: %d training rows from %d campaigns, holdout %s with %d rows",
            len(split.train),
            split.train["campaign_id"].nunique(),
            split.holdout["campaign_id"].iloc[0],
            len(split.holdout),
        )
        return split

    def _offers(self, params: Params) -> list[str]:
        return list(params.campaign.offers)

    def _learner_params(self, params: Params) -> UpliftParams:
        """The learners' parameters with leaves sized for a campaign log."""
        return params.uplift.model_copy(update={"min_leaf_rows": params.uplift.campaign_min_leaf_rows})

    def model(self, params: Params, work_dir: Path) -> CampaignUplift:
        from training.uplift.campaign_model import CampaignUplift

        return CampaignUplift(params.uplift.learner, self._learner_params(params), self._offers(params))

    def baselines(self, params: Params) -> list[CampaignUplift]:
        from training.uplift.campaign_model import CampaignUplift
        from training.uplift.registry import BASELINES

        return [
            CampaignUplift(name, self._learner_params(params), self._offers(params)) for name in BASELINES
        ]

    def fit(self, split: UpliftSplit, model: CampaignUplift, params: Params) -> None:
        from training.protocol import ProtocolError

        try:
            model.fit(split.train)
        except ValueError as error:  # too little logged data: the cold-start rule stays
            raise ProtocolError(f"the uplift model cannot learn from this log yet: {error}") from error

    def score(self, split: UpliftSplit, model: CampaignUplift, params: Params) -> Scored:
        from training.uplift.campaign_metrics import best_offers, campaign_metrics
        from training.uplift.campaign_model import uplift_columns

        uplift = model.predict_offers(split.holdout)
        offers = self._offers(params)
        rows = pd.concat(
            [
                pd.DataFrame({"user_id": split.holdout["customer_id"]}),
                uplift,
                pd.DataFrame({"best_arm": best_offers(uplift, offers)}),
            ],
            axis=1,
        )
        values = uplift[[uplift_columns(o)[0] for o in offers]].to_numpy(dtype=float).ravel()
        return Scored(campaign_metrics(split.holdout, uplift, offers), rows, values)

    def plots(
        self, split: UpliftSplit, scored: Scored, model: Any, folder: Path, params: Params
    ) -> list[Path]:
        from training.uplift.campaign_plots import qini_plots

        return qini_plots(split.holdout, {model.name: scored.rows}, self._offers(params), folder)

    def comparison_plots(
        self, split: UpliftSplit, scored: Mapping[str, Scored], folder: Path, params: Params
    ) -> list[Path]:
        from training.uplift.campaign_plots import qini_plots

        rows = {name: s.rows for name, s in scored.items()}
        return qini_plots(split.holdout, rows, self._offers(params), folder)

    def evaluate_fitted(self, split: UpliftSplit, model: Any, params: Params) -> dict[str, Any]:
        started = time.perf_counter()
        scored = self.score(split, model, params)
        checks = sanity_checks(scored.scores, time.perf_counter() - started, len(split.holdout), params)
        if not checks["finite"]:
            return {"checks": checks}
        return {"metrics": scored.metrics, "checks": checks}

    def registered_form(self, model: Any, split: UpliftSplit, params: Params) -> tuple[Any, pd.DataFrame]:
        from training.pyfunc import UpliftPyfunc
        from training.uplift.campaign_model import feature_matrix

        example = feature_matrix(split.holdout.head(INPUT_EXAMPLE_ROWS), model.columns)[0]
        return UpliftPyfunc(model), example
