"""Product texts and their sentence embeddings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feature_store import sentiment_encoder
from training.recommender.text import product_texts, text_embeddings


def test_product_texts_join_the_known_fields_in_candidate_order() -> None:
    # given a catalogue with a full row, a row with only a category, and a candidate missing from it
    products = pd.DataFrame(
        {
            "product_id": ["p2", "p1"],
            "title": ["Blue mug", None],
            "category": ["home", "books"],
            "description": ["Holds tea.", None],
        }
    )
    # when texts are built for sorted candidates
    texts = product_texts(products, np.array(["p1", "p2", "p3"]))
    # then each candidate gets its fields joined, and an unknown one gets ""
    assert texts.tolist() == ["books", "Blue mug. home. Holds tea.", ""]


def test_a_catalogue_without_any_text_never_loads_the_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    # given a catalogue of ids only (CDNOW), and an encoder that must not be called
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the encoder was called")

    monkeypatch.setattr(sentiment_encoder, "encode", fail)
    products = pd.DataFrame(
        {"product_id": ["any"], "title": [None], "category": [None], "description": [None]}
    )
    # when embeddings are asked for, then there are none
    assert text_embeddings(products, np.array(["any"]), batch_size=8) is None


def test_embeddings_are_unit_rows_and_zero_for_products_without_text() -> None:
    # given two products with the same title and one without text
    products = pd.DataFrame({"product_id": ["a", "b", "c"], "title": ["Green tea", "Green tea", None]})
    # when they are embedded
    vectors = text_embeddings(products, np.array(["a", "b", "c"]), batch_size=8)
    # then texts give unit vectors (equal texts equal vectors) and the textless product zeros
    assert vectors is not None and vectors.shape == (3, sentiment_encoder.EMBEDDING_DIM)
    assert np.allclose(np.linalg.norm(vectors[:2], axis=1), 1, atol=1e-5)
    assert np.allclose(vectors[0], vectors[1]) and not vectors[2].any()
