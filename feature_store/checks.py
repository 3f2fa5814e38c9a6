"""Validate a materialised feature table with its GX suite before it is written anywhere."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from sqlalchemy import Engine, text

from feature_store.offline import features_at
from feature_store.suites import SUITE_NAME, suite_parameters, validation_frame
from retention.params import FeatureParams
from retention.quality import QualityService, data_docs_file


class FeatureValidationError(RuntimeError):
    """The feature table failed critical expectations; nothing was written."""


def active_customers(engine: Engine, as_of: datetime) -> int:
    """Customers with a purchase before `as_of`, counted in SQL apart from the feature code."""
    query = text(
        "SELECT COUNT(DISTINCT customer_id) FROM wh_events WHERE event_type = 'purchase' AND ts < :as_of"
    )
    with engine.connect() as connection:
        return int(connection.execute(query, {"as_of": as_of}).scalar_one())


def checked_features(
    engine: Engine, as_of: datetime, params: FeatureParams, quality: QualityService
) -> pd.DataFrame:
    """Compute the features as of `as_of` and validate them with the `features.customer` suite.

    Raises:
        FeatureValidationError: a critical expectation failed; the message names each one.
    """
    features = features_at(engine, as_of, params)
    report = quality.validate(
        SUITE_NAME, validation_frame(features), suite_parameters(active_customers(engine, as_of), params)
    )
    if not report.success:
        failed = "\n  ".join(f"{o.name}: {o.detail}" for o in report.failed)
        raise FeatureValidationError(
            f"features as of {as_of} failed {len(report.failed)} critical expectation(s); nothing "
            f"written:\n  {failed}\nGX Data Docs: {data_docs_file(quality.runtime_dir, report.docs_url)}"
        )
    return features
