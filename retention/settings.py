"""Environment settings: where local state lives and which databases to talk to.

Pipeline and model parameters live in `params.yaml` (see `retention.params`); this module only
holds deployment settings (URLs, paths, secrets), read from environment variables with embedded
defaults so that a fresh clone runs without any configuration.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url

ENV_HOME = "RETENTION_HOME"
ENV_DATABASE_URL = "RETENTION_DATABASE_URL"
ENV_MLFLOW_URI = "MLFLOW_TRACKING_URI"
ENV_AIRFLOW_HOME = "AIRFLOW_HOME"
ENV_PARAMS = "RETENTION_PARAMS"
ENV_ONLINE_STORE = "RETENTION_ONLINE_STORE"  # redis://host:port/db, or unset: the platform database
ENV_ALERT_WEBHOOK = "RETENTION_ALERT_WEBHOOK_URL"  # POSTed a JSON alert when a task fails (optional)

DEFAULT_HOME = "./var"
# The project's own params.yaml, wherever the command runs from (Airflow tasks run elsewhere).
DEFAULT_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


@dataclass(frozen=True)
class Settings:
    """Resolved deployment settings.

    Attributes:
        home: folder for all local state (SQLite files, simulator state, exports); it can be moved:
            paths under it are stored relative to it (`retention.paths`).
        database_url: SQLAlchemy URL of the shop source and platform tables.
        mlflow_tracking_uri: MLflow tracking URI (always explicit; never the bare ./mlruns store).
        airflow_home: Airflow's home folder.
        params_path: the `params.yaml` file with pipeline and model parameters.
        online_store_url: where the online store keeps materialised results and states (a
            `redis://` URL; None: the platform database, the embedded default).
        alert_webhook_url: where failed tasks post an alert (Slack-style JSON); None: log only.
    """

    home: Path
    database_url: str
    mlflow_tracking_uri: str
    airflow_home: Path
    params_path: Path
    online_store_url: str | None = None
    alert_webhook_url: str | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Read settings from environment variables, falling back to the embedded defaults."""
        env = os.environ if environ is None else environ
        home = Path(env.get(ENV_HOME) or DEFAULT_HOME).expanduser().resolve()
        return cls(
            home=home,
            database_url=env.get(ENV_DATABASE_URL) or f"sqlite:///{home / 'retention.db'}",
            mlflow_tracking_uri=env.get(ENV_MLFLOW_URI) or f"sqlite:///{home / 'mlflow.db'}",
            airflow_home=Path(env.get(ENV_AIRFLOW_HOME) or home / "airflow").expanduser().resolve(),
            params_path=Path(env.get(ENV_PARAMS) or DEFAULT_PARAMS).expanduser().resolve(),
            online_store_url=env.get(ENV_ONLINE_STORE) or None,
            alert_webhook_url=env.get(ENV_ALERT_WEBHOOK) or None,
        )

    @property
    def simulator_dir(self) -> Path:
        """Folder of the shop simulator's state and ground truth."""
        return self.home / "simulator"

    @property
    def staging_dir(self) -> Path:
        """Folder of staged extraction batches (one subfolder per data interval)."""
        return self.home / "staging"

    @property
    def gx_dir(self) -> Path:
        """Great Expectations runtime context: validation results and Data Docs."""
        return self.home / "gx"

    def describe(self) -> dict[str, str]:
        """Settings for display, with any password in a URL masked."""
        return {
            ENV_HOME: str(self.home),
            ENV_DATABASE_URL: redact_url(self.database_url),
            ENV_MLFLOW_URI: redact_url(self.mlflow_tracking_uri),
            ENV_AIRFLOW_HOME: str(self.airflow_home),
            ENV_PARAMS: str(self.params_path),
            ENV_ONLINE_STORE: redact_url(self.online_store_url)
            if self.online_store_url
            else "(platform database)",
            # a webhook's path is its secret (Slack, Teams): only the host is shown
            ENV_ALERT_WEBHOOK: f"{urlsplit(self.alert_webhook_url).scheme}://{urlsplit(self.alert_webhook_url).hostname}/***"
            if self.alert_webhook_url
            else "(log only)",
        }


# `scheme://user:password@`: what an unparsable URL may still hold (e.g. a port that is not a number)
_CREDENTIALS = re.compile(r"(://[^/:@]*):[^/@]*@")


def redact_url(url: str) -> str:
    """Mask the password of a database URL so it can be logged (also of a URL that does not parse)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a SQLAlchemy URL (an http:// MLflow server, a typo): mask what looks like one
        return _CREDENTIALS.sub(r"\1:***@", url)
