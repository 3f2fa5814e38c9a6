"""Materialised per-customer results for serving: churn scores with reasons and top-N product lists.

The champions' answers are computed here, off the request path, and kept in the online store
(`feature_store.online_store`), one document per customer and kind:
- `churn`: P(no purchase within the horizon) and its reason codes at the online store's as-of,
  from the batch scoring path (`training.scoring.churn_scores`, what campaigns score with);
- `recommendations`: the best `LIST_LENGTH` active products plus as many as the customer has
  bought (so `exclude_purchased` still leaves a full list), from the recommender's materialised
  customer states (`pipelines.campaigns.state_cache`, `training.scoring.StateScorer`), with the
  tail of items they came from: the customer's online state, which accepted events extend.
Each document names the model version it was computed with (churn also the feature version and
as-of, lists the active catalogue's fingerprint), so a new champion, a refreshed online store or a
changed catalogue makes it stale and serving computes the answer on demand instead.

`task_materialise` runs after every extraction (the shop_extract DAG: only changed documents are
written, and only customers whose tail or purchases changed get a new list) and after the gates
(train_models: a new champion rewrites every document). Writes are atomic per batch and a rerun
writes nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select

from feature_store.events import EventLog, read_customer_log
from feature_store.online_store import Document, Documents
from retention.db.warehouse import WAREHOUSE, OnlineFeatures
from retention.settings import Settings
from training.recommender.sequences import PAD
from training.scoring import SCORE_BATCH, RepeatPart, StateScorer, churn_scores, repeat_of, top_k

log = logging.getLogger("retention.materialise")
CHURN, RECOMMENDATIONS = "churn", "recommendations"
LIST_LENGTH = 100  # products per materialised list: the API's largest k
PURCHASE = "purchase"


def _iso(when: Any) -> str:
    return pd.Timestamp(when).isoformat()


# -- churn ----------------------------------------------------------------------------------------


def churn_documents(
    model: Any,
    name: str,
    version: str,
    history: EventLog,
    as_of: datetime,
    feature_version: str,
    customers: Iterable[str] | None = None,
) -> dict[str, Document]:
    """The churn document of every customer the return model scores at `as_of` (or of `customers`).

    Args:
        model: the return champion (`ReturnModel`).
        name, version: its registered name and version.
        history: the warehouse log before `as_of` (the whole population: RFM scores rank it).
        as_of: the online store's as-of.
        feature_version: the online store's feature version (the champion's).
        customers: keep only these customers (None: everyone scored).

    Returns:
        customer id -> {model, version, feature_version, as_of, horizon_days, p_churn, reasons}.
    """
    frame = churn_scores(model, history, pd.Timestamp(as_of), int(model.horizon_days))
    if customers is not None:
        frame = frame[frame["customer_id"].isin(set(customers))]
    common = {
        "model": name,
        "version": str(version),
        "feature_version": feature_version,
        "as_of": _iso(as_of),
        "horizon_days": int(model.horizon_days),
    }
    return {
        str(customer): common | {"p_churn": float(p), "reasons": [str(r) for r in reasons]}
        for customer, p, reasons in zip(
            frame["customer_id"].tolist(), frame["p_churn"].tolist(), frame["reasons"].tolist(), strict=True
        )
    }


def churn_is_fresh(
    document: Document | None, name: str, version: str, feature_version: str, as_of: datetime | None
) -> bool:
    """Whether a churn document is the served champion's answer at the online store's current as-of."""
    return (
        document is not None
        and as_of is not None
        and (document.get("model"), document.get("version"), document.get("feature_version"))
        == (name, str(version), feature_version)
        and pd.Timestamp(document["as_of"]) == pd.Timestamp(as_of)
    )


# -- recommendations ------------------------------------------------------------------------------


def catalogue_fingerprint(active: Iterable[str]) -> str:
    """A short fingerprint of the set of products that may be recommended."""
    digest = hashlib.blake2b("\x1f".join(sorted(map(str, active))).encode(), digest_size=8)
    return digest.hexdigest()


@dataclass(frozen=True)
class ListContext:
    """What materialised lists are valid for: a recommender version and an active catalogue.

    Attributes:
        name, version: the registered recommender.
        catalogue: `catalogue_fingerprint` of the active products.
        allowed: (n_items,) the model's products that may be recommended.
    """

    name: str
    version: str
    catalogue: str
    allowed: np.ndarray

    @classmethod
    def of(cls, model: Any, name: str, version: str, active: set[str]) -> ListContext:
        """The context of a recommender and the active products."""
        ids = np.asarray(model.index.ids).astype(str)
        return cls(name, str(version), catalogue_fingerprint(active), np.isin(ids, list(active)))

    def is_fresh(self, document: Document | None) -> bool:
        """Whether a list document was computed for this context."""
        return document is not None and (
            document.get("model"),
            document.get("version"),
            document.get("catalogue"),
        ) == (self.name, self.version, self.catalogue)


def _sequence_events(model: Any, events: pd.DataFrame) -> pd.DataFrame:
    config = model.sequence_config
    if config is None:
        raise RuntimeError("the recommender has no sequence config: fit or load it first")
    return events[events["event_type"].isin(list(config.event_types))]


def customer_facts(model: Any, events: pd.DataFrame) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Each customer's purchased products the model knows, and the time of their last sequence event.

    Returns:
        (customer id -> sorted product ids bought, customer id -> ISO time of the last event that
        makes the model's sequences).
    """
    known = set(np.asarray(model.index.ids).astype(str))
    bought = events.loc[events["event_type"] == PURCHASE, ["customer_id", "product_id"]].astype(str)
    bought = bought[bought["product_id"].isin(known)].drop_duplicates()
    purchased = {str(c): sorted(g["product_id"]) for c, g in bought.groupby("customer_id", sort=False)}
    used = _sequence_events(model, events)
    last = used.groupby("customer_id")["ts"].max() if len(used) else pd.Series(dtype="datetime64[us]")
    return purchased, {str(c): _iso(t) for c, t in last.items()}


def list_documents(
    model: Any,
    context: ListContext,
    customer_ids: list[str],
    tails: np.ndarray,
    vectors: np.ndarray,
    purchased: dict[str, list[str]],
    last_event: dict[str, str],
    scorer: StateScorer | None = None,
    repeat: RepeatPart | None = None,
) -> dict[str, Document]:
    """The list documents of customers from their states (one matrix multiply per batch).

    Args:
        model: the recommender the states belong to.
        context: its version and the active catalogue.
        customer_ids: the customers.
        tails: (n, max_length) their tails, PAD-left-padded.
        vectors: (n, D) their state vectors.
        purchased: customer id -> products bought (`customer_facts`).
        last_event: customer id -> time of the last sequence event ("" or absent: none).
        scorer: `StateScorer(model, context.allowed)` when the caller keeps one (it costs the
            item matrix); None: built here.
        repeat: the buy-again part of `customer_ids` (`training.scoring.repeat_of`), for a model
            with one.

    Returns:
        customer id -> {model, version, catalogue, tail, last_event, purchased, products, scores}:
        the best LIST_LENGTH + (bought products that may be recommended) products, best first.
    """
    scorer = scorer or StateScorer(model, context.allowed)
    product_ids = np.asarray(model.index.ids).astype(object)
    allowed_ids = set(product_ids[context.allowed].tolist())
    documents: dict[str, Document] = {}
    for start in range(0, len(customer_ids), SCORE_BATCH):
        stop = min(start + SCORE_BATCH, len(customer_ids))
        bought = [purchased.get(c, []) for c in customer_ids[start:stop]]
        lengths = [LIST_LENGTH + sum(p in allowed_ids for p in b) for b in bought]
        batch_repeat = None if repeat is None else (repeat[0][start:stop], repeat[1][start:stop])
        scores = scorer.scores(vectors[start:stop], tails[start:stop], batch_repeat)
        columns, values = top_k(scores, max(lengths))
        picked = product_ids[scorer.columns[columns]]
        for row, customer in enumerate(customer_ids[start:stop]):
            keep = np.isfinite(values[row, : lengths[row]])
            tail = tails[start + row]
            documents[customer] = {
                "model": context.name,
                "version": context.version,
                "catalogue": context.catalogue,
                "tail": [int(c) for c in tail[tail != PAD]],
                "last_event": last_event.get(customer, ""),
                "purchased": bought[row],
                "products": picked[row, : lengths[row]][keep].tolist(),
                "scores": [float(v) for v in values[row, : lengths[row]][keep]],
            }
    return documents


def served_list(document: Document, k: int, exclude_purchased: bool) -> list[tuple[str, float]]:
    """The first k (product, score) pairs of a list document, bought products left out if asked."""
    bought = set(document["purchased"]) if exclude_purchased else set()
    pairs = zip(document["products"], document["scores"], strict=True)
    return [(p, float(s)) for p, s in pairs if p not in bought][:k]


def customer_list(
    engine: Engine, model: Any, context: ListContext, customer_id: str, scorer: StateScorer | None = None
) -> Document:
    """One customer's list document from their whole source-table log (events accepted since the last
    extraction included): the real-time path when no current document can be extended."""
    history = read_customer_log(engine, customer_id, source="shop")
    ids = np.array([customer_id])
    tails = model.state_tails(model.history_sequences(history), ids)
    purchased, last = customer_facts(model, history.events)
    vectors = model.state_vectors(tails)
    repeat = repeat_of(model, history, ids)
    return list_documents(model, context, [customer_id], tails, vectors, purchased, last, scorer, repeat)[
        customer_id
    ]


def extended_lists(
    model: Any,
    context: ListContext,
    documents: dict[str, Document],
    events: pd.DataFrame,
    scorer: StateScorer | None = None,
) -> dict[str, Document]:
    """Current list documents extended by their customers' new events, rescored together.

    Each customer's new items are appended to their stored tail as `history_sequences` would
    order them (by time, repeats collapsed when the model does), so no history is read, and every
    extended customer's state is computed in one batch.

    Args:
        model: the recommender.
        context: its version and the active catalogue (the documents are current for it).
        documents: customer id -> their current list document.
        events: new events (customer_id, product_id, event_type, ts).
        scorer: as in `list_documents`.

    Returns:
        The new documents of the customers of `events` that have one in `documents` and whose new
        events are all later than the document's last: the others (no document, or an event out of
        order or resent) are left out, for `customer_list` to recompute from the whole log. A model
        with a buy-again part extends none: that part reads purchase times, which documents do not
        keep, so every customer is recomputed from the whole log.
    """
    if getattr(model, "repeat", None) is not None:
        return {}
    config = model.sequence_config
    events = events.assign(customer_id=events["customer_id"].astype(str))
    used = _sequence_events(model, events).sort_values(["customer_id", "ts"], kind="stable")
    codes = model.index.codes(used["product_id"].astype(str).to_numpy())
    new_items = {str(c): codes[rows] for c, rows in used.groupby("customer_id", sort=False).indices.items()}
    first = used.groupby("customer_id")["ts"].min()
    purchased, latest = customer_facts(model, events)
    sequences: dict[str, np.ndarray] = {}
    bought: dict[str, list[str]] = {}
    last: dict[str, str] = {}
    for customer in set(events["customer_id"]) & set(documents):
        document = documents[customer]
        prior = document.get("last_event") or ""
        if prior and customer in first.index and pd.Timestamp(first[customer]) <= pd.Timestamp(prior):
            continue  # out of order, or a resent event: the whole log orders and deduplicates them
        added = new_items.get(customer, np.zeros(0, dtype=np.int64))
        sequence = np.r_[np.asarray(document["tail"], dtype=np.int64), added[added != PAD].astype(np.int64)]
        if config.collapse_repeats and len(sequence):
            sequence = sequence[np.r_[True, sequence[1:] != sequence[:-1]]]
        sequences[customer] = sequence
        bought[customer] = sorted(set(document["purchased"]) | set(purchased.get(customer, [])))
        last[customer] = latest.get(customer) or prior
    ids = sorted(sequences)
    if not ids:
        return {}
    tails = model.state_tails({c: s for c, s in sequences.items() if len(s)}, np.array(ids))
    return list_documents(model, context, ids, tails, model.state_vectors(tails), bought, last, scorer)


# -- the task ---------------------------------------------------------------------------------------


def _write(documents: Documents, kind: str, computed: dict[str, Document], batch: int = SCORE_BATCH) -> int:
    """Write computed documents in atomic batches, with a progress line per batch; returns rows changed."""
    ids, written = list(computed), 0
    for start in range(0, len(ids), batch):
        chunk = ids[start : start + batch]
        written += documents.put_many(kind, {c: computed[c] for c in chunk})
        log.info(
            "%s: %d of %d customers written (%d changed so far)", kind, start + len(chunk), len(ids), written
        )
    return written


def online_as_of(engine: Engine) -> tuple[datetime, str, list[str]] | None:
    """(as-of, feature version, customer ids) of the online feature store; None when it is empty."""
    table = OnlineFeatures.__table__
    with engine.connect() as connection:
        rows = connection.execute(select(table.c.customer_id, table.c.as_of, table.c.feature_version)).all()
    if not rows:
        return None
    return rows[0].as_of, rows[0].feature_version, [r.customer_id for r in rows]


def materialise_churn(engine: Engine, documents: Documents, model: Any, name: str, version: str) -> int:
    """Write the return champion's churn document of every customer of the online store.

    Nothing is written when the online store is empty or holds another feature version than the
    champion was trained on (serving then answers 503 on demand, saying so). Documents of customers
    who left the online store are removed.

    Returns:
        Documents new or changed.
    """
    from feature_store.definitions import feature_version
    from feature_store.events import read_event_log

    online = online_as_of(engine)
    if online is None:
        log.warning("the online store is empty: no churn scores to materialise")
        return 0
    as_of, stored_version, population = online
    expected = feature_version(model.params.features)
    if stored_version != expected:
        log.warning(
            "the online store holds feature version %s, %s v%s needs %s: churn not materialised",
            stored_version,
            name,
            version,
            expected,
        )
        return 0
    history = read_event_log(engine, "warehouse", before=as_of)
    computed = churn_documents(model, name, version, history, as_of, expected, population)
    written = _write(documents, CHURN, computed)
    gone = documents.ids(CHURN) - set(computed)
    documents.delete_many(CHURN, gone)
    log.info("churn: %d documents (%d changed, %d removed) at %s", len(computed), written, len(gone), as_of)
    return written


def materialise_lists(
    engine: Engine,
    documents: Documents,
    settings: Settings,
    model: Any,
    name: str,
    version: str,
    as_of: datetime,
    customers: Iterable[str] | None = None,
) -> int:
    """Write the recommender champion's list document of every warehouse customer (or of `customers`).

    States come from the campaign's state cache (only customers whose tail changed are encoded).
    A stored document of the same version and catalogue that already holds later events (accepted
    through the API since this history's end) is kept: the extraction will catch up with it.

    Returns:
        Documents new or changed.
    """
    from feature_store.events import read_event_log
    from pipelines.campaigns.score import active_products
    from pipelines.campaigns.state_cache import current_states

    when = pd.Timestamp(as_of)
    history = read_event_log(engine, "warehouse", before=when.to_pydatetime())
    states = current_states(settings, model, name, version, history, when)
    if customers is None:
        table = WAREHOUSE["customers"]
        with engine.connect() as connection:
            ids = sorted(str(c) for c in connection.execute(select(table.c.customer_id)).scalars())
    else:
        ids = sorted({str(c) for c in customers})
    context = ListContext.of(model, name, version, active_products(engine))
    purchased, last_event = customer_facts(model, history.events)
    written = 0
    for start in range(0, len(ids), SCORE_BATCH):
        chunk = ids[start : start + SCORE_BATCH]
        vectors, tails, known = states.take(chunk)
        if not known.all():
            vectors[~known] = model.state_vectors(tails[~known])
        repeat = repeat_of(model, history, np.asarray(chunk, dtype=str), when)
        computed = list_documents(model, context, chunk, tails, vectors, purchased, last_event, None, repeat)
        stored = documents.get_many(RECOMMENDATIONS, chunk)
        for customer, old in stored.items():
            if context.is_fresh(old) and (old.get("last_event") or "") > computed[customer]["last_event"]:
                del computed[customer]  # it holds events this history does not have yet
        written += documents.put_many(RECOMMENDATIONS, computed)
        log.info(
            "recommendations: %d of %d customers (%d changed so far)", start + len(chunk), len(ids), written
        )
    return written


def task_materialise(
    as_of: datetime | None, customers: list[str] | None = None, settings: Settings | None = None
) -> dict[str, int]:
    """Materialise the champions' results into the online store (the DAGs' and CLI's entry point).

    Args:
        as_of: the end of the published history (a DAG run's data interval end; None: the end of
            the newest published interval).
        customers: recompute only these customers' lists (None: every customer; unchanged
            documents are not rewritten either way). Churn is always the whole online store, whose
            as-of moves every day.
        settings: the deployment settings (default: from the environment).

    Returns:
        Documents new or changed per kind; a kind without a champion is skipped (0).
    """
    from mlflow import MlflowClient

    from feature_store.online_store import open_documents
    from pipelines.extract.publish import data_end
    from retention.clock import naive_utc, utc_now
    from retention.context import platform_session
    from training.families import family
    from training.registry import CHAMPION, alias_version, load_native

    with platform_session(settings) as (settings, _, engine):
        if as_of is None:
            end = data_end(engine)
            as_of = end.to_pydatetime() if end is not None else utc_now()
        documents = open_documents(settings.online_store_url, engine)
        client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
        written = {CHURN: 0, RECOMMENDATIONS: 0}
        try:
            for kind, family_name in ((CHURN, "return"), (RECOMMENDATIONS, "recommender")):
                name = family(family_name).registered_name
                version = alias_version(client, name, CHAMPION)
                if version is None:
                    log.info("%s has no champion yet: no %s to materialise", name, kind)
                    continue
                model = load_native(settings.mlflow_tracking_uri, name, version)
                if kind == CHURN:
                    written[kind] = materialise_churn(engine, documents, model, name, version)
                else:
                    written[kind] = materialise_lists(
                        engine, documents, settings, model, name, version, naive_utc(as_of), customers
                    )
        finally:
            documents.close()
        return written
