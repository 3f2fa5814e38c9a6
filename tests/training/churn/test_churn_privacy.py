"""DP-SGD of the return model: params validation, the budget plan, the private training and its MLflow run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from feature_store.events import EventLog
from retention.params import DPParams, Params, ParamsError, load_params
from tests.training.churn.shop import AS_OF, HORIZON, ROOT, fast_params
from training.backtest import BacktestRequest, run_backtest
from training.churn import ReturnModel
from training.churn.fit import ReturnModelError
from training.churn.model import ReturnNetwork
from training.churn.privacy import epsilon_spent, plan_privacy
from training.tracking import Tracker


def private_params(epsilon: float = 2.0, **return_model: object) -> Params:
    """Fast params with DP-SGD at `epsilon`, two networks (their budgets compose)."""
    dp = DPParams(enabled=True, target_epsilon=epsilon, max_grad_norm=1.0)
    return fast_params(**({"dp": dp, "ensemble": 2} | return_model))


def write_params(folder: Path, dp: dict, **return_model: object) -> Path:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["return"]["dp"].update(dp)
    raw["return"].update(return_model)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("epsilon", [0, -1.0])
def test_params_reject_a_non_positive_epsilon(tmp_path: Path, epsilon: float) -> None:
    # given
    path = write_params(tmp_path, {"enabled": True, "target_epsilon": epsilon})
    # then
    with pytest.raises(ParamsError, match=r"return\.dp\.target_epsilon"):
        load_params(path)


def test_params_reject_dp_with_refit_and_a_bad_delta(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="dp.enabled needs refit: false"):
        load_params(write_params(tmp_path, {"enabled": True}, refit=True))
    with pytest.raises(ParamsError, match=r"return\.dp\.delta"):
        load_params(write_params(tmp_path, {"enabled": True, "delta": 1.5}))


def test_dp_is_off_by_default() -> None:
    assert load_params(ROOT / "params.yaml").return_.dp.enabled is False


def test_plan_spends_the_budget_over_the_planned_epochs_and_less_when_stopping_early() -> None:
    # given: 3 networks of at most 10 epochs on 5,000 rows of 1,000 customers
    plan = plan_privacy(DPParams(enabled=True, target_epsilon=3.0), 5000, 250, 1000, 3, 10)
    # then
    assert plan.delta == pytest.approx(1e-3) and plan.sample_rate == pytest.approx(1 / 20)
    assert plan.noise_multiplier > 0
    assert 0.95 * 3.0 <= epsilon_spent(plan, [10, 10, 10]) <= 3.0
    assert epsilon_spent(plan, [4, 5, 6]) < epsilon_spent(plan, [10, 10, 10])
    stricter = plan_privacy(DPParams(enabled=True, target_epsilon=1.0), 5000, 250, 1000, 3, 10)
    assert stricter.noise_multiplier > plan.noise_multiplier


def test_private_network_computes_what_its_plain_copy_computes() -> None:
    # given
    torch.manual_seed(0)
    private = ReturnNetwork(5, 8, 4, 3, 0.0, private=True).eval()
    features = torch.randn(6, 5)
    events = torch.randn(6, 7, 3)
    event_type = torch.randint(1, 4, (6, 7))
    lengths = torch.tensor([7, 3, 1, 5, 2, 7])
    expected = private(features, events, event_type, lengths)
    # when
    plain = private.plain()
    # then
    assert isinstance(plain.gru, nn.GRU)
    torch.testing.assert_close(plain(features, events, event_type, lengths), expected)
    packed = pack_padded_sequence(events, lengths, batch_first=True, enforce_sorted=False)
    assert packed.data.shape[0] == int(lengths.sum())  # the GRU saw packed, not padded, steps


@pytest.fixture(scope="module")
def private_backtest(tiny_log: EventLog, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Tracker]:
    """A DP-trained return model evaluated and tracked as the backtest and `retention train` do."""
    folder = tmp_path_factory.mktemp("dp")
    tracker = Tracker(f"sqlite:///{folder / 'mlflow.db'}", folder / "mlartifacts")
    request = BacktestRequest("return", "temporal", AS_OF, HORIZON, False, folder / "out", "tiny")

    def only_model(params: Params, work: Path) -> list[tuple[str, ReturnModel]]:
        return [("model", ReturnModel(params, work / "return_model"))]

    run_backtest(tiny_log, request, private_params(), folder / "runs", tracker, only_model)
    return folder, tracker


def test_private_training_logs_its_budget_in_the_mlflow_run(
    private_backtest: tuple[Path, Tracker], tiny_log: EventLog
) -> None:
    # given
    _, tracker = private_backtest
    experiment = tracker.client.get_experiment_by_name("retention-return")
    # when
    (run,) = tracker.client.search_runs([experiment.experiment_id])
    metrics = run.data.metrics
    # then: two networks together stay within the budget; delta defaults to 1 / training customers
    assert 0 < metrics["dp.epsilon"] <= 2.0
    customers = tiny_log.before(AS_OF).frames().events["customer_id"].nunique()
    assert 1 / customers <= metrics["dp.delta"] < 1 / 20  # training rows hold fewer customers than the log
    assert metrics["dp.max_grad_norm"] == 1.0
    assert metrics["dp.noise_multiplier"] > 0.3
    assert metrics["dp.examples_per_customer_max"] > 1
    assert run.data.params["return.dp.enabled"] == "True"


def test_private_model_saves_plain_networks_and_reloads_with_its_budget(
    tiny_log: EventLog, tmp_path: Path
) -> None:
    # given
    model = ReturnModel(private_params(epsilon=8.0, ensemble=1), tmp_path / "run")
    model.fit(tiny_log, AS_OF, HORIZON)
    # when
    model.save(tmp_path / "model")
    loaded = ReturnModel.load(tmp_path / "model")
    # then
    assert all(isinstance(network.gru, nn.GRU) for network in loaded.networks)
    assert loaded.privacy == model.privacy and 0 < model.privacy["epsilon"] <= 8.0
    scores = model.predict(tiny_log, AS_OF, HORIZON)
    pd.testing.assert_frame_equal(loaded.predict(tiny_log, AS_OF, HORIZON), scores)
    assert np.isfinite(scores["p_return"]).all()


def test_private_training_refuses_several_devices(tiny_log: EventLog, tmp_path: Path) -> None:
    # given
    params = private_params()
    params = params.model_copy(update={"training": params.training.model_copy(update={"devices": 2})})
    # then
    with pytest.raises(ReturnModelError, match="training.devices: 1"):
        ReturnModel(params, tmp_path).fit(tiny_log, AS_OF, HORIZON)
