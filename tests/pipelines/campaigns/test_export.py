"""The marketing export: columns a marketer acts on, reasons and recommendations in words, e-mail only
for consenting contacts, hold-outs never contactable, and CSV cells that cannot run as formulas.

The campaign rows are written directly (independent of target selection), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import insert

from pipelines.campaigns.explain import (
    explain_recommendations,
    predicted_value,
    reasons_in_words,
    risk_decile_text,
)
from pipelines.campaigns.store import (
    CONTACT,
    EXPORT_COLUMNS,
    HOLD_OUT,
    NO_CONSENT,
    campaign_overview,
    customer_campaigns,
    export_csv,
    export_frame,
    neutralise_formulas,
    write_campaign,
)
from retention.db.models import Customer
from retention.db.platform import CampaignTarget
from retention.db.warehouse import WAREHOUSE

AS_OF = datetime(2026, 5, 4)
HORIZON = 30
FEATURES = {
    "recency_days": 64.0,
    "ipt_mean_days": 21.0,
    "tenure_days": 400.0,
    "monetary_90d": 35.0,
    "monetary_365d": 395.0,  # 360 in the 275 days before the last 90: ~118 per 90 days
    "frequency_90d": 1,
    "frequency_365d": 9,
}
PRODUCTS = [  # product_id, category, title
    ("P1", "garden", "Rose shears"),
    ("P2", "garden", "Watering can"),
    ("P3", "kitchen", "Chef knife"),
    ("P4", "kitchen", '=HYPERLINK("http://evil.example","click")'),  # a hostile catalogue title
]


# -- reasons and recommendations in words (pure) ---------------------------------------------------


def test_reasons_say_the_customers_own_values_and_their_direction() -> None:
    # given the reason codes of a customer and their inputs at as-of
    codes = ["recency_days", "monetary_90d", "frequency_90d", "tenure_days"]
    # when
    words = reasons_in_words(codes, FEATURES)
    # then each reason is a sentence with the value and, where the inputs allow, a comparison
    assert words == [
        "no purchase for 64 days; usually buys every 21 days",
        "spent €35 in the last 90 days, down from €118 per 90 days before",
        "1 order in the last 90 days, down from 2.6 orders per 90 days before",
        "customer for 400 days",
    ]


@pytest.mark.parametrize(
    ("code", "features", "expected"),
    [
        (
            "ipt_mean_days",
            {"recency_days": 3.0, "ipt_mean_days": None},
            "only one order so far: no usual rhythm yet",
        ),
        (
            "spend_trend_30d",
            {"spend_trend_30d": -0.5, "monetary_30d": 10.0},
            "spent €10 in the last 30 days, down from €30 in the 30 days before",
        ),
        (
            "order_trend_30d",
            {"order_trend_30d": -1.0, "frequency_30d": 0},
            "no order in the last 30 days, after some in the 30 days before",
        ),
        ("sentiment_mean", {"sentiment_mean": 0.25}, "their reviews sound negative (25% positive)"),
        ("rfm_r", {"rfm_r": 1}, "recency score 1 of 5 (1 = longest since the last purchase)"),
        (
            "recency_over_ipt",
            {"recency_over_ipt": 3.05, "recency_days": 64.0, "ipt_mean_days": 21.0},
            "last purchase 64 days ago, 3.0x their usual gap of 21 days between orders",
        ),
        (  # not stored (a return-model input outside the feature store): derived as the model does
            "recency_over_ipt",
            {"recency_days": 64.0, "ipt_mean_days": 21.0},
            "last purchase 64 days ago, 3.0x their usual gap of 21 days between orders",
        ),
        (
            "amount_last",
            {"amount_last": 12.0, "amount_mean": 40.0},
            "last order €12, below their average of €40",
        ),
    ],
)
def test_each_feature_family_has_its_sentence(code: str, features: dict, expected: str) -> None:
    assert reasons_in_words([code], features) == [expected]


def test_unknown_features_and_missing_values_stay_readable() -> None:
    # an unknown feature: its name in words with its value
    assert reasons_in_words(["basket_gap_7d"], {"basket_gap_7d": 3.25}) == ["basket gap (last 7 days): 3.2"]
    assert reasons_in_words(["mystery_score"], {}) == ["mystery score"]
    # a campaign published before features were stored: the meaning, without a value
    assert reasons_in_words(["recency_days", "frequency_90d"], {}) == [
        "time since the last purchase",
        "number of orders in the last 90 days",
    ]


def test_risk_deciles_in_words() -> None:
    assert risk_decile_text(9) == "decile 9 of 10: among the 20% most at risk of this list"
    assert risk_decile_text(10) == "decile 10 of 10: among the 10% most at risk of this list"
    assert risk_decile_text(2) == "decile 2 of 10: among the 20% least at risk of this list"


def test_recommendations_get_titles_categories_and_the_first_reason_that_holds() -> None:
    # given one customer who bought P1 and viewed P3, another without history, and P2 a bestseller
    events = pd.DataFrame(
        {
            "customer_id": ["A", "A", "B2", "B2", "B2"],
            "product_id": ["P1", "P3", "P2", "P2", "P2"],
            "event_type": ["purchase", "view", "purchase", "purchase", "purchase"],
            "ts": pd.to_datetime(["2026-04-01", "2026-04-02", "2026-03-01", "2026-03-02", "2026-03-03"]),
        }
    )
    products = pd.DataFrame(PRODUCTS, columns=["product_id", "category", "title"])
    # when
    a, new = explain_recommendations(["A", "N"], [["P2", "P3", "P1", "P9"], ["P2"]], events, products)
    # then
    assert [(p.title, p.category, p.why) for p in a] == [
        ("Watering can", "garden", "bought Rose shears"),
        ("Chef knife", "kitchen", "viewed it"),
        ("Rose shears", "garden", "bought it before"),
        (None, None, "picked from their shopping history"),
    ]
    assert a[0].text == "Watering can (garden): bought Rose shears"
    assert new[0].why == "popular in garden"


def test_predicted_value_is_the_recent_spend_rate_over_the_horizon() -> None:
    assert predicted_value(35.0, 30, 90) == pytest.approx(35.0 / 3)
    assert predicted_value(None, 30, 90) == 0.0
    np.testing.assert_allclose(predicted_value(pd.Series([90.0, np.nan]), 30, 90), [30.0, 0.0])


# -- the export (database) --------------------------------------------------------------------------


def with_defaults(targets: pd.DataFrame) -> pd.DataFrame:
    """Every other target column at its default, so the fixture survives added columns."""
    for column in CampaignTarget.__table__.columns:
        if column.name not in targets:
            default = column.default
            value = None if default is None else default.arg(None) if default.is_callable else default.arg
            targets[column.name] = [value] * len(targets)
    return targets


def campaign_row(campaign_id: str, n: int, summary: dict | None = None) -> dict:
    return {
        "campaign_id": campaign_id,
        "name": "winback",
        "as_of": AS_OF,
        "horizon_days": HORIZON,
        "published_at": AS_OF,
        "n_targets": n,
        "n_control": 1,
        "control_share": 1 / n,
        "segments": {"at_risk": n},
        "model_versions": {},
        "params_hash": "p" * 16,
        "content_hash": "c" * 16,
        "funnel": {},
        "exports": {},
        "lift": None,
        "policy": "uplift",
        "summary": summary or {},
    }


def offer_targets(campaign_id: str) -> pd.DataFrame:
    """Four logged customers: a contact with a coupon, one with a reminder, a hold-out, an untreated one."""
    return with_defaults(
        pd.DataFrame(
            {
                "campaign_id": campaign_id,
                "customer_id": ["C1", "C2", "C3", "C4"],
                "arm": ["treatment", "treatment", "control", "untreated"],
                "rank": [1, 2, 3, 4],
                "segment": "at_risk",
                "risk_decile": [9, 10, 5, 1],
                "p_churn": [0.8712, 0.9, 0.5, 0.2],
                "predicted_value": [11.666, 20.0, 5.0, 1.0],
                "value_at_stake": [10.0, 18.0, 2.5, 0.2],
                "reasons": [["recency_days", "monetary_90d"]] * 4,
                "recommendations": [["P2", "P3", "P4"], ["P1"], ["P1"], ["P1"]],
                "offer": ["coupon_10", "reminder", "none", "none"],
                "policy_offer": ["coupon_10", "reminder", "reminder", "none"],
                "uplift_return": [0.03456, 0.01, 0.02, 0.0],
                "uplift_revenue": [5.0, 1.0, 2.0, 0.0],
                "expected_profit": [1.23456, -0.05, 0.5, 0.0],
                "features": [FEATURES, FEATURES, FEATURES, {}],
            }
        )
    )


def add_shop(engine, consent: dict[str, bool], emails: dict[str, str] | None = None) -> None:  # noqa: ANN001
    emails = emails or {}
    customers = [
        {
            "customer_id": c,
            "signup_date": None,
            "country": "DE",
            "marketing_consent": ok,
            "email": emails.get(c, f"{c.lower()}@example.org"),
            "updated_at": AS_OF,
            "batch_id": "b0",
        }
        for c, ok in consent.items()
    ]
    products = [
        {
            "product_id": p,
            "category": category,
            "title": title,
            "description": None,
            "price": 10.0,
            "active": True,
            "updated_at": AS_OF,
            "batch_id": "b0",
        }
        for p, category, title in PRODUCTS
    ]
    bought = [("C1", "P1", "purchase", 20), ("C1", "P3", "view", 10), ("C2", "P2", "purchase", 5)]
    bought += [("C2", "P2", "purchase", 5 + i) for i in range(1, 4)]
    bought += [("C1", "P2", "purchase", -1)]  # after as-of: must not count
    events = [
        {
            "event_id": f"e{i}",
            "customer_id": c,
            "product_id": p,
            "event_type": kind,
            "ts": AS_OF - timedelta(days=days),
            "quantity": 1,
            "price": 10.0,
            "order_id": f"o{i}" if kind == "purchase" else None,
            "session_id": None,
            "updated_at": AS_OF,
            "batch_id": "b0",
        }
        for i, (c, p, kind, days) in enumerate(bought)
    ]
    with engine.begin() as connection:  # e-mail lives only in the shop table; the warehouse has none
        connection.execute(insert(Customer.__table__), [without(c, "batch_id") for c in customers])
        connection.execute(insert(WAREHOUSE["customers"]), [without(c, "email") for c in customers])
        connection.execute(insert(WAREHOUSE["products"]), products)
        connection.execute(insert(WAREHOUSE["events"]), events)


def without(row: dict, column: str) -> dict:
    return {k: v for k, v in row.items() if k != column}


def test_the_export_has_the_marketer_columns(engine) -> None:  # noqa: ANN001
    # given a campaign with two contacts, a hold-out and an untreated row; C2 withdrew consent
    write_campaign(engine, campaign_row("c", 4), offer_targets("c"))
    add_shop(engine, {"C1": True, "C2": False, "C3": True, "C4": True})
    # when
    export = export_frame(engine, "c")
    # then contacts and hold-outs are listed (untreated rows are only logged), in rank order
    assert list(export.columns) == EXPORT_COLUMNS
    assert export["customer_id"].tolist() == ["C1", "C2", "C3"]
    # (C2 was chosen, but without consent now it must not be contacted)
    assert export["action"].tolist() == [CONTACT, NO_CONSENT, HOLD_OUT]
    assert HOLD_OUT == "hold out — do not contact"
    # the offer and expected figures only where the customer is contacted, rounded
    assert export["offer"].tolist() == ["coupon_10", None, None]
    assert export["extra_return_chance_pct"].iloc[0] == pytest.approx(3.5)
    assert export["expected_profit_eur"].iloc[0] == pytest.approx(1.23)
    assert export.loc[1:, ["extra_return_chance_pct", "expected_profit_eur"]].isna().to_numpy().all()
    # the risk as a rounded percentage and what its decile means
    assert export["churn_risk_pct"].tolist() == [87, 90, 50]
    assert export["risk_decile_meaning"].iloc[0] == "decile 9 of 10: among the 20% most at risk of this list"
    assert export["predicted_value_eur"].iloc[0] == pytest.approx(11.67)
    # reasons in words with the customer's values
    assert export["reasons"].iloc[0] == (
        "no purchase for 64 days; usually buys every 21 days; "
        "spent €35 in the last 90 days, down from €118 per 90 days before"
    )
    # products with titles, categories and why (C1 bought P1 in garden and viewed P3)
    products = export["recommended_products"].iloc[0].split("; ")
    assert products[:2] == ["Watering can (garden): bought Rose shears", "Chef knife (kitchen): viewed it"]
    assert export["recommended_product_ids"].iloc[0] == "P2 P3 P4"
    assert export["recommended_products"].iloc[1] == "Rose shears (garden): bought Watering can"
    # the date the lift is measured, and e-mail only for consenting contacts (consent read now)
    assert set(export["lift_measured_on"]) == {(AS_OF + timedelta(days=HORIZON)).date().isoformat()}
    assert export["email"].tolist()[0] == "c1@example.org"
    assert export["email"].iloc[1:].isna().all()


def test_a_preview_is_the_first_rows_of_the_export(engine) -> None:  # noqa: ANN001
    write_campaign(engine, campaign_row("c", 4), offer_targets("c"))
    add_shop(engine, {"C1": True, "C2": True, "C3": True, "C4": True})
    full, preview = export_frame(engine, "c"), export_frame(engine, "c", limit=2)
    pd.testing.assert_frame_equal(preview, full.head(2))


def test_a_campaign_from_before_offers_exports_without_offers_or_values(engine) -> None:  # noqa: ANN001
    # given rows as the migration leaves them: offer "none" on contacts, no features, no uplift
    old = offer_targets("old").drop(
        columns=["offer", "policy_offer", "uplift_return", "expected_profit", "features"]
    )
    write_campaign(engine, campaign_row("old", 4), with_defaults(old))
    add_shop(engine, {"C1": True, "C2": True, "C3": True, "C4": True})
    # when
    export = export_frame(engine, "old")
    # then contacts are still contacts, with a blank offer and reasons that name what they are about
    assert export["action"].tolist() == [CONTACT, CONTACT, HOLD_OUT]
    assert export["offer"].isna().all() and export["expected_profit_eur"].isna().all()
    assert export["reasons"].iloc[0] == "time since the last purchase; spending in the last 90 days"
    overview = campaign_overview(engine, "old")
    assert overview["contacts"] == 2 and overview["hold_outs"] == 1
    assert overview["offers"] == {"unspecified": {"contacts": 2, "hold_outs": 0, "expected_profit": None}}


def test_the_overview_counts_arms_and_the_offer_mix(engine) -> None:  # noqa: ANN001
    write_campaign(engine, campaign_row("c", 4), offer_targets("c"))
    overview = campaign_overview(engine, "c")
    assert (overview["contacts"], overview["hold_outs"], overview["untreated"]) == (2, 1, 1)
    assert overview["offers"]["coupon_10"]["expected_profit"] == pytest.approx(1.23456)
    assert overview["offers"]["reminder"] == {
        "contacts": 1,
        "hold_outs": 1,
        "expected_profit": pytest.approx(-0.05),
    }
    history = customer_campaigns(engine, "C3")
    assert [(h["campaign_id"], h["arm"], h["offer"]) for h in history] == [("c", "control", None)]


# -- CSV injection -------------------------------------------------------------------------------


def test_formula_like_cells_are_neutralised_in_csv() -> None:
    # given text cells a spreadsheet would run, and numbers (a negative one too)
    frame = pd.DataFrame(
        {
            "text": ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "\tx", "\ry", "plain", "a=b", None],
            "number": [-1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
        }
    )
    # when
    safe = neutralise_formulas(frame)
    written = pd.read_csv(io.StringIO(export_csv(frame)), dtype=str, keep_default_na=False)
    # then each such cell starts with an apostrophe; other cells and numbers are unchanged
    assert safe["text"].tolist()[:7] == ["'=1+1", "'+SUM(A1)", "'-2+3", "'@cmd", "'\tx", "'\ry", "plain"]
    assert safe["text"].iloc[7] == "a=b" and pd.isna(safe["text"].iloc[8])
    assert safe["number"].tolist() == frame["number"].tolist()
    assert written["text"].tolist()[:6] == ["'=1+1", "'+SUM(A1)", "'-2+3", "'@cmd", "'\tx", "'\ry"]
    assert written["number"].iloc[0] == "-1.5"
    # and a carriage return or line feed inside a cell cannot split the row
    split = pd.DataFrame({"text": ["ok\r=cmd", "ok\n@cmd"], "n": [1, 2]})
    assert pd.read_csv(io.StringIO(export_csv(split)), dtype=str)["text"].tolist() == ["ok\r=cmd", "ok\n@cmd"]
    assert frame["text"].iloc[0] == "=1+1"  # the caller's frame is not changed


def test_the_csv_export_neutralises_hostile_catalogue_and_customer_values(engine) -> None:  # noqa: ANN001
    # given a product title and an e-mail address that would run as formulas
    write_campaign(engine, campaign_row("c", 4), offer_targets("c"))
    add_shop(engine, {"C1": True, "C2": True, "C3": True, "C4": True}, {"C2": "=cmd|' /C calc'!A0@x.org"})
    export = export_frame(engine, "c")
    assert "=HYPERLINK" in export["recommended_products"].iloc[0]
    # when
    written = pd.read_csv(io.StringIO(export_csv(export)), dtype=str, keep_default_na=False)
    # then no text cell of the file starts like a formula (a negative number is a number)
    cells = written.to_numpy().ravel().tolist()
    numbers = pd.to_numeric(pd.Series(cells), errors="coerce").notna().tolist()
    risky = [
        c
        for c, n in zip(cells, numbers, strict=True)
        if not n and c.startswith(("=", "+", "-", "@", "\t", "\r"))
    ]
    assert not risky
    assert "-0.05" in written["expected_profit_eur"].tolist()
    assert written["email"].iloc[1] == "'=cmd|' /C calc'!A0@x.org"
    # a formula inside a cell (not at its start) is left alone: the cell is text
    assert "Chef knife (kitchen): viewed it; =HYPERLINK" in written["recommended_products"].iloc[0]


def test_the_export_says_when_a_listed_product_is_due_for_reorder(engine) -> None:  # noqa: ANN001
    # given a campaign that kept P1's repurchase interval (14 days) and P2's (30 days); C1 bought P1
    # 20 days before as-of and is recommended P1 and P2 (bought after as-of: not counted)
    targets = offer_targets("c")
    targets.at[0, "recommendations"] = ["P1", "P2"]
    summary = {"reorder_intervals": {"P1": 14.0, "P2": 30.0}}
    write_campaign(engine, campaign_row("c", 4, summary), targets)
    add_shop(engine, {"C1": True, "C2": True, "C3": True, "C4": True})
    # when exported
    products = export_frame(engine, "c")["recommended_products"].iloc[0].split("; ")
    # then P1 is due and says so; P2, never bought before as-of, keeps its other reason
    assert (
        products[0]
        == "Rose shears (garden): time to reorder: usually re-bought every 14 days, last bought 20 days ago"
    )
    assert "reorder" not in products[1]
