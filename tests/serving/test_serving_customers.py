"""Per-customer scores: recommendations (active products, k bounds) and churn (equal to the batch model)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import text

from feature_store.events import EventLog, read_customer_log, read_event_log
from feature_store.online import read_online
from pipelines.campaigns.score import active_products
from serving.customers import (
    churn_states,
    recommend,
)
from tests.serving.conftest import MARKETING_TOKEN, Served, auth
from training.scoring import history_scores

SCORED_CUSTOMERS = 8  # customers of the online store compared with the batch model
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def warehouse(served: Served) -> EventLog:
    return read_event_log(served.engine, "warehouse")


def _ids(served: Served, sql: str) -> list[str]:
    with served.engine.connect() as connection:
        return [row[0] for row in connection.execute(text(sql))]


@pytest.fixture(scope="module")
def scored_ids(served: Served) -> list[str]:
    """Customers spread over the online store (its rows are the churn model's population)."""
    ids = _ids(served, "SELECT customer_id FROM online_features ORDER BY customer_id")
    return [ids[i] for i in np.linspace(0, len(ids) - 1, SCORED_CUSTOMERS).astype(int)]


@pytest.fixture(scope="module")
def without_events(served: Served) -> str:
    return _ids(
        served,
        "SELECT min(customer_id) FROM wh_customers WHERE customer_id NOT IN (SELECT customer_id FROM wh_events)",
    )[0]


@pytest.fixture(scope="module")
def without_purchase(served: Served) -> str:
    return _ids(
        served,
        "SELECT min(customer_id) FROM wh_customers WHERE customer_id NOT IN "
        "(SELECT customer_id FROM wh_events WHERE event_type = 'purchase')",
    )[0]


def _get(served: Served, path: str, **params: object):  # noqa: ANN202
    return served.client.get(path, params=params, headers=auth(MARKETING_TOKEN))


# -- recommendations ------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [0, -1, 101, "ten", ""])
def test_recommendations_reject_bad_k(served: Served, scored_ids: list[str], k: object) -> None:
    response = _get(served, f"/customers/{scored_ids[0]}/recommendations", k=k)
    assert response.status_code == 422


def test_unknown_customer_is_404_on_both_routes(served: Served) -> None:
    for route in ("recommendations", "churn"):
        response = _get(served, f"/customers/C9999999/{route}")
        assert response.status_code == 404
        assert response.json()["detail"] == "unknown customer 'C9999999'"


def test_recommendations_are_the_models_top_k_active_products(
    served: Served, scored_ids: list[str], warehouse: EventLog
) -> None:
    customer = scored_ids[1]
    # when
    response = _get(served, f"/customers/{customer}/recommendations", k=10)
    # then the champion's version is named
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == {"name": "retention-recommender", "version": "1"}
    served_top = pd.DataFrame(body["recommendations"])
    assert served_top["rank"].tolist() == list(range(1, 11))
    # and the products are the model's best active ones on the customer's full warehouse history
    model = served.app.state.models.get("recommender").model
    scores = history_scores(model, warehouse, np.array([customer]))[0]
    ids = np.asarray(model.index.ids).astype(str)
    active = active_products(served.engine)
    assert len(active) < len(ids)  # the fixture's catalogue has inactive products to mask
    ranked = [i for i in ids[np.argsort(-scores, kind="stable")] if i in active]
    assert served_top["product_id"].tolist() == ranked[:10]
    assert np.allclose(served_top["score"], np.sort(scores[np.isin(ids, ranked[:10])])[::-1], rtol=1e-6)


def test_inactive_and_purchased_products_are_masked(served: Served, scored_ids: list[str]) -> None:
    # given the customer's own log and the unmasked ranking
    customer = scored_ids[2]
    model = served.app.state.models.get("recommender").model
    history = read_customer_log(served.engine, customer)
    everything = {str(i) for i in model.index.ids}
    unmasked = recommend(model, history, customer, 5, everything, exclude_purchased=False)
    # when the best product is withdrawn from sale
    masked = recommend(model, history, customer, 5, everything - {unmasked["product_id"].iloc[0]}, False)
    # then the rest move up
    assert masked["product_id"].tolist()[:4] == unmasked["product_id"].tolist()[1:]
    # and asking to leave out purchases leaves out every product the customer bought
    bought = set(history.events.loc[history.events["event_type"] == "purchase", "product_id"])
    assert bought
    fresh = _get(served, f"/customers/{customer}/recommendations", k=100, exclude_purchased=True).json()
    assert not bought & {r["product_id"] for r in fresh["recommendations"]}


def test_a_customer_without_history_gets_the_fallback_ranking(served: Served, without_events: str) -> None:
    response = _get(served, f"/customers/{without_events}/recommendations", k=3)
    assert response.status_code == 200
    assert len(response.json()["recommendations"]) == 3


# -- churn ----------------------------------------------------------------------------------------


def test_a_known_customer_without_purchase_has_no_churn_score(served: Served, without_purchase: str) -> None:
    response = _get(served, f"/customers/{without_purchase}/churn")
    assert response.status_code == 404
    assert "no purchase" in response.json()["detail"]


def test_served_churn_equals_the_batch_model_on_the_whole_warehouse(
    served: Served, scored_ids: list[str], warehouse: EventLog
) -> None:
    # given the champion's batch prediction for every customer at the online store's as-of
    model = served.app.state.models.get("return").model
    as_of = read_online(served.engine, scored_ids[0])["as_of"]
    batch = model.predict(warehouse, as_of, model.horizon_days).set_index("customer_id")
    for customer in scored_ids:
        # when
        response = _get(served, f"/customers/{customer}/churn")
        # then
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model"] == {"name": "retention-return", "version": "1"}
        assert pd.Timestamp(body["as_of"]) == pd.Timestamp(as_of, tz="UTC")  # stored naive UTC
        assert body["horizon_days"] == model.horizon_days
        assert body["p_churn"] == pytest.approx(1 - batch.loc[customer, "p_return"], abs=TOLERANCE)
        assert len(body["reasons"]) == model.config.reason_codes


def test_served_churn_inputs_are_the_populations_row(
    served: Served, scored_ids: list[str], warehouse: EventLog
) -> None:
    """Every rolled input of a served customer equals that customer's row among the whole population
    (RFM scores from the online store included), so the score and its reasons are the batch model's."""
    model = served.app.state.models.get("return").model
    as_of = read_online(served.engine, scored_ids[0])["as_of"]
    population = model.states(warehouse, as_of)
    rows = pd.Index(population[0].customer_id)
    for customer in scored_ids[:3]:
        online = read_online(served.engine, customer)
        served_states = churn_states(
            model, read_customer_log(served.engine, customer, online["as_of"]), as_of, online["features"]
        )
        own = [state.take(np.array([rows.get_loc(customer)])) for state in population]
        for mine, theirs in zip(served_states, own, strict=True):
            pd.testing.assert_frame_equal(mine.tabular, theirs.tabular[mine.tabular.columns])
            for name, values in mine.sequence.items():
                np.testing.assert_array_equal(values, theirs.sequence[name])
        body = _get(served, f"/customers/{customer}/churn").json()
        expected = model.predict_states(own).iloc[0]
        assert body["p_churn"] == pytest.approx(1 - expected["p_return"], abs=TOLERANCE)
        assert body["reasons"] == [expected[f"reason_{k + 1}"] for k in range(model.config.reason_codes)]
