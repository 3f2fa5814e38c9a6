"""The compose stack run natively: MLflow on PostgreSQL and Airflow on loopback, DAGs driven by REST.

What docker-compose.yml deploys, minus Docker (these machines have no engine): a PostgreSQL-backed
`mlflow server` (artifacts proxied by the server), Airflow's api-server, scheduler and
dag-processor with the LocalExecutor and the project's DAGs, and the platform database on
PostgreSQL. The test simulates a small shop, then drives the real pipeline through Airflow's
REST API (/api/v2, JWT from /auth/token) the way an operator or CI would: the initial-load
extraction, training with the promotion gate, the weekly campaign.

Isolation on the shared server: the platform and MLflow each get a private schema of the test
database (MLflow's SQLAlchemy store and its Alembic table work under a non-public `search_path`).
Airflow's metadata stays on SQLite here: Airflow 3 opens an async engine beside the sync one and
its PostgreSQL driver (asyncpg) is not part of the locked stack (the image adds it).

The first champion: the gate promotes a first model only when it beats every baseline on the
latest window, which a 300-customer shop trained for a few epochs may or may not do. The test
asserts that the gate decided and recorded why; a model the gate rejected is then promoted by
hand with `retention models promote` (the operator's documented path, audited with its reason),
so the campaign DAG always has champions to score with. The test says which path it took.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
from sqlalchemy import text

from retention.db import create_db_engine
from retention.db.scratch import private_schema
from tests.conftest import POSTGRES_URL, ROOT
from tests.trained_platform import small_params

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.timeout(900)]

BIN = Path(sys.executable).parent
SHOP_START = "2026-01-01"  # params.yaml simulate.start
LOGICAL_DATE = "2026-03-02T00:00:00Z"  # the 60-day shop covers [2026-01-01, 2026-03-02)
KINDS = {"return": "retention-return", "recommender": "retention-recommender"}
RUN_TIMEOUT_S = 420  # one DAG run, polled
FINISHED = {"success", "failed"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Stack:
    """The running services, their addresses and a shared environment for CLI calls."""

    env: dict[str, str]
    logs: Path
    mlflow_url: str
    airflow_url: str
    database_url: str
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    log_files: list[IO[str]] = field(default_factory=list)
    token: str = ""

    def start(self, name: str, args: list[str]) -> None:
        """Start a service in its own process group (its task subprocesses die with it)."""
        log = (self.logs / f"{name}.log").open("w")
        self.log_files.append(log)
        self.processes[name] = subprocess.Popen(
            args, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def start_services(self, mlflow_store: str, artifacts: Path) -> None:
        """Migrate Airflow's and the platform's schemas, then start MLflow and Airflow's api-server,
        scheduler and dag-processor (each in its own process group)."""
        port = self.mlflow_url.rsplit(":", 1)[1]
        self.cli(str(BIN / "airflow"), "db", "migrate")  # also writes airflow.cfg before anyone races
        self.cli(str(BIN / "retention"), "init")  # the deployment's one migration of the platform schema
        # fmt: off
        self.start("mlflow", [
            str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", port,
            "--workers", "1", "--backend-store-uri", mlflow_store,
            "--artifacts-destination", str(artifacts),
            "--allowed-hosts", f"127.0.0.1:{port},localhost:{port}",
        ])
        # fmt: on
        for component in ("api-server", "scheduler", "dag-processor"):
            self.start(f"airflow-{component}", [str(BIN / "airflow"), component])

    def wait_and_log_in(self) -> None:
        """Wait until MLflow and Airflow answer, then keep an Airflow API token for `api`."""
        _wait_until_up(self, f"{self.mlflow_url}/health")
        _wait_until_up(self, f"{self.airflow_url}/api/v2/monitor/health")
        status, body = _get(
            f"{self.airflow_url}/auth/token",
            json.dumps({"username": "admin", "password": self.env["AIRFLOW_ADMIN_PASSWORD"]}).encode(),
        )
        assert status == 201, f"login failed: HTTP {status} {body[:300]!r}"
        self.token = json.loads(body)["access_token"]

    def stop(self) -> None:
        """SIGTERM every process group, then SIGKILL what is left after a grace period."""
        for process in self.processes.values():
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.processes.values():
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            _signal_group(process, signal.SIGKILL)  # also the group's orphans (task runners)
            process.wait()
        for log in self.log_files:
            log.close()

    def tail(self, lines: int = 40) -> str:
        """The end of every service log, for a failure message."""
        out = []
        for path in sorted(self.logs.glob("*.log")):
            content = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path.name}\n" + "\n".join(content))
        return "\n".join(out)

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise AssertionError(f"{name} exited with {process.returncode}\n{self.tail()}")

    def cli(self, *args: str, timeout: int = 300) -> str:
        result = subprocess.run(
            list(args), env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
        )
        assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result.stdout

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Call Airflow's REST API with the bearer token; returns the decoded JSON answer."""
        request = urllib.request.Request(
            f"{self.airflow_url}{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            raise AssertionError(f"{method} {path}: HTTP {error.code} {error.read()[:500]!r}") from None


def _signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def _get(url: str, data: bytes | None = None, timeout: float = 5) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _wait_until_up(stack: Stack, url: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stack.check_alive()
        try:
            if _get(url)[0] == 200:
                return
        except OSError:  # not listening yet
            pass
        time.sleep(1)
    raise AssertionError(f"{url} not up after {timeout_s:.0f} s\n{stack.tail()}")


def _environment(tmp_path: Path, database_url: str, mlflow_port: int, airflow_port: int) -> dict[str, str]:
    """The variables compose sets on its services, pointed at loopback addresses and temp folders."""
    home = tmp_path / "home"
    airflow_home = tmp_path / "airflow"
    airflow_home.mkdir(parents=True)
    params = small_params(tmp_path, **{"return": {"ensemble": 1}})
    passwords = airflow_home / "passwords.json"
    admin_password = secrets.token_urlsafe(16)  # generated per run, like the compose .env's
    passwords.write_text(json.dumps({"admin": admin_password}))
    airflow_url = f"http://127.0.0.1:{airflow_port}"
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "RETENTION_HOME": str(home),
        "RETENTION_PARAMS": str(params),
        "RETENTION_DATABASE_URL": database_url,
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",  # the two models train in parallel; the machine has 2 cores
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(airflow_port),
        "AIRFLOW__API__BASE_URL": airflow_url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{airflow_url}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW_ADMIN_PASSWORD": admin_password,  # read back by the test to log in, not by Airflow
        # Only the runs this test triggers: no cron runs for "now", no asset-triggered extra runs.
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
    }


@pytest.fixture
def native_stack(tmp_path: Path) -> Iterator[Stack]:
    """MLflow (PostgreSQL) and Airflow (api-server, scheduler, dag-processor) on free loopback ports."""
    with ExitStack() as cleanup:
        database_url = cleanup.enter_context(private_schema(POSTGRES_URL, prefix="it_retention"))
        mlflow_store = cleanup.enter_context(private_schema(POSTGRES_URL, prefix="it_mlflow"))
        mlflow_port, airflow_port = _free_port(), _free_port()
        logs = tmp_path / "logs"
        logs.mkdir()
        stack = Stack(
            env=_environment(tmp_path, database_url, mlflow_port, airflow_port),
            logs=logs,
            mlflow_url=f"http://127.0.0.1:{mlflow_port}",
            airflow_url=f"http://127.0.0.1:{airflow_port}",
            database_url=database_url,
        )
        cleanup.callback(stack.stop)  # runs before the schemas are dropped
        stack.start_services(mlflow_store, tmp_path / "mlflow-artifacts")
        stack.wait_and_log_in()
        yield stack


def _wait_for_dags(stack: Stack, dag_ids: list[str], timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stack.check_alive()
        known = {d["dag_id"] for d in stack.api("GET", "/api/v2/dags?limit=100")["dags"]}
        if set(dag_ids) <= known:
            return
        time.sleep(2)
    errors = stack.api("GET", "/api/v2/importErrors")
    raise AssertionError(f"DAGs not parsed after {timeout_s:.0f} s: {errors}\n{stack.tail()}")


def _run_dag(stack: Stack, dag_id: str, conf: dict[str, Any] | None = None) -> dict[str, Any]:
    """Trigger a run through the REST API, poll it to the end and return it (fails unless success)."""
    run = stack.api(
        "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": LOGICAL_DATE, "conf": conf or {}}
    )
    path = f"/api/v2/dags/{dag_id}/dagRuns/{run['dag_run_id']}"
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while run["state"] not in FINISHED and time.monotonic() < deadline:
        stack.check_alive()
        time.sleep(3)
        run = stack.api("GET", path)
    if run["state"] != "success":
        tasks = stack.api("GET", f"{path}/taskInstances")["task_instances"]
        states = {t["task_id"]: t["state"] for t in tasks}
        raise AssertionError(f"{dag_id} run ended {run['state']}: {states}\n{stack.tail(80)}")
    return run


def _versions(tracking_uri: str) -> dict[str, Any]:
    """{kind: the registered version} read back over the MLflow server's HTTP API."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    out = {}
    for kind, name in KINDS.items():
        versions = client.search_model_versions(f"name = '{name}'")
        assert [int(v.version) for v in versions] == [1], f"{name}: {versions}"
        out[kind] = versions[0]
    return out


def test_pipeline_through_airflow_rest_on_postgres_mlflow(native_stack: Stack) -> None:
    stack = native_stack
    # Given a 60-day shop of 300 customers in the platform database on PostgreSQL
    stack.cli(str(BIN / "retention"), "simulate", "--customers", "300", "--days", "60")
    _wait_for_dags(stack, ["shop_extract", "train_models", "retention_campaign"])
    for dag_id in ("shop_extract", "train_models", "retention_campaign"):
        stack.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

    # When the initial load, training and the campaign run through Airflow's REST API
    _run_dag(stack, "shop_extract", {"start": SHOP_START})
    _run_dag(stack, "train_models")
    versions = _versions(stack.mlflow_url)
    manual = []
    for kind, version in versions.items():
        # The gate decided on every new version and said why (tags and audit table).
        assert version.tags["gate.decision"] in ("promoted", "rejected"), version.tags
        assert version.tags["gate.reason"]
        if version.tags["gate.decision"] == "rejected":  # a tiny shop: promote by hand, audited
            reason = f"native-stack test: gate rejected ({version.tags['gate.reason']})"
            stack.cli(str(BIN / "retention"), "models", "promote", "1", "--model", kind, "--reason", reason)
            manual.append(kind)
    print(f"gate decisions: { {k: v.tags['gate.decision'] for k, v in versions.items()} }; manual: {manual}")
    _run_dag(stack, "retention_campaign")

    # Then both models are champions in the server's registry and the campaign is published
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=stack.mlflow_url, registry_uri=stack.mlflow_url)
    for name in KINDS.values():
        assert client.get_model_version_by_alias(name, "champion").version == "1"
    engine = create_db_engine(stack.database_url)
    try:
        with engine.connect() as connection:
            campaigns = connection.execute(
                text("SELECT campaign_id, n_targets FROM platform_campaigns")
            ).all()
            decisions = connection.execute(
                text("SELECT registered_name, action FROM platform_model_decisions")
            ).all()
    finally:
        engine.dispose()
    assert len(campaigns) == 1 and campaigns[0][0] == "winback-2026-03-02" and campaigns[0][1] > 0
    assert {name for name, _ in decisions} == set(KINDS.values())  # every decision audited
    export = Path(stack.env["RETENTION_HOME"]) / "campaigns" / "winback-2026-03-02" / "targets.parquet"
    assert export.is_file()
