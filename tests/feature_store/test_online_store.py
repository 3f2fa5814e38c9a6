"""The online store's documents behave alike on both backends: the platform database (SQLite and
PostgreSQL) and the local Redis server (db 15, flushed by the test)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from feature_store.online_store import (
    Documents,
    OnlineStoreError,
    RedisDocuments,
    SqlDocuments,
    open_documents,
)
from retention.db import create_db_engine, upgrade

REDIS_URL = "redis://127.0.0.1:6379/15"  # a database the tests own: flushed before and after


@pytest.fixture
def redis_documents() -> Iterator[RedisDocuments]:
    import redis

    store = RedisDocuments(REDIS_URL)
    try:
        store.client.flushdb()
    except redis.ConnectionError as error:  # a clear failure, not a skip: deployments use Redis
        pytest.fail(f"Redis at {REDIS_URL} is needed for this test: {error}")
    yield store
    store.client.flushdb()
    store.close()


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
def documents(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Documents]:
    """The documents on each backend, empty."""
    if request.param == "redis":
        yield request.getfixturevalue("redis_documents")
        return
    url = (
        f"sqlite:///{tmp_path / 'retention.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    upgrade(url)
    engine = create_db_engine(url)
    yield SqlDocuments(engine)
    engine.dispose()


def test_documents_round_trip_by_kind_and_customer(documents: Documents) -> None:
    # given two kinds of documents
    written = documents.put_many(
        "churn", {"C1": {"p_churn": 0.25, "reasons": ["recency_days"]}, "C2": {"p": 1}}
    )
    documents.put_many("recommendations", {"C1": {"products": ["P1", "P2"], "scores": [2.5, 1.0]}})
    # then each is read back under its own kind
    assert written == 2
    assert documents.get("churn", "C1") == {"p_churn": 0.25, "reasons": ["recency_days"]}
    assert documents.get("recommendations", "C1") == {"products": ["P1", "P2"], "scores": [2.5, 1.0]}
    assert documents.get("churn", "C3") is None
    assert documents.get_many("churn", ["C1", "C3", "C2"]) == {
        "C1": {"p_churn": 0.25, "reasons": ["recency_days"]},
        "C2": {"p": 1},
    }
    assert documents.ids("churn") == {"C1", "C2"} and documents.ids("recommendations") == {"C1"}


def test_rewriting_equal_documents_changes_nothing_and_deletes_remove(documents: Documents) -> None:
    # given stored documents
    documents.put_many("churn", {"C1": {"a": 1, "b": [1, 2]}, "C2": {"a": 2}})
    # when the same documents are written again (keys in another order), and one changed
    again = documents.put_many("churn", {"C1": {"b": [1, 2], "a": 1}, "C2": {"a": 2}})
    changed = documents.put_many("churn", {"C1": {"a": 1, "b": [1, 2]}, "C2": {"a": 3}})
    # then only the changed one counts, and it is replaced
    assert (again, changed) == (0, 1)
    assert documents.get("churn", "C2") == {"a": 3}
    # and deleting removes exactly the named customers of that kind
    assert documents.delete_many("churn", ["C2", "C9"]) == 1
    assert documents.ids("churn") == {"C1"}


def test_a_document_that_is_not_json_is_refused_and_nothing_of_the_call_is_stored(
    documents: Documents,
) -> None:
    with pytest.raises(ValueError):
        documents.put_many("churn", {"C1": {"a": 1}, "C2": {"a": float("nan")}})
    assert documents.ids("churn") == set()


def test_the_setting_chooses_the_backend(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'retention.db'}")
    assert isinstance(open_documents(None, engine), SqlDocuments)
    assert isinstance(open_documents("", engine), SqlDocuments)
    store = open_documents(REDIS_URL, engine)
    assert isinstance(store, RedisDocuments)
    store.close()
    with pytest.raises(OnlineStoreError, match="redis://"):
        open_documents("memcached://127.0.0.1", engine)
