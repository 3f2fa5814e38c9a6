"""`retention backtest` and `retention train` end to end on a small simulated shop: the protocol's
files, MLflow run contents, registration, idempotent retraining and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from cli.main import app
from tests.conftest import ROOT
from training.families import family as model_family

runner = CliRunner()
CUTOFF, HORIZON = "2026-03-02", 30  # the shop runs 2026-01-01 .. 2026-03-31


@pytest.fixture
def small_shop(migrated_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A 300-customer, 90-day shop and params with short training (the models' code paths, quickly)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["training"].update(max_epochs=3)
    params["recommender"]["sasrec"].update(max_epochs=3)  # its own bound (200 in params.yaml)
    small = tmp_path / "params.yaml"
    small.write_text(yaml.safe_dump(params))
    monkeypatch.setenv("RETENTION_PARAMS", str(small))
    result = runner.invoke(app, ["simulate", "--customers", "300", "--days", "90"])
    assert result.exit_code == 0, result.output
    return migrated_home


def _runs(home: Path, family: str) -> pd.DataFrame:
    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
    return mlflow.search_runs(experiment_names=[model_family(family).experiment])


def _truth(home: Path) -> pd.DataFrame:
    from feature_store.events import read_event_log
    from retention.db import create_db_engine

    engine = create_db_engine(f"sqlite:///{home / 'retention.db'}")
    try:
        return read_event_log(engine, "shop").events
    finally:
        engine.dispose()


def test_return_backtest_writes_the_protocol_files_and_mlflow_runs(small_shop: Path, tmp_path: Path) -> None:
    out = tmp_path / "bt"
    result = runner.invoke(
        app,
        [
            "backtest",
            "--model",
            "return",
            "--as-of",
            CUTOFF,
            "--horizon-days",
            str(HORIZON),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    # The model's files on top, each baseline's below; the metrics are recomputable from the files.
    events = _truth(small_shop)
    buyers = events[events["event_type"] == "purchase"]
    cutoff = pd.Timestamp(CUTOFF)
    population = np.unique(buyers.loc[buyers["ts"] < cutoff, "customer_id"])
    window = buyers[(buyers["ts"] >= cutoff) & (buyers["ts"] < cutoff + pd.Timedelta(days=HORIZON))]
    for folder in [out, *sorted((out / "baselines").iterdir())]:
        scores = pd.read_csv(folder / "churn_scores.csv", dtype={"user_id": str})
        assert list(scores.columns) == ["user_id", "p_return"]
        assert sorted(scores["user_id"]) == list(population)
        assert scores["p_return"].between(0, 1).all()
        metrics = json.loads((folder / "metrics.json").read_text())
        returned = scores["user_id"].isin(window["customer_id"]).astype(int)
        assert metrics["roc_auc"] == pytest.approx(roc_auc_score(returned, scores["p_return"]))
        assert metrics["n_users"] == len(population) and metrics["as_of"] == CUTOFF
        assert metrics["horizon_days"] == HORIZON and len(metrics["dataset_fingerprint"]) == 16
        assert pd.read_csv(folder / "recommendations.csv").empty  # the other task's file: header only
    assert {p.name for p in (out / "baselines").iterdir()} == {"recency", "frequency", "rfm_boosting"}
    # Every model is a comparable MLflow run of the return family.
    runs = _runs(small_shop, "return")
    assert len(runs) == 4
    assert set(runs["tags.role"]) == {"model", "baseline"}
    for tag in ("git_commit", "data_fingerprint", "dataset", "airflow_run_id", "params_hash"):
        assert runs[f"tags.{tag}"].notna().all() and runs[f"tags.{tag}"].nunique() == 1, tag
    assert set(runs["tags.cutoff"]) == {CUTOFF} and set(runs["tags.horizon_days"]) == {str(HORIZON)}
    model = runs[runs["tags.role"] == "model"].iloc[0]
    assert model["metrics.roc_auc"] == pytest.approx(
        json.loads((out / "metrics.json").read_text())["roc_auc"]
    )
    assert model["params.training.max_epochs"] == "3"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(model["run_id"], "plots")}
    assert {
        "plots/roc.png",
        "plots/pr.png",
        "plots/reliability.png",
        "plots/lift_gain.png",
        "plots/training_curves.png",
        "plots/feature_importance.png",
    } <= artifacts
    history = mlflow.MlflowClient().get_metric_history(model["run_id"], "val_loss")
    assert len(history) >= 1 and [m.step for m in history] == sorted(m.step for m in history)


def test_recommendation_backtest_leave_last(small_shop: Path, tmp_path: Path) -> None:
    out = tmp_path / "rec"
    result = runner.invoke(
        app, ["backtest", "--model", "recommender", "--protocol", "leave-last", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    recs = pd.read_csv(out / "recommendations.csv", dtype={"user_id": str, "item_id": str})
    assert list(recs.columns) == ["user_id", "rank", "item_id", "score"]
    per_user = recs.groupby("user_id")["rank"].agg(list)
    assert all(ranks == list(range(1, 21)) for ranks in per_user)  # K = max(evaluation.ks) rows per user
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_users"] == len(per_user) and metrics["exclude_seen"] is True
    assert 0 <= metrics["ndcg@10"] <= 1 and "coverage@20" in metrics
    assert pd.read_csv(out / "churn_scores.csv").empty
    assert len(list((out / "baselines").iterdir())) == 3
    runs = _runs(small_shop, "recommender")
    assert len(runs) == 4 and set(runs["tags.protocol"]) == {"leave-last"}
    model = runs[runs["tags.role"] == "model"].iloc[0]
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(model["run_id"], "plots")}
    assert {"plots/recall_at_k.png", "plots/training_curves.png"} <= artifacts


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "return", "--protocol", "leave-last"], "--model return uses --protocol temporal"),
        (["--model", "recommender", "--protocol", "temporal"], "needs --as-of and --horizon-days"),
        (["--model", "return", "--as-of", "2026-03-20", "--horizon-days", "60"], "before the label window"),
        (["--task", "return", "--as-of", "2025-01-01", "--horizon-days", "30"], "population is empty"),
        (["--model", "churn"], "--model must be one of: return, recommender"),
    ],
)
def test_backtest_bad_options_exit_2_and_write_nothing(
    small_shop: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "bad"
    result = runner.invoke(app, ["backtest", *args, "--out", str(out)])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not out.exists()


def test_backtest_on_an_empty_database_says_what_to_do(migrated_home: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["backtest", "--model", "recommender", "--protocol", "leave-last", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "retention ingest" in result.output


def test_train_registers_pyfuncs_and_reuses_them_on_unchanged_data(small_shop: Path) -> None:
    extracted = runner.invoke(
        app, ["extract", "--start", "2026-01-01", "--end", "2026-04-01", "--step-days", "90"]
    )
    assert extracted.exit_code == 0, extracted.output
    for kind, name in (("return", "retention-return"), ("recommender", "retention-recommender")):
        first = runner.invoke(app, ["train", "--model", kind])
        assert first.exit_code == 0, first.output
        assert f"{name} version 1 " in first.output
        again = runner.invoke(app, ["train", "--model", kind])  # same data, params and code
        assert again.exit_code == 0 and f"{name} version 1 " in again.output, again.output
        mlflow.set_tracking_uri(f"sqlite:///{small_shop / 'mlflow.db'}")
        assert len(mlflow.MlflowClient().search_model_versions(f"name = '{name}'")) == 1
        runs = _runs(small_shop, kind)
        trainings = runs["tags.kind"] == "train"
        assert (trainings & (runs["tags.role"] == "model")).sum() == 1  # reused, not trained again
        assert (trainings & (runs["tags.role"] == "baseline")).sum() == 3  # its baselines, once
        # The registered pyfunc loads on its own and predicts from its logged input example.
        local = mlflow.artifacts.download_artifacts(f"models:/{name}/1")
        example = mlflow.models.Model.load(local).load_input_example(local)
        assert example["customer_id"].str.startswith("example-").all()  # no real customer's id
        loaded = mlflow.pyfunc.load_model(f"models:/{name}/1")
        assert loaded.metadata.signature is not None
        output = loaded.predict(example)
        if kind == "return":
            assert output["p_return"].between(0, 1).all() and len(output) == len(example)
            assert output["reason_1"].notna().all()
        else:
            assert set(output.columns) == {"customer_id", "rank", "product_id", "score"}
            assert output.groupby("customer_id")["rank"].max().eq(20).all()


def test_train_without_a_warehouse_says_what_to_do(small_shop: Path) -> None:
    result = runner.invoke(app, ["train", "--model", "return"])
    assert result.exit_code == 2 and "holds no purchase" in result.output
