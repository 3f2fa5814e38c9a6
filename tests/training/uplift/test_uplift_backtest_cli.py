"""`retention backtest --task uplift`: the files-in, files-out contract on a Hillstrom sample, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.conftest import SHARED_DATA

runner = CliRunner()
HILLSTROM = SHARED_DATA / "hillstrom" / "hillstrom.csv"
ARMS = ["Mens E-Mail", "Womens E-Mail"]


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """2,000 logged rows to train on and 300 customers to score (hillstrom.csv's own columns)."""
    folder = tmp_path_factory.mktemp("hillstrom")
    raw = pd.read_csv(HILLSTROM, nrows=2300)
    raw.iloc[:2000].to_csv(folder / "train.csv", index=False)
    raw.iloc[2000:].to_csv(folder / "test.csv", index=False)
    return folder / "train.csv", folder / "test.csv"


def _backtest(train: Path, test: Path, out: Path, *extra: str):
    args = ["backtest", "--task", "uplift", "--train", str(train), "--test", str(test)]
    return runner.invoke(app, [*args, "--outcome", "visit", "--out", str(out), *extra])


@pytest.mark.parametrize("learner", ["blend", "t_learner"])
def test_uplift_backtest_writes_scores_and_metrics(sample, tmp_path, learner):
    train, test = sample
    out = tmp_path / "out"
    result = _backtest(
        train, test, out, "--control", "No E-Mail", "--format", "hillstrom", "--learner", learner
    )
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(out / "uplift_scores.csv", dtype={"user_id": str})
    assert list(scores.columns) == ["user_id", *(f"uplift_{a}" for a in ARMS), "best_arm"]
    assert len(scores) == 300 and scores["user_id"].is_unique
    assert set(scores["best_arm"]) <= {*ARMS, "No E-Mail"}
    best = scores[[f"uplift_{a}" for a in ARMS]].max(axis=1)
    assert (scores.loc[best <= 0, "best_arm"] == "No E-Mail").all()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["learner"] == learner and metrics["treatments"] == ARMS
    assert metrics["n_train"] == 2000 and len(metrics["dataset_fingerprint"]) == 16
    assert "conversion" not in metrics["features"] and "spend" not in metrics["features"]
    if learner == "blend":  # the figures it chose by, from the training log's inner folds
        assert metrics["inner_cv"]["folds"] == 3 and set(metrics["parameters"]["chosen"]) == set(ARMS)


def test_uplift_backtest_reads_the_contract_columns(sample, tmp_path):
    # Given a log in the contract's own column names (arm, user_id, propensity) and a customers file
    raw = pd.read_csv(sample[0]).rename(columns={"segment": "offer"})
    raw.insert(0, "customer", [f"c{i}" for i in range(len(raw))])
    raw["propensity"] = 1 / 3
    train = tmp_path / "log.csv"
    raw.to_csv(train, index=False)
    test = tmp_path / "customers.csv"
    raw.drop(columns=["offer", "visit", "conversion", "spend", "propensity"]).head(50).to_csv(
        test, index=False
    )
    out = tmp_path / "out"
    result = _backtest(
        train,
        test,
        out,
        "--control",
        "No E-Mail",
        "--arm-col",
        "offer",
        "--id-col",
        "customer",
        "--learner",
        "s_learner",
    )
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(out / "uplift_scores.csv")
    assert scores["user_id"].tolist()[:2] == ["c0", "c1"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["propensity"] == "logged"
    assert set(metrics["features"]) == {
        "recency",
        "history_segment",
        "history",
        "mens",
        "womens",
        "zip_code",
        "newbie",
        "channel",
    }


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--control", "No Mail", "--format", "hillstrom"],
            "control arm 'No Mail' is not in column 'segment'",
        ),
        (["--control", "No E-Mail", "--format", "excel"], "--format must be one of: log, hillstrom"),
        (
            ["--control", "No E-Mail", "--format", "hillstrom", "--learner", "magic"],
            "--learner must be one of",
        ),
        (["--control", "No E-Mail"], "the campaign log has no column 'user_id', 'arm'"),
    ],
)
def test_uplift_backtest_errors_are_one_clear_line(sample, tmp_path, extra, message):
    train, test = sample
    result = _backtest(train, test, tmp_path / "out", *extra)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out" / "uplift_scores.csv").exists()


def test_uplift_backtest_needs_its_files(tmp_path):
    result = runner.invoke(app, ["backtest", "--task", "uplift", "--control", "x", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "--task uplift needs --train, --test, --outcome" in result.output
