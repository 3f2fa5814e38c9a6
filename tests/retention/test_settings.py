"""Settings: embedded defaults under RETENTION_HOME, each overridable, passwords never shown."""

from pathlib import Path

from retention.settings import Settings


def test_defaults_live_under_home(tmp_path: Path) -> None:
    settings = Settings.from_env({"RETENTION_HOME": str(tmp_path)})
    assert settings.home == tmp_path
    assert settings.database_url == f"sqlite:///{tmp_path / 'retention.db'}"
    assert settings.mlflow_tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert settings.airflow_home == tmp_path / "airflow"


def test_default_home_is_var_in_the_working_directory() -> None:
    assert Settings.from_env({}).home == (Path.cwd() / "var").resolve()


def test_each_setting_is_overridable_and_passwords_are_masked(tmp_path: Path) -> None:
    env = {
        "RETENTION_HOME": str(tmp_path),
        "RETENTION_DATABASE_URL": "postgresql+psycopg2://app:s3cret@db:5432/retention",
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
        "AIRFLOW_HOME": str(tmp_path / "af"),
    }
    settings = Settings.from_env(env)
    assert settings.database_url.endswith("@db:5432/retention")
    assert settings.mlflow_tracking_uri == "http://mlflow:5000"
    assert settings.airflow_home == tmp_path / "af"
    shown = settings.describe()
    assert "s3cret" not in " ".join(shown.values())
    assert "***" in shown["RETENTION_DATABASE_URL"]
