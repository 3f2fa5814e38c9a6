"""Return baselines: probabilities for the whole population, learned on windows before as-of."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feature_store.events import EventLog, event_log_from_frames
from retention.params import Params
from tests.training.churn.shop import AS_OF, HORIZON
from tests.training.churn.test_churn_dataset import _with_future
from training.churn import FrequencyBaseline, RecencyBaseline, RfmBoostingBaseline
from training.churn.baselines import BaselineError, label_window_days
from training.protocol import return_population

BASELINES = [RecencyBaseline, FrequencyBaseline, RfmBoostingBaseline]


@pytest.mark.parametrize("baseline", BASELINES)
def test_baselines_give_probabilities_for_the_population(
    baseline: type, params: Params, tiny_log: EventLog
) -> None:
    # given
    model = baseline(params)
    # when
    model.fit(tiny_log, AS_OF, HORIZON)
    scores = model.predict(tiny_log, AS_OF, HORIZON)
    # then
    assert list(scores.columns) == ["customer_id", "p_return"]
    assert list(scores["customer_id"]) == list(return_population(tiny_log.before(AS_OF)))
    assert scores["p_return"].between(0, 1).all()


@pytest.mark.parametrize("baseline", BASELINES)
def test_baselines_ignore_rows_at_or_after_as_of(baseline: type, params: Params, tiny_log: EventLog) -> None:
    # given
    plain, extended = baseline(params), baseline(params)
    # when
    plain.fit(tiny_log, AS_OF, HORIZON)
    extended.fit(_with_future(tiny_log), AS_OF, HORIZON)
    # then
    pd.testing.assert_frame_equal(
        plain.predict(tiny_log, AS_OF, HORIZON), extended.predict(_with_future(tiny_log), AS_OF, HORIZON)
    )


def test_recency_baseline_ranks_a_recent_buyer_above_a_lapsed_one(params: Params, tiny_log: EventLog) -> None:
    # given: one customer bought yesterday, another 100 days ago
    extra = pd.DataFrame(
        {
            "customer_id": ["recent", "lapsed"],
            "product_id": "p1",
            "event_type": "purchase",
            "quantity": 1,
            "ts": [AS_OF - pd.Timedelta(days=1), AS_OF - pd.Timedelta(days=100)],
        }
    )
    log = event_log_from_frames(
        pd.concat([tiny_log.events.drop(columns="event_id"), extra], ignore_index=True)
    )
    model = RecencyBaseline(params)
    # when
    model.fit(log, AS_OF, HORIZON)
    scores = model.predict(log, AS_OF, HORIZON).set_index("customer_id")["p_return"]
    # then
    assert scores["recent"] > scores["lapsed"]


def test_longer_horizons_give_higher_probabilities(params: Params, tiny_log: EventLog) -> None:
    # given
    model = FrequencyBaseline(params)
    model.fit(tiny_log, AS_OF, HORIZON)
    # when
    short = model.predict(tiny_log, AS_OF, HORIZON)["p_return"].to_numpy()
    long = model.predict(tiny_log, AS_OF, 4 * HORIZON)["p_return"].to_numpy()
    # then
    assert (long >= short).all() and (long > short).any()


def test_label_window_is_shorter_than_a_horizon_longer_than_the_history(tiny_log: EventLog) -> None:
    # given: 120 days of history before as-of, a horizon of a year
    window = label_window_days(tiny_log.frames(), AS_OF, 365, 0.5)
    # then
    first = tiny_log.events["ts"].min()
    assert window == int(0.5 * (AS_OF - first) / pd.Timedelta(days=1))
    assert label_window_days(tiny_log.frames(), AS_OF, 10, 0.5) == 10


def test_a_baseline_refuses_to_predict_before_fit(params: Params, tiny_log: EventLog) -> None:
    with pytest.raises(BaselineError, match="not fitted"):
        RecencyBaseline(params).predict(tiny_log, AS_OF, HORIZON)


def test_constant_hazard_stretch_is_exact_for_one_window(params: Params, tiny_log: EventLog) -> None:
    # given: predicting for the learned window itself
    model = RecencyBaseline(params)
    model.fit(tiny_log, AS_OF, HORIZON)
    rows = model._features(tiny_log.before(AS_OF).frames(), AS_OF)
    direct = model.model.predict_proba(rows[model.columns].to_numpy(dtype=float))[:, 1]
    # when
    scores = model.predict(tiny_log, AS_OF, model.window_days)
    # then
    np.testing.assert_allclose(scores["p_return"].to_numpy(), direct)
