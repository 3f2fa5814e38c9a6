"""Per-customer answers read from the materialised results, computed on demand only when they are missing.

A request reads one document of the online store (`pipelines.materialise`) and checks it against
what is served now: the champion's version, the online store's as-of and feature version (churn),
the active catalogue (recommendations). A current document is the answer: no model runs. A missing
or stale one is computed as before (`serving.customers`: the customer's own rows and the champion)
in a small pool of threads, for at most `RETENTION_API_COMPUTE_BUDGET_SECONDS`; past that the
request gets `OverBudget` (503) and the computation is left to finish on its own. The on-demand
answer is not stored: documents are written only by the materialisation and by accepted events.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Engine, select

from feature_store.definitions import feature_version
from feature_store.events import read_customer_log
from feature_store.online import read_online
from feature_store.online_store import Documents
from pipelines.campaigns.score import active_products
from pipelines.materialise import (
    CHURN,
    RECOMMENDATIONS,
    ListContext,
    catalogue_fingerprint,
    churn_is_fresh,
    served_list,
)
from retention.db.warehouse import OnlineFeatures
from serving.customers import NotScored, customer_exists, recommend, served_churn
from serving.models import ChampionModels, ServedModel
from serving.schemas import Churn, ModelRef, Recommendation, Recommendations

T = TypeVar("T")
log = logging.getLogger("retention.serving")
ON_DEMAND_THREADS = min(4, os.cpu_count() or 1)  # the computations are CPU-bound: more threads only queue


class UnknownCustomer(LookupError):
    """The warehouse does not know the customer."""


class NoOnlineRow(NotScored):
    """The customer has no row in the online store: no purchase before its as-of."""


class OverBudget(RuntimeError):
    """An answer that is not materialised could not be computed within the time budget."""


class Cached(Generic[T]):
    """A value recomputed at most every `seconds`; 0: on every call.

    Past its age the value is recomputed in a background thread while callers keep the previous
    one (stale while revalidating): no request waits on the query behind it but the very first. A
    failed recomputation keeps the previous value and is logged.
    """

    def __init__(self, compute: Callable[[], T], seconds: float) -> None:
        self.compute, self.seconds = compute, seconds
        self._lock = threading.Lock()
        self._value: T | None = None
        self._at = -float("inf")
        self._refreshing = False

    def get(self) -> T:
        with self._lock:
            if self._value is None or self.seconds <= 0:
                self._value, self._at = self.compute(), time.monotonic()
                return self._value
            if not self._refreshing and time.monotonic() - self._at >= self.seconds:
                self._refreshing = True
                threading.Thread(target=self._refresh, name="cached-refresh", daemon=True).start()
            return self._value

    def _refresh(self) -> None:
        try:
            value = self.compute()
        except Exception:  # keep serving the previous value; the next call past the age tries again
            log.exception("could not refresh a cached value; keeping the previous one")
            value = None
        with self._lock:
            if value is not None:
                self._value, self._at = value, time.monotonic()
            self._refreshing = False


class ServedResults:
    """The churn and recommendation answers of the API.

    Args:
        engine: the platform database.
        documents: the online store's documents.
        models: the served champions.
        budget_seconds: how long an on-demand computation may take.
        refresh_seconds: how often the online store's as-of and the active catalogue are re-read.
    """

    def __init__(
        self,
        engine: Engine,
        documents: Documents,
        models: ChampionModels,
        budget_seconds: float,
        refresh_seconds: float,
    ) -> None:
        self.engine, self.documents, self.models = engine, documents, models
        self.budget_seconds = budget_seconds
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self.online_as_of = Cached(self._online_as_of, refresh_seconds)
        self.catalogue = Cached(self._catalogue, refresh_seconds)
        self._feature_versions: dict[tuple[str, str], str] = {}
        self._contexts: dict[tuple[str, str, str], ListContext] = {}

    def close(self) -> None:
        """Stop the on-demand threads (running computations finish); a later request starts new ones,
        as the app may be started again (each lifespan closes what the previous one used)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(ON_DEMAND_THREADS, thread_name_prefix="on-demand")
            return self._pool

    # -- cached facts --------------------------------------------------------------------------

    def _online_as_of(self) -> datetime | None:
        table = OnlineFeatures.__table__
        with self.engine.connect() as connection:  # refresh_online writes one as-of for every row
            return connection.execute(select(table.c.as_of).limit(1)).scalar()

    def _catalogue(self) -> tuple[set[str], str]:
        active = active_products(self.engine)
        return active, catalogue_fingerprint(active)

    def feature_version(self, served: ServedModel) -> str:
        """The feature version the return champion was trained on (computed once per version)."""
        key = (served.name, served.version)
        if key not in self._feature_versions:
            self._feature_versions[key] = feature_version(served.model.params.features)
        return self._feature_versions[key]

    def list_context(self, served: ServedModel) -> ListContext:
        """The recommender champion's list context over the current active catalogue."""
        active, fingerprint = self.catalogue.get()
        key = (served.name, served.version, fingerprint)
        if key not in self._contexts:
            self._contexts = {key: ListContext.of(served.model, served.name, served.version, active)}
        return self._contexts[key]

    # -- answers -------------------------------------------------------------------------------

    def _within_budget(self, compute: Callable[..., T], *args: Any) -> T:
        future = self._executor().submit(compute, *args)
        try:
            return future.result(timeout=self.budget_seconds)
        except FutureTimeout:
            raise OverBudget(
                f"the answer is not materialised yet and was not computed within {self.budget_seconds:g}s: "
                "retry in a moment"
            ) from None

    def materialised_churn(self, customer_id: str) -> Churn | None:
        """The churn answer if its document is current, else None; one document read, no model: the routes
        call it on the event loop (a thread hop would cost more than the read, and lengthen the tail).

        Raises:
            NoChampion: the alias, as last read, names no version.
        """
        served = self.models.current("return")
        # None: the alias must be read first, which `churn` does in a thread
        return None if served is None else self._current_churn(served, customer_id)

    def _current_churn(self, served: ServedModel, customer_id: str) -> Churn | None:
        document = self.documents.get(CHURN, customer_id)
        expected = self.feature_version(served)
        if not churn_is_fresh(document, served.name, served.version, expected, self.online_as_of.get()):
            return None
        assert document is not None  # checked by churn_is_fresh
        return Churn(
            customer_id=customer_id,
            as_of=document["as_of"],
            horizon_days=document["horizon_days"],
            p_churn=document["p_churn"],
            reasons=document["reasons"],
            feature_version=document["feature_version"],
            model=ModelRef(name=served.name, version=served.version),
        )

    def churn(self, customer_id: str) -> Churn:
        """The return champion's churn answer for a customer: the materialised one, else computed now.

        Raises:
            NoChampion: no return model is promoted.
            UnknownCustomer: the warehouse does not know the customer.
            NoOnlineRow: the customer is not in the online store (no purchase before its as-of).
            NotScored: no purchase before the online store's as-of.
            StaleOnlineStore: the online store holds another feature version than the champion's.
            OverBudget: not materialised and not computed within the budget.
        """
        served = self.models.get("return")
        return self._current_churn(served, customer_id) or self._within_budget(self._churn_now, customer_id)

    def _churn_now(self, customer_id: str) -> Churn:
        if not customer_exists(self.engine, customer_id):
            raise UnknownCustomer(customer_id)
        online = read_online(self.engine, customer_id)
        if online is None:
            raise NoOnlineRow("has no purchase before the online store's as-of: no churn score")
        score, served = served_churn(self.engine, self.models, customer_id, online)
        return Churn(
            customer_id=customer_id,
            as_of=score.as_of,
            horizon_days=score.horizon_days,
            p_churn=score.p_churn,
            reasons=score.reasons,
            feature_version=online["feature_version"],
            model=ModelRef(name=served.name, version=served.version),
        )

    def materialised_recommendations(
        self, customer_id: str, k: int, exclude_purchased: bool
    ) -> Recommendations | None:
        """The top-k if the customer's list is current, else None; like `materialised_churn`, for the event loop.

        Raises:
            NoChampion: the alias, as last read, names no version.
        """
        served = self.models.current("recommender")
        return None if served is None else self._current_list(served, customer_id, k, exclude_purchased)

    def _current_list(
        self, served: ServedModel, customer_id: str, k: int, exclude_purchased: bool
    ) -> Recommendations | None:
        _, fingerprint = self.catalogue.get()
        context = self._contexts.get((served.name, served.version, fingerprint))
        if context is None:  # built once per champion and catalogue, by `recommendations` in a thread
            return None
        document = self.documents.get(RECOMMENDATIONS, customer_id)
        if document is None or not context.is_fresh(document):
            return None
        pairs = served_list(document, k, exclude_purchased)
        return Recommendations(
            customer_id=customer_id,
            k=k,
            model=ModelRef(name=served.name, version=served.version),
            recommendations=[
                Recommendation(rank=rank, product_id=product, score=score)
                for rank, (product, score) in enumerate(pairs, start=1)
            ],
        )

    def recommendations(self, customer_id: str, k: int, exclude_purchased: bool) -> Recommendations:
        """The recommender champion's top-k active products for a customer: the materialised list, else
        computed now.

        Raises:
            NoChampion: no recommender is promoted.
            UnknownCustomer: the warehouse does not know the customer.
            OverBudget: not materialised and not computed within the budget.
        """
        served = self.models.get("recommender")
        self.list_context(served)  # built here, in a thread, for `materialised_recommendations`
        materialised = self._current_list(served, customer_id, k, exclude_purchased)
        if materialised is not None:
            return materialised
        return self._within_budget(self._recommendations_now, served, customer_id, k, exclude_purchased)

    def _recommendations_now(
        self, served: ServedModel, customer_id: str, k: int, exclude_purchased: bool
    ) -> Recommendations:
        if not customer_exists(self.engine, customer_id):
            raise UnknownCustomer(customer_id)
        history = read_customer_log(self.engine, customer_id)
        active, _ = self.catalogue.get()
        top = recommend(served.model, history, customer_id, k, active, exclude_purchased)
        return Recommendations(
            customer_id=customer_id,
            k=k,
            model=ModelRef(name=served.name, version=served.version),
            recommendations=[Recommendation(**row) for row in top.to_dict("records", into=dict)],
        )
