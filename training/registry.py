"""Registry aliases and their audit: `champion` serves, `challenger` waits for the gate.

Every change of `champion` (gate promotion, manual promotion, rollback) happens while holding the
model's row in `platform_model_locks` and writes one `platform_model_decisions` row in the same
transaction, so two promotions at once are serialised and the audit always ends on the version
the alias points to. Decisions are also written as tags of the version they concern, so the
MLflow UI shows them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from retention.clock import utc_now
from retention.db.platform import ModelDecision, ModelLock

log = logging.getLogger("retention.registry")
CHAMPION, CHALLENGER = "champion", "challenger"
TAG_PREFIX = "gate."
MAX_TAG_CHARS = 5000  # MLflow's limit on a tag value
SHORT_TAG_CHARS = 300  # the reason as a tag; the whole decision is the JSON artifact
DECISIONS_FOLDER = "gate"  # artifact folder of a version's run holding its decisions


class RegistryError(RuntimeError):
    """A registry action cannot be done (unknown version, nothing to roll back to, ...)."""


@dataclass(frozen=True)
class Decision:
    """One change (or refusal to change) of a model's champion."""

    registered_name: str
    version: str
    action: str  # promoted | rejected | manual_promote | rollback
    champion_before: str | None
    champion_after: str | None
    reason: str
    actor: str
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def promoted(self) -> bool:
        return self.champion_after == self.version and self.action != "rejected"


def load_native(tracking_uri: str, name: str, version: str) -> Any:
    """The native model (`ReturnModel`, `SASRecRecommender`) behind a registered version's pyfunc."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.pyfunc.load_model(f"models:/{name}/{version}").unwrap_python_model().model


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version `alias` points to, or None."""
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def versions(client: MlflowClient, name: str) -> list[dict[str, Any]]:
    """Every version of `name`, newest first, with its aliases, run and gate tags."""
    try:
        aliases = client.get_registered_model(name).aliases
    except MlflowException:
        return []
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases.items():
        by_version.setdefault(str(version), []).append(alias)
    found = client.search_model_versions(f"name = '{name}'")
    rows = [
        {
            "version": str(v.version),
            "aliases": sorted(by_version.get(str(v.version), [])),
            "run_id": v.run_id,
            "created": v.creation_timestamp,
            "decision": v.tags.get(f"{TAG_PREFIX}decision", ""),
            "reason": v.tags.get(f"{TAG_PREFIX}reason", ""),
        }
        for v in found
    ]
    return sorted(rows, key=lambda r: int(r["version"]), reverse=True)


def _ensure_lock_row(engine: Engine, name: str) -> None:
    try:
        with engine.begin() as connection:
            if connection.execute(select(ModelLock).where(ModelLock.registered_name == name)).first():
                return
            connection.execute(insert(ModelLock).values(registered_name=name))
    except IntegrityError:  # created meanwhile by a concurrent promotion: that is all we needed
        pass


@contextmanager
def locked(engine: Engine, name: str, holder: str) -> Iterator[Connection]:
    """A transaction that holds the model's lock row until it commits (or rolls back).

    The first statement is the UPDATE, so PostgreSQL takes the row lock and SQLite the database
    write lock at once; a concurrent caller waits there instead of interleaving.
    """
    _ensure_lock_row(engine, name)
    with engine.begin() as connection:
        connection.execute(
            update(ModelLock)
            .where(ModelLock.registered_name == name)
            .values(holder=holder[:128], locked_at=utc_now())
        )
        yield connection


def _tag(client: MlflowClient, name: str, version: str, decision: Decision) -> None:
    """A few short tags on the version, and the whole decision as a JSON artifact of its run.

    The tags are what the registry page can show at a glance (decision, primary metric, margin,
    what it was compared with); both sides' metrics and checks are in `gate.decision_file`.
    """
    decided_at = utc_now()
    summary = decision.metrics.get("summary") or {}
    tags = {
        "decision": decision.action,
        "reason": decision.reason[:SHORT_TAG_CHARS],
        "actor": decision.actor,
        "champion_before": decision.champion_before or "",
        "decided_at": decided_at.isoformat(timespec="seconds"),
    }
    if summary:
        tags |= {
            "primary_metric": str(summary["primary_metric"]),
            "margin": f"{summary['margin']:+.4f}",
            "compared_with": str(summary["compared_with"]),
        }
    run_id = client.get_model_version(name, version).run_id
    if run_id:
        path = f"{DECISIONS_FOLDER}/v{version}-{decision.action}-{decided_at:%Y%m%dT%H%M%S}.json"
        client.log_dict(run_id, json.loads(json.dumps(decision_dict(decision), default=float)), path)
        tags["decision_file"] = path
    for key, value in tags.items():
        client.set_model_version_tag(name, version, f"{TAG_PREFIX}{key}", str(value)[:MAX_TAG_CHARS])


def record(engine: Engine, client: MlflowClient, decision: Decision, move_champion: bool) -> Decision:
    """Apply a decision under the model's lock: move `champion` if asked, tag the version, audit it.

    The champion the decision saw is re-read under the lock; if another promotion moved it in the
    meantime, the decision is refused (RegistryError) rather than overwriting that promotion.
    """
    name = decision.registered_name
    with locked(engine, name, f"{decision.actor}:{decision.version}") as connection:
        current = alias_version(client, name, CHAMPION)
        if current != decision.champion_before:
            raise RegistryError(
                f"{name}: champion changed from {decision.champion_before} to {current} while "
                f"deciding on version {decision.version}; run the decision again"
            )
        if move_champion:
            client.set_registered_model_alias(name, CHAMPION, decision.version)
            if alias_version(client, name, CHALLENGER) == decision.version:
                client.delete_registered_model_alias(name, CHALLENGER)
        _tag(client, name, decision.version, decision)
        connection.execute(
            insert(ModelDecision).values(
                registered_name=name,
                version=decision.version,
                action=decision.action,
                champion_before=decision.champion_before,
                champion_after=decision.champion_after,
                reason=decision.reason,
                metrics=json.loads(json.dumps(decision.metrics, default=float)),
                actor=decision.actor,
                decided_at=utc_now(),
            )
        )
    log.info(
        "%s version %s: %s (champion %s -> %s): %s",
        name,
        decision.version,
        decision.action,
        decision.champion_before,
        decision.champion_after,
        decision.reason,
    )
    return decision


def _require_version(client: MlflowClient, name: str, version: str) -> None:
    try:
        client.get_model_version(name, version)
    except MlflowException:
        raise RegistryError(f"{name} has no version {version} (see `retention models list`)") from None


def promote(
    engine: Engine, client: MlflowClient, name: str, version: str, reason: str, actor: str
) -> Decision:
    """Make `version` the champion by hand (audited as manual_promote)."""
    if not reason.strip():
        raise RegistryError("a manual promotion needs a --reason")
    _require_version(client, name, version)
    before = alias_version(client, name, CHAMPION)
    if before == version:
        raise RegistryError(f"{name} version {version} is already the champion")
    decision = Decision(name, version, "manual_promote", before, version, reason, actor)
    return record(engine, client, decision, move_champion=True)


def history(engine: Engine, name: str) -> list[dict[str, Any]]:
    """The audit rows of `name`, oldest first."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(ModelDecision.__table__)
            .where(ModelDecision.registered_name == name)
            .order_by(ModelDecision.decision_id)
        ).mappings()
        return [dict(row) for row in rows]


def rollback(engine: Engine, client: MlflowClient, name: str, reason: str, actor: str) -> Decision:
    """Give `champion` back to the version it replaced (audited as rollback).

    The target is the champion before the promotion that installed the current one, so repeated
    rollbacks walk back through the promotions instead of flipping between two versions.
    """
    current = alias_version(client, name, CHAMPION)
    if current is None:
        raise RegistryError(f"{name} has no champion to roll back")
    installs = [
        row
        for row in history(engine, name)
        if row["champion_after"] == current and row["action"] in ("promoted", "manual_promote")
    ]
    if not installs or installs[-1]["champion_before"] is None:
        raise RegistryError(
            f"{name}: version {current} replaced no earlier champion; nothing to roll back to"
        )
    target = installs[-1]["champion_before"]
    decision = Decision(name, target, "rollback", current, target, reason or "rollback", actor)
    return record(engine, client, decision, move_champion=True)


def set_challenger(client: MlflowClient, name: str, version: str) -> None:
    """Point `challenger` at a newly registered version."""
    client.set_registered_model_alias(name, CHALLENGER, version)


def decision_of(client: MlflowClient, name: str, version: str) -> Decision | None:
    """The gate decision recorded on a version's tags, if any."""
    tags = client.get_model_version(name, version).tags
    action = tags.get(f"{TAG_PREFIX}decision")
    if action not in ("promoted", "rejected"):
        return None
    before = tags.get(f"{TAG_PREFIX}champion_before") or None
    after = version if action == "promoted" else before
    return Decision(name, version, action, before, after, tags.get(f"{TAG_PREFIX}reason", ""), "gate")


def decision_dict(decision: Decision) -> dict[str, Any]:
    """A JSON-ready view of a decision."""
    return asdict(decision) | {"promoted": decision.promoted}
