"""The CeleryExecutor for real: a scheduler, two Celery workers (separate processes) and the local Redis.

What the compose `celery` profile deploys, run natively on loopback: MLflow on PostgreSQL, the
platform database on PostgreSQL, Airflow's api-server, scheduler and dag-processor with
`AIRFLOW__CORE__EXECUTOR=CeleryExecutor`, and two `airflow celery worker` processes that consume
the `training` and `default` queues with one task slot each. The broker is the machine's Redis
(`RETENTION_TEST_REDIS_URL`), every key under a prefix of this run (kombu's `global_keyprefix`),
deleted afterwards; the workers' results go to a SQLite file of the run. Each worker names itself
on the task instances it runs (`[core] hostname_callable`, tests/deploy/worker_name.py), since
both share this machine's hostname.

The training DAG's two long tasks (`train_return`, `train_recommender`, on the `training` queue)
run at the same time, so with one slot per worker they land on different workers. Then the
worker running `train_recommender` is killed mid-task (SIGKILL to its whole process group, as a
lost machine): the scheduler notices the missing heartbeats, the task is retried on the other
worker (the DAG sets `retries`), and the run completes. Nothing is duplicated: each family has
exactly one registered model version and one gate decision.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from retention.db import create_db_engine
from retention.db.scratch import private_schema
from tests.conftest import POSTGRES_URL, ROOT
from tests.deploy.test_native_stack import (
    FINISHED,
    LOGICAL_DATE,
    SHOP_START,
    Stack,
    _environment,
    _free_port,
    _signal_group,
    _wait_for_dags,
)

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.timeout(900)]

BIN = Path(sys.executable).parent
REDIS_URL = os.environ.get("RETENTION_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
WORKERS = ("worker-a", "worker-b")
HEARTBEAT_TIMEOUT_S = 20  # how long the scheduler waits for a killed task's heartbeat (300 s by default)
RUN_TIMEOUT_S = 480


def _remove_keys(prefix: str) -> None:
    """Delete this run's broker keys (a clear failure, not a skip, when Redis is not there)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
    except redis.ConnectionError as error:
        pytest.fail(f"Redis at {REDIS_URL} is needed for this test (RETENTION_TEST_REDIS_URL): {error}")
    finally:
        client.close()


def _celery_environment(
    tmp_path: Path, database_url: str, mlflow_port: int, airflow_port: int, prefix: str
) -> dict:
    env = _environment(tmp_path, database_url, mlflow_port, airflow_port)
    env.update(
        {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CELERY__BROKER_URL": REDIS_URL,
            # Every broker key (queues, bindings, the workers' control box) carries this run's prefix:
            # other users of the same Redis db are never touched, nor touch this run's queues.
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": prefix,
            # The workers' results in a SQLite file of the run (Celery's database backend).
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+sqlite:///{tmp_path / 'celery-results.db'}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",  # one task slot per worker
            # The scheduler's own cap stays above the workers' slots: a killed worker's task keeps
            # one executor slot until its result is known (never, here).
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.deploy.worker_name.worker_name",
            "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "2",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT_S),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            "AIRFLOW__API__WORKERS": "1",
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
        }
    )
    return env


@pytest.fixture
def celery_stack(tmp_path: Path) -> Iterator[Stack]:
    """MLflow, Airflow (api-server, scheduler, dag-processor) and two Celery workers on loopback."""
    prefix = f"retention-test-{uuid.uuid4().hex[:12]}:"
    with ExitStack() as cleanup:
        _remove_keys(prefix)  # fails clearly when Redis is not there
        cleanup.callback(_remove_keys, prefix)
        database_url = cleanup.enter_context(private_schema(POSTGRES_URL, prefix="it_retention"))
        mlflow_store = cleanup.enter_context(private_schema(POSTGRES_URL, prefix="it_mlflow"))
        mlflow_port, airflow_port = _free_port(), _free_port()
        logs = tmp_path / "logs"
        logs.mkdir()
        stack = Stack(
            env=_celery_environment(tmp_path, database_url, mlflow_port, airflow_port, prefix),
            logs=logs,
            mlflow_url=f"http://127.0.0.1:{mlflow_port}",
            airflow_url=f"http://127.0.0.1:{airflow_port}",
            database_url=database_url,
        )
        cleanup.callback(stack.stop)  # every process group, even when the test failed
        stack.start_services(mlflow_store, tmp_path / "mlflow-artifacts")
        for name in WORKERS:
            stack.env["RETENTION_TEST_WORKER_NAME"] = name
            # Each worker serves its task logs on a port of its own (8793 for both would clash).
            stack.env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(_free_port())
            # fmt: off
            stack.start(name, [
                str(BIN / "airflow"), "celery", "worker", "--queues", "training,default",
                "--concurrency", "1", "--celery-hostname", f"{name}@%h", "--without-mingle",
                "--without-gossip",
            ])
            # fmt: on
        for worker_only in ("RETENTION_TEST_WORKER_NAME", "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"):
            stack.env.pop(worker_only)
        stack.wait_and_log_in()
        _wait_for_workers(stack)
        yield stack


def _wait_for_workers(stack: Stack, timeout_s: float = 180) -> None:
    """Until both workers answer a Celery ping (they consume their queues from then on)."""
    deadline = time.monotonic() + timeout_s
    args = [
        str(BIN / "celery"),
        "--app",
        "airflow.providers.celery.executors.celery_executor.app",
        "inspect",
        "ping",
        "--json",
    ]
    answered: set[str] = set()
    while time.monotonic() < deadline:
        stack.check_alive()
        result = subprocess.run(args, env=stack.env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        if result.returncode == 0:
            answered = {name.split("@")[0] for name in json.loads(result.stdout.strip().splitlines()[-1])}
            if set(WORKERS) <= answered:
                return
        time.sleep(2)
    raise AssertionError(f"workers answering: {answered} after {timeout_s:.0f} s\n{stack.tail()}")


def _task_instances(stack: Stack, path: str) -> dict[str, dict[str, Any]]:
    return {t["task_id"]: t for t in stack.api("GET", f"{path}/taskInstances")["task_instances"]}


def _tries(stack: Stack, path: str, task_id: str) -> list[dict[str, Any]]:
    return stack.api("GET", f"{path}/taskInstances/{task_id}/tries")["task_instances"]


def test_training_runs_on_two_celery_workers_and_survives_a_killed_worker(celery_stack: Stack) -> None:
    stack = celery_stack
    # Given a 60-day shop extracted into the warehouse (the CLI runs the extraction DAG's functions)
    stack.cli(str(BIN / "retention"), "simulate", "--customers", "200", "--days", "60")
    # fmt: off
    stack.cli(str(BIN / "retention"), "extract", "--start", SHOP_START, "--end", "2026-03-02",
              "--step-days", "60")
    # fmt: on
    _wait_for_dags(stack, ["train_models"])
    stack.api("PATCH", "/api/v2/dags/train_models", {"is_paused": False})

    # When the training DAG runs, and the worker training the recommender is killed mid-task
    run = stack.api("POST", "/api/v2/dags/train_models/dagRuns", {"logical_date": LOGICAL_DATE, "conf": {}})
    path = f"/api/v2/dags/train_models/dagRuns/{run['dag_run_id']}"
    first: dict[str, str] = {}
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while len(first) < 2 and time.monotonic() < deadline:  # until both trainings run (try 1)
        stack.check_alive()
        tasks = _task_instances(stack, path)
        for task_id in ("train_return", "train_recommender"):
            ti = tasks[task_id]
            if ti["state"] == "running" and ti["hostname"] and ti["try_number"] == 1:
                first[task_id] = ti["hostname"]
        assert all(tasks[t]["state"] not in ("success", "failed") for t in first), (tasks, stack.tail())
        time.sleep(1)
    assert len(first) == 2, f"both trainings never ran at once: {first}\n{stack.tail(80)}"
    # Then they run on different workers
    assert first["train_return"] != first["train_recommender"], first
    assert set(first.values()) == set(WORKERS)
    victim = first["train_recommender"]
    time.sleep(3)  # mid-task: its runner has started training
    _signal_group(stack.processes[victim], signal.SIGKILL)
    stack.processes.pop(victim).wait()

    while time.monotonic() < deadline:
        stack.check_alive()
        run = stack.api("GET", path)
        if run["state"] in FINISHED:
            break
        time.sleep(3)
    tasks = _task_instances(stack, path)
    states = {t: ti["state"] for t, ti in tasks.items()}
    # And the run still completes: the killed task was retried on the surviving worker
    assert run["state"] == "success", f"{states}\n{stack.tail(80)}"
    survivor = next(w for w in WORKERS if w != victim)
    recommender = tasks["train_recommender"]
    assert recommender["try_number"] == 2 and recommender["hostname"] == survivor, recommender
    tries = {t["try_number"]: t for t in _tries(stack, path, "train_recommender")}
    assert tries[1]["hostname"] == victim and tries[1]["state"] in ("failed", "up_for_retry"), tries[1]
    assert tasks["train_return"]["try_number"] == 1 and tasks["train_return"]["state"] == "success"

    # With nothing duplicated: one registered version and one gate decision per trained family
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=stack.mlflow_url, registry_uri=stack.mlflow_url)
    engine = create_db_engine(stack.database_url)
    try:
        with engine.connect() as connection:
            decisions = connection.execute(
                text(
                    "SELECT registered_name, count(*) FROM platform_model_decisions GROUP BY registered_name"
                )
            ).all()
    finally:
        engine.dispose()
    for name in ("retention-return", "retention-recommender"):
        versions = client.search_model_versions(f"name = '{name}'")
        assert [int(v.version) for v in versions] == [1], (name, versions)
    assert dict(decisions) == {"retention-return": 1, "retention-recommender": 1}, decisions
