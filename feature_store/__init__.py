"""Feature store: feature definitions as code, point-in-time materialisation, the online store.

The source tables it reads are defined in `retention.db.models`.
The public names below are imported lazily, so importing the package (the CLI does) stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Frames": "feature_store.frames",
    "FeatureDef": "feature_store.definitions",
    "feature_registry": "feature_store.definitions",
    "feature_version": "feature_store.definitions",
    "compute_features": "feature_store.core",
    "build_training_set": "feature_store.core",
    "build_sequences": "feature_store.core",
    "training_cutoffs": "feature_store.core",
    "to_padded": "feature_store.core",
    "read_frames": "feature_store.io",
    "features_at": "feature_store.offline",
    "materialize": "feature_store.offline",
    "training_set": "feature_store.offline",
    "sequences_at": "feature_store.offline",
    "refresh_online": "feature_store.online",
    "read_online": "feature_store.online",
    "feature_suites": "feature_store.suites",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'feature_store' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
