"""What a model family is: the contract the CLI, backtests, training, tracking and the gate rely on.

A family is a prediction task with its own evaluation protocol (EVALUATION.md), model, baselines,
MLflow experiment and registered model. Everything outside the family's own module reads these
declarations instead of branching on the family's name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from sqlalchemy import Engine

    from feature_store.events import EventLog, Source
    from retention.params import Params
    from training.protocol import SplitProtocol

Role = Literal["model", "baseline"]


@dataclass(frozen=True)
class BacktestRequest:
    """What to evaluate: a family on one split (the options of `retention backtest`)."""

    family: str
    protocol: SplitProtocol
    as_of: pd.Timestamp | None
    horizon_days: int | None
    exclude_seen: bool
    out: Path
    dataset: str = "shop"

    def check(self) -> None:
        """Raise ProtocolError naming the option that does not fit the protocol (and the family)."""
        from training.protocol import ProtocolError

        if self.protocol == "temporal" and (self.as_of is None or self.horizon_days is None):
            raise ProtocolError("--protocol temporal needs --as-of and --horizon-days")
        if self.protocol == "leave-last" and (self.as_of is not None or self.horizon_days is not None):
            raise ProtocolError("--protocol leave-last takes no --as-of or --horizon-days")
        if self.horizon_days is not None and self.horizon_days < 1:
            raise ProtocolError("--horizon-days must be at least 1")


@dataclass(frozen=True)
class Scored:
    """A model's scores on a split: the protocol metrics and the rows of the family's scores file."""

    metrics: dict[str, float]
    rows: pd.DataFrame
    scores: np.ndarray  # what the plots draw: p_return per population user, or the ranked scores


def sanity_checks(scores: np.ndarray, seconds: float, n: int, params: Params) -> dict[str, Any]:
    """The gate's checks of a fitted model's holdout scores: finite, spread out, fast enough."""
    import numpy as np

    finite = np.isfinite(scores)
    spread = float(np.std(scores[finite])) if finite.any() else 0.0
    latency = 1000.0 * seconds / max(n, 1)
    return {
        "finite": bool(finite.all()),
        "score_std": spread,
        "non_degenerate": spread >= params.promotion.min_score_std,
        "latency_ms_per_customer": latency,
        "fast_enough": latency <= params.promotion.max_latency_ms,
    }


def shows_seen_only(baseline: Any) -> bool:
    """Whether a baseline is meaningful only when seen items are included (EVALUATION.md)."""
    return bool(getattr(baseline, "needs_seen_items", False))


class ModelFamily(ABC):
    """One model family. Subclasses declare the class variables and implement the methods.

    Class variables:
        name: the one spelling of the family: CLI `--model`, params.yaml section, docs.
        experiment: its MLflow experiment.
        registered_name: its MLflow registered model.
        params_sections: the params.yaml sections its runs use (logged and hashed into the tags).
        scores_file: the protocol file of its scores (EVALUATION.md).
        score_columns: that file's columns.
        campaign_requires: a campaign cannot run without this family's champion (the uplift
            family is optional: without it the cold-start rule targets by risk).
    """

    name: ClassVar[str]
    experiment: ClassVar[str]
    registered_name: ClassVar[str]
    params_sections: ClassVar[tuple[str, ...]]
    scores_file: ClassVar[str]
    score_columns: ClassVar[tuple[str, ...]]
    campaign_requires: ClassVar[bool] = True

    def read(self, engine: Engine, source: Source, before: Any) -> Any:
        """The family's data up to `before` (default: the event log of `source`); has `fingerprint()`."""
        from feature_store.events import read_event_log

        return read_event_log(engine, source, before=before)

    def data_end(self, data: Any) -> pd.Timestamp:
        """Where the data is complete: midnight after the log's last event (the default as-of)."""
        import pandas as pd

        last: pd.Timestamp = data.events["ts"].max()
        return last.normalize() + pd.Timedelta(days=1)

    def primary_metric(self, params: Params) -> str:
        """The metric the gate and the summaries lead with (params.yaml `promotion.<family>.primary`)."""
        return params.promotion.for_family(self.name).primary

    def check(self, request: BacktestRequest) -> None:
        """Raise ProtocolError when the request does not fit this family (beyond `request.check`)."""
        request.check()

    @abstractmethod
    def holdout_request(
        self, end: pd.Timestamp, params: Params, out: Path, source: Source = "warehouse"
    ) -> BacktestRequest:
        """The most recent evaluation window ending at `end` (what `train` reports and the gate scores)."""

    @abstractmethod
    def split(self, log: EventLog, request: BacktestRequest) -> Any:
        """The request's split of the log (EVALUATION.md), with one log line on its size."""

    @abstractmethod
    def model(self, params: Params, work_dir: Path) -> Any:
        """The family's model, unfitted (`work_dir` holds its checkpoints)."""

    @abstractmethod
    def baselines(self, params: Params) -> list[Any]:
        """The family's baselines, unfitted."""

    def applicable_baselines(self, params: Params, exclude_seen: bool | None) -> list[Any]:
        """The baselines shown on a split: one that ranks only seen items first (`needs_seen_items`,
        the buy-again baseline) only when seen items are included."""
        return [b for b in self.baselines(params) if not (exclude_seen and shows_seen_only(b))]

    def models(
        self, params: Params, work_dir: Path, exclude_seen: bool | None = None
    ) -> list[tuple[Role, Any]]:
        """The model first, then the baselines shown on such a split (`applicable_baselines`)."""
        shown = self.applicable_baselines(params, exclude_seen)
        baselines: list[tuple[Role, Any]] = [("baseline", b) for b in shown]
        return [("model", self.model(params, work_dir)), *baselines]

    @abstractmethod
    def fit(self, split: Any, model: Any, params: Params) -> None:
        """Fit a model (or baseline) on the split's history (tuning on history only, if it tunes)."""

    @abstractmethod
    def score(self, split: Any, model: Any, params: Params) -> Scored:
        """Score a fitted model on the split; nothing is refitted."""

    @abstractmethod
    def plots(self, split: Any, scored: Scored, model: Any, folder: Path, params: Params) -> list[Path]:
        """The family's diagnostic plots of a scored model, written into `folder`."""

    @abstractmethod
    def evaluate_fitted(self, split: Any, model: Any, params: Params) -> dict[str, Any]:
        """A registered (already fitted) model on the gate's holdout split.

        Returns:
            `checks` (`sanity_checks`), and `metrics` unless the scores are not all finite.
        """

    @abstractmethod
    def registered_form(self, model: Any, split: Any, params: Params) -> tuple[Any, pd.DataFrame]:
        """The MLflow pyfunc of a fitted model and an input example for its signature."""

    def request_fields(self, request: BacktestRequest, params: Params) -> dict[str, Any]:
        """Family-specific protocol fields of metrics.json (none by default)."""
        return {}

    def comparison_plots(
        self, split: Any, scored: Mapping[str, Scored], folder: Path, params: Params
    ) -> list[Path]:
        """The model and its baselines on the same axes, from their scores on one split.

        Args:
            scored: {name: scores}, the model first.
            folder: where the PNGs go.

        Returns:
            The figures (none for a family without comparable curves).
        """
        return []

    def evaluate(self, split: Any, model: Any, folder: Path, params: Params) -> tuple[Scored, list[Path]]:
        """Fit, score and plot a model on the split (a backtest's or `train`'s evaluation)."""
        self.fit(split, model, params)
        scored = self.score(split, model, params)
        return scored, self.plots(split, scored, model, folder, params)
