"""Save and load a `SASRecRecommender`: config and id maps as JSON, tensors as safetensors (no pickle)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from scipy import sparse

from training.recommender.repeat import RepeatModel
from training.recommender.sasrec.net import NetConfig, SASRecNet
from training.recommender.sasrec.scores import PreferenceBlend
from training.recommender.sequences import ItemIndex, SequenceConfig

WEIGHTS_FILE = "weights.safetensors"
NET_PREFIX = "net."  # tensors of the network in WEIGHTS_FILE; the ALS item factors sit beside them
ITEM_FACTORS = "mf.item_factors"
SIMILARITY = "knn.similarity."  # + data / indices / indptr of the item-kNN CSR matrix
REPEAT_INTERVALS = "repeat.intervals"  # the buy-again part's repurchase interval per item (NaN: none)
CONFIG_FILE = "config.json"
RENAMED_BLEND_FIELDS = {"weight": "mf_weight"}  # PreferenceBlend fields saved under an older name


class Fitted(Protocol):
    """What a `SASRecRecommender` saves and loads."""

    sequence_config: SequenceConfig | None
    index: ItemIndex
    popularity: np.ndarray
    net: SASRecNet | None
    blend: PreferenceBlend | None
    item_factors: np.ndarray
    similarity: sparse.csr_matrix | None
    repeat: RepeatModel | None


def save(model: Fitted, path: Path | str) -> None:
    """Write the model to folder `path`: config and id maps as JSON, weights as safetensors.

    Args:
        model: a fitted or loaded recommender.
        path: the folder (created; the files in it are replaced).
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if model.sequence_config is None:
        raise RuntimeError("fit or load the recommender first")
    config = {
        "net": None if model.net is None else asdict(model.net.config),
        "sequences": asdict(model.sequence_config),
        "blend": None if model.blend is None else asdict(model.blend),
        "items": model.index.to_json(),
        "popularity": model.popularity.tolist(),
        "repeat": None if model.repeat is None else _repeat_config(model.repeat),
    }
    (path / WEIGHTS_FILE).unlink(missing_ok=True)
    if model.net is not None:
        tensors = {f"{NET_PREFIX}{k}": v.detach().contiguous() for k, v in model.net.state_dict().items()}
        if model.blend is not None and model.item_factors.size:
            tensors[ITEM_FACTORS] = torch.from_numpy(model.item_factors).contiguous()
        if model.similarity is not None:
            csr = model.similarity.tocsr()
            for part in ("data", "indices", "indptr"):
                tensors[SIMILARITY + part] = torch.from_numpy(np.ascontiguousarray(getattr(csr, part)))
        if model.repeat is not None:
            tensors[REPEAT_INTERVALS] = torch.from_numpy(np.ascontiguousarray(model.repeat.intervals))
        save_file(tensors, str(path / WEIGHTS_FILE))
    (path / CONFIG_FILE).write_text(json.dumps(config, indent=1))


def load_into(model: Fitted, path: Path | str) -> None:
    """Give a new recommender the fitted state that `save` wrote to folder `path`.

    Args:
        model: a recommender that was not fitted.
        path: the folder.
    """
    path = Path(path)
    config = json.loads((path / CONFIG_FILE).read_text())
    sequences = config["sequences"]
    model.sequence_config = SequenceConfig(
        tuple(sequences["event_types"]), sequences["collapse_repeats"], sequences["batch_size"]
    )
    model.index = ItemIndex.from_candidates(config["items"])
    model.popularity = np.asarray(config["popularity"], dtype=np.float32)
    if config["net"] is None:
        return
    tensors = load_file(str(path / WEIGHTS_FILE))
    state = {k[len(NET_PREFIX) :]: v for k, v in tensors.items() if k.startswith(NET_PREFIX)}
    text = state["text"].numpy() if "text" in state else None
    model.net = SASRecNet(NetConfig(**config["net"]), text)
    model.net.load_state_dict(state)
    model.net.eval()
    if config["blend"] is None:
        return
    model.blend = PreferenceBlend(**_current_names(config["blend"]))
    if ITEM_FACTORS in tensors:
        model.item_factors = tensors[ITEM_FACTORS].numpy()
    if SIMILARITY + "data" in tensors:
        data, indices, indptr = (tensors[SIMILARITY + p].numpy() for p in ("data", "indices", "indptr"))
        shape = (model.index.size, model.index.size)
        model.similarity = sparse.csr_matrix((data, indices, indptr), shape=shape)
    if config.get("repeat") is not None:  # models saved before the buy-again part have no key
        repeat = config["repeat"]
        model.repeat = RepeatModel(
            half_life_days=repeat["half_life_days"],
            not_due_weight=repeat["not_due_weight"],
            intervals=tensors[REPEAT_INTERVALS].numpy(),
            default_gap_days=repeat["default_gap_days"],
            event_types=tuple(repeat["event_types"]),
        )


def _repeat_config(repeat: RepeatModel) -> dict[str, Any]:
    """The buy-again part's settings as JSON (its intervals go with the tensors)."""
    return {
        "half_life_days": repeat.half_life_days,
        "not_due_weight": repeat.not_due_weight,
        "default_gap_days": repeat.default_gap_days,
        "event_types": list(repeat.event_types),
    }


def _current_names(blend: dict[str, Any]) -> dict[str, Any]:
    """The saved blend's fields under their current names (models saved before a rename still load)."""
    return {RENAMED_BLEND_FIELDS.get(name, name): value for name, value in blend.items()}
