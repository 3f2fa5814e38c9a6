"""Product-text embeddings for the recommenders, from the sentiment feature's offline sentence encoder."""

from __future__ import annotations

import numpy as np
import pandas as pd

from feature_store import sentiment_encoder

TEXT_COLUMNS = ("title", "category", "description")  # joined in this order into one text per product
TEXT_SEPARATOR = ". "


def product_texts(products: pd.DataFrame, candidates: np.ndarray) -> np.ndarray:
    """One text per candidate: its title, category and description joined ("" when it has none).

    Args:
        products: the catalogue (product_id and any of the text columns; others are ignored).
        candidates: the sorted product ids to describe.

    Returns:
        object array of texts aligned with `candidates`.
    """
    columns = [c for c in TEXT_COLUMNS if c in products]
    catalogue = products.assign(product_id=products["product_id"].astype(str)).drop_duplicates("product_id")
    catalogue = catalogue.set_index("product_id").reindex(np.asarray(candidates, dtype=str))
    parts = [
        catalogue[c].astype(object).where(catalogue[c].notna(), "").astype(str).str.strip() for c in columns
    ]
    texts = [TEXT_SEPARATOR.join(p for p in row if p) for row in zip(*parts, strict=True)] if parts else []
    return np.array(texts or [""] * len(candidates), dtype=object)


def text_embeddings(products: pd.DataFrame, candidates: np.ndarray, batch_size: int) -> np.ndarray | None:
    """Unit-length text embeddings of the candidates, zero rows for products without text.

    Args:
        products: the catalogue.
        candidates: the sorted product ids.
        batch_size: texts per encoder batch.

    Returns:
        (len(candidates), EMBEDDING_DIM) float32, or None when no candidate has any text (the
        encoder is then not even loaded).
    """
    texts = product_texts(products, candidates)
    has_text = np.array([bool(t) for t in texts], dtype=bool)
    if not has_text.any():
        return None
    out = np.zeros((len(texts), sentiment_encoder.EMBEDDING_DIM), dtype=np.float32)
    out[has_text] = sentiment_encoder.encode(list(texts[has_text]), batch_size)
    return out
