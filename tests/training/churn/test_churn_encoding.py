"""The fitted input encoder: scaling, missing flags, clipping and sequence padding."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.churn.dataset import CustomerInputs
from training.churn.encoding import InputEncoder


def _inputs(tabular: dict[str, list[float]], kinds: list[list[int]]) -> CustomerInputs:
    kinds_array = np.array(kinds, dtype=np.int64)
    age = np.where(kinds_array > 0, np.arange(kinds_array.shape[1])[::-1] + 1.0, 0.0)
    return CustomerInputs(
        np.array([f"c{i}" for i in range(len(kinds))], dtype=object),
        pd.DataFrame(tabular),
        {"event_type": kinds_array, "gap_days": age, "age_days": age, "amount": 2.0 * (kinds_array == 3)},
    )


TRAIN = _inputs(
    {"recency_days": [1.0, 10.0, 100.0], "views": [0.0, 0.0, 0.0], "ipt": [np.nan, 5.0, 7.0]},
    [[0, 0, 3], [0, 1, 3], [2, 1, 3]],
)


def test_encoder_drops_constant_columns_and_flags_missing_values() -> None:
    # when
    encoder = InputEncoder.fit(TRAIN)
    encoded = encoder.transform(TRAIN)
    # then
    assert encoder.columns == ["recency_days", "ipt"] and encoder.flagged == ["ipt"]
    assert encoder.feature_names == ["recency_days", "ipt", "ipt"]
    np.testing.assert_allclose(encoded.features[:, 0].mean(), 0.0, atol=1e-6)
    np.testing.assert_array_equal(encoded.features[:, 2], [1.0, 0.0, 0.0])  # the flag
    assert encoded.features[0, 1] == 0.0  # unknown -> the mean
    np.testing.assert_allclose(encoder.baseline(), [0.0, 0.0, 1 / 3], rtol=1e-6)


def test_values_beyond_the_training_range_are_clipped() -> None:
    # given
    encoder = InputEncoder.fit(TRAIN)
    far = _inputs(
        {"recency_days": [100.0, 5000.0], "views": [0.0, 9.0], "ipt": [5.0, 5.0]}, [[0, 0, 3], [0, 0, 3]]
    )
    # when
    encoded = encoder.transform(far)
    # then: a recency 50 times the longest seen in training encodes like the longest seen
    assert encoded.features[1, 0] == encoded.features[0, 0]


def test_sequences_become_right_padded_with_their_lengths() -> None:
    # when
    encoded = InputEncoder.fit(TRAIN).transform(TRAIN)
    # then
    np.testing.assert_array_equal(encoded.lengths, [1, 2, 3])
    np.testing.assert_array_equal(encoded.event_type, [[3, 0, 0], [1, 3, 0], [2, 1, 3]])
    assert (encoded.events[0, 1:] == 0).all() and (encoded.events[0, 0] != 0).any()


def test_encoder_round_trips_through_a_dict() -> None:
    encoder = InputEncoder.fit(TRAIN)
    assert InputEncoder.from_dict(encoder.to_dict()) == encoder
