"""Served answers from materialised results, and events that update them: on the platform database and
on the local Redis server (db 15, flushed by the test).

Each backend gets its own copy of the trained platform, materialised once (`task_materialise`, as
the DAGs run it), then served with an events token. The copy is written to (materialisation,
events), never the shared platform.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from feature_store.events import EventLog, read_customer_log, read_event_log
from feature_store.online import read_online
from feature_store.online_store import Documents
from pipelines.materialise import CHURN, LIST_LENGTH, RECOMMENDATIONS, customer_list, task_materialise
from retention.db.models import Event
from retention.db.warehouse import WAREHOUSE
from retention.settings import Settings
from serving.app import create_app
from serving.settings import ServingSettings
from tests.serving.conftest import ADMIN_TOKEN, MARKETING_TOKEN, auth, serve_copy
from tests.trained_platform import TrainedPlatform
from training.scoring import history_scores

EVENTS_TOKEN = "events-test-token-5555555555"
REDIS_URL = "redis://127.0.0.1:6379/15"
APPLIED_WITHIN_SECONDS = 10.0  # generous: a test, not a benchmark (benchmarks/serving_materialised.py)


@dataclass(frozen=True)
class Materialised:
    settings: Settings
    engine: Engine
    client: TestClient
    documents: Documents
    written: dict[str, int]
    rerun: dict[str, int]


@pytest.fixture(scope="module", params=["database", "redis"])
def materialised(
    request: pytest.FixtureRequest,
    trained_platform: TrainedPlatform,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Materialised]:
    """A private copy of the platform with the champions' answers materialised, served with an events token."""
    settings, engine, _ = serve_copy(
        trained_platform, tmp_path_factory.mktemp(f"materialised-{request.param}")
    )
    if request.param == "redis":
        import redis

        redis.Redis.from_url(REDIS_URL).flushdb()
        settings = replace(settings, online_store_url=REDIS_URL)
    written = task_materialise(trained_platform.as_of, settings=settings)
    rerun = task_materialise(trained_platform.as_of, settings=settings)
    serving = ServingSettings(
        marketing_token=MARKETING_TOKEN,
        admin_token=ADMIN_TOKEN,
        events_token=EVENTS_TOKEN,
        model_refresh_seconds=0.0,
    )
    app = create_app(settings, serving)
    with TestClient(app) as client:
        yield Materialised(settings, engine, client, app.state.results.documents, written, rerun)
    if request.param == "redis":
        redis.Redis.from_url(REDIS_URL).flushdb()
    engine.dispose()


def _get(m: Materialised, path: str, **params: object):  # noqa: ANN202
    return m.client.get(path, params=params, headers=auth(MARKETING_TOKEN))


def _post(m: Materialised, events: list[dict], token: str = EVENTS_TOKEN):  # noqa: ANN202
    return m.client.post("/events", json={"events": events}, headers=auth(token))


def _online_ids(m: Materialised) -> list[str]:
    from retention.db.warehouse import OnlineFeatures

    with m.engine.connect() as connection:
        return sorted(connection.execute(select(OnlineFeatures.customer_id)).scalars())


def _shop_events(m: Materialised) -> int:
    with m.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(Event)).scalar_one())


@pytest.fixture(scope="module")
def warehouse(materialised: Materialised) -> EventLog:
    return read_event_log(materialised.engine, "warehouse")


# -- materialisation -----------------------------------------------------------------------------


def test_every_scored_customer_is_materialised_once_and_a_rerun_writes_nothing(
    materialised: Materialised,
) -> None:
    online = _online_ids(materialised)
    assert materialised.written[CHURN] == len(online)
    assert materialised.documents.ids(CHURN) == set(online)
    with materialised.engine.connect() as connection:
        customers = set(connection.execute(select(WAREHOUSE["customers"].c.customer_id)).scalars())
    assert materialised.written[RECOMMENDATIONS] == len(customers) > len(online)  # with or without history
    assert materialised.documents.ids(RECOMMENDATIONS) == customers
    assert materialised.rerun == {CHURN: 0, RECOMMENDATIONS: 0}


def test_churn_is_served_from_the_materialised_document_and_equals_the_batch_model(
    materialised: Materialised, warehouse: EventLog
) -> None:
    app = materialised.client.app
    model = app.state.models.get("return").model  # type: ignore[attr-defined]
    ids = _online_ids(materialised)
    as_of = read_online(materialised.engine, ids[0])["as_of"]
    batch = model.predict(warehouse, as_of, model.horizon_days).set_index("customer_id")
    for customer in ids[:: max(1, len(ids) // 5)]:
        body = _get(materialised, f"/customers/{customer}/churn").json()
        assert body["p_churn"] == pytest.approx(1 - batch.loc[customer, "p_return"], abs=1e-6)
        assert body["model"] == {"name": "retention-return", "version": "1"}
        assert pd.Timestamp(body["as_of"]) == pd.Timestamp(as_of, tz="UTC")  # stored naive UTC
    # and what is served is the document (no model runs): a changed document is what the route answers
    customer = ids[0]
    document = materialised.documents.get(CHURN, customer)
    assert document is not None
    materialised.documents.put_many(CHURN, {customer: document | {"p_churn": 0.123456}})
    try:
        assert _get(materialised, f"/customers/{customer}/churn").json()["p_churn"] == 0.123456
        # a document of another model version is stale: the answer is computed again
        materialised.documents.put_many(CHURN, {customer: document | {"version": "0", "p_churn": 0.5}})
        recomputed = _get(materialised, f"/customers/{customer}/churn").json()
        assert recomputed["p_churn"] == pytest.approx(document["p_churn"], abs=1e-6)
    finally:
        materialised.documents.put_many(CHURN, {customer: document})


def test_recommendations_are_served_from_the_list_and_match_the_model(
    materialised: Materialised, warehouse: EventLog
) -> None:
    app = materialised.client.app
    model = app.state.models.get("recommender").model  # type: ignore[attr-defined]
    ids = np.asarray(model.index.ids).astype(str)
    customer = _online_ids(materialised)[3]
    document = materialised.documents.get(RECOMMENDATIONS, customer)
    assert document is not None and len(document["products"]) >= min(LIST_LENGTH, len(ids))
    body = _get(materialised, f"/customers/{customer}/recommendations", k=10).json()
    served = pd.DataFrame(body["recommendations"])
    assert served["rank"].tolist() == list(range(1, 11))
    assert served["product_id"].tolist() == document["products"][:10]
    # the list is the model's best active products on the customer's history (the fused state path
    # equals the sequence path up to float32 rounding)
    scores = history_scores(model, warehouse, np.array([customer]))[0]
    active = app.state.results.catalogue.get()[0]  # type: ignore[attr-defined]
    expected = {p: s for p, s in zip(ids, scores, strict=True) if p in active}
    np.testing.assert_allclose(
        served["score"], [expected[p] for p in served["product_id"]], rtol=1e-4, atol=1e-5
    )
    best = sorted(expected.values(), reverse=True)[:10]
    np.testing.assert_allclose(sorted(served["score"], reverse=True), best, rtol=1e-4, atol=1e-5)
    # and leaving out purchases still gives k products, none of them bought
    bought = set(document["purchased"])
    assert bought, "the fixture customer has purchases"
    fresh = _get(
        materialised, f"/customers/{customer}/recommendations", k=LIST_LENGTH, exclude_purchased=True
    )
    products = [r["product_id"] for r in fresh.json()["recommendations"]]
    assert len(products) == min(LIST_LENGTH, len(expected) - len(bought & set(expected)))
    assert not bought & set(products)


def test_a_missing_answer_beyond_the_compute_budget_is_503(materialised: Materialised) -> None:
    results = materialised.client.app.state.results  # type: ignore[attr-defined]
    customer = _online_ids(materialised)[4]
    document = materialised.documents.get(CHURN, customer)
    materialised.documents.delete_many(CHURN, [customer])
    budget = results.budget_seconds
    results.budget_seconds = 1e-6  # no computation fits
    try:
        response = _get(materialised, f"/customers/{customer}/churn")
        assert response.status_code == 503
        assert "not materialised" in response.json()["detail"]
        results.budget_seconds = 60.0  # a shared, loaded machine: any computation fits
        assert _get(materialised, f"/customers/{customer}/churn").status_code == 200  # computed on demand
    finally:
        results.budget_seconds = budget
        materialised.documents.put_many(CHURN, {customer: document})


# -- events ---------------------------------------------------------------------------------------


def test_events_need_the_write_token(materialised: Materialised) -> None:
    event = {"user_id": "C0000001", "item_id": "P0000001", "ts": "2026-04-02T10:00:00", "event_type": "view"}
    assert materialised.client.post("/events", json={"events": [event]}).status_code == 401
    assert _post(materialised, [event], MARKETING_TOKEN).status_code == 403
    assert _post(materialised, [event], ADMIN_TOKEN).status_code == 403


@pytest.mark.parametrize(
    ("event", "named"),
    [
        ({"event_type": "like"}, "unknown event type"),
        ({"ts": "yesterday-ish"}, "unparsable date/time"),
        ({"quantity": 0}, "must be >= 1"),
        ({"price": -1.0}, "must be >= 0"),
        ({"colour": "red"}, "colour"),
        ({"user_id": ""}, "user_id"),
    ],
)
def test_malformed_events_are_422_naming_the_problem_and_nothing_is_stored(
    materialised: Materialised, event: dict, named: str
) -> None:
    good = {"user_id": "C0000001", "item_id": "P0000001", "ts": "2026-04-02T10:00:00", "event_type": "view"}
    before = _shop_events(materialised)
    response = _post(materialised, [good, good | {"ts": "2026-04-02T10:00:01"} | event])
    assert response.status_code == 422
    assert named in str(response.json()["detail"])
    assert _shop_events(materialised) == before


def test_an_accepted_event_updates_the_customers_recommendations(materialised: Materialised) -> None:
    app = materialised.client.app
    model = app.state.models.get("recommender").model  # type: ignore[attr-defined]
    customer = _online_ids(materialised)[5]
    before = _get(materialised, f"/customers/{customer}/recommendations", k=10).json()["recommendations"]
    stored = materialised.documents.get(RECOMMENDATIONS, customer)
    assert stored is not None
    # when the customer views a product they have not touched lately, after their last event
    last = pd.Timestamp(stored["last_event"])
    new_item = next(
        p for p in before[3:] if model.index.codes([p["product_id"]])[0] not in stored["tail"][-3:]
    )
    when = (last + timedelta(hours=1)).isoformat()
    events_before = _shop_events(materialised)
    response = _post(
        materialised,
        [{"user_id": customer, "item_id": new_item["product_id"], "ts": when, "event_type": "view"}],
    )
    # then it is accepted and stored in the source tables (extraction publishes it later)
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 1, "stored": 1, "customers": [customer]}
    assert _shop_events(materialised) == events_before + 1
    assert app.state.events.wait(APPLIED_WITHIN_SECONDS)  # type: ignore[attr-defined]
    # and the customer's online state ends with the new item, and their list changed
    updated = materialised.documents.get(RECOMMENDATIONS, customer)
    assert updated["tail"][-1] == int(model.index.codes([new_item["product_id"]])[0])
    assert updated["last_event"] == pd.Timestamp(when).isoformat()
    after = _get(materialised, f"/customers/{customer}/recommendations", k=10).json()["recommendations"]
    assert after != before
    # and extending the stored state equals recomputing it from the whole source-table log
    context = app.state.results.list_context(app.state.models.get("recommender"))  # type: ignore[attr-defined]
    full = customer_list(materialised.engine, model, context, customer)
    assert full["tail"] == updated["tail"] and full["products"] == updated["products"]
    np.testing.assert_allclose(full["scores"], updated["scores"], rtol=1e-5)
    # and a resent event is accepted, not stored twice, and changes nothing
    again = _post(
        materialised,
        [{"user_id": customer, "item_id": new_item["product_id"], "ts": when, "event_type": "view"}],
    )
    assert again.json()["stored"] == 0 and _shop_events(materialised) == events_before + 1
    assert app.state.events.wait(APPLIED_WITHIN_SECONDS)  # type: ignore[attr-defined]
    assert materialised.documents.get(RECOMMENDATIONS, customer)["products"] == updated["products"]
    # and the warehouse still holds only published rows
    assert read_customer_log(materialised.engine, customer).events["ts"].max() < pd.Timestamp(when)
