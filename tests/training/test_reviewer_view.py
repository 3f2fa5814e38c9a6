"""What a reviewer sees in MLflow after `retention train`, read back through the client: ML experiments,
the model's run with one child run per baseline (same metric names, same holdout), the data as
dataset inputs, and comparison plots with the model and its baselines on the same axes."""

from __future__ import annotations

import mlflow
import pytest

from training.tracking import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG

# metrics only a trained network has (per-epoch cost, tuning, privacy budget): not on baselines
TRAINING_ONLY = ("seconds_per_epoch", "epochs", "tuning_", "dp.", "epoch_seconds", "train_", "val_")


@pytest.fixture(scope="module")
def client(trained_platform) -> mlflow.MlflowClient:  # noqa: ANN001
    return mlflow.MlflowClient(tracking_uri=trained_platform.tracking_uri)


def _model_run(client: mlflow.MlflowClient, experiment: str):  # noqa: ANN202
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    assert found.tags.get(EXPERIMENT_KIND_TAG) == EXPERIMENT_KIND  # the UI opens on the runs table
    runs = client.search_runs([found.experiment_id], "tags.role = 'model' and tags.kind = 'train'")
    assert runs, f"no training run in {experiment}"
    return found, runs[0]


@pytest.mark.parametrize(
    ("experiment", "baselines", "plots"),
    [
        (
            "retention-return",
            {"recency", "frequency", "rfm_boosting"},
            {"roc.png", "pr.png", "reliability.png", "gain.png"},
        ),
        ("retention-recommender", {"popularity", "item_knn", "mf_als"}, {"recall_at_k.png"}),
    ],
)
def test_a_training_run_holds_its_baselines_data_and_comparison_plots(
    client: mlflow.MlflowClient, experiment: str, baselines: set[str], plots: set[str]
) -> None:
    found, run = _model_run(client, experiment)
    # child runs: one per baseline, nested under the model's run, on the same holdout
    children = client.search_runs([found.experiment_id], f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")
    assert {c.data.params["model"] for c in children} == baselines
    protocol = {k for k in run.data.metrics if not k.startswith(TRAINING_ONLY)}
    for child in children:
        assert child.data.tags["role"] == "baseline"
        for tag in ("data_fingerprint", "cutoff", "horizon_days", "protocol"):
            assert child.data.tags[tag] == run.data.tags[tag], tag
        assert protocol <= set(child.data.metrics), set(protocol) - set(child.data.metrics)
    # the data: training and holdout as dataset inputs, digest = the data fingerprint
    inputs = {
        next(t.value for t in i.tags if t.key == "mlflow.data.context"): i.dataset
        for i in run.inputs.dataset_inputs
    }
    assert set(inputs) == {"training", "holdout"}
    assert {d.digest for d in inputs.values()} == {run.data.tags["data_fingerprint"]}
    # the comparison plots in the model's run
    logged = {a.path.rsplit("/", 1)[-1] for a in client.list_artifacts(run.info.run_id, "plots/comparison")}
    assert plots <= logged
