"""Return baselines (scikit-learn): recency alone, frequency alone, gradient-boosted trees on RFM.

The history before T may be shorter than the horizon H, so a baseline learns P(return within h)
for a shorter window h = min(H, baseline_window_share x the history's span): examples are the
population at cutoffs T - h, T - 2h, ... (`baseline_cutoffs` of them, while purchases precede
them), with features at the cutoff and label = a purchase in [cutoff, cutoff + h), all before T.
At T the predicted p_h is stretched to H assuming a constant hazard: p_H = 1 - (1 - p_h)^(H / h).
That keeps the ranking (what ROC/PR-AUC measure) and gives probabilities in [0, 1].
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin, clone
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from feature_store.core import compute_features, label_returned
from feature_store.events import EventLog
from feature_store.frames import PURCHASE, Frames
from retention.params import Params

DAY = pd.Timedelta(days=1)


class BaselineError(ValueError):
    """A baseline cannot be fitted (no purchase early enough) or is used before `fit`."""


def label_window_days(frames: Frames, as_of: pd.Timestamp, horizon_days: int, share: float) -> int:
    """h = min(H, share x days from the first purchase to `as_of`), at least one day."""
    events = frames.events
    bought = pd.to_datetime(events.loc[events["event_type"] == PURCHASE, "ts"])
    bought = bought[bought < as_of]
    if bought.empty:
        raise BaselineError(f"no purchase before {as_of.date()}")
    span = (as_of - bought.min()) / DAY
    return max(1, min(horizon_days, int(share * span)))


class WindowBaseline:
    """A classifier of return within a shorter window on a few feature-store columns (see module doc).

    Args:
        params: all of params.yaml (`return` baseline fields and `features`).
        columns: feature-store columns the classifier reads.
        estimator: an unfitted scikit-learn classifier (cloned at fit).
        name: the baseline's name in reports.
    """

    def __init__(self, params: Params, columns: list[str], estimator: ClassifierMixin, name: str) -> None:
        self.params, self.columns, self.estimator, self.name = params, columns, estimator, name
        self.model: ClassifierMixin | None = None
        self.window_days: int | None = None

    def _features(self, frames: Frames, cutoff: pd.Timestamp) -> pd.DataFrame:
        features = compute_features(frames, cutoff, self.params.features)
        return features[["customer_id", *self.columns]]

    def fit(self, history: EventLog, as_of: pd.Timestamp, horizon_days: int) -> None:
        """Learn P(return within h) on label windows that end by `as_of`.

        Args:
            history: the log (rows at or after `as_of` are ignored).
            as_of: T.
            horizon_days: H.
        """
        as_of = pd.Timestamp(as_of)
        config = self.params.return_
        frames = replace(history.before(as_of).frames(), lifetime=None)
        window = label_window_days(frames, as_of, horizon_days, config.baseline_window_share)
        events = frames.events
        purchases = events.loc[events["event_type"] == PURCHASE, ["customer_id", "ts"]]
        parts = []
        for k in range(1, config.baseline_cutoffs + 1):
            cutoff = as_of - k * window * DAY
            rows = self._features(frames, cutoff)
            if rows.empty:
                break  # no purchase before this cutoff, nor before any older one
            rows["label"] = label_returned(purchases, rows["customer_id"], cutoff, window)
            parts.append(rows)
        if not parts:
            raise BaselineError(f"no purchase {window} days before {as_of.date()} to learn from")
        data = pd.concat(parts, ignore_index=True)
        if data["label"].nunique() < 2:
            raise BaselineError("the label windows hold a single class (all or no customers returned)")
        self.model = clone(self.estimator).fit(
            data[self.columns].to_numpy(dtype=float), data["label"].to_numpy()
        )
        self.window_days = window

    def predict(self, history: EventLog, as_of: pd.Timestamp, horizon_days: int) -> pd.DataFrame:
        """P(return within `horizon_days`) for every customer with a purchase before `as_of`.

        Args:
            history: the log (rows at or after `as_of` are ignored).
            as_of: T.
            horizon_days: H.

        Returns:
            customer_id, p_return (sorted by customer_id).
        """
        if self.model is None or self.window_days is None:
            raise BaselineError(f"{self.name} is not fitted")
        as_of = pd.Timestamp(as_of)
        rows = self._features(history.before(as_of).frames(), as_of)
        p_window = self.model.predict_proba(rows[self.columns].to_numpy(dtype=float))[:, 1]
        p = 1 - (1 - p_window) ** (horizon_days / self.window_days)
        return pd.DataFrame(
            {"customer_id": rows["customer_id"].astype(str), "p_return": np.clip(p, 0.0, 1.0)}
        )


def _logistic() -> ClassifierMixin:
    # log1p: recency and frequency are heavy-tailed; the fit stays monotone in the raw value
    return make_pipeline(FunctionTransformer(np.log1p), StandardScaler(), LogisticRegression())


class RecencyBaseline(WindowBaseline):
    """Logistic regression on log(1 + days since the last purchase)."""

    def __init__(self, params: Params) -> None:
        super().__init__(params, ["recency_days"], _logistic(), "recency")


class FrequencyBaseline(WindowBaseline):
    """Logistic regression on log(1 + orders in the longest feature window)."""

    def __init__(self, params: Params) -> None:
        longest = max(params.features.windows_days)
        super().__init__(params, [f"frequency_{longest}d"], _logistic(), "frequency")


class RfmBoostingBaseline(WindowBaseline):
    """Histogram gradient-boosted trees on recency, frequency and monetary (longest window)."""

    def __init__(self, params: Params) -> None:
        longest = max(params.features.windows_days)
        config = params.return_
        estimator = HistGradientBoostingClassifier(
            max_iter=config.boosting_iterations,
            learning_rate=config.boosting_learning_rate,
            max_depth=config.boosting_max_depth,
            random_state=params.training.seed,
        )
        columns = ["recency_days", f"frequency_{longest}d", f"monetary_{longest}d"]
        super().__init__(params, columns, estimator, "rfm_boosting")
