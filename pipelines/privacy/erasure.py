"""Right to erasure: remove customers from every store of the platform, with an audit row free of personal data.

Stores, and what happens to a forgotten customer there:
- source tables (`customers`, `events`, `orders`, `reviews`) and their warehouse copies (`wh_*`),
  review sentiment scores of their reviews, the online store's features and documents (the
  `online_*` tables, or Redis when `RETENTION_ONLINE_STORE` is set), their campaign-log rows
  (`platform_campaign_targets`): deleted;
- quarantined batches: their rows dropped from the stored records; validation results, batch and
  load logs: any mention of the id or e-mail replaced by `[erased]`;
- files under `RETENTION_HOME` (staging, exports, customer states, MLflow's file artifacts, GX
  results, the simulator's truth): see `pipelines.privacy.files`.

One erasure is one database transaction, which also writes the `platform_erasures` row (when, who,
how many customers, rows removed per store: no id, e-mail or digest of either). File rewrites are
staged before it and swapped in after the commit, then the Redis documents are deleted: a failure
before the commit changes nothing, and every step is idempotent, so a failure after it is repaired
by forgetting the same ids again. Ids found nowhere are reported back, not an error.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, Table, delete, insert, select, update

from feature_store.online_store import open_documents
from pipelines.privacy.files import Rewrite, prepare_rewrites
from pipelines.privacy.scrub import Terms, drop_records, scrub
from retention.clock import utc_now
from retention.context import platform_session
from retention.db.base import ID
from retention.db.models import Customer, Event, Load, Order, Review
from retention.db.platform import Campaign, CampaignTarget, Erasure, ModelDecision
from retention.db.warehouse import (
    WAREHOUSE,
    Batch,
    OnlineFeatures,
    OnlineResult,
    Quarantine,
    ReviewSentiment,
)
from retention.settings import Settings

log = logging.getLogger("retention.privacy")
MAX_IDS = 1_000  # per request: erasure is for individuals, not bulk deletion
ID_MAX_CHARS = ID.length or 64
ACTOR_MAX_CHARS = Erasure.__table__.c.actor.type.length or 64  # type: ignore[attr-defined]
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# The online store's document kinds (pipelines.materialise); listed here, not imported, to keep
# this module free of the model code.
ONLINE_KINDS = ("churn", "recommendations")
# Tables deleted row by row, children before parents (the source tables' foreign keys).
DELETED: tuple[tuple[str, Table], ...] = (
    ("events", Event.__table__),
    ("orders", Order.__table__),
    ("reviews", Review.__table__),
    ("customers", Customer.__table__),
    *((f"wh_{name}", WAREHOUSE[name]) for name in ("events", "orders", "reviews", "customers")),
    ("online_features", OnlineFeatures.__table__),
    ("online_results", OnlineResult.__table__),
    ("campaign_targets", CampaignTarget.__table__),
)
# Logs and results that may quote an id or e-mail in their text: (store, table, key, columns).
SCRUBBED: tuple[tuple[str, Table, str, tuple[str, ...]], ...] = (
    ("quarantine", Quarantine.__table__, "quarantine_id", ("failed", "validation")),
    ("batches", Batch.__table__, "batch_id", ("failed", "warnings", "attempt_history")),
    ("loads", Load.__table__, "load_id", ("source", "detail")),
    ("campaigns", Campaign.__table__, "campaign_id", ("funnel", "summary")),
    ("model_decisions", ModelDecision.__table__, "decision_id", ("reason", "metrics")),
)


class ErasureError(ValueError):
    """The request cannot be carried out as given (bad ids or actor); nothing was changed."""


@dataclass(frozen=True)
class ErasureReport:
    """What an erasure did.

    Attributes:
        erasure_id: its audit row in `platform_erasures`.
        erased: the requested ids that a database table held.
        unknown: the requested ids no table held (never stored, or already forgotten); files and
            the online store are cleaned of them all the same.
        removed: rows, records or files changed per store (only stores where something changed).
        unscrubbable: binary files under the home that still mention a customer (to delete by hand).
    """

    erasure_id: int
    erased: list[str]
    unknown: list[str]
    removed: dict[str, int]
    unscrubbable: list[str] = field(default_factory=list)


def check_customer_ids(values: Iterable[str]) -> list[str]:
    """The distinct ids in request order, checked against the id rules of the source tables.

    Raises:
        ErasureError: no id, too many, or one that is empty, longer than the id columns, has
            surrounding blanks or holds control characters (the message names it).
    """
    ids = list(dict.fromkeys(values))
    if not ids:
        raise ErasureError("no customer id given")
    if len(ids) > MAX_IDS:
        raise ErasureError(f"{len(ids)} customer ids given; at most {MAX_IDS} per erasure")
    for value in ids:
        shown = repr(value[:ID_MAX_CHARS]) + ("..." if len(value) > ID_MAX_CHARS else "")
        if not isinstance(value, str) or not value.strip():
            raise ErasureError(f"customer id {shown}: an id is a non-empty text")
        if len(value) > ID_MAX_CHARS:
            raise ErasureError(f"customer id {shown}: longer than {ID_MAX_CHARS} characters")
        if value != value.strip():
            raise ErasureError(f"customer id {shown}: surrounding blanks (ids are stored stripped)")
        if CONTROL.search(value):
            raise ErasureError(f"customer id {shown}: holds control characters")
    return ids


def _check_actor(actor: str) -> str:
    actor = actor.strip()
    if not actor or len(actor) > ACTOR_MAX_CHARS or CONTROL.search(actor):
        raise ErasureError(f"actor must be 1 to {ACTOR_MAX_CHARS} printable characters, got {actor[:80]!r}")
    return actor


def _known(connection: Connection, ids: list[str]) -> set[str]:
    found: set[str] = set()
    for _, table in DELETED:
        rows = connection.execute(select(table.c.customer_id).where(table.c.customer_id.in_(ids)).distinct())
        found.update(rows.scalars())
    return found


def _emails(connection: Connection, ids: list[str]) -> set[str]:
    emails: set[str] = set()
    for table in (Customer.__table__, WAREHOUSE["customers"]):
        if "email" in table.c:  # the warehouse may keep no e-mail (joined from the source at export)
            rows = connection.execute(
                select(table.c.email).where(table.c.customer_id.in_(ids), table.c.email.is_not(None))
            )
            emails.update(e for e in rows.scalars() if e)
    return emails


def _delete_rows(connection: Connection, ids: list[str]) -> dict[str, int]:
    removed: dict[str, int] = {}
    reviews: set[str] = set()
    for table in (Review.__table__, WAREHOUSE["reviews"]):
        reviews.update(
            connection.execute(select(table.c.review_id).where(table.c.customer_id.in_(ids))).scalars()
        )
    if reviews:
        sentiment = ReviewSentiment.__table__
        removed["review_sentiment"] = connection.execute(
            delete(sentiment).where(sentiment.c.review_id.in_(sorted(reviews)))
        ).rowcount
    for store, table in DELETED:
        removed[store] = connection.execute(delete(table).where(table.c.customer_id.in_(ids))).rowcount
    return removed


def _scrub_quarantined_rows(connection: Connection, terms: Terms) -> int:
    table = Quarantine.__table__
    dropped = 0
    for row in connection.execute(select(table.c.quarantine_id, table.c.rows, table.c.n_rows)).all():
        records = json.loads(row.rows)
        kept, n = drop_records(records, terms)
        cleaned, mentions = scrub(kept, terms)
        if n or mentions:
            connection.execute(
                update(table)
                .where(table.c.quarantine_id == row.quarantine_id)
                .values(rows=json.dumps(cleaned), n_rows=max(row.n_rows - n, 0))
            )
            dropped += n + mentions
    return dropped


def _scrub_tables(connection: Connection, terms: Terms) -> dict[str, int]:
    removed = {"quarantine_rows": _scrub_quarantined_rows(connection, terms)}
    for store, table, key, columns in SCRUBBED:
        changed = 0
        for row in connection.execute(select(table.c[key], *(table.c[c] for c in columns))).all():
            values = {}
            for column in columns:
                cleaned, n = scrub(getattr(row, column), terms)
                if n:
                    values[column] = cleaned
            if values:
                connection.execute(update(table).where(table.c[key] == getattr(row, key)).values(**values))
                changed += 1
        removed[store] = changed
    return removed


def _erase_in_database(
    connection: Connection,
    ids: list[str],
    terms: Terms,
    elsewhere: dict[str, int],
    actor: str,
    n_customers: int,
) -> tuple[int, dict[str, int]]:
    """Delete and scrub the rows, then write the audit row (counts of `elsewhere` included); returns its id."""
    if connection.dialect.name == "sqlite":  # deleted rows are overwritten, not left in free pages
        connection.exec_driver_sql("PRAGMA secure_delete = ON")
    removed = {**_delete_rows(connection, ids), **_scrub_tables(connection, terms)}
    for store, n in elsewhere.items():
        removed[store] = removed.get(store, 0) + n
    removed = {store: n for store, n in removed.items() if n}
    key = connection.execute(
        insert(Erasure.__table__).values(
            erased_at=utc_now(), actor=actor, n_customers=n_customers, removed=removed
        )
    ).inserted_primary_key
    assert key is not None  # a single-row INSERT reports the key it created
    return int(key[0]), removed


def forget_customers(
    customer_ids: Sequence[str], actor: str, settings: Settings | None = None
) -> ErasureReport:
    """Erase customers from every store (see the module docstring); safe to repeat.

    Args:
        customer_ids: the customers' ids, as the shop knows them.
        actor: who asked (a person's or service's name; stored in the audit row).
        settings: where the platform lives (default: the environment).

    Returns:
        The report; its `removed` counts are also the audit row's.

    Raises:
        ErasureError: an id breaks the id rules, or the actor is not a short printable name;
            nothing was changed.
    """
    ids = check_customer_ids(customer_ids)
    actor = _check_actor(actor)
    with platform_session(settings) as (settings, _, engine):
        with engine.connect() as connection:
            known = _known(connection, ids)
            terms = Terms(frozenset(ids), frozenset(_emails(connection, ids)), frozenset(known))
        documents = open_documents(settings.online_store_url, engine)
        remote = getattr(documents, "backend", "sql") != "sql"  # the sql backend is the tables above
        rewrites: list[Rewrite] = []
        try:
            rewrites, unscrubbable = prepare_rewrites(settings.home, terms)
            elsewhere: dict[str, int] = {}
            for rewrite in rewrites:
                elsewhere[rewrite.store] = elsewhere.get(rewrite.store, 0) + rewrite.removed
            if remote:
                elsewhere["online_store"] = sum(len(documents.get_many(kind, ids)) for kind in ONLINE_KINDS)
            with engine.begin() as connection:
                erasure_id, removed = _erase_in_database(connection, ids, terms, elsewhere, actor, len(known))
        except BaseException:
            for rewrite in rewrites:
                rewrite.discard()
            documents.close()
            raise
        try:  # after the commit: a failure here is repaired by forgetting the same ids again
            for rewrite in rewrites:
                rewrite.commit()
            if remote:
                for kind in ONLINE_KINDS:
                    documents.delete_many(kind, ids)
        finally:
            documents.close()
    log.info("erasure %d by %s: %d customers; removed %s", erasure_id, actor, len(known), removed)
    if unscrubbable:
        log.warning("%d binary files still mention an erased customer: %s", len(unscrubbable), unscrubbable)
    return ErasureReport(
        erasure_id=erasure_id,
        erased=[i for i in ids if i in known],
        unknown=[i for i in ids if i not in known],
        removed=removed,
        unscrubbable=[str(p) for p in unscrubbable],
    )
