"""Train the return model and the recommender whenever the online features are refreshed.

Scheduled on the `features` Asset that the extraction DAG emits. Both models train in parallel
tasks on the validated warehouse tables, are evaluated by the offline protocol on the latest data,
tracked in MLflow and registered as new versions (the promotion gate decides what serves). A rerun
on unchanged data and parameters reuses the registered version instead of training again.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, dag, task

FEATURES = Asset("retention://features/online")
RETURN_MODEL = Asset("retention://models/return")
RECOMMENDER = Asset("retention://models/recommender")


@dag(
    schedule=[FEATURES],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1},  # a killed training resumes from its last checkpoint
    tags=["retention", "training"],
    doc_md=__doc__,
)
def train_models() -> None:
    @task(outlets=[RETURN_MODEL])
    def train_return_model() -> dict:
        from pipelines.training import task_train

        return task_train("return")

    @task(outlets=[RECOMMENDER])
    def train_recommender() -> dict:
        from pipelines.training import task_train

        return task_train("recommender")

    train_return_model()
    train_recommender()


train_models()
