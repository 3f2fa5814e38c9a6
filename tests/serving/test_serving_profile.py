"""The customer profile route: the served scores explained, the online store's segment and values,
favourite categories, explained recommendations and the campaign history; no contact details; 404s."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from feature_store.online import read_online
from pipelines.campaigns.explain import predicted_value
from retention.params import load_params
from tests.serving.conftest import (
    CAMPAIGN_ID,
    CAMPAIGN_TARGETS,
    MARKETING_TOKEN,
    OLD_CAMPAIGN_ID,
    OLD_CAMPAIGN_TARGETS,
    SAME_ORIGIN,
    Served,
    auth,
    customer_ids,
)


def _get(served: Served, path: str, **params: object):  # noqa: ANN202
    return served.client.get(path, params=params, headers=auth(MARKETING_TOKEN))


def _scalar(served: Served, sql: str) -> str:
    with served.engine.connect() as connection:
        return connection.execute(text(sql)).scalar_one()


@pytest.fixture(scope="module")
def in_both_campaigns(served: Served) -> str:
    """A scored customer (in the online store) listed in the synthetic campaign and the old one."""
    listed = set(customer_ids(served.engine)[: min(CAMPAIGN_TARGETS, OLD_CAMPAIGN_TARGETS)])
    with served.engine.connect() as connection:
        online = {r[0] for r in connection.execute(text("SELECT customer_id FROM online_features"))}
    both = sorted(listed & online)
    assert both, "the fixture's first customers should include a scored one"
    return both[0]


@pytest.fixture(scope="module")
def profile(served: Served, in_both_campaigns: str) -> dict:
    response = _get(served, f"/customers/{in_both_campaigns}/profile")
    assert response.status_code == 200, response.text
    return response.json()


def test_the_churn_risk_is_the_served_score_with_reasons_in_words(
    served: Served, in_both_campaigns: str, profile: dict
) -> None:
    churn = _get(served, f"/customers/{in_both_campaigns}/churn").json()
    risk = profile["churn"]
    assert risk["p_churn"] == pytest.approx(churn["p_churn"], abs=1e-9)
    assert risk["risk_pct"] == round(churn["p_churn"] * 100)
    assert [r["code"] for r in risk["reasons"]] == churn["reasons"]
    assert risk["model"] == churn["model"]
    for reason in risk["reasons"]:  # a sentence, not the feature's name
        assert reason["text"] and reason["text"] != reason["code"] and "_" not in reason["text"]


def test_segment_scores_tenure_value_and_sentiment_come_from_the_online_store(
    served: Served, in_both_campaigns: str, profile: dict
) -> None:
    features = read_online(served.engine, in_both_campaigns)["features"]
    params = load_params(served.settings.params_path)
    assert profile["segment"] == features["rfm_segment"] == profile["rfm"]["segment"]
    assert profile["rfm"]["recency_score"] == features["rfm_r"]
    assert profile["rfm"]["frequency_score"] == features["rfm_f"]
    assert profile["rfm"]["monetary_score"] == features["rfm_m"]
    assert profile["tenure_days"] == pytest.approx(features["tenure_days"])
    value_days, horizon = params.campaign.value_days, params.campaign.horizon_days
    expected = predicted_value(features[f"monetary_{value_days}d"], horizon, value_days)
    assert profile["predicted_value"] == pytest.approx(expected, abs=0.01)
    assert profile["sentiment"]["reviews"] == features["review_count"]
    assert profile["favourite_categories"], "the customer has purchases"
    assert all(c["items"] >= 1 for c in profile["favourite_categories"])


def test_recommendations_are_the_served_ones_with_titles_and_reasons(
    served: Served, in_both_campaigns: str, profile: dict
) -> None:
    k = len(profile["recommendations"])
    served_top = _get(served, f"/customers/{in_both_campaigns}/recommendations", k=k).json()
    assert [r["product_id"] for r in profile["recommendations"]] == [
        r["product_id"] for r in served_top["recommendations"]
    ]
    first = profile["recommendations"][0]
    title = _scalar(served, f"SELECT title FROM wh_products WHERE product_id = '{first['product_id']}'")
    assert first["title"] == title and first["category"] and first["why"]


def test_the_campaign_history_shows_offers_and_measured_responses(profile: dict) -> None:
    history = {entry["campaign_id"]: entry for entry in profile["campaigns"]}
    assert [e["campaign_id"] for e in profile["campaigns"]] == [CAMPAIGN_ID, OLD_CAMPAIGN_ID]  # newest first
    new, old = history[CAMPAIGN_ID], history[OLD_CAMPAIGN_ID]
    assert new["returned"] is None and new["revenue"] is None  # not measured yet
    assert old["returned"] is not None and old["revenue"] is not None
    actions = ("contact", "hold out — do not contact", "not contacted (the policy chose no contact)")
    assert new["action"] in actions and old["action"] in actions
    assert (new["offer"] is not None) == (new["action"] == "contact")
    assert old["offer"] is None  # published before offers


def test_the_profile_never_shows_contact_details(served: Served, in_both_campaigns: str) -> None:
    email = _scalar(served, f"SELECT email FROM customers WHERE customer_id = '{in_both_campaigns}'")
    body = _get(served, f"/customers/{in_both_campaigns}/profile").text
    assert email and email not in body and "email" not in body and "@" not in body


def test_an_unknown_customer_is_404(served: Served) -> None:
    response = _get(served, "/customers/C9999999/profile")
    assert response.status_code == 404
    assert response.json()["detail"] == "unknown customer 'C9999999'"


def test_a_customer_without_purchase_still_has_a_profile(served: Served) -> None:
    customer = _scalar(
        served,
        "SELECT min(customer_id) FROM wh_customers WHERE customer_id NOT IN (SELECT customer_id FROM online_features)",
    )
    response = _get(served, f"/customers/{customer}/profile")
    assert response.status_code == 200
    body = response.json()
    assert body["churn"] is None and body["rfm"] is None and body["predicted_value"] is None
    assert any("no purchase" in note for note in body["notes"])
    assert body["recommendations"], "the recommender still ranks products for them"


def test_the_profile_page_renders_every_section(
    served: Served, in_both_campaigns: str, profile: dict
) -> None:
    client = served.client
    client.cookies.clear()
    client.post("/ui/login", data={"token": MARKETING_TOKEN}, headers=SAME_ORIGIN)
    page = client.get(f"/ui/customers/{in_both_campaigns}")
    client.cookies.clear()
    assert page.status_code == 200
    for section in ("overview", "rfm", "churn", "sentiment", "categories", "recommendations", "campaigns"):
        assert f'<section id="{section}">' in page.text
    assert f"{profile['churn']['risk_pct']}%" in page.text
    assert profile["churn"]["reasons"][0]["text"] in page.text.replace("&#39;", "'")
