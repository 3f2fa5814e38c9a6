"""Item id maps, ordered histories and the next-item training arrays."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.recommender.sequences import PAD, ItemIndex, item_sequences, next_item_arrays, pad_left


def test_item_index_codes_known_products_from_one_and_unknown_as_padding() -> None:
    # given an index over three sorted product ids
    index = ItemIndex.from_candidates(np.array(["a", "b", "c"]))
    # when products are looked up
    codes = index.codes(["c", "zz", "a"])
    # then codes are positions + 1, and unknown products map to padding
    assert codes.tolist() == [3, PAD, 1]
    assert ItemIndex.from_candidates([]).codes(["a"]).tolist() == [PAD]


def test_item_index_refuses_unsorted_candidates() -> None:
    with pytest.raises(ValueError, match="sorted"):
        ItemIndex.from_candidates(np.array(["b", "a"]))


def test_sequences_follow_time_then_event_id_and_collapse_repeats() -> None:
    # given events out of order, a tie in time broken by event_id, and a view -> cart -> buy of p2
    ts = pd.Timestamp("2026-01-01")
    events = pd.DataFrame(
        {
            "customer_id": ["c1", "c1", "c1", "c1", "c1", "c2"],
            "product_id": ["p3", "p1", "p2", "p2", "p2", "p1"],
            "event_type": ["view", "purchase", "view", "cart", "purchase", "view"],
            "ts": [ts + pd.Timedelta(hours=h) for h in (3, 1, 1, 2, 2)] + [ts],
            "event_id": ["e5", "e2", "e1", "e3", "e4", "e6"],
        }
    )
    index = ItemIndex.from_candidates(np.array(["p1", "p2", "p3"]))
    # when histories are built with and without collapsing, and from purchases only
    collapsed = item_sequences(events, index, collapse_repeats=True)
    kept = item_sequences(events, index, collapse_repeats=False)
    purchases = item_sequences(events, index, collapse_repeats=True, event_types=["purchase"])
    # then the order is by time then event_id, and repeats collapse only when asked
    assert collapsed["c1"].tolist() == [2, 1, 2, 3]
    assert kept["c1"].tolist() == [2, 1, 2, 2, 3]
    assert collapsed["c2"].tolist() == [1]
    assert {c: s.tolist() for c, s in purchases.items()} == {"c1": [1, 2]}


def test_pad_left_keeps_the_most_recent_items_right_aligned() -> None:
    padded = pad_left([np.array([1, 2, 3, 4]), np.array([5]), np.array([], dtype=np.int64)], 3)
    assert padded.tolist() == [[2, 3, 4], [0, 0, 5], [0, 0, 0]]


def test_next_item_arrays_hold_out_the_last_item_and_cut_long_histories() -> None:
    # given a history of seven items, one of two, and one of a single item
    sequences = [np.arange(1, 8), np.array([5, 6]), np.array([9])]
    # when arrays are built with length 3, two targets ahead, holding out the last items
    arrays = next_item_arrays(sequences, length=3, hold_out_last=True, ahead=2)
    # then training sees items 1..6 only, in two rows cut from the end, each position with its
    # next two items; validation predicts each last item from the rest
    assert arrays.train_inputs.tolist() == [[3, 4, 5], [0, 1, 2]]
    assert arrays.train_targets.tolist() == [[[4, 5], [5, 6], [6, 0]], [[0, 0], [2, 3], [3, 4]]]
    assert arrays.val_inputs.tolist() == [[4, 5, 6], [0, 0, 5]]
    assert arrays.val_targets.tolist() == [7, 6]
    assert 7 not in arrays.train_targets and 7 not in arrays.train_inputs


def test_next_item_arrays_without_hold_out_train_on_everything() -> None:
    arrays = next_item_arrays([np.array([1, 2, 3])], length=4, hold_out_last=False)
    assert arrays.train_inputs.tolist() == [[0, 0, 1, 2]]
    assert arrays.train_targets[..., 0].tolist() == [[0, 0, 2, 3]]
    assert len(arrays.val_inputs) == 0
