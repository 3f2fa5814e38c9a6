"""Paths of the platform's state, kept so that RETENTION_HOME can be moved, copied and restored.

Our own records store paths under the home relative to it (`stored_path`) and resolve them
against the current home when read (`home_path`). MLflow cannot do that: its SQL store turns
every artifact location into an absolute `file://` URI when it is created (relative ones are
resolved against the working directory, not the store), and it has no API to change them
afterwards (mlflow/mlflow#3144, #3719, #8700). Its `mlflow-artifacts:` proxy would keep them
relative, but only behind an MLflow server, which the embedded default (a SQLite store in the
home) has none of. So a home that finds its MLflow store pointing into another home's
`mlartifacts/` (it was moved or copied there) rewrites those URIs once, in one transaction
(`adopt_home`): the same rewrite an operator would do by hand, done for them on first use.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path

from sqlalchemy.engine import make_url

from retention.settings import Settings

log = logging.getLogger("retention.paths")
MLFLOW_ARTIFACTS = "mlartifacts"  # under RETENTION_HOME: the artifact root of the embedded MLflow store
# Where MLflow's SQL store keeps absolute artifact URIs (table -> columns); a model version's
# `source` is `models:/m-...` for logged models, an artifact URI for older registrations.
MLFLOW_URI_COLUMNS = {
    "experiments": ("artifact_location",),
    "runs": ("artifact_uri",),
    "logged_models": ("artifact_location",),
    "model_versions": ("storage_location", "source"),
}
TRACE_LOCATION_TAG = "mlflow.artifactLocation"  # a trace's artifact URI, kept as a trace tag
SQLITE_BUSY_SECONDS = 60  # a task may be writing a run meanwhile


def stored_path(home: Path, path: Path) -> str:
    """How a path is stored: relative to the home when it lies inside it, else absolute."""
    resolved = path.resolve()
    return str(resolved.relative_to(home)) if resolved.is_relative_to(home) else str(resolved)


def home_path(home: Path, stored: str) -> Path:
    """A stored path as a path now: a relative one lies under the current home (an absolute one,
    written before paths were stored relative, is returned as it is)."""
    return home / stored


def resolved_paths(home: Path, stored: Mapping[str, str]) -> dict[str, str]:
    """Stored paths by name (a campaign's exports) as absolute paths under the current home."""
    return {name: str(home_path(home, path)) for name, path in stored.items()}


def mlflow_artifact_root(settings: Settings) -> Path:
    """The artifact root of the experiments this platform creates."""
    return settings.home / MLFLOW_ARTIFACTS


def _home_mlflow_db(settings: Settings) -> Path | None:
    """The embedded MLflow store (a SQLite file inside the home), or None for any other store."""
    try:
        url = make_url(settings.mlflow_tracking_uri)
    except Exception:  # an http:// server or a file store: MLflow keeps its own locations
        return None
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    path = Path(url.database).resolve()
    return path if path.is_relative_to(settings.home) and path.is_file() else None


def _old_roots(connection: sqlite3.Connection, root: str) -> set[str]:
    """Artifact roots (`file:///.../mlartifacts/`) of experiments that are not `root`."""
    locations = [row[0] or "" for row in connection.execute("SELECT artifact_location FROM experiments")]
    marker = f"/{MLFLOW_ARTIFACTS}/"
    return {
        location[: location.rindex(marker) + len(marker)]
        for location in locations
        if location.startswith("file://") and marker in location and not location.startswith(root)
    }


def adopt_home(settings: Settings) -> dict[str, int]:
    """Point the home's MLflow store at the home's own artifacts after the home was moved or copied.

    Does nothing (and costs one read) when the store is not a SQLite file inside the home, when
    the home has no `mlartifacts/`, or when every experiment already lies under it. Idempotent,
    and safe to call from several processes at once (the rewrite holds SQLite's write lock).

    Returns:
        Rewritten URIs per table (empty when nothing moved).
    """
    database = _home_mlflow_db(settings)
    artifacts = mlflow_artifact_root(settings)
    if database is None or not artifacts.is_dir():
        return {}
    root = artifacts.resolve().as_uri() + "/"
    with closing(sqlite3.connect(database, timeout=SQLITE_BUSY_SECONDS)) as connection:
        if not _old_roots(connection, root):
            return {}
        connection.execute("BEGIN IMMEDIATE")  # then look again: another process may have done it
        try:
            rewritten = _rewrite(connection, _old_roots(connection, root), root)
            connection.commit()
        except BaseException:
            connection.rollback()
            raise
    if rewritten:
        log.info(
            "RETENTION_HOME moved: %s MLflow artifact URIs now point into %s", sum(rewritten.values()), root
        )
    return rewritten


def _rewrite(connection: sqlite3.Connection, old_roots: set[str], root: str) -> dict[str, int]:
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    counts: dict[str, int] = {}
    for old in sorted(old_roots):
        for table, columns in MLFLOW_URI_COLUMNS.items():
            if table not in tables:
                continue
            for column in columns:
                changed = connection.execute(
                    f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                    f"WHERE substr({column}, 1, ?) = ?",
                    (root, len(old) + 1, len(old), old),
                ).rowcount
                counts[table] = counts.get(table, 0) + changed
        if "trace_tags" in tables:
            changed = connection.execute(
                "UPDATE trace_tags SET value = ? || substr(value, ?) WHERE key = ? AND substr(value, 1, ?) = ?",
                (root, len(old) + 1, TRACE_LOCATION_TAG, len(old), old),
            ).rowcount
            counts["trace_tags"] = counts.get("trace_tags", 0) + changed
    return {table: n for table, n in counts.items() if n}
