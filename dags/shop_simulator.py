"""Shop simulator DAG: adds each day's simulated shop activity to the source database.

It stands in for a live shop in demos and tests, so every extraction interval finds new data.
Each run generates exactly the days of its data interval; re-running an interval adds nothing.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task
from airflow.timetables.interval import CronDataIntervalTimetable

from pipelines.operations import task_defaults


@dag(
    # Data intervals of one whole day (Airflow 3's plain cron schedules have zero-length intervals).
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),  # = params.yaml simulate.start
    catchup=False,
    max_active_runs=1,
    default_args=task_defaults(),
    tags=["retention", "source"],
    doc_md=__doc__,
)
def shop_simulator() -> None:
    @task
    def simulate_interval(
        data_interval_start: pendulum.DateTime | None = None,
        data_interval_end: pendulum.DateTime | None = None,
    ) -> dict:
        from pipelines.simulate import simulate_interval

        assert data_interval_start is not None and data_interval_end is not None, "a daily timetable"
        return simulate_interval(data_interval_start.date(), data_interval_end.date())

    simulate_interval()


shop_simulator()
