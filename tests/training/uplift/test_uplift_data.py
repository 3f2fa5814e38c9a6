"""Campaign logs: what is read, and the clear errors of what cannot be."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.uplift.data import FeatureEncoder, UpliftDataError, read_campaign_log, read_customers

LOG = pd.DataFrame(
    {
        "user_id": ["u1", "u2", "u3", "u4", "u5", "u6"],
        "arm": ["none", "coupon", "none", "coupon", "mail", "none"],
        "returned": [0, 1, 1, 0, 1, 0],
        "spend": [0.0, 12.5, 3.0, 0.0, 7.0, 0.0],
        "tenure": [10, 200, 35, 5, 80, 400],
        "channel": ["web", "app", "web", "store", "app", "web"],
    }
)


def _write(frame: pd.DataFrame, tmp_path: Path, name: str = "log.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_a_log_is_read_with_arm_share_propensities(tmp_path):
    log = read_campaign_log(_write(LOG, tmp_path), "returned", "none", features=["tenure", "channel"])
    assert log.treatments == ("coupon", "mail") and log.binary
    assert np.allclose(log.propensity, [0.5, 1 / 3, 0.5, 1 / 3, 1 / 6, 0.5])
    assert not read_campaign_log(_write(LOG, tmp_path), "spend", "none", features=["tenure"]).binary


def test_logged_propensities_are_used_and_checked(tmp_path):
    log = read_campaign_log(
        _write(LOG.assign(propensity=0.2), tmp_path), "returned", "none", features=["tenure"]
    )
    assert np.allclose(log.propensity, 0.2)
    with pytest.raises(UpliftDataError, match="'propensity' must be a probability"):
        read_campaign_log(
            _write(LOG.assign(propensity=1.5), tmp_path), "returned", "none", features=["tenure"]
        )


@pytest.mark.parametrize(
    ("change", "options", "message"),
    [
        (lambda f: f.drop(columns="arm"), {}, "has no column 'arm'"),
        (lambda f: f, {"outcome": "bought"}, "has no column 'bought'"),
        (
            lambda f: f,
            {"control": "nobody"},
            "control arm 'nobody' is not in column 'arm' \\(arms: coupon, mail, none\\)",
        ),
        (lambda f: f.assign(returned=["no", 1, 1, 0, 1, 0]), {}, "outcome 'returned' is not numeric"),
        (lambda f: f.assign(returned=[0, -1, 1, 0, 1, 0]), {}, "must be 0/1 or an amount >= 0"),
        (lambda f: f.assign(arm="none"), {}, "holds only the control arm"),
        (lambda f: f.assign(returned=[0, None, 1, 0, 1, 0]), {}, "is empty in 1 rows"),
    ],
)
def test_bad_logs_fail_naming_the_problem(tmp_path, change, options, message):
    kwargs = {"outcome": "returned", "control": "none", **options}
    with pytest.raises(UpliftDataError, match=message):
        read_campaign_log(
            _write(change(LOG.copy()), tmp_path), kwargs["outcome"], kwargs["control"], features=["tenure"]
        )


def test_missing_file_and_missing_customer_columns(tmp_path):
    with pytest.raises(UpliftDataError, match="file not found"):
        read_campaign_log(tmp_path / "nope.csv", "returned", "none")
    customers = _write(LOG[["user_id", "tenure"]], tmp_path, "customers.csv")
    with pytest.raises(UpliftDataError, match="the customers file has no column 'channel'"):
        read_customers(customers, ["tenure", "channel"])


def test_hillstrom_format_maps_segment_and_row_numbers(tmp_path):
    raw = pd.DataFrame(
        {
            "recency": [1, 2],
            "history_segment": ["1) $0 - $100", "2) $100 - $200"],
            "history": [50.0, 150.0],
            "mens": [1, 0],
            "womens": [0, 1],
            "zip_code": ["Urban", "Rural"],
            "newbie": [0, 1],
            "channel": ["Web", "Phone"],
            "segment": ["No E-Mail", "Womens E-Mail"],
            "visit": [0, 1],
            "conversion": [0, 0],
            "spend": [0.0, 0.0],
        }
    )
    log = read_campaign_log(_write(raw, tmp_path), "visit", "No E-Mail", fmt="hillstrom")
    assert list(log.user_id) == ["0", "1"] and list(log.arm) == ["No E-Mail", "Womens E-Mail"]
    assert (
        "conversion" not in log.features and "spend" not in log.features
    )  # other outcomes are never features
    with pytest.raises(UpliftDataError, match="not in column 'segment'"):
        read_campaign_log(_write(raw, tmp_path), "visit", "No Mail", fmt="hillstrom")


def test_encoder_one_hots_categories_and_ignores_unseen_ones():
    encoder = FeatureEncoder().fit(LOG[["tenure", "channel"]])
    assert encoder.names == ["tenure", "channel=app", "channel=store", "channel=web"]
    X = encoder.transform(pd.DataFrame({"tenure": [None, 3], "channel": ["app", "fax"]}))
    assert X.tolist() == [[57.5, 1, 0, 0], [3, 0, 0, 0]]  # missing -> the training median; unseen -> zeros
    with pytest.raises(UpliftDataError, match="numeric in training but holds text"):
        encoder.transform(pd.DataFrame({"tenure": ["long"], "channel": ["app"]}))
    with pytest.raises(UpliftDataError, match="distinct text values"):
        FeatureEncoder().fit(pd.DataFrame({"id": [f"c{i}" for i in range(60)]}))
