"""The feature table's GX suite: generated from the definitions, passes on good features, catches bad ones."""

from __future__ import annotations

from pathlib import Path

from feature_store.core import compute_features
from feature_store.suites import SUITE_NAME, feature_suites, suite_parameters, validation_frame
from retention.params import FeatureParams
from retention.quality import QualityService
from tests.feature_store.conftest import AS_OF, frames_of


def test_feature_suite_passes_good_features_and_fails_bad_ones(
    shop: dict, feature_params: FeatureParams, tmp_path: Path
) -> None:
    features = compute_features(frames_of(shop), AS_OF, feature_params)
    quality = QualityService(tmp_path / "gx", suites_root=tmp_path / "suites")
    quality.write_suites(feature_suites(feature_params))
    parameters = suite_parameters(len(features), feature_params)

    good = quality.validate(SUITE_NAME, validation_frame(features), parameters)

    broken = features.assign(discount_share=1.5, order_trend_30d=-2.0, rfm_segment="vip", recency_days=None)
    bad = quality.validate(SUITE_NAME, validation_frame(broken), {**parameters, "active_customers": 5})
    assert good.success, [o.name for o in good.failed]
    failed = {o.name for o in bad.failed}
    assert {
        "expect_column_values_to_be_between(discount_share)",
        "expect_column_values_to_be_between(order_trend_30d)",
        "expect_column_values_to_be_in_set(rfm_segment)",
        "expect_column_values_to_not_be_null(recency_days)",
        "expect_table_row_count_to_equal()",
    } <= failed
