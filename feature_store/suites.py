"""The feature table's Great Expectations suite, generated from the feature definitions.

Each `FeatureDef` carries its valid range, whether NaN is legitimate and its allowed values, so
the suite follows the registry. The row count (the number of active customers at as-of) and the
highest RFM score reach the suite as `$PARAMETER`s at validation time (`suite_parameters`).
"""

from __future__ import annotations

from typing import Any

import great_expectations.expectations as gxe
import pandas as pd

from feature_store.definitions import RFM_BINS_PARAMETER, feature_registry
from retention.params import FeatureParams

SUITE_NAME = "features.customer"
ROW_COUNT_PARAMETER = "active_customers"


def _value(bound: float | str | None) -> Any:
    return {"$PARAMETER": bound} if isinstance(bound, str) else bound


def feature_expectations(params: FeatureParams) -> list[Any]:
    """Expectations on a `compute_features` table (critical unless marked `severity="warning"`).

    Args:
        params: the `features` section of params.yaml (it decides the feature columns).

    Returns:
        One unique non-null key, the row count, and per feature: the column exists, is not null
        (unless NaN is legitimate), lies in its range and, for categories, in its allowed set.
    """
    expectations: list[Any] = [
        gxe.ExpectColumnToExist(column="customer_id"),
        gxe.ExpectColumnValuesToNotBeNull(column="customer_id"),
        gxe.ExpectColumnValuesToBeUnique(column="customer_id"),
        gxe.ExpectTableRowCountToEqual(value={"$PARAMETER": ROW_COUNT_PARAMETER}),
    ]
    for feature in feature_registry(params):
        expectations.append(gxe.ExpectColumnToExist(column=feature.name))
        if not feature.nullable:
            expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=feature.name))
        low, high = feature.bounds
        if low is not None or high is not None:
            expectations.append(
                gxe.ExpectColumnValuesToBeBetween(
                    column=feature.name, min_value=_value(low), max_value=_value(high)
                )
            )
        if feature.allowed is not None:
            expectations.append(
                gxe.ExpectColumnValuesToBeInSet(column=feature.name, value_set=list(feature.allowed))
            )
    return expectations


def feature_suites(params: FeatureParams) -> dict[str, list[Any]]:
    """The feature suites by name, in the shape `QualityService.write_suites` takes.

    Args:
        params: the `features` section of params.yaml.

    Returns:
        {"features.customer": expectations}.
    """
    return {SUITE_NAME: feature_expectations(params)}


def suite_parameters(active_customers: int, params: FeatureParams) -> dict[str, Any]:
    """Values of the feature suite's `$PARAMETER`s for one materialisation.

    Args:
        active_customers: customers with a purchase before as-of (counted independently of the
            feature table, e.g. `SELECT COUNT(DISTINCT customer_id)` over purchases).
        params: the `features` section of params.yaml.

    Returns:
        The parameter values.
    """
    return {ROW_COUNT_PARAMETER: active_customers, RFM_BINS_PARAMETER: params.rfm_quantiles}


def validation_frame(features: pd.DataFrame) -> pd.DataFrame:
    """The feature table as GX validates it: string features as plain object columns.

    Args:
        features: `compute_features`' frame.

    Returns:
        A copy safe for the pandas datasource.
    """
    frame = features.copy()
    for name in frame.columns:
        if isinstance(frame[name].dtype, pd.StringDtype):
            frame[name] = frame[name].astype(object)
    return frame
