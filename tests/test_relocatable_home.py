"""RETENTION_HOME can be moved, backed up and restored: a finished home copied elsewhere (the
original gone) serves the API, runs a campaign and references nothing of its old path."""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from fnmatch import fnmatch
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cli.main import app
from pipelines.airflow_config import write_airflow_config
from pipelines.main_job import run_airflow
from retention.paths import adopt_home, home_path, stored_path
from retention.settings import Settings
from serving.app import create_app
from serving.settings import ServingSettings
from tests.trained_platform import build_platform

runner = CliRunner()
TOKEN = "relocated-marketing-token-0123456789"
ADMIN = "relocated-admin-token-0123456789"
# What may still name the old home (fnmatch patterns), and why it is never read through that name:
LEFT_AS_WRITTEN = (
    # MLflow's record, inside a logged model, of where it was logged and where its files were copied
    # from; loading reads the bundled copy beside it (`path: artifacts/model`)
    "mlartifacts/*/models/*/artifacts/MLmodel",
    # the training workspace of finished fits (Lightning checkpoints, done.json): resume state, which
    # a moved home does not find, so a later fit starts clean instead of resuming
    "runs/*",
)


def cli(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, f"{args}: {result.output}"
    return result.output


def point_at(home: Path, params: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only RETENTION_HOME (and the parameters, which are configuration, not state): every URL is derived."""
    monkeypatch.setenv("RETENTION_HOME", str(home))
    monkeypatch.setenv("RETENTION_PARAMS", str(params))
    for name in ("RETENTION_DATABASE_URL", "MLFLOW_TRACKING_URI", "AIRFLOW_HOME"):
        monkeypatch.delenv(name, raising=False)


def mentions(home: Path, old: str) -> list[str]:
    """Files of `home` (databases by their content) that contain `old`, outside `LEFT_AS_WRITTEN`."""
    found = []
    for path in sorted(p for p in home.rglob("*") if p.is_file()):
        relative = path.relative_to(home)
        if any(fnmatch(str(relative), pattern) for pattern in LEFT_AS_WRITTEN):
            continue
        if path.suffix == ".db":  # the content, not stale bytes in free pages or the WAL
            with closing(sqlite3.connect(path)) as connection:
                text = "\n".join(connection.iterdump())
        elif path.name.endswith((".db-wal", ".db-shm")):
            continue
        else:
            text = path.read_bytes().decode("utf-8", errors="replace")
        if old in text:
            found.append(str(relative))
    return found


def test_stored_paths_are_relative_to_the_home_and_resolve_under_the_current_one(tmp_path: Path) -> None:
    home = tmp_path / "home"
    stored = stored_path(home, home / "campaigns" / "c1" / "targets.csv")
    assert stored == "campaigns/c1/targets.csv"
    assert home_path(tmp_path / "elsewhere", stored) == tmp_path / "elsewhere" / "campaigns/c1/targets.csv"
    outside = tmp_path / "shared" / "x.csv"  # outside the home: kept absolute, resolved as it is
    assert home_path(tmp_path / "elsewhere", stored_path(home, outside)) == outside


def test_adopting_a_home_leaves_a_store_outside_it_alone(tmp_path: Path) -> None:
    # a test or deployment whose MLflow store lies outside RETENTION_HOME: nothing is rewritten there
    outside = tmp_path / "shared" / "mlflow.db"
    outside.parent.mkdir()
    with closing(sqlite3.connect(outside)) as connection, connection:
        connection.execute("CREATE TABLE experiments (experiment_id INTEGER, artifact_location TEXT)")
        connection.execute(
            "INSERT INTO experiments VALUES (1, 'file:///somewhere/mlartifacts/retention-return')"
        )
    home = tmp_path / "home"
    (home / "mlartifacts").mkdir(parents=True)
    settings = Settings.from_env({"RETENTION_HOME": str(home), "MLFLOW_TRACKING_URI": f"sqlite:///{outside}"})
    assert adopt_home(settings) == {}
    with closing(sqlite3.connect(outside)) as connection:
        assert (
            connection.execute("SELECT artifact_location FROM experiments")
            .fetchone()[0]
            .startswith("file:///somewhere/")
        )


@pytest.mark.slow  # builds a trained platform (about two minutes on two cores), then campaigns on its copy
@pytest.mark.timeout(1200)
def test_a_home_copied_elsewhere_serves_and_runs_campaigns_without_the_original(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a finished home: trained and promoted models, a published campaign
    built = build_platform(tmp_path / "built")
    point_at(built.home, built.params_path, monkeypatch)
    assert "winback-2026-04-01" in cli("campaigns", "run", "--as-of", "2026-04-01")
    old = str(built.home)

    # when it is copied elsewhere and the original is removed
    home = tmp_path / "restored" / "home"
    shutil.copytree(built.home, home)
    shutil.rmtree(built.home)
    point_at(home, built.params_path, monkeypatch)
    settings = Settings.from_env()

    # then the API serves it: champions load from the copied artifacts, campaigns list and download
    serving = ServingSettings(marketing_token=TOKEN, admin_token=ADMIN, model_refresh_seconds=0.0)
    with TestClient(create_app(settings, serving)) as client:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        health = client.get("/healthz").json()
        assert health["status"] == "ok" and health["models"]["retention-return"] == "1", health
        listed = client.get("/campaigns", headers=headers).json()
        assert [c["campaign_id"] for c in listed] == ["winback-2026-04-01"]
        for fmt in ("csv", "parquet"):
            download = client.get(f"/campaigns/winback-2026-04-01/targets.{fmt}", headers=headers)
            assert download.status_code == 200 and len(download.content) > 100
        customer = download_first_customer(client, headers)
        assert client.get(f"/customers/{customer}/churn", headers=headers).status_code == 200

    # and a new campaign runs on it, its exports written into the copy
    output = cli("campaigns", "run", "--as-of", "2026-03-31")
    assert f"exports: {home}/campaigns/winback-2026-03-31/targets.csv" in output
    assert (home / "campaigns" / "winback-2026-03-31" / "targets.parquet").is_file()
    shown = cli("campaigns", "show", "winback-2026-04-01")
    assert f'"csv": "{home}/campaigns/winback-2026-04-01/targets.csv"' in shown
    assert "retention-recommender v1    champion" in cli("models", "list", "--model", "recommender")

    # and nothing it reads names the old home any more
    assert mentions(home, old) == []
    assert not Path(old).exists()  # nothing wrote back into the old place either


def download_first_customer(client: TestClient, headers: dict[str, str]) -> str:
    """A customer of the campaign's export (its first data row)."""
    csv = client.get("/campaigns/winback-2026-04-01/targets.csv", headers=headers).text
    header, first = csv.splitlines()[:2]
    return first.split(",")[header.split(",").index("customer_id")]


@pytest.mark.integration  # `airflow db migrate` and `airflow config` as subprocesses (about 30 s)
def test_airflow_state_moves_with_the_home(tmp_path: Path) -> None:
    # given a home whose Airflow metadata was migrated, as the main job leaves it
    old = Settings.from_env({"RETENTION_HOME": str(tmp_path / "old")})
    run_airflow(["db", "migrate"], old, "airflow-db-migrate")
    config = (old.airflow_home / "airflow.cfg").read_text()
    assert str(tmp_path) not in config and "fernet_key = " in config  # secrets only, no path

    # when it is moved
    new = Settings.from_env({"RETENTION_HOME": str(tmp_path / "new")})
    shutil.move(old.home, new.home)

    # then Airflow finds its database and writes its logs in the new place
    for section, option in (("database", "sql_alchemy_conn"), ("logging", "base_log_folder")):
        run_airflow(["config", "get-value", section, option], new, f"get-{option}")
        value = (new.home / "logs" / f"get-{option}.log").read_text()
        assert str(new.airflow_home) in value and str(old.home) not in value, value
    run_airflow(["db", "check-migrations", "--migration-wait-timeout", "1"], new, "check")
    assert (new.airflow_home / "airflow.cfg").read_text() == config  # the same secrets: kept, not regenerated


def test_an_airflow_written_config_is_replaced_keeping_its_secrets(tmp_path: Path) -> None:
    # given the airflow.cfg Airflow writes on its own: every default, paths absolute
    (tmp_path / "airflow.cfg").write_text(
        f"[core]\ndags_folder = {tmp_path}/dags\nfernet_key = a-fernet-key\n\n"
        f"[database]\nsql_alchemy_conn = sqlite:///{tmp_path}/airflow.db\n\n[api_auth]\njwt_secret = a-jwt\n"
    )

    written = write_airflow_config(tmp_path).read_text()

    assert str(tmp_path) not in written
    assert "fernet_key = a-fernet-key" in written and "jwt_secret = a-jwt" in written
    assert "secret_key = " in written  # missing before: generated
    assert write_airflow_config(tmp_path).read_text() == written  # ours: left as it is
    assert (tmp_path / "airflow.cfg").stat().st_mode & 0o077 == 0  # secrets: the owner's only
