"""ReturnModel end to end on the tiny shop: outputs, point-in-time correctness, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feature_store.events import EventLog, event_log_from_frames
from retention.params import Params
from tests.training.churn.shop import AS_OF, HORIZON, fast_params
from tests.training.churn.test_churn_dataset import _with_future
from training.churn import ReturnModel
from training.churn.fit import ReturnModelError
from training.protocol import return_population


@pytest.fixture(scope="module")
def fitted(tiny_log: EventLog, tmp_path_factory: pytest.TempPathFactory) -> ReturnModel:
    """One model fitted on the tiny shop (shared: fitting is the slow part)."""
    model = ReturnModel(fast_params(), tmp_path_factory.mktemp("run"))
    model.fit(tiny_log, AS_OF, HORIZON)
    return model


def test_predict_scores_every_population_customer_with_probabilities_and_reasons(
    fitted: ReturnModel, tiny_log: EventLog
) -> None:
    # when
    scores = fitted.predict(tiny_log, AS_OF, HORIZON)
    # then
    population = return_population(tiny_log.before(AS_OF))
    assert list(scores["customer_id"]) == list(population)
    assert scores["p_return"].between(0, 1).all()
    reasons = [f"reason_{k}" for k in range(1, fitted.params.return_.reason_codes + 1)]
    assert list(scores.columns) == ["customer_id", "p_return", *reasons]
    assert set(scores[reasons].to_numpy().ravel()) <= set(fitted.encoder.columns)
    assert (scores[reasons].nunique(axis=1) == len(reasons)).all()  # distinct features per customer


def test_probability_grows_with_the_horizon(fitted: ReturnModel, tiny_log: EventLog) -> None:
    # when
    p = [fitted.predict(tiny_log, AS_OF, h)["p_return"].to_numpy() for h in (3, 7, 28, 90)]
    # then
    for shorter, longer in zip(p, p[1:], strict=False):
        assert (longer >= shorter - 1e-9).all()


def test_regular_buyers_score_above_lapsed_ones(fitted: ReturnModel, tiny_log: EventLog) -> None:
    # given: the shop's even customers are regular buyers, odd ones fade (see shop.tiny_events)
    scores = fitted.predict(tiny_log, AS_OF, HORIZON).set_index("customer_id")["p_return"]
    regular = scores[[int(c[1:]) % 2 == 0 for c in scores.index]]
    fading = scores[[int(c[1:]) % 2 == 1 for c in scores.index]]
    # then
    assert regular.mean() > fading.mean()


def test_fit_reports_validation_and_importance(fitted: ReturnModel) -> None:
    # then
    validation = fitted.validation
    assert 0 <= validation["brier"] <= 1 and 0 < validation["horizon_days"] <= HORIZON
    assert list(validation["reliability"].columns) == ["p_mean", "observed", "count"]
    assert validation["reliability"]["count"].sum() == validation["n_users"]
    assert set(fitted.feature_importance["feature"]) == set(fitted.encoder.columns)
    assert fitted.feature_importance["importance"].is_monotonic_decreasing
    assert fitted.fit_result is not None and fitted.fit_result.epochs >= 1


def test_predict_inputs_matches_predict(fitted: ReturnModel, tiny_log: EventLog) -> None:
    # when
    flat = fitted.inputs(tiny_log, AS_OF)
    # then
    assert flat["customer_id"].is_monotonic_increasing
    assert all(pd.api.types.is_numeric_dtype(flat[c]) for c in flat.columns[1:])
    pd.testing.assert_frame_equal(fitted.predict_inputs(flat), fitted.predict(tiny_log, AS_OF, HORIZON))


def test_save_load_round_trip_predicts_identically(
    fitted: ReturnModel, tiny_log: EventLog, tmp_path: Path
) -> None:
    # when
    fitted.save(tmp_path / "model")
    loaded = ReturnModel.load(tmp_path / "model")
    # then
    pd.testing.assert_frame_equal(
        loaded.predict(tiny_log, AS_OF, HORIZON), fitted.predict(tiny_log, AS_OF, HORIZON)
    )
    assert loaded.validation["brier"] == fitted.validation["brier"]
    assert not list((tmp_path / "model").glob("*.pkl"))


def test_rows_at_or_after_as_of_change_nothing(
    fitted: ReturnModel, tiny_log: EventLog, tmp_path: Path
) -> None:
    # given: the same shop with purchases and views at and after as-of
    model = ReturnModel(fast_params(), tmp_path / "run")
    # when
    model.fit(_with_future(tiny_log), AS_OF, HORIZON)
    # then: fit and predict are unchanged
    pd.testing.assert_frame_equal(
        model.predict(_with_future(tiny_log), AS_OF, HORIZON), fitted.predict(tiny_log, AS_OF, HORIZON)
    )
    assert model.validation["brier"] == fitted.validation["brier"]


def test_works_on_a_purchase_only_log_without_orders_or_prices(tmp_path: Path) -> None:
    # given: order totals only (like CDNOW): no views, no order ids, no prices
    rng = np.random.default_rng(3)
    days = rng.integers(0, 120, size=300)
    events = pd.DataFrame(
        {
            "customer_id": [f"u{i % 40}" for i in range(300)],
            "product_id": "any",
            "ts": pd.Timestamp("2026-01-01") + pd.to_timedelta(days, unit="D"),
        }
    )
    log = event_log_from_frames(events)
    model = ReturnModel(fast_params(), tmp_path)
    # when
    model.fit(log, pd.Timestamp("2026-04-01"), 60)
    scores = model.predict(log, pd.Timestamp("2026-04-01"), 60)
    # then
    assert len(scores) == len(return_population(log.before(pd.Timestamp("2026-04-01"))))
    assert scores["p_return"].between(0, 1).all()


def test_too_short_a_history_is_refused(tiny_log: EventLog, tmp_path: Path) -> None:
    # given: as-of a few days after the first purchase
    first = tiny_log.events["ts"].min()
    # then
    with pytest.raises(ReturnModelError, match="cutoff"):
        ReturnModel(fast_params(), tmp_path).fit(tiny_log, first + pd.Timedelta(days=8), HORIZON)


def test_predict_before_fit_is_refused(params: Params, tiny_log: EventLog, tmp_path: Path) -> None:
    with pytest.raises(ReturnModelError, match="not fitted"):
        ReturnModel(params, tmp_path).predict(tiny_log, AS_OF, HORIZON)
