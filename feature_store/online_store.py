"""The online store's per-customer documents (materialised scores, recommender states) behind one interface.

Serving reads one document per request, so the store is a key-value map: (kind, customer id) ->
a JSON document. Two backends implement it:
- `SqlDocuments`, the embedded default: the `online_results` table of the platform database;
- `RedisDocuments`, for deployments (the usual online store of feature platforms): one Redis
  string per document under `retention:<kind>:<customer id>`.
`open_documents` picks one from the `RETENTION_ONLINE_STORE` setting. Writes of one call are
atomic (one transaction, or one MULTI/EXEC), and a document whose JSON text is unchanged is not
rewritten, so a rerun of the same materialisation writes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from sqlalchemy import Engine, select

from retention.clock import utc_now
from retention.db.warehouse import OnlineResult

TABLE = OnlineResult.__table__
REDIS_PREFIX = "retention"
CHUNK = 2_000  # ids per SQL IN (...) list or Redis MGET
Document = dict[str, Any]


class OnlineStoreError(ValueError):
    """The online store setting names a backend that cannot be used."""


def encode(document: Document) -> str:
    """Canonical JSON text of a document (sorted keys, no blanks): equal documents, equal text."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False)


class Documents(Protocol):
    """Per-customer JSON documents by kind."""

    def get(self, kind: str, customer_id: str) -> Document | None:
        """One customer's document, or None."""
        ...

    def get_many(self, kind: str, customer_ids: Iterable[str]) -> dict[str, Document]:
        """The documents of those customers that have one."""
        ...

    def put_many(self, kind: str, documents: Mapping[str, Document]) -> int:
        """Store documents atomically; returns how many were new or changed."""
        ...

    def delete_many(self, kind: str, customer_ids: Iterable[str]) -> int:
        """Remove documents; returns how many existed."""
        ...

    def ids(self, kind: str) -> set[str]:
        """Every customer with a document of `kind`."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def _upsert(dialect: str) -> Any:
    """INSERT ... ON CONFLICT (kind, customer_id) DO UPDATE of the document, on SQLite or PostgreSQL."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    else:
        raise NotImplementedError(f"the online store's table supports sqlite and postgresql, not {dialect}")
    statement = insert(TABLE)
    return statement.on_conflict_do_update(
        index_elements=[TABLE.c.kind, TABLE.c.customer_id],
        set_={"document": statement.excluded.document, "updated_at": statement.excluded.updated_at},
    )


def _chunks(ids: Iterable[str]) -> Iterable[list[str]]:
    values = list(ids)
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


class SqlDocuments:
    """Documents in the platform database's `online_results` table (the embedded default).

    Args:
        engine: the platform database (migrated).
    """

    backend = "sql"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, kind: str, customer_id: str) -> Document | None:
        with self.engine.connect() as connection:
            text = connection.execute(
                select(TABLE.c.document).where(TABLE.c.kind == kind, TABLE.c.customer_id == customer_id)
            ).scalar()
        return None if text is None else json.loads(text)

    def get_many(self, kind: str, customer_ids: Iterable[str]) -> dict[str, Document]:
        found: dict[str, Document] = {}
        with self.engine.connect() as connection:
            for chunk in _chunks(customer_ids):
                rows = connection.execute(
                    select(TABLE.c.customer_id, TABLE.c.document).where(
                        TABLE.c.kind == kind, TABLE.c.customer_id.in_(chunk)
                    )
                )
                found.update({row.customer_id: json.loads(row.document) for row in rows})
        return found

    def put_many(self, kind: str, documents: Mapping[str, Document]) -> int:
        if not documents:
            return 0
        texts = {c: encode(d) for c, d in documents.items()}
        now = utc_now()
        with self.engine.begin() as connection:  # one transaction: the stored texts, then the changed ones
            stored: dict[str, str] = {}
            for chunk in _chunks(texts):
                rows = connection.execute(
                    select(TABLE.c.customer_id, TABLE.c.document).where(
                        TABLE.c.kind == kind, TABLE.c.customer_id.in_(chunk)
                    )
                )
                stored.update({row.customer_id: row.document for row in rows})
            changed = {c: t for c, t in texts.items() if stored.get(c) != t}
            if changed:  # plain executemany: small writes (an event's list) cost no frame building
                upsert = _upsert(connection.dialect.name)
                connection.execute(
                    upsert,
                    [
                        {"kind": kind, "customer_id": c, "document": t, "updated_at": now}
                        for c, t in changed.items()
                    ],
                )
        return len(changed)

    def delete_many(self, kind: str, customer_ids: Iterable[str]) -> int:
        removed = 0
        with self.engine.begin() as connection:
            for chunk in _chunks(customer_ids):
                result = connection.execute(
                    TABLE.delete().where(TABLE.c.kind == kind, TABLE.c.customer_id.in_(chunk))
                )
                removed += result.rowcount
        return removed

    def ids(self, kind: str) -> set[str]:
        with self.engine.connect() as connection:
            return set(connection.execute(select(TABLE.c.customer_id).where(TABLE.c.kind == kind)).scalars())

    def close(self) -> None:  # the engine belongs to the caller
        return None


class RedisDocuments:
    """Documents as Redis strings under `<prefix>:<kind>:<customer id>` (redis-py).

    Args:
        url: a `redis://host:port/db` URL.
        prefix: the key prefix (several platforms may share one Redis with different prefixes).
    """

    backend = "redis"

    def __init__(self, url: str, prefix: str = REDIS_PREFIX) -> None:
        import redis

        self.client = redis.Redis.from_url(url, decode_responses=True)
        self.prefix = prefix

    def _key(self, kind: str, customer_id: str) -> str:
        return f"{self.prefix}:{kind}:{customer_id}"

    def get(self, kind: str, customer_id: str) -> Document | None:
        text = self.client.get(self._key(kind, customer_id))
        return None if text is None else json.loads(str(text))

    def get_many(self, kind: str, customer_ids: Iterable[str]) -> dict[str, Document]:
        found: dict[str, Document] = {}
        for chunk in _chunks(customer_ids):
            values = self.client.mget([self._key(kind, c) for c in chunk])
            found.update({c: json.loads(str(v)) for c, v in zip(chunk, values, strict=True) if v is not None})
        return found

    def put_many(self, kind: str, documents: Mapping[str, Document]) -> int:
        if not documents:
            return 0
        texts = {self._key(kind, c): encode(d) for c, d in documents.items()}
        keys = list(texts)
        stored: list[Any] = []
        for start in range(0, len(keys), CHUNK):
            stored += self.client.mget(keys[start : start + CHUNK])
        changed = {k: texts[k] for k, old in zip(keys, stored, strict=True) if old != texts[k]}
        if changed:
            with self.client.pipeline(transaction=True) as pipe:  # MULTI/EXEC: all or nothing
                pipe.mset(changed)
                pipe.execute()
        return len(changed)

    def delete_many(self, kind: str, customer_ids: Iterable[str]) -> int:
        removed = 0
        for chunk in _chunks(customer_ids):
            removed += int(self.client.delete(*[self._key(kind, c) for c in chunk]) or 0)
        return removed

    def ids(self, kind: str) -> set[str]:
        start = len(self._key(kind, ""))
        return {str(k)[start:] for k in self.client.scan_iter(match=self._key(kind, "*"), count=1_000)}

    def close(self) -> None:
        self.client.close()


def open_documents(url: str | None, engine: Engine) -> Documents:
    """The online store's documents for the `RETENTION_ONLINE_STORE` setting.

    Args:
        url: None or "" for the platform database; a `redis://` or `rediss://` URL for Redis.
        engine: the platform database (the embedded backend's home).

    Raises:
        OnlineStoreError: any other URL scheme.
    """
    if not url:
        return SqlDocuments(engine)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisDocuments(url)
    raise OnlineStoreError(
        f"RETENTION_ONLINE_STORE must be a redis:// URL or unset (the platform database), got {url.split('://')[0]}://..."
    )
