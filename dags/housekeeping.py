"""Daily housekeeping: the retention periods of params.yaml's `privacy` section, as of the interval's end.

Deletes raw events (source and warehouse) older than `raw_events_days`, quarantined batches older
than `quarantine_days`, staged batches and campaign builds older than `staging_days`, and campaign
exports older than `exports_days` (see pipelines/privacy/housekeeping.py). Ages count back from the
data interval's end, so rerunning an interval deletes nothing more.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task
from airflow.timetables.interval import CronDataIntervalTimetable

from pipelines.operations import task_defaults


@dag(
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=task_defaults(),
    tags=["retention", "privacy"],
    doc_md=__doc__,
)
def housekeeping() -> None:
    @task
    def enforce_retention(data_interval_end: pendulum.DateTime | None = None) -> dict[str, int]:
        from pipelines.privacy.housekeeping import housekeep

        assert data_interval_end is not None, "a daily timetable"
        return housekeep(data_interval_end)

    enforce_retention()


housekeeping()
