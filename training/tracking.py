"""MLflow tracking service: one experiment per model family, comparable runs, registered models.

Every run carries the same tags (git commit, data fingerprint, cutoff, horizon, dataset, protocol,
Airflow run id), its parameters flattened from params.yaml, per-epoch and final metrics, plots, and
for trained models a pyfunc with signature and input example registered as a new version.
MLflow metric names cannot hold "@", so `ndcg@10` (EVALUATION.md, metrics.json) is `ndcg_at_10` here.
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("retention.training")
AIRFLOW_RUN_ENV = "AIRFLOW_CTX_DAG_RUN_ID"  # set by Airflow in every task process
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a parameter value


def metric_name(name: str) -> str:
    """The MLflow spelling of a protocol metric name (`ndcg@10` -> `ndcg_at_10`)."""
    return name.replace("@", "_at_")


def protocol_metric(name: str) -> str:
    """The protocol's spelling of an MLflow metric name (`ndcg_at_10` -> `ndcg@10`)."""
    return name.replace("_at_", "@")


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested parameters as dotted keys with string values (`return.batch_size`)."""
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)[:MAX_PARAM_LENGTH]
    return flat


def git_commit(root: Path | None = None) -> str:
    """The checked-out commit (with `-dirty` when the tree has changes), or `unknown` outside git."""
    cwd = root or Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


@dataclass(frozen=True)
class RunTags:
    """What makes runs comparable; set on every run of every family."""

    dataset: str
    data_fingerprint: str
    cutoff: str
    horizon_days: str
    protocol: str
    role: str  # model | baseline
    params_hash: str = ""  # hash of the parameter sections the run used (see `params_hash`)

    def as_dict(self) -> dict[str, str]:
        return {
            "dataset": self.dataset,
            "data_fingerprint": self.data_fingerprint,
            "cutoff": self.cutoff,
            "horizon_days": self.horizon_days,
            "protocol": self.protocol,
            "role": self.role,
            "params_hash": self.params_hash,
            "git_commit": git_commit(),
            "airflow_run_id": os.environ.get(AIRFLOW_RUN_ENV, "none"),
        }


def params_hash(values: Mapping[str, Any]) -> str:
    """A short hash of parameter values: runs with equal hashes used equal parameters."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:12]


EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"


class Tracker:
    """The MLflow side effects of training and backtests (always an explicit tracking URI)."""

    def __init__(self, tracking_uri: str, artifact_root: Path) -> None:
        import mlflow

        self.mlflow = mlflow
        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root
        self.client = mlflow.MlflowClient(tracking_uri=tracking_uri)

    def experiment_id(self, name: str) -> str:
        """The experiment called `name`, created on first use with artifacts under `artifact_root`."""
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if found.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:  # made before the tag existed
                self.client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
            return found.experiment_id
        location = (self.artifact_root / name).resolve().as_uri()
        # a machine-learning experiment: the UI opens on its runs table, not the GenAI overview
        return self.client.create_experiment(
            name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
        )

    @contextmanager
    def run(
        self, experiment: str, run_name: str, tags: RunTags, parent_run_id: str | None = None
    ) -> Iterator[str]:
        """Start a run in `experiment` (a family's, or the campaigns'); yields its run id.

        Args:
            parent_run_id: make it a child run (a baseline under its model's run: the runs table
                nests them, and the compare view puts them side by side).
        """
        self.mlflow.set_tracking_uri(self.tracking_uri)
        with self.mlflow.start_run(
            experiment_id=self.experiment_id(experiment),
            run_name=run_name,
            tags=tags.as_dict(),
            parent_run_id=parent_run_id,
        ) as active:
            yield active.info.run_id

    def find_registered(
        self, experiment: str, registered_name: str, tags: Mapping[str, str]
    ) -> tuple[str, str] | None:
        """The newest finished run of `experiment` whose tags all equal `tags` and that registered a version.

        Returns:
            (run_id, version), or None.
        """
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            return None
        query = " and ".join(f"tags.{key} = '{value}'" for key, value in tags.items())
        runs = self.client.search_runs(
            [found.experiment_id],
            filter_string=f"{query} and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=20,
        )
        for run in runs:
            versions = self.client.search_model_versions(
                f"name = '{registered_name}' and run_id = '{run.info.run_id}'"
            )
            if versions:
                return run.info.run_id, str(max(int(v.version) for v in versions))
        return None

    def log_datasets(
        self, name: str, digest: str, windows: Mapping[str, str], source: Mapping[str, str]
    ) -> None:
        """The run's data as MLflow dataset inputs: one per split part (context), the fingerprint as digest.

        Args:
            name: the dataset's name (e.g. "warehouse", "movielens").
            digest: the event log's content fingerprint (equal data, equal digest).
            windows: {context ("training", "holdout"): what that part holds, e.g. its time window}.
            source: where the data was read (no URL or credential), shown as the dataset's source.
        """
        from mlflow.data.code_dataset_source import CodeDatasetSource
        from mlflow.data.meta_dataset import MetaDataset

        for context, window in windows.items():
            # MLflow's own documented use; its stubs leave `profile` abstract (it returns None here)
            dataset = MetaDataset(  # type: ignore[abstract]
                CodeDatasetSource(dict(source)), name=f"{name}-{context}", digest=digest
            )
            self.mlflow.log_input(dataset, context=context, tags={"window": window})

    def log_params(self, params: Mapping[str, Any]) -> None:
        flat = flatten(params)
        names = sorted(flat)
        for start in range(0, len(names), 100):  # MLflow's batch limit
            self.mlflow.log_params({k: flat[k] for k in names[start : start + 100]})

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        finite = {
            metric_name(k): float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))
        }
        self.mlflow.log_metrics(finite, step=step)

    def log_history(self, history: list[dict[str, float]]) -> None:
        """Per-epoch metrics (step = epoch), so the UI draws training curves."""
        for row in history:
            metrics = {k: v for k, v in row.items() if k not in ("epoch",)}
            self.log_metrics(
                {("epoch_seconds" if k == "seconds" else k): v for k, v in metrics.items()},
                step=int(row["epoch"]),
            )

    def log_pyfunc(self, python_model: Any, model_dir: Path, input_example: Any, registered_name: str) -> str:
        """Log the model as a pyfunc (signature inferred from the example) and register a new version.

        Returns:
            The registered version number.
        """
        from mlflow.models import infer_signature

        if "customer_id" in getattr(input_example, "columns", ()):
            # the example is stored with the model, out of the erasure's reach: no real customer's id
            placeholders = [f"example-{i}" for i in range(len(input_example))]
            input_example = input_example.assign(customer_id=placeholders)
        output = python_model.predict(None, input_example)
        info = self.mlflow.pyfunc.log_model(
            name="model",
            python_model=python_model,
            artifacts={"model_dir": str(model_dir)},
            signature=infer_signature(input_example, output),
            input_example=input_example,
            registered_model_name=registered_name,
        )
        version = str(info.registered_model_version)
        log.info("registered %s version %s", registered_name, version)
        return version
