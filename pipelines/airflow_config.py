"""The Airflow home's `airflow.cfg`: only the secrets that must persist, never a path.

Left alone, Airflow writes every default into `airflow.cfg` on first use, each path (DAGs, logs,
the metadata database, plugins) spelled out absolutely, so a moved or restored RETENTION_HOME
keeps writing into the old one. Given a file, it writes nothing and takes each missing option's
default from AIRFLOW_HOME when it starts; the platform's own settings come from the environment
(`pipelines.main_job.airflow_environment`). So the file holds only what must be the same from one
run to the next: the Fernet key of stored connections and the signing secrets.
"""

from __future__ import annotations

import base64
import configparser
import os
from pathlib import Path

from retention.atomic import atomic_path

HEADER = (
    "# Written by the retention platform (pipelines/airflow_config.py). Paths are not set here: Airflow\n"
    "# derives them from AIRFLOW_HOME, so the home can be moved; settings come from AIRFLOW__* variables.\n"
)
# (section, option) -> a fresh value's size in random bytes; Fernet keys are 32 url-safe base64 bytes
SECRETS = {("core", "fernet_key"): 32, ("api_auth", "jwt_secret"): 16, ("api", "secret_key"): 16}


def write_airflow_config(airflow_home: Path) -> Path:
    """Write AIRFLOW_HOME/airflow.cfg unless ours is there; an older one (Airflow's own, full of
    absolute paths) is replaced, its secrets kept so stored connections still decrypt.

    Returns:
        The file.
    """
    target = airflow_home / "airflow.cfg"
    existing = configparser.ConfigParser(interpolation=None)
    if target.exists():
        text = target.read_text()
        if text.startswith(HEADER):
            return target
        existing.read_string(text)
    lines = [HEADER]
    for section in dict.fromkeys(section for section, _ in SECRETS):
        lines.append(f"\n[{section}]\n")
        for (owner, option), size in SECRETS.items():
            if owner == section:
                value = existing.get(section, option, fallback="") or _secret(size)
                lines.append(f"{option} = {value}\n")
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        tmp.touch(mode=0o600)  # secrets: readable by the owner only, as Airflow keeps its own file
        tmp.write_text("".join(lines))
    return target


def _secret(size: int) -> str:
    return base64.urlsafe_b64encode(os.urandom(size)).decode()
