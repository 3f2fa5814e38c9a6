"""DAGs under real Airflow: DagBag imports cleanly; the simulator and extraction DAGs run and rerun idempotently."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import text

from retention.db import create_db_engine
from tests.conftest import ROOT, table_counts

BIN = Path(sys.executable).parent


@pytest.fixture
def airflow_env(tmp_path: Path, migrated_home: Path) -> dict[str, str]:
    """Environment of an isolated Airflow (SQLite metadata) pointed at the project's dags/.

    The platform database is migrated first, as `retention init` does before any DAG runs.
    """
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "RETENTION_HOME": str(migrated_home),
    }
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (
        f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


def _dagbag_report(expression: str, env: dict[str, str]) -> dict:
    """Evaluate `expression` (a JSON-able value of `bag`, the project's DagBag) in a fresh Airflow process."""
    script = (
        "import json; from airflow.dag_processing.dagbag import DagBag; "
        f"bag = DagBag(dag_folder={str(ROOT / 'dags')!r}); print(json.dumps({expression}))"
    )
    return json.loads(_run([str(BIN / "python"), "-c", script], env).stdout.strip().splitlines()[-1])


def test_dagbag_imports_without_errors(airflow_env: dict[str, str]) -> None:
    report = _dagbag_report(
        "{'errors': {k: str(v) for k, v in bag.import_errors.items()}, "
        "'dags': {i: sorted(d.task_ids) for i, d in bag.dags.items()}}",
        airflow_env,
    )
    assert report["errors"] == {}
    assert report["dags"]["shop_simulator"] == ["simulate_interval"]
    assert report["dags"]["shop_extract"] == sorted(
        [
            "extract",
            "validate",
            "publish",
            "score_reviews",
            "refresh_online_features",
            "refresh_customer_states",
            "materialise_results",
        ]
    )
    assert report["dags"]["train_models"] == [
        "gate_recommender",
        "gate_return",
        "gate_uplift",
        "materialise_results",
        "train_recommender",
        "train_return",
        "train_uplift",
    ]
    assert report["dags"]["retention_campaign"] == [
        "measure_lift",
        "merge_list",
        "plan_list",
        "publish_list",
        "score_shard",
        "validate_list",
    ]
    assert report["dags"]["housekeeping"] == ["enforce_retention"]  # the retention periods, daily
    assert report["dags"]["monitor"] == ["check", "request_retrain", "threshold_crossed"]


def test_every_task_retries_with_backoff_has_a_timeout_and_alerts_on_failure(
    airflow_env: dict[str, str],
) -> None:
    from retention.params import load_params

    report = _dagbag_report(
        "{f'{d}.{t.task_id}': [t.retries, t.retry_exponential_backoff, "
        "t.execution_timeout.total_seconds() if t.execution_timeout else None, "
        "[f'{c.__module__}.{c.__name__}' for c in (t.on_failure_callback if isinstance("
        "t.on_failure_callback, list) else [t.on_failure_callback] if t.on_failure_callback else [])]] "
        "for d, dag in bag.dags.items() for t in dag.tasks}",
        airflow_env,
    )
    operations = load_params(ROOT / "params.yaml").operations
    assert len(report) >= 20  # every task of every DAG
    for task, (retries, backoff, timeout, callbacks) in report.items():
        training = task.startswith("train_models.")
        minutes = operations.training_timeout_minutes if training else operations.task_timeout_minutes
        assert (retries, backoff, timeout) == (operations.retries, 2.0, minutes * 60.0), task
        assert callbacks == ["pipelines.operations.alert_on_failure"], task


def test_training_dag_is_scheduled_on_the_features_asset(airflow_env: dict[str, str]) -> None:
    report = _dagbag_report(
        "{'assets': [a.uri for a in bag.dags['train_models'].timetable.asset_condition.objects], "
        "'upstream': {t.task_id: sorted(t.upstream_task_ids) for t in bag.dags['train_models'].tasks}, "
        "'outlets': {t.task_id: [a.uri for a in t.outlets] for t in bag.dags['train_models'].tasks}}",
        airflow_env,
    )
    assert report["assets"] == ["retention://features/online", "retention://models/return/retrain"]
    assert report["upstream"] == {  # the families train in parallel; each is gated after its training
        "train_recommender": [],
        "train_return": [],
        "train_uplift": [],
        "gate_recommender": ["train_recommender"],
        "gate_return": ["train_return"],
        "gate_uplift": ["train_uplift"],
        "materialise_results": ["gate_recommender", "gate_return"],  # serving's answers, whatever was decided
    }
    assert report["outlets"] == {  # each gate announces its family's champion asset
        "train_recommender": [],
        "train_return": [],
        "train_uplift": [],
        "gate_recommender": ["retention://models/recommender"],
        "gate_return": ["retention://models/return"],
        "gate_uplift": ["retention://models/uplift"],
        "materialise_results": [],
    }


def test_monitor_dag_runs_after_extraction_and_emits_retrain_only_past_a_threshold(
    airflow_env: dict[str, str],
) -> None:
    report = _dagbag_report(
        "{'assets': [a.uri for a in bag.dags['monitor'].timetable.asset_condition.objects], "
        "'upstream': {t.task_id: sorted(t.upstream_task_ids) for t in bag.dags['monitor'].tasks}, "
        "'outlets': {t.task_id: [a.uri for a in t.outlets] for t in bag.dags['monitor'].tasks}, "
        "'extract_outlets': sorted(a.uri for t in bag.dags['shop_extract'].tasks for a in t.outlets)}",
        airflow_env,
    )
    assert report["assets"] == ["retention://features/online"]  # what the extraction DAG emits last
    assert "retention://features/online" in report["extract_outlets"]
    assert report["upstream"] == {
        "check": [],
        "threshold_crossed": ["check"],  # a short circuit: False skips the retrain request
        "request_retrain": ["check", "threshold_crossed"],
    }
    assert report["outlets"] == {
        "check": [],
        "threshold_crossed": [],
        "request_retrain": ["retention://models/return/retrain"],
    }


def test_campaign_dag_maps_the_scoring_over_shards_and_merges_once(airflow_env: dict[str, str]) -> None:
    report = _dagbag_report(
        "{'upstream': {t.task_id: sorted(t.upstream_task_ids) for t in bag.dags['retention_campaign'].tasks}, "
        "'mapped': sorted(t.task_id for t in bag.dags['retention_campaign'].tasks if t._is_mapped)}",
        airflow_env,
    )
    assert report["mapped"] == ["score_shard"]  # one task instance per shard (campaign.shards)
    assert report["upstream"] == {
        "plan_list": [],
        "score_shard": ["plan_list"],
        "merge_list": ["plan_list", "score_shard"],
        "validate_list": ["merge_list"],
        "publish_list": ["merge_list", "validate_list"],
        "measure_lift": ["publish_list"],
    }


def test_campaign_dag_runs_on_the_schedule_of_params_yaml(airflow_env: dict[str, str]) -> None:
    from retention.params import load_params

    report = _dagbag_report("bag.dags['retention_campaign'].timetable.expression", airflow_env)
    assert report == load_params(ROOT / "params.yaml").campaign.schedule


# The default suite's one real DAG run (~30 s); the other DAG runs are marked `integration`.
def test_shop_simulator_runs_its_interval_once(airflow_env: dict[str, str], isolated_env: Path) -> None:
    _run([str(BIN / "airflow"), "db", "migrate"], airflow_env)
    _run([str(BIN / "airflow"), "dags", "test", "shop_simulator", "2026-01-05"], airflow_env)
    engine = create_db_engine(f"sqlite:///{isolated_env / 'retention.db'}")
    try:
        first = table_counts(engine)
        assert first["events"] > 0 and first["customers"] > 0
        _run([str(BIN / "airflow"), "dags", "test", "shop_simulator", "2026-01-05"], airflow_env)
        assert table_counts(engine) == first  # same interval again: nothing new
    finally:
        engine.dispose()


def _warehouse(engine) -> dict:  # noqa: ANN001
    with engine.connect() as connection:
        counts = {
            t: connection.execute(text(f"SELECT count(*) FROM wh_{t}")).scalar_one()
            for t in ("events", "customers")
        }
        counts["online"] = connection.execute(text("SELECT count(*) FROM online_features")).scalar_one()
        counts["batches"] = connection.execute(
            text("SELECT batch_id, status, attempts FROM platform_batches ORDER BY batch_id")
        ).all()
    return counts


@pytest.mark.integration  # Airflow subprocesses (db migrate, dags test): a minute or more
def test_shop_extract_publishes_refreshes_features_and_reruns_idempotently(
    airflow_env: dict[str, str], isolated_env: Path
) -> None:
    _run([str(BIN / "retention"), "simulate", "--customers", "150", "--days", "6"], airflow_env)
    _run([str(BIN / "airflow"), "db", "migrate"], airflow_env)
    _run([str(BIN / "airflow"), "dags", "test", "shop_extract", "2026-01-03"], airflow_env)
    engine = create_db_engine(f"sqlite:///{isolated_env / 'retention.db'}")
    try:
        first = _warehouse(engine)
        assert first["events"] > 0 and first["customers"] == 150
        assert first["online"] > 0  # the online store was refreshed after the publish
        # The run of logical date 2026-01-03 covers the day that ends then.
        assert [(b, s) for b, s, _ in first["batches"]] == [("20260102T0000-20260103T0000", "published")]
        _run([str(BIN / "airflow"), "dags", "test", "shop_extract", "2026-01-03"], airflow_env)
        again = _warehouse(engine)
        assert {k: v for k, v in again.items() if k != "batches"} == {
            k: v for k, v in first.items() if k != "batches"
        }
        assert again["batches"][0][2] == 2  # same interval: one batch row, a second attempt
    finally:
        engine.dispose()


@pytest.mark.slow
@pytest.mark.timeout(2400)  # 30 full DAG runs, each a fresh Airflow process
def test_a_30_day_backfill_through_airflow_publishes_every_day(
    airflow_env: dict[str, str], isolated_env: Path
) -> None:
    _run([str(BIN / "retention"), "simulate", "--customers", "300", "--days", "31"], airflow_env)
    _run([str(BIN / "airflow"), "db", "migrate"], airflow_env)
    for day in range(2, 32):  # logical dates 01-02 .. 01-31 cover the days 01-01 .. 01-30
        _run([str(BIN / "airflow"), "dags", "test", "shop_extract", f"2026-01-{day:02d}"], airflow_env)
    engine = create_db_engine(f"sqlite:///{isolated_env / 'retention.db'}")
    try:
        with engine.connect() as connection:
            statuses = connection.execute(
                text("SELECT status, count(*) FROM platform_batches GROUP BY status")
            ).all()
            source = connection.execute(
                text("SELECT count(*) FROM events WHERE ts < '2026-01-31'")
            ).scalar_one()
            stored = connection.execute(text("SELECT count(*) FROM wh_events")).scalar_one()
        assert statuses == [("published", 30)]
        assert stored == source  # every event of the 30 days, late rows included, exactly once
    finally:
        engine.dispose()


@pytest.mark.integration  # Airflow subprocesses (db migrate, dags test): a minute or more
def test_train_models_registers_both_models_and_reruns_without_retraining(
    airflow_env: dict[str, str], isolated_env: Path, tmp_path: Path
) -> None:
    import mlflow
    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["training"].update(max_epochs=2)
    params["recommender"]["sasrec"].update(max_epochs=2)  # SASRec's own bound (200 in params.yaml)
    params["return"].update(ensemble=1)
    small = tmp_path / "params.yaml"
    small.write_text(yaml.safe_dump(params))
    env = {**airflow_env, "RETENTION_PARAMS": str(small)}
    _run([str(BIN / "retention"), "simulate", "--customers", "200", "--days", "60"], env)
    _run(
        [
            str(BIN / "retention"),
            "extract",
            "--start",
            "2026-01-01",
            "--end",
            "2026-03-02",
            "--step-days",
            "60",
        ],
        env,
    )
    _run([str(BIN / "airflow"), "db", "migrate"], env)
    for _ in range(2):  # the second run finds the same data, parameters and code: it reuses the versions
        _run([str(BIN / "airflow"), "dags", "test", "train_models", "2026-03-02"], env)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{isolated_env / 'mlflow.db'}")
    for name in ("retention-return", "retention-recommender"):
        versions = client.search_model_versions(f"name = '{name}'")
        assert [int(v.version) for v in versions] == [1], name
        run = client.get_run(versions[0].run_id)
        assert run.data.tags["airflow_run_id"] != "none"  # the Airflow run that trained it is on record
        # The gate decided once (the rerun returned the recorded decision) and said why.
        assert versions[0].tags["gate.decision"] in ("promoted", "rejected")
        assert versions[0].tags["gate.reason"]
        engine = create_db_engine(f"sqlite:///{isolated_env / 'retention.db'}")
        with engine.connect() as connection:
            decisions = (
                connection.execute(
                    text("SELECT action FROM platform_model_decisions WHERE registered_name = :n"),
                    {"n": name},
                )
                .scalars()
                .all()
            )
        engine.dispose()
        assert decisions == [versions[0].tags["gate.decision"]]


@pytest.fixture
def platform_airflow_env(airflow_env: dict[str, str], on_trained_platform) -> dict[str, str]:  # noqa: ANN001
    """Airflow's environment pointed at (a private copy of) the trained platform, metadata migrated."""
    keys = ("RETENTION_HOME", "RETENTION_PARAMS", "RETENTION_DATABASE_URL", "MLFLOW_TRACKING_URI")
    env = {**airflow_env, **{k: os.environ[k] for k in keys}}
    _run([str(BIN / "airflow"), "db", "migrate"], env)
    return env


@pytest.mark.integration  # Airflow subprocesses (db migrate, dags test): a minute or more
def test_campaign_dag_publishes_a_validated_list_and_reruns_idempotently(
    platform_airflow_env: dict[str, str],
) -> None:
    env = platform_airflow_env
    engine = create_db_engine(env["RETENTION_DATABASE_URL"])
    query = text(
        "SELECT campaign_id, n_targets, n_control, content_hash, published_at FROM platform_campaigns"
    )
    published = []
    for _ in range(2):  # the data interval ending 2026-04-01; the rerun must change nothing
        _run([str(BIN / "airflow"), "dags", "test", "retention_campaign", "2026-04-01"], env)
        with engine.connect() as connection:
            published.append(connection.execute(query).all())
            targets = (
                connection.execute(  # the listed rows: contacts and hold-outs (untreated are logged too)
                    text(
                        "SELECT COUNT(*) FROM platform_campaign_targets WHERE arm IN ('treatment', 'control')"
                    )
                ).scalar_one()
            )
    engine.dispose()
    assert len(published[0]) == 1 and published[0] == published[1]
    campaign_id, n_targets, n_control, _, _ = published[0][0]
    assert campaign_id == "winback-2026-04-01" and targets == n_targets > 0
    export = pd.read_parquet(Path(env["RETENTION_HOME"]) / "campaigns" / campaign_id / "targets.parquet")
    assert len(export) == n_targets and export["customer_id"].is_unique
    assert (export["action"] != "contact").sum() == n_control


@pytest.mark.integration  # Airflow subprocesses (db migrate, dags test): a minute or more
def test_campaign_dag_fails_and_publishes_nothing_when_gx_rejects_the_list(
    platform_airflow_env: dict[str, str],
) -> None:
    env = platform_airflow_env
    engine = create_db_engine(env["RETENTION_DATABASE_URL"])
    with engine.begin() as connection:  # a catalogue taken off sale: no target can get a recommendation
        connection.execute(text("UPDATE wh_products SET active = :f"), {"f": False})
    args = [str(BIN / "airflow"), "dags", "test", "retention_campaign", "2026-04-01"]
    result = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert "expect_column_values_to_be_between(n_recommendations)" in output
    with engine.connect() as connection:
        assert connection.execute(text("SELECT COUNT(*) FROM platform_campaigns")).scalar_one() == 0
    engine.dispose()


@pytest.mark.integration  # Airflow subprocesses (db migrate, dags test): a minute or more
def test_monitor_dag_stores_its_row_and_emits_retrain_when_a_threshold_is_crossed(
    airflow_env: dict[str, str],
    trained_platform,  # noqa: ANN001
    tmp_path: Path,
) -> None:
    import sqlite3
    from contextlib import closing

    import yaml

    from tests.trained_platform import private_platform

    platform = private_platform(trained_platform, tmp_path / "platform")  # monitoring writes MLflow runs
    params = yaml.safe_load(platform.params_path.read_text())
    thresholds = {  # never / always crossed
        "never": {"psi_warn": 1e9, "psi_alert": 1e9},
        "always": {"psi_warn": 1e-6, "psi_alert": 1e-6, "pvalue": 0.999999, "min_rows": 2},
    }
    engine = create_db_engine(platform.database_url)
    found = []
    for name, values in thresholds.items():  # the same interval twice: the second run replaces the row
        path = tmp_path / f"params-{name}.yaml"
        path.write_text(yaml.safe_dump({**params, "monitoring": values}))
        env = {**airflow_env, **platform.env, "RETENTION_PARAMS": str(path)}
        if name == "never":
            _run([str(BIN / "airflow"), "db", "migrate"], env)
        _run([str(BIN / "airflow"), "dags", "test", "monitor", "2026-04-01"], env)
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT status, retrain FROM platform_monitoring")).all()
        with closing(sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db")) as connection:
            events = connection.execute(
                "SELECT a.uri FROM asset_event e JOIN asset a ON a.id = e.asset_id"
            ).fetchall()
        found.append((rows, events))
    engine.dispose()
    assert found[0] == ([("ok", False)], [])  # nothing crossed: request_retrain skipped, no Asset event
    assert found[1] == ([("alert", True)], [("retention://models/return/retrain",)])
