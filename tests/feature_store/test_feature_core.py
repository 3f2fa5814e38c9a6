"""Pure feature-store core: hand-computed values, point-in-time correctness, training sets, sequences."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from feature_store.core import (
    EVENT_CODES,
    build_sequences,
    build_training_set,
    compute_features,
    to_padded,
    training_cutoffs,
)
from feature_store.definitions import RFM_SEGMENTS, feature_registry, feature_version, rfm_score, rfm_segment
from retention.params import FeatureParams
from tests.feature_store.conftest import AS_OF, frames_of

NAN = float("nan")
# Worked out by hand from the tiny shop in conftest.py (as-of 2026-03-01 00:00, params.yaml windows
# 7/30/90/365, activity 30 days, trend 30 days, 5 RFM bins). Customer d only viewed: not in the
# population. Customer e bought once in 2024, before the 730-day history window.
EXPECTED = {
    "a": {
        "recency_days": 1 + 830 / 1440,  # last order 02-27 10:10
        "tenure_days": 90.0,  # signup 2025-12-01
        "frequency_7d": 1,
        "frequency_30d": 1,
        "frequency_90d": 2,
        "frequency_365d": 2,
        "monetary_7d": 36.0,  # o1: 2 x 8 + 20
        "monetary_30d": 36.0,
        "monetary_90d": 41.0,  # + o2: 5
        "monetary_365d": 41.0,
        "ipt_mean_days": 38 + 70 / 1440,  # 01-20 09:00 -> 02-27 10:10
        "ipt_std_days": NAN,  # a single gap
        "view_count_30d": 1,
        "cart_count_30d": 3,
        "purchase_count_30d": 2,
        "cart_abandonment_30d": 1 / 3,  # p1 and p2 bought after their carts, p3 not
        "category_entropy": 1.0,  # books, toys (p3 has no category)
        "discount_share": 16 / 41,  # p1 at 8 < list 10
        "review_count": 2,
        "rating_mean": 3.0,
        "sentiment_mean": 0.9,  # r2 is not scored
        "order_trend_30d": 0.0,  # 1 order vs 1 order
        "spend_trend_30d": (36 - 5) / 41,
        "rfm_r": 3,
        "rfm_f": 2,
        "rfm_m": 4,
        "rfm_segment": "about_to_sleep",
    },
    "b": {
        "recency_days": 28.0,
        "tenure_days": 272.5,  # no signup date: first event 2025-06-01 12:00
        "frequency_7d": 0,
        "frequency_30d": 1,
        "frequency_90d": 1,
        "frequency_365d": 2,  # two lines without order_id at one timestamp are one order
        "monetary_7d": 0.0,
        "monetary_30d": 0.0,  # o3 has no unit price
        "monetary_90d": 0.0,
        "monetary_365d": 30.0,
        "ipt_mean_days": 245 - 12.5 / 24,
        "ipt_std_days": NAN,
        "view_count_30d": 0,
        "cart_count_30d": 0,
        "purchase_count_30d": 1,
        "cart_abandonment_30d": NAN,
        "category_entropy": -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3)),  # books x2, toys
        "discount_share": 0.0,
        "review_count": 0,
        "rating_mean": NAN,
        "sentiment_mean": NAN,
        "order_trend_30d": 1.0,
        "spend_trend_30d": 0.0,
        "rfm_r": 2,
        "rfm_f": 2,
        "rfm_m": 2,
        "rfm_segment": "hibernating",
    },
    "c": {
        "recency_days": 4 / 24,  # 02-28 20:00; the purchase at as-of itself is excluded
        "tenure_days": 45.0,
        "frequency_7d": 1,
        "frequency_30d": 2,
        "frequency_90d": 3,
        "frequency_365d": 3,
        "monetary_7d": 20.0,
        "monetary_30d": 30.0,
        "monetary_90d": 34.0,
        "monetary_365d": 34.0,
        "ipt_mean_days": (35 + 14 + 20 / 24) / 2,
        "ipt_std_days": (35 - 14 - 20 / 24) / math.sqrt(2),
        "view_count_30d": 0,
        "cart_count_30d": 0,
        "purchase_count_30d": 2,
        "cart_abandonment_30d": NAN,
        "category_entropy": 1.0,
        "discount_share": 4 / 34,  # p3 at 4 < list 5
        "review_count": 1,  # r4 is written at as-of: excluded
        "rating_mean": 5.0,
        "sentiment_mean": 0.8,
        "order_trend_30d": (2 - 1) / 3,
        "spend_trend_30d": (30 - 4) / 34,
        "rfm_r": 4,
        "rfm_f": 4,
        "rfm_m": 3,
        "rfm_segment": "loyal",
    },
    "e": {
        "recency_days": 790.0,
        "tenure_days": 790.0,
        **{f"frequency_{w}d": 0 for w in (7, 30, 90, 365)},
        **{f"monetary_{w}d": 0.0 for w in (7, 30, 90, 365)},
        "ipt_mean_days": NAN,
        "ipt_std_days": NAN,
        "view_count_30d": 0,
        "cart_count_30d": 0,
        "purchase_count_30d": 0,
        "cart_abandonment_30d": NAN,
        "category_entropy": NAN,
        "discount_share": NAN,
        "review_count": 0,
        "rating_mean": NAN,
        "sentiment_mean": NAN,
        "order_trend_30d": 0.0,
        "spend_trend_30d": 0.0,
        "rfm_r": 1,
        "rfm_f": 1,
        "rfm_m": 1,
        "rfm_segment": "hibernating",
    },
}


def assert_matches_expected(features: pd.DataFrame) -> None:
    """Every feature of every customer equals the hand-computed value."""
    assert features["customer_id"].tolist() == sorted(EXPECTED)
    for row in features.to_dict("records"):
        expected = EXPECTED[row["customer_id"]]
        assert set(expected) == set(row) - {"customer_id"}
        for name, value in expected.items():
            if isinstance(value, str):
                assert row[name] == value, (row["customer_id"], name)
            else:
                assert row[name] == pytest.approx(value, nan_ok=True, abs=1e-9), (row["customer_id"], name)


def test_features_equal_hand_computed_values(shop: dict, feature_params: FeatureParams) -> None:
    features = compute_features(frames_of(shop), AS_OF, feature_params)

    assert_matches_expected(features)
    assert list(features.columns) == ["customer_id", *(f.name for f in feature_registry(feature_params))]
    for feature in feature_registry(feature_params):
        assert str(features[feature.name].dtype) in {feature.dtype, "str"}, feature.name


def later_rows(shop: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The shop plus rows at or after as-of: events, reviews with sentiment, a new customer."""
    later = {name: frame.copy() for name, frame in shop.items()}
    new_customer = pd.DataFrame({"customer_id": ["f"], "signup_date": pd.to_datetime(["2026-03-01"])})
    later["customers"] = pd.concat([later["customers"], new_customer], ignore_index=True)
    events = pd.DataFrame(
        [
            ("x1", "a", "p1", "purchase", "2026-03-01 00:00", 5, 1.0, "o9"),
            ("x2", "b", "p2", "cart", "2026-03-02 10:00", 1, None, None),
            ("x3", "d", "p3", "purchase", "2026-03-03 10:00", 1, 5.0, "o10"),
            ("x4", "e", "p2", "view", "2026-03-01 00:00", 1, None, None),
            ("x5", "f", "p2", "purchase", "2026-03-04 10:00", 2, 20.0, "o11"),
        ],
        columns=shop["events"].columns,
    ).assign(ts=lambda f: pd.to_datetime(f["ts"]), price=lambda f: f["price"].astype(float))
    later["events"] = pd.concat([later["events"], events], ignore_index=True)
    reviews = pd.DataFrame(
        {
            "review_id": ["r5", "r6"],
            "customer_id": ["b", "f"],
            "product_id": ["p1", "p2"],
            "ts": pd.to_datetime(["2026-03-01 00:00", "2026-03-05 00:00"]),
            "rating": [1, 2],
        }
    )
    later["reviews"] = pd.concat([later["reviews"], reviews], ignore_index=True)
    later["sentiment"] = pd.concat(
        [later["sentiment"], pd.DataFrame({"review_id": ["r5", "r6"], "score": [0.0, 0.1]})],
        ignore_index=True,
    )
    return later


def test_rows_at_or_after_as_of_change_nothing(shop: dict, feature_params: FeatureParams) -> None:
    before = compute_features(frames_of(shop), AS_OF, feature_params)

    after = compute_features(frames_of(later_rows(shop)), AS_OF, feature_params)

    pd.testing.assert_frame_equal(before, after)


def test_row_order_does_not_change_features(shop: dict, feature_params: FeatureParams) -> None:
    shuffled = {name: frame.sample(frac=1.0, random_state=7) for name, frame in shop.items()}

    features = compute_features(frames_of(shuffled), AS_OF, feature_params)

    assert_matches_expected(features)


def test_rfm_scores_are_quantiles_and_ties_share_the_lower_score() -> None:
    values = np.array([5.0, 1.0, 1.0, 1.0, 9.0, 7.0, 3.0, 3.0, 8.0, 2.0])

    scores = rfm_score(values, bins=5)

    assert scores.tolist() == [4, 1, 1, 1, 5, 4, 3, 3, 5, 2]
    permutation = np.random.default_rng(0).permutation(len(values))
    assert rfm_score(values[permutation], bins=5).tolist() == scores[permutation].tolist()
    segments = rfm_segment(np.array([5, 5, 1, 3]), np.array([5, 1, 5, 3]), bins=5)
    assert segments.tolist() == ["champions", "new", "cant_lose", "need_attention"]
    all_pairs = rfm_segment(np.repeat(np.arange(1, 11), 10), np.tile(np.arange(1, 11), 10), bins=10)
    assert set(all_pairs) <= set(RFM_SEGMENTS)


def test_version_follows_definitions(feature_params: FeatureParams) -> None:
    names = [f.name for f in feature_registry(feature_params)]
    other = feature_params.model_copy(update={"windows_days": [14, 60]})

    assert len(names) == len(set(names))
    assert feature_version(feature_params) == feature_version(feature_params.model_copy())
    assert feature_version(other) != feature_version(feature_params)
    assert "frequency_14d" in [f.name for f in feature_registry(other)]
    assert feature_version(feature_params.model_copy(update={"rfm_quantiles": 4})) != feature_version(
        feature_params
    )


def test_training_set_labels_cutoffs_and_population(shop: dict, feature_params: FeatureParams) -> None:
    params = feature_params.model_copy(update={"horizon_days": 30, "training_cutoffs": 2})

    rows = build_training_set(frames_of(later_rows(shop)), AS_OF, params)

    cutoffs = training_cutoffs(AS_OF, params)
    assert cutoffs == [pd.Timestamp("2025-12-31"), pd.Timestamp("2026-01-30")]
    assert cutoffs[-1] + pd.Timedelta(days=params.horizon_days) <= pd.Timestamp(AS_OF)
    by_cutoff = {c: part.set_index("customer_id")["returned"].to_dict() for c, part in rows.groupby("cutoff")}
    # 2025-12-31: buyers so far b, e; b's next purchase is 02-01 (outside [12-31, 01-30)).
    assert by_cutoff[cutoffs[0]] == {"b": 0, "e": 0}
    # 2026-01-30: a (bought 01-20), b, c (01-10), e; a, b and c buy again before 03-01.
    assert by_cutoff[cutoffs[1]] == {"a": 1, "b": 1, "c": 1, "e": 0}
    assert list(rows.columns[:2]) == ["customer_id", "cutoff"] and rows.columns[-1] == "returned"
    at_cutoff = compute_features(frames_of(shop), cutoffs[1].to_pydatetime(), params)
    mine = rows[rows["cutoff"] == cutoffs[1]].drop(columns=["cutoff", "returned"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(mine, at_cutoff)


def test_sequences_keep_the_last_events_before_as_of(shop: dict, feature_params: FeatureParams) -> None:
    params = feature_params.model_copy(update={"sequence_length": 3})

    sequences = build_sequences(later_rows(shop)["events"], shop["products"], AS_OF, params)

    a = sequences[sequences["customer_id"] == "a"]
    assert a["position"].tolist() == [0, 1, 2]
    assert a["event_type"].tolist() == ["cart", "purchase", "purchase"]  # e02, e03, e04 (ties by event_id)
    assert a["product_id"].tolist() == ["p1", "p1", "p2"]
    assert a["category"].tolist() == ["books", "books", "toys"]
    assert a["gap_hours"].tolist() == pytest.approx([5 / 60, 5 / 60, 0.0])  # e01 10:00 precedes e02
    assert a["age_hours"].tolist() == pytest.approx([37 + 55 / 60, 37 + 50 / 60, 37 + 50 / 60])
    assert a["amount"].tolist() == [0.0, 16.0, 20.0]
    b = sequences[sequences["customer_id"] == "b"]
    assert b["gap_hours"].tolist() == pytest.approx([0.5, 0.0, 245 * 24 - 12.5])  # e08 view precedes e09
    assert math.isnan(b["amount"].iloc[-1])  # a purchase without a unit price
    assert set(sequences["customer_id"]) == {"a", "b", "c", "d", "e"}  # no events of f before as-of
    assert sequences.groupby("customer_id").size().max() == 3

    padded = to_padded(sequences, length=4)

    row = list(padded["customer_id"]).index("d")
    assert padded["mask"][row].tolist() == [False, False, False, True]
    assert padded["event_type"][row].tolist() == [0, 0, 0, EVENT_CODES["view"]]
    assert padded["product_id"].shape == (5, 4)
