"""Daily extraction: the data interval's shop rows -> GX validation -> warehouse (or quarantine) -> features.

Fact rows (events, orders, reviews) are taken by business time over the interval plus the
lateness of params.yaml, so rows that arrive late are picked up by a later run; customers and
products by their last change. A batch that fails a critical expectation is quarantined and the
run fails naming the expectations; warnings are recorded. Success publishes the batch atomically
and emits the `warehouse` Asset; the review sentiment scores and the online feature store are then
refreshed and the `features` Asset is emitted for the training and campaign DAGs. Beside them, the
champion recommender's customer states are brought up to date (only customers whose last items
changed are recomputed), so the campaign ranks products without encoding every history. Last, the
champions' answers are materialised for serving (churn scores with reasons, top-N lists; only
changed documents are written), so the API reads them instead of running a model per request.
Rerunning an interval changes nothing; a backfill is a loop of runs (see docs/operations.md).
An initial load takes a whole period in one run: trigger with conf `{"start": "YYYY-MM-DD"}` to
extract [start, data interval end) as one batch (what `retention run` does).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pendulum
from airflow.sdk import Asset, Param, dag, task
from airflow.timetables.interval import CronDataIntervalTimetable

from pipelines.operations import task_defaults

WAREHOUSE = Asset("retention://warehouse")
FEATURES = Asset("retention://features/online")

# Early enough for any replayed shop history (CDNOW starts in 1997): a run for an older logical date
# would be created without tasks. catchup is off, so the scheduler never fills the gap by itself.
HISTORY_START = pendulum.datetime(1990, 1, 1, tz="UTC")


@dag(
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=HISTORY_START,
    catchup=False,
    max_active_runs=1,  # intervals publish in order: the volume check reads earlier batches
    default_args=task_defaults(),  # a rejected batch fails at once (AirflowFailException)
    tags=["retention", "warehouse", "features"],
    doc_md=__doc__,
    params={
        "start": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Initial load: extract from this day (YYYY-MM-DD) to the interval's end in one batch.",
        )
    },
)
def shop_extract() -> None:
    @task
    def extract(
        data_interval_start: pendulum.DateTime | None = None,
        data_interval_end: pendulum.DateTime | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> str:
        from pipelines.extract import task_extract
        from pipelines.extract.run import initial_load_start

        assert data_interval_start is not None and data_interval_end is not None, "a daily timetable"
        start = initial_load_start((params or {}).get("start"), data_interval_start)
        return task_extract(start, data_interval_end)

    @task
    def validate(batch_dir: str) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from pipelines.extract import BatchRejected, task_validate

        try:
            return task_validate(batch_dir)
        except BatchRejected as rejected:  # quarantined: fail now, without retries
            raise AirflowFailException(str(rejected)) from rejected

    @task(outlets=[WAREHOUSE])
    def publish(batch_dir: str, validation: dict) -> dict:
        from pipelines.extract import task_publish

        return task_publish(batch_dir)

    @task
    def score_reviews(published: dict, data_interval_end: pendulum.DateTime | None = None) -> int:
        from pipelines.features import task_score_reviews

        assert data_interval_end is not None, "a daily timetable"
        return task_score_reviews(data_interval_end)

    @task(outlets=[FEATURES])
    def refresh_online_features(scored: int, data_interval_end: pendulum.DateTime | None = None) -> int:
        from pipelines.features import task_refresh_online

        assert data_interval_end is not None, "a daily timetable"
        return task_refresh_online(data_interval_end)

    @task
    def refresh_customer_states(published: dict, data_interval_end: pendulum.DateTime | None = None) -> int:
        from pipelines.campaigns.state_cache import task_refresh_states

        assert data_interval_end is not None, "a daily timetable"
        return task_refresh_states(data_interval_end)

    @task
    def materialise_results(
        online: int, states: int, data_interval_end: pendulum.DateTime | None = None
    ) -> dict[str, int]:
        from pipelines.materialise import task_materialise

        assert data_interval_end is not None, "a daily timetable"
        return task_materialise(data_interval_end)

    batch_dir = extract()
    # Tasks take the upstream XComArgs here, which Airflow resolves to the annotated values at run
    # time; its mypy plugin for this is not shipped (apache/airflow#39514), hence the ignores.
    published = publish(batch_dir, validate(batch_dir))  # type: ignore[arg-type]
    online = refresh_online_features(score_reviews(published))  # type: ignore[arg-type]
    states = refresh_customer_states(published)  # type: ignore[arg-type]
    materialise_results(online, states)  # type: ignore[arg-type]


shop_extract()
