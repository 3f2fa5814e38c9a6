"""SASRec: causal network, training through the shared Trainer, leakage, text, save/load, behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from feature_store.events import EventLog
from tests.training.recommender.conftest import DAY0, log_from_sequences, pattern_sequences, small_params
from training.protocol import recommend, temporal_split
from training.recommender.sasrec.net import NetConfig, SASRecNet, warm_start
from training.recommender.sasrec.recommender import SASRecRecommender
from training.scoring import recommend_inputs

CANDIDATES_OF = lambda log: np.unique(log.products["product_id"].to_numpy(dtype=str))  # noqa: E731


def tiny_net(text_mode: str = "none", text: np.ndarray | None = None, n_items: int = 12) -> SASRecNet:
    config = NetConfig(
        n_items=n_items,
        max_length=6,
        hidden_size=8,
        blocks=2,
        heads=2,
        feedforward_size=16,
        dropout=0.0,
        init_std=0.02,
        text_mode=text_mode,  # type: ignore[arg-type]
        text_dim=0 if text is None else text.shape[1],
    )
    torch.manual_seed(0)
    return SASRecNet(config, text).eval()


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> SASRecRecommender:
    """A small SASRec fitted once on the a -> b / c -> d histories (shared by several tests)."""
    log = log_from_sequences(pattern_sequences(60, seed=0))
    model = SASRecRecommender(small_params(), tmp_path_factory.mktemp("sasrec"))
    model.fit(log, CANDIDATES_OF(log))
    return model


def test_a_later_item_never_changes_the_output_of_an_earlier_position() -> None:
    # given a sequence with padding, and the same sequence with its last two items changed
    net = tiny_net()
    items = torch.tensor([[0, 0, 3, 5, 7, 9]])
    changed = torch.tensor([[0, 0, 3, 5, 11, 2]])
    # when both go through the network
    with torch.no_grad():
        before, after = net(items), net(changed)
    # then the positions up to the change are identical, and the changed ones are not
    assert torch.allclose(before[:, :4], after[:, :4], atol=1e-6)
    assert not torch.allclose(before[:, 4:], after[:, 4:], atol=1e-4)


def test_the_last_state_equals_the_full_forward_pass_at_the_last_position() -> None:
    # given padded sequences of several lengths
    net = tiny_net().eval()
    items = torch.tensor([[0, 0, 3, 5, 7, 9], [0, 0, 0, 0, 0, 4], [1, 2, 3, 4, 5, 6]])
    # when the last state alone is computed, then it is the forward pass's last position
    with torch.no_grad():
        assert torch.allclose(net.last_state(items), net(items)[:, -1], atol=1e-6)


def test_warm_start_copies_the_weights_and_matches_items_by_product_id() -> None:
    # given a trained-looking source over items a, b, c and a fresh target whose catalogue is
    # reordered and holds a new item x
    source = tiny_net(n_items=3)
    with torch.no_grad():
        for weight in source.parameters():
            weight.add_(torch.randn_like(weight))
    target = tiny_net(n_items=4)
    new_item_before = target.item_embedding.weight[2].detach().clone()
    # when the target starts from the source
    copied = warm_start(target, source, np.array(["a", "b", "c"]), np.array(["b", "x", "c", "a"]))
    # then each known item has its own vector (codes are positions + 1), x keeps its own, and every
    # other weight is the source's
    source_items, target_items = source.item_embedding.weight, target.item_embedding.weight
    assert copied == 3
    for target_code, source_code in ((1, 2), (3, 3), (4, 1)):
        assert torch.equal(target_items[target_code], source_items[source_code])
    assert torch.equal(target_items[2], new_item_before)
    assert torch.equal(target_items[0], torch.zeros_like(target_items[0]))  # padding
    for name, value in source.state_dict().items():
        if name != "item_embedding.weight":
            assert torch.equal(target.state_dict()[name], value), name


def test_training_loss_falls_and_scores_cover_the_catalogue(fitted: SASRecRecommender) -> None:
    # given the fitted model (see the fixture) and one known plus one unknown customer
    history = fitted.fit_result.history
    users = np.array(["u000", "nobody"])
    # when it scores them
    scores = fitted.score(users)
    # then the loss fell, validation was logged, and every candidate has a finite score
    assert history[-1]["train_loss"] < 0.8 * history[0]["train_loss"]
    assert "val_ndcg@10" in history[-1]
    assert scores.shape == (2, fitted.index.size) and scores.dtype == np.float32
    assert np.isfinite(scores).all()
    assert np.array_equal(scores[1], fitted.popularity)  # an unknown customer gets popularity


def test_a_strong_sequential_pattern_is_learned(fitted: SASRecRecommender) -> None:
    # given customers whose last item is a, and customers whose last item is c
    inputs = pd.DataFrame({"customer_id": ["x", "y"], "items": ["p03 p07 a", "p01 p12 c"]})
    # when the model recommends
    top = recommend_inputs(fitted, inputs, k=1)
    # then b follows a and d follows c
    assert top.set_index("customer_id")["product_id"].to_dict() == {"x": "b", "y": "d"}


def test_save_and_load_give_identical_scores(fitted: SASRecRecommender, tmp_path: Path) -> None:
    # given the fitted model and serving inputs built from a history
    log = log_from_sequences({"u1": ["p01", "a"], "u2": ["c"], "u3": []})
    inputs = fitted.inputs(log, np.array(["u1", "u2", "u3", "ghost"]))
    # when it is saved and loaded without params
    fitted.save(tmp_path / "model")
    loaded = SASRecRecommender.load(tmp_path / "model")
    # then the loaded model (with its matrix-factorisation blend) recommends exactly the same,
    # and no pickle was written
    assert loaded.blend == fitted.blend is not None
    assert inputs["items"].tolist() == ["p01 a", "c", "", ""]
    pd.testing.assert_frame_equal(
        recommend_inputs(loaded, inputs, k=5), recommend_inputs(fitted, inputs, k=5)
    )
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["config.json", "weights.safetensors"]


def test_a_model_saved_before_the_blend_field_was_renamed_still_loads(
    fitted: SASRecRecommender, tmp_path: Path
) -> None:
    # given a saved model whose config calls the ALS weight `weight` (the format before `mf_weight`)
    fitted.save(tmp_path / "model")
    config_file = tmp_path / "model" / "config.json"
    config = json.loads(config_file.read_text())
    config["blend"]["weight"] = config["blend"].pop("mf_weight")
    config_file.write_text(json.dumps(config))
    # when it is loaded, then the blend and the scores are the fitted model's
    loaded = SASRecRecommender.load(tmp_path / "model")
    assert loaded.blend == fitted.blend and fitted.blend is not None and fitted.blend.mf_weight > 0
    users = np.array(["u000", "u001", "nobody"])
    empty = np.zeros(0, dtype=np.int64)
    np.testing.assert_array_equal(
        loaded.score_sequences([fitted.sequences.get(u, empty) for u in users]), fitted.score(users)
    )


def test_recommend_inputs_can_leave_out_the_listed_items(fitted: SASRecRecommender) -> None:
    # given a customer who already has b
    inputs = pd.DataFrame({"customer_id": ["x"], "items": ["b a"]})
    # when seen items are excluded
    top = recommend_inputs(fitted, inputs, k=3, exclude_seen=True)
    # then neither a nor b is recommended, and ranks run 1..3
    assert not {"a", "b"} & set(top["product_id"])
    assert top["rank"].tolist() == [1, 2, 3]


def test_events_at_or_after_the_cutoff_never_reach_the_model(tmp_path: Path) -> None:
    # given two logs that differ only from the cutoff on
    before = pattern_sequences(30, seed=1)
    cutoff = DAY0 + pd.Timedelta(days=10)
    after_a = log_from_sequences({u: ["a", "b"] for u in before}, start=cutoff)
    after_b = log_from_sequences({u: ["p05", "p06", "c"] for u in list(before)[:10]}, start=cutoff)
    base = log_from_sequences(before)
    logs = [_concat(base, after_a), _concat(base, after_b)]
    # when a model is fitted on each temporal split's history
    scores = []
    for i, log in enumerate(logs):
        split = temporal_split(log, cutoff, horizon_days=30, exclude_seen=False)
        model = SASRecRecommender(small_params(max_epochs=3), tmp_path / str(i))
        model.fit(split.history, CANDIDATES_OF(base))
        scores.append(model.score(np.array(list(before))))
    # then both models are identical
    np.testing.assert_array_equal(scores[0], scores[1])


def test_a_product_without_history_is_scored_from_its_text(tmp_path: Path) -> None:
    # given a catalogue where "new" has a title but no event, in two versions of its text
    sequences = pattern_sequences(30, seed=2)
    scores = []
    for i, title in enumerate(["Red wool winter scarf", "Stainless steel kitchen knife"]):
        products = pd.DataFrame({"product_id": sorted({x for s in sequences.values() for x in s} | {"new"})})
        products["title"] = "Product " + products["product_id"]
        products.loc[products["product_id"] == "new", "title"] = title
        log = log_from_sequences(sequences, products=products)
        model = SASRecRecommender(small_params(text="complement", max_epochs=3), tmp_path / str(i))
        # when the model is fitted with text embeddings and scores the customers
        model.fit(log, CANDIDATES_OF(log))
        scores.append(model.score(np.array(["u000", "u001"]))[:, model.index.codes(["new"])[0] - 1])
    # then the product gets finite scores, and they depend on its text
    assert np.isfinite(scores[0]).all() and np.isfinite(scores[1]).all()
    assert not np.allclose(scores[0], scores[1])


def test_text_init_starts_identical_texts_with_identical_embeddings() -> None:
    # given items 1 and 2 with the same text, items 3..11 with others, and item 12 without text
    rng = np.random.default_rng(0)
    text = np.zeros((13, 10), dtype=np.float32)
    text[1] = text[2] = rng.normal(size=10)
    text[3:12] = rng.normal(size=(9, 10))
    # when the network initialises its item embeddings from the text
    weights = tiny_net("init", text).item_embedding.weight.detach()
    # then equal texts give equal embeddings, different texts different ones
    assert torch.allclose(weights[1], weights[2])
    assert not torch.allclose(weights[1], weights[3])
    assert torch.all(weights[0] == 0)  # padding
    assert weights[12].abs().sum() > 0  # random, like every item without text


def test_a_log_whose_items_are_all_one_placeholder_falls_back_to_popularity(tmp_path: Path) -> None:
    # given an order-totals log (CDNOW): every purchase is the placeholder item "any"
    log = log_from_sequences({"c1": ["any"] * 4, "c2": ["any"] * 2, "c3": ["any"]})
    model = SASRecRecommender(small_params(), tmp_path)
    # when the model is fitted and scores
    model.fit(log, np.array(["any"]))
    scores = model.score(np.array(["c1", "c9"]))
    # then it trained nothing and scores by popularity, without crashing
    assert model.net is None and model.fit_result.epochs == 0
    assert scores.tolist() == [[3.0], [3.0]]


def test_recommend_of_the_protocol_runs_on_the_fitted_model(fitted: SASRecRecommender) -> None:
    # given a temporal split of the pattern log and the fitted model (same candidates)
    log = log_from_sequences(pattern_sequences(60, seed=0))
    split = temporal_split(log, DAY0 + pd.Timedelta(days=8), horizon_days=5, exclude_seen=True)
    # when the protocol ranks for the split's users
    top = recommend(split, fitted, k=5)
    # then seen items are masked by the protocol, not by the model
    seen = dict(zip(split.users, split.seen, strict=True))
    assert all(row.product_id not in seen[row.customer_id] for row in top.itertuples())


@pytest.mark.slow
def test_fits_under_ddp_spawn_with_two_cpu_processes(tmp_path: Path) -> None:
    # given the trainer set to two CPU processes with ddp_spawn
    params = small_params(max_epochs=2)
    params = params.model_copy(
        update={"training": params.training.model_copy(update={"devices": 2, "strategy": "ddp_spawn"})}
    )
    log = log_from_sequences(pattern_sequences(40, seed=3))
    model = SASRecRecommender(params, tmp_path)
    # when it fits
    model.fit(log, CANDIDATES_OF(log))
    # then both epochs ran and the main process holds trained weights
    assert model.fit_result.epochs == 2 and model.fit_result.devices == 2
    assert np.isfinite(model.score(np.array(["u000"]))).all()


def _concat(first: EventLog, second: EventLog) -> EventLog:
    events = pd.concat([first.events, second.events.assign(event_id="z" + second.events["event_id"])])
    events = events.sort_values(["ts", "event_id"], kind="stable").reset_index(drop=True)
    products = pd.concat([first.products, second.products]).drop_duplicates("product_id")
    return EventLog(events, products.reset_index(drop=True), first.customers, first.reviews)
