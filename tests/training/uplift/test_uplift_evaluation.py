"""Policy values (IPW, doubly robust) against known answers, the budget policy, and the ranking metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.training.uplift.synthetic import CONTROL, campaign, small_params
from training.uplift.evaluation import (
    best_arms,
    budget_policy,
    per_arm_metrics,
    plot_qini,
    policy_value_dr,
    policy_value_ipw,
    qini_points,
    ranking_metrics,
)
from training.uplift.learners import ArmOutcomes


@pytest.fixture(scope="module")
def log():
    return campaign(n=40000, seed=5)


def _truth(log, policy):
    """The true value per customer of a policy: E[y | policy(x), x] averaged over the customers."""
    gain = np.select([policy == "coupon", policy == "mail"], [log.effect["coupon"], log.effect["mail"]], 0.0)
    return float(np.mean(log.base + gain))


def test_ipw_and_dr_values_cover_the_known_answer(log):
    # Given a policy: the coupon to those with x1 > 0, the mail to a few others, nobody else
    policy = np.where(log.X[:, 1] > 0, "coupon", np.where(log.X[:, 2] > 1.5, "mail", CONTROL))
    truth = _truth(log, policy)
    ipw = policy_value_ipw(log.y, log.arm, policy, log.propensity)
    # an outcome model fitted on other rows of the same experiment
    other = campaign(n=20000, seed=6)
    expected = ArmOutcomes(small_params()).fit(other.X, other.arm, other.y).predict(log.X)
    dr = policy_value_dr(log.y, log.arm, policy, log.propensity, expected)
    for estimate in (ipw, dr):
        assert estimate.low <= truth <= estimate.high
        assert estimate.high - estimate.low < 0.05
    assert dr.se < ipw.se  # the outcome model absorbs part of the noise


def test_dr_value_stays_unbiased_with_a_useless_outcome_model(log):
    policy = np.where(log.X[:, 1] > 0, "coupon", CONTROL)
    constant = pd.DataFrame({a: np.full(len(log.y), 0.9) for a in (CONTROL, "coupon", "mail")})
    dr = policy_value_dr(log.y, log.arm, policy, log.propensity, constant)
    assert dr.low <= _truth(log, policy) <= dr.high
    with pytest.raises(ValueError, match="no column for arms"):
        policy_value_dr(log.y, log.arm, policy, log.propensity, constant[[CONTROL]])


def test_budget_policy_respects_the_budget_and_takes_the_best_positive_first():
    uplift = pd.DataFrame({"uplift_a": [0.5, -0.1, 0.2, 0.05, -0.3], "uplift_b": [0.1, -0.2, 0.4, 0.0, -0.1]})
    policy = budget_policy(uplift, "ctl", budget=0.4)  # floor(0.4 x 5) = 2 treated at most
    assert list(policy) == ["a", "ctl", "b", "ctl", "ctl"]
    # a large budget treats only rows with a positive best uplift
    assert list(budget_policy(uplift, "ctl", budget=1.0)) == ["a", "ctl", "b", "a", "ctl"]
    assert list(budget_policy(uplift, "ctl", budget=1.0, arms=["b"])) == ["b", "ctl", "b", "ctl", "ctl"]
    assert (budget_policy(uplift, "ctl", budget=0.0) == "ctl").all()
    rng = np.random.default_rng(0)
    many = pd.DataFrame(rng.normal(size=(1001, 3)), columns=["uplift_x", "uplift_y", "uplift_z"])
    assert (budget_policy(many, "ctl", budget=0.3) != "ctl").sum() == 300
    with pytest.raises(ValueError, match="budget"):
        budget_policy(uplift, "ctl", budget=1.5)
    assert list(best_arms(uplift, "ctl")) == ["a", "ctl", "b", "a", "ctl"]


def test_ranking_metrics_reward_a_score_that_knows_the_effect(log, tmp_path):
    arm = log.arm
    true = pd.DataFrame({"uplift_coupon": log.effect["coupon"], "uplift_mail": log.effect["mail"]})
    noise = pd.DataFrame(np.random.default_rng(1).random((len(arm), 2)), columns=true.columns)
    good = per_arm_metrics(log.y, arm, true + 0.01 * noise, CONTROL, ["coupon", "mail"])
    bad = per_arm_metrics(log.y, arm, noise, CONTROL, ["coupon", "mail"])
    assert good["coupon"]["qini"] > 0.06 and abs(bad["coupon"]["qini"]) < 0.03
    assert good["coupon"]["uplift_at_30"] > bad["coupon"]["uplift_at_30"]
    assert len(good["coupon"]["uplift_by_decile"]) == 10
    assert good["coupon"]["uplift_by_decile"][0] > good["coupon"]["uplift_by_decile"][-1]
    rows = np.isin(arm, ["coupon", CONTROL])
    treated = (arm[rows] == "coupon").astype(int)
    metrics = ranking_metrics(log.y[rows], true["uplift_coupon"][rows], treated)
    assert set(metrics) >= {"qini", "uplift_auc", "uplift_at_30", "uplift_by_decile"}
    curve = qini_points(log.y[rows], true["uplift_coupon"].to_numpy()[rows], treated)
    assert len(curve) == 101 and curve["share"].iloc[-1] == 1.0
    png = plot_qini({"true effect": curve}, tmp_path / "qini.png", "coupon vs none")
    assert png.stat().st_size > 1000
