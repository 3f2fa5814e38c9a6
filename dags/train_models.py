"""Train every model family (return model, recommender, uplift) whenever the features are refreshed; gate them.

Scheduled on the `features` Asset that the extraction DAG emits. The families of `training.families`
train in parallel tasks on the validated warehouse tables, are evaluated by the offline protocol on the latest data,
tracked in MLflow and registered as new versions with alias `challenger`. Each one's gate then
scores challenger and champion on the same latest holdout window and moves `champion` only for a
better model (params.yaml `promotion`). A rerun on unchanged data and parameters reuses the
registered version and its recorded gate decision instead of training or deciding again. The
uplift family learns from the campaign log instead of the event log: until two campaigns have
measured outcomes its tasks are skipped, and campaigns follow the cold-start rule meanwhile.
Once the return and recommender gates are done, whatever they decided, the champions' answers are
materialised for serving (a new champion rewrites every customer's document; an unchanged one
writes nothing).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, dag, task

from pipelines.operations import task_defaults
from training.families import FAMILY_NAMES

FEATURES = Asset("retention://features/online")
RETRAIN = Asset("retention://models/return/retrain")  # the monitor DAG's request: the champion drifted
# Under the CeleryExecutor the training tasks go to their own queue (`airflow celery worker --queues
# training`), so CPU-heavy fits land on workers sized for them; other executors ignore it.
TRAINING_QUEUE = "training"

# Early enough for any replayed shop history (CDNOW starts in 1997): a run for an older logical date
# would be created without tasks. catchup is off, so the scheduler never fills the gap by itself.
HISTORY_START = pendulum.datetime(1990, 1, 1, tz="UTC")


def model_asset(family: str) -> Asset:
    """What a family's gate emits: its champion may have changed."""
    return Asset(f"retention://models/{family}")


@dag(
    schedule=(FEATURES | RETRAIN),
    start_date=HISTORY_START,
    catchup=False,
    max_active_runs=1,
    default_args=task_defaults("training"),  # a killed training resumes from its last checkpoint
    tags=["retention", "training"],
    doc_md=__doc__,
)
def train_models() -> None:
    @task(queue=TRAINING_QUEUE)
    def train(family: str, data_interval_end: pendulum.DateTime | None = None) -> dict:
        from pipelines.training import task_train_or_skip

        # data up to the run's interval end: a rerun after later data trains the same model
        return task_train_or_skip(family, before=data_interval_end)

    @task
    def gate(family: str, trained: dict) -> dict:
        from pipelines.training import task_gate

        return task_gate(family, trained["version"])

    @task(trigger_rule="all_done")  # a failed family must not keep the other's answers stale
    def materialise_results() -> dict[str, int]:
        from pipelines.materialise import task_materialise

        return task_materialise(None)  # up to the published warehouse's end

    materialised = materialise_results()
    for family in FAMILY_NAMES:  # one train -> gate chain per registered model family
        trained = train.override(task_id=f"train_{family}")(family)
        # `trained` is an XComArg, which Airflow resolves to the dict at run time; its mypy plugin
        # for this is not shipped (apache/airflow#39514).
        gated = gate.override(task_id=f"gate_{family}", outlets=[model_asset(family)])(family, trained)  # type: ignore[arg-type]
        if family in ("return", "recommender"):  # the families serving answers with
            gated >> materialised


train_models()
