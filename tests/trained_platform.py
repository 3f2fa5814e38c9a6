"""A small platform with both models trained, registered and promoted: shared by the gate,
campaign and serving tests (building it costs about a minute, so it is made once per session).

Tests that write must not write into it: `copy_database` gives a test its own copy of the
platform database (the MLflow registry stays shared and is only read).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import ROOT

SHOP_START, SHOP_END = "2026-01-01", "2026-04-01"  # 90 simulated days
AS_OF = datetime(2026, 4, 1)


@dataclass(frozen=True)
class TrainedPlatform:
    """Where the platform lives; `env` points the CLI, pipelines and API at it."""

    home: Path
    params_path: Path
    as_of: datetime

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.home / 'retention.db'}"

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def env(self) -> dict[str, str]:
        return {
            "RETENTION_HOME": str(self.home),
            "RETENTION_PARAMS": str(self.params_path),
            "RETENTION_DATABASE_URL": self.database_url,
            "MLFLOW_TRACKING_URI": self.tracking_uri,
        }


def small_params(folder: Path, **sections: dict) -> Path:
    """params.yaml with short training (15 epochs, 3 for SASRec) and the given section overrides."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["training"].update(max_epochs=15)
    params["recommender"]["sasrec"].update(max_epochs=3)
    for section, values in sections.items():
        params[section].update(values)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def build_platform(root: Path, customers: int = 300) -> TrainedPlatform:
    """Simulate `customers` over 90 days, extract, refresh features, train, register, promote."""
    from cli.main import app

    root.mkdir(parents=True, exist_ok=True)
    built = TrainedPlatform(root / "home", small_params(root), AS_OF)
    runner = CliRunner()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in built.env.items():
            patch.setenv(key, value)
        patch.delenv("AIRFLOW_HOME", raising=False)
        steps = [
            ["init"],
            ["simulate", "--customers", str(customers), "--days", "90"],
            ["extract", "--start", SHOP_START, "--end", SHOP_END, "--step-days", "90"],
            ["features", "refresh-online", "--as-of", SHOP_END],
            ["train", "--model", "return"],
            ["train", "--model", "recommender"],
            ["models", "promote", "1", "--model", "return", "--reason", "test fixture"],
            ["models", "promote", "1", "--model", "recommender", "--reason", "test fixture"],
        ]
        for step in steps:
            result = runner.invoke(app, step)
            assert result.exit_code == 0, f"{step}: {result.output}"
    return built


def copy_database(platform: TrainedPlatform, folder: Path) -> str:
    """A private copy of the platform database; returns its URL."""
    target = folder / "retention-copy.db"
    shutil.copyfile(platform.home / "retention.db", target)
    return f"sqlite:///{target}"


def private_platform(platform: TrainedPlatform, root: Path) -> TrainedPlatform:
    """A copy of the platform that tests may change (register versions, move aliases, audit): the same
    trained state without training again. Its home holds copies of both databases; the logged
    artifacts of the copied runs stay where they are (only read), and the experiments' artifact
    location is moved into the new home, so runs logged on the copy never write into the original.
    """
    import sqlite3
    from contextlib import closing

    home = root / "home"
    shutil.copytree(platform.home, home, ignore=shutil.ignore_patterns("mlartifacts"))
    with closing(sqlite3.connect(home / "mlflow.db")) as connection, connection:
        connection.execute(
            "UPDATE experiments SET artifact_location = replace(artifact_location, ?, ?)",
            (platform.home.resolve().as_uri(), home.resolve().as_uri()),
        )
    return TrainedPlatform(home, platform.params_path, platform.as_of)
