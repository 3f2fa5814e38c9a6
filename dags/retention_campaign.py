"""Weekly retention campaign: score every active customer with the champions, select, validate, publish.

As-of is the data interval's end (the schedule is params.yaml `campaign.schedule`). The run first
checks that the warehouse is fresh up to as-of (`campaign.max_feature_age_hours`) and plans the
build (champion versions pinned, features validated once); `campaign.shards` mapped tasks then
score the customers of their shard (a hash of the customer id) in parallel, and one task merges
their parts and builds the target list (exclusions, value at stake, quotas, budget, a hashed
control group per risk decile, recommendations and reason codes), validates it with the
`campaign.targets` GX suite, and
publishes it atomically with its CSV and Parquet exports. A rerun of the same interval rebuilds
the same list and changes nothing. The last task measures the lift of earlier campaigns whose
horizon has passed and logs it to MLflow.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, dag, task

from pipelines.operations import task_defaults
from retention.params import load_params
from retention.settings import DEFAULT_PARAMS

CAMPAIGN = Asset("retention://campaigns")
SCHEDULE = load_params(DEFAULT_PARAMS).campaign.schedule

# Early enough for any replayed shop history (CDNOW starts in 1997): a run for an older logical date
# would be created without tasks. catchup is off, so the scheduler never fills the gap by itself.
HISTORY_START = pendulum.datetime(1990, 1, 1, tz="UTC")


@dag(
    schedule=SCHEDULE,
    start_date=HISTORY_START,
    catchup=False,
    max_active_runs=1,  # cooldowns read the campaigns published before
    default_args=task_defaults(),  # a rejected list fails at once (AirflowFailException)
    tags=["retention", "campaigns"],
    doc_md=__doc__,
)
def retention_campaign() -> None:
    @task
    def plan_list(data_interval_end: pendulum.DateTime | None = None) -> list[dict]:
        from airflow.sdk.exceptions import AirflowFailException

        from pipelines.campaigns.run import plan
        from pipelines.campaigns.score import CampaignError

        assert data_interval_end is not None, "a cron timetable"
        try:
            return plan(data_interval_end)
        except CampaignError as error:  # stale data or no champion: retrying will not help
            raise AirflowFailException(str(error)) from error

    @task  # a shard only reads and writes its own part: safe to retry (a lost worker)
    def score_shard(shard: dict) -> str:
        from pathlib import Path

        from pipelines.campaigns.shards import score_shard

        return str(score_shard(Path(shard["folder"]), shard["shard"]))

    @task
    def merge_list(shards: list[dict], parts: list[str]) -> str:
        # `parts` (the mapped outputs) orders this after every shard; merge finds them by the plan.
        from pathlib import Path

        from pipelines.campaigns.run import merge

        return str(merge(Path(shards[0]["folder"])))

    @task
    def validate_list(folder: str) -> dict:
        from pathlib import Path

        from airflow.sdk.exceptions import AirflowFailException

        from pipelines.campaigns.run import CampaignRejected, validate

        try:
            return validate(Path(folder))
        except CampaignRejected as rejected:
            raise AirflowFailException(str(rejected)) from rejected

    @task(outlets=[CAMPAIGN])
    def publish_list(folder: str, validation: dict) -> dict:
        from pathlib import Path

        from pipelines.campaigns.run import publish

        published = publish(Path(folder))
        return {k: published[k] for k in ("campaign_id", "n_targets", "n_control", "exports")}

    @task
    def measure_lift(published: dict) -> list[str]:
        from pipelines.campaigns.run import measure_lifts

        return measure_lifts()

    shards = plan_list()  # one spec per shard: params.yaml campaign.shards
    # Tasks take the upstream XComArgs here, which Airflow resolves to the annotated values at run
    # time; its mypy plugin for this is not shipped (apache/airflow#39514), hence the ignores.
    parts = score_shard.expand(shard=shards)
    folder = merge_list(shards, parts)  # type: ignore[arg-type]
    measure_lift(publish_list(folder, validate_list(folder)))  # type: ignore[arg-type]


retention_campaign()
