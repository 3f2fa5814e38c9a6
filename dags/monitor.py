"""Monitor the champion return model after each extraction; request retraining when it has drifted.

Scheduled on the `features` Asset that the extraction DAG emits once the warehouse and the online
store are refreshed. As of the newest published warehouse interval, `check` compares the current
population's features and the champion's P(return) with those of the population it was measured
on at training (PSI and a two-sample test per feature, thresholds in params.yaml `monitoring`),
scores its matured campaign predictions against their outcomes, and writes the result to
`platform_monitoring` and to an MLflow run (tag role=monitoring) in the model's experiment; a
rerun replaces both. When the run's status is `alert`, `request_retrain` emits the `retrain`
Asset (and an alert has been sent); otherwise it is skipped and emits nothing.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, dag, task

from pipelines.operations import task_defaults

FEATURES = Asset("retention://features/online")
RETRAIN = Asset("retention://models/return/retrain")

# Early enough for any replayed shop history (CDNOW starts in 1997): a run for an older logical date
# would be created without tasks. catchup is off, so the scheduler never fills the gap by itself.
HISTORY_START = pendulum.datetime(1990, 1, 1, tz="UTC")


@dag(
    schedule=[FEATURES],
    start_date=HISTORY_START,
    catchup=False,
    max_active_runs=1,
    default_args=task_defaults(),
    tags=["retention", "monitoring"],
    doc_md=__doc__,
)
def monitor() -> None:
    @task
    def check() -> dict:
        from pipelines.monitoring import task_monitor

        return task_monitor(None)  # as of the newest published warehouse interval

    @task.short_circuit  # False skips `request_retrain`: no Asset event
    def threshold_crossed(report: dict) -> bool:
        return bool(report["retrain"])

    @task(outlets=[RETRAIN])
    def request_retrain(report: dict) -> dict:
        return {k: report.get(k) for k in ("registered_name", "version", "as_of", "status")}

    report = check()
    # Tasks take the upstream XComArgs here, which Airflow resolves to the annotated values at run
    # time; its mypy plugin for this is not shipped (apache/airflow#39514), hence the ignores.
    threshold_crossed(report) >> request_retrain(report)  # type: ignore[arg-type]


monitor()
