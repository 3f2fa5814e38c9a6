"""`SASRecRecommender`: SASRec behind the `Recommender` protocol (tune, fit, score) and its serving inputs."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import sparse

from feature_store.events import EventLog
from retention.params import Params, SASRecParams
from training.protocol import RecSplit
from training.recommender.baselines import interactions, item_similarity, popularity_counts
from training.recommender.blend import BlendParts, blend_grid, choose_weights, sample_users
from training.recommender.mf import MatrixFactorisation
from training.recommender.repeat import (
    RepeatModel,
    choose_half_life,
    dense_standardised,
    fit_repeat_model,
    repeat_scores,
    standardised_sparse,
)
from training.recommender.sasrec import persistence
from training.recommender.sasrec.module import NextItemDataModule, SASRecModule
from training.recommender.sasrec.net import NetConfig, SASRecNet, warm_start, with_padding_row
from training.recommender.sasrec.scores import BlendedScores, FusedScores, PreferenceBlend
from training.recommender.sequences import (
    PAD,
    ItemIndex,
    SequenceConfig,
    item_sequences,
    next_item_arrays,
)
from training.recommender.text import text_embeddings
from training.scoring import with_repeat
from training.trainer import FitResult, fit

log = logging.getLogger("retention.training")
ITEMS_SEPARATOR = " "  # `inputs` joins a customer's product ids with it (ids holding one are left out)
TUNING_DIR = "tuning"  # the run_dir subfolder of the inner (history-only) fit that chooses the blend


class SASRecRecommender:
    """SASRec behind the `Recommender` protocol, plus the serving inputs and the fused-state form.

    With a blend, a score is the standardised SASRec score plus `mf_weight` times the standardised
    score of an implicit ALS model (`mf.py`) whose customer factors are folded in from the same
    items the transformer reads, plus `knn_weight` times the standardised item-kNN score of those
    items (`baselines.py`), plus `popularity_weight` times the standardised log popularity: the
    sequence gives the short-term intent, the factorisation and the neighbours the long-term taste,
    and all work from a serving input alone. `tune` chooses the weights on an inner split of the
    history (see `blend.py`) before `fit`; without it `fit` uses the configured `sasrec.*_weight`.
    The arithmetic is in `scores.py`; top-k lists and masks are the scoring path's (`training/scoring.py`).

    Args:
        params: the whole params.yaml (`recommender` for the model, `training` for the Trainer);
            None for a model loaded only to serve.
        run_dir: the fit's folder (checkpoints and history; a killed fit resumes from it).
    """

    name = "sasrec"

    def __init__(self, params: Params | None, run_dir: Path | None) -> None:
        self.params = params
        self.run_dir = run_dir
        self.sequence_config = SequenceConfig.from_params(params) if params is not None else None
        self.index = ItemIndex.from_candidates([])
        self.net: SASRecNet | None = None
        self.popularity = np.zeros(0, dtype=np.float32)
        self.fit_result: FitResult | None = None
        self.sequences: dict[str, np.ndarray] = {}
        self.blend: PreferenceBlend | None = None
        self.item_factors = np.zeros((0, 0), dtype=np.float32)
        self.similarity: sparse.csr_matrix | None = None
        self.tuning: dict[str, Any] | None = None  # what `tune` chose and every weight's inner score
        self.repeat: RepeatModel | None = None  # the buy-again part (with blend.repeat_weight > 0)
        self.history_events = pd.DataFrame()  # the fitted history's events (the buy-again part of `score`)
        self.warm_from: SASRecRecommender | None = None  # the tuning fit, when `fit` starts from it

    # -- tuning -------------------------------------------------------------------------------

    def tune(self, validation: RecSplit, ks: list[int]) -> dict[str, Any] | None:
        """Choose the blend weights on `validation`, an inner split of the history (`validation_split`).

        A copy of the model is fitted on `validation.history` (checkpoints under run_dir/tuning),
        and every (mf_weight, popularity_weight, knn_weight) of the params' grid is scored by ndcg at the
        smallest K on the validation users; `fit` then uses the best pair.

        Args:
            validation: the split's protocol applied inside its history (never the test window).
            ks: the evaluation cut-offs (the smallest one decides).

        Returns:
            The choice (also kept as `tuning`), or None when the grid holds a single pair or the
            inner fit learns no network (then `fit` uses the configured weights).
        """
        if self.params is None or self.run_dir is None:
            raise RuntimeError("a SASRecRecommender needs params and a run_dir to tune")
        self.tuning, self.warm_from = None, None
        config = self.params.recommender.sasrec
        grid = blend_grid(config, validation.exclude_seen)
        if len(grid) < 2:
            return None
        started = time.perf_counter()
        widest = config.model_copy(
            update={
                "mf_weight": max(w[0] for w in grid),
                "popularity_weight": 0.0,
                "knn_weight": max(w[2] for w in grid),
                "repeat_weight": 0.0,  # the buy-again part is computed here, from the inner history
            }
        )
        recommender = self.params.recommender.model_copy(update={"sasrec": widest})
        inner = SASRecRecommender(
            self.params.model_copy(update={"recommender": recommender}), self.run_dir / TUNING_DIR
        )
        log.info(
            "sasrec: choosing the blend on the inner %s split (%d users) of the history",
            validation.protocol,
            len(validation.users),
        )
        inner.fit(validation.history, validation.candidates)
        if inner.net is None:
            log.warning("sasrec: the inner fit learned no network; keeping the configured blend")
            return None
        if config.warm_start:  # the inner history is part of this history: a head start, no leak
            self.warm_from = inner
        sample = sample_users(validation, config.tuning_users, self.params.training.seed)
        parts = inner.blend_parts(sample.users)
        half_life = None
        if any(weights[3] for weights in grid):
            buy_again = self.params.recommender.buy_again
            half_life, _ = choose_half_life(validation, buy_again, min(ks), self.params.training.seed)
            repeat = fit_repeat_model(validation.history, inner.index.ids, buy_again, half_life)
            scores = repeat_scores(repeat, validation.history.events, inner.index.ids, sample.users)
            parts = replace(parts, repeat=dense_standardised(scores))
        choice = choose_weights(sample, parts, grid, min(ks))
        self.tuning = {
            "protocol": validation.protocol,
            "as_of": None if validation.as_of is None else str(validation.as_of.date()),
            "horizon_days": validation.horizon_days,
            "n_users": len(sample.users),
            **choice,
            "half_life_days": half_life,
            "epochs": inner.fit_result.epochs if inner.fit_result else 0,
            "seconds": round(time.perf_counter() - started, 1),
        }
        log.info(
            "sasrec: blend mf_weight=%s popularity_weight=%s knn_weight=%s repeat_weight=%s "
            "(inner %s %.4f of %d tuples)",
            choice["mf_weight"],
            choice["popularity_weight"],
            choice["knn_weight"],
            choice["repeat_weight"],
            choice["metric"],
            choice["best"],
            len(choice["grid"]),
        )
        return self.tuning

    # -- training -----------------------------------------------------------------------------

    def fit(self, history: EventLog, candidates: np.ndarray) -> None:
        """Train on every customer's item sequence in `history`; each one's last item validates.

        Args:
            history: the events the model may see.
            candidates: sorted product ids to score (the item vocabulary).
        """
        if self.params is None or self.run_dir is None:
            raise RuntimeError("a SASRecRecommender needs params and a run_dir to fit")
        rec, config = self.params.recommender, self.params.recommender.sasrec
        self.sequence_config = SequenceConfig.from_params(self.params)
        self.index = ItemIndex.from_candidates(candidates)
        self.popularity = popularity_counts(history.events, self.index.ids, rec.event_types)
        self.sequences = self.history_sequences(history)
        arrays = next_item_arrays(
            list(self.sequences.values()), config.max_length, hold_out_last=True, ahead=config.targets_ahead
        )
        self.net, self.fit_result = None, FitResult(best_path=None, epochs=0, seconds_per_epoch=0.0)
        self.blend, self.item_factors = None, np.zeros((0, 0), dtype=np.float32)
        self.similarity, self.repeat, self.history_events = None, None, history.events
        if len(arrays.train_inputs) == 0:
            log.warning("sasrec: no customer has three successive distinct items; scoring by popularity")
            return
        text = None
        if config.text != "none":
            text = text_embeddings(history.products, self.index.ids, rec.text_batch_size)
        torch.manual_seed(self.params.training.seed)  # the initial weights; fit() seeds the rest
        net = SASRecNet(self._net_config(text), with_padding_row(text))
        if self.warm_from is not None and self.warm_from.net is not None:
            copied = warm_start(net, self.warm_from.net, self.warm_from.index.ids, self.index.ids)
            log.info(
                "sasrec: starting from the tuning fit's weights (%d of %d items)", copied, self.index.size
            )
            self.warm_from = None  # its sequences and network are no longer needed
        module = SASRecModule(net, rec.learning_rate, config.weight_decay, config.softmax, config.negatives)
        log.info(
            "sasrec: %d training and %d validation sequences over %d items",
            len(arrays.train_inputs),
            len(arrays.val_inputs),
            self.index.size,
        )
        trainer_params = self.params.training.model_copy(update={"max_epochs": config.max_epochs})
        self.fit_result = fit(
            module,
            NextItemDataModule(arrays, rec.batch_size, self.params.training.dataloader_workers),
            trainer_params,
            self.run_dir,
        )
        self.net = module.net.cpu().eval()  # predictions run on CPU in this process
        mf_weight, popularity_weight, knn_weight, repeat_weight = self._blend_weights()
        if mf_weight > 0:
            factorisation = MatrixFactorisation(self.params)
            factorisation.fit(history, self.index.ids)
            self.item_factors = factorisation.item_factors
        if knn_weight > 0:
            matrix = interactions(history.events, self.index.ids, rec.event_types).matrix
            self.similarity = item_similarity(matrix, rec.item_knn)
        if repeat_weight > 0:
            chosen = self.tuning.get("half_life_days") if self.tuning is not None else None
            half_life = chosen or rec.buy_again.half_life_days
            self.repeat = fit_repeat_model(history, self.index.ids, rec.buy_again, half_life)
        if mf_weight > 0 or popularity_weight > 0 or knn_weight > 0 or repeat_weight > 0:
            self.blend = PreferenceBlend(
                mf_weight, rec.mf.alpha, rec.mf.regularisation, popularity_weight, knn_weight, repeat_weight
            )

    def _blend_weights(self) -> tuple[float, float, float, float]:
        """(mf, popularity, knn, repeat) weights: `tune`'s choice, else the configured ones."""
        if self.tuning is not None:
            chosen = self.tuning
            return (
                float(chosen["mf_weight"]),
                float(chosen["popularity_weight"]),
                float(chosen["knn_weight"]),
                float(chosen["repeat_weight"]),
            )
        config = self._sasrec_params()
        return config.mf_weight, config.popularity_weight, config.knn_weight, config.repeat_weight

    def _sasrec_params(self) -> SASRecParams:
        if self.params is None:
            raise RuntimeError("this recommender was loaded without params: it cannot be fitted")
        return self.params.recommender.sasrec

    def _net_config(self, text: np.ndarray | None) -> NetConfig:
        config = self._sasrec_params()
        return NetConfig(
            n_items=self.index.size,
            max_length=config.max_length,
            hidden_size=config.hidden_size,
            blocks=config.blocks,
            heads=config.heads,
            feedforward_size=config.feedforward_size,
            dropout=config.dropout,
            init_std=config.init_std,
            text_mode=config.text if text is not None else "none",
            text_dim=text.shape[1] if text is not None else 0,
        )

    def _sequence_config(self) -> SequenceConfig:
        if self.sequence_config is None:
            raise RuntimeError("fit or load the recommender first")
        return self.sequence_config

    # -- scoring ------------------------------------------------------------------------------

    def history_sequences(self, history: EventLog) -> dict[str, np.ndarray]:
        """Each customer's item codes in `history`, oldest first (the input of `score_sequences`)."""
        config = self._sequence_config()
        return item_sequences(history.events, self.index, config.collapse_repeats, config.event_types)

    def score(self, users: np.ndarray) -> np.ndarray:
        """(len(users), len(candidates)) float32 scores from each customer's fitted history.

        Customers without history get the popularity counts. Seen items are not masked.
        """
        empty = np.zeros(0, dtype=np.int64)
        scores = self.score_sequences([self.sequences.get(str(u), empty) for u in users])
        return with_repeat(scores, self.repeat_part(self.history_events, users))

    def repeat_part(
        self, events: pd.DataFrame, users: np.ndarray, as_of: pd.Timestamp | None = None
    ) -> tuple[sparse.csr_matrix, np.ndarray] | None:
        """The buy-again part of the blended scores of `users` from their purchases in `events`.

        Args:
            events: the history (up to the scoring time).
            users: the customers, in row order.
            as_of: the scoring time when known (campaigns, serving); None: each customer's
                expected next basket from the history alone (`repeat.py`).

        Returns:
            (sparse part, per-row constant) to add to `score_sequences`' rows, or None when the
            blend holds no buy-again part.
        """
        if self.repeat is None or self.blend is None or not self.blend.repeat_weight:
            return None
        scores = repeat_scores(self.repeat, events, self.index.ids, np.asarray(users, dtype=str), as_of)
        return standardised_sparse(scores, self.blend.repeat_weight)

    def score_sequences(self, sequences: list[np.ndarray]) -> np.ndarray:
        """Scores of item-code sequences (oldest first); empty sequences get popularity.

        Args:
            sequences: item codes per customer.

        Returns:
            (len(sequences), n_items) float32, column j scoring product `index.ids[j]`.
        """
        return self._scores().of_sequences(sequences)

    def blend_parts(self, users: np.ndarray) -> BlendParts:
        """Every part of the blended score of `users` (the grid of `tune` recombines them).

        Args:
            users: customers of the fitted history (others score by popularity).
        """
        empty = np.zeros(0, dtype=np.int64)
        scores = self._scores()
        sasrec, mf, knn, has_history = scores.parts([self.sequences.get(str(u), empty) for u in users])
        return BlendParts(
            np.asarray(users, dtype=str), sasrec, mf, knn, scores.popularity_part(), has_history
        )

    def _scores(self) -> BlendedScores:
        batch_size = self.sequence_config.batch_size if self.sequence_config is not None else 1
        return BlendedScores(
            self.net, self.popularity, self.blend, self.item_factors, self.similarity, batch_size
        )

    # -- fused states (see scores.py) ---------------------------------------------------------

    def state_tails(self, sequences: dict[str, np.ndarray], customer_ids: np.ndarray) -> np.ndarray:
        """(len(customer_ids), max_length) int32 left-padded last items of `sequences` (all PAD without)."""
        return self._scores().tails(sequences, customer_ids)

    def state_vectors(self, tails: np.ndarray) -> np.ndarray:
        """(len(tails), D) float32 state vectors of left-padded tails (all-PAD rows: no history)."""
        return self._scores().state_vectors(tails)

    def item_matrix(self) -> np.ndarray:
        """(n_items, D) float32 item side of the fused score: state vectors @ it.T (+ kNN) = the scores."""
        return self._scores().item_matrix()

    def fused_scores(self, columns: np.ndarray | None = None) -> FusedScores:
        """The scorer of state vectors (and their tails) over item `columns` (0-based; None: all)."""
        return FusedScores(self._scores(), columns)

    # -- serving inputs -----------------------------------------------------------------------

    def inputs(self, history: EventLog, users: np.ndarray) -> pd.DataFrame:
        """The serving input of each customer: their most recent known products, most recent last.

        Args:
            history: events up to now.
            users: the customers to serve.

        Returns:
            customer_id, items (product ids joined by a blank; "" for a customer without history).
        """
        sequences = self.history_sequences(history)
        length = self.net.config.max_length if self.net is not None else 0
        joinable = np.char.find(self.index.ids.astype(str), ITEMS_SEPARATOR) < 0  # per code - 1
        empty = np.zeros(0, dtype=np.int64)
        recent = [sequences.get(str(u), empty) if length else empty for u in users]
        recent = [codes[joinable[codes - 1]][-length:] if len(codes) else codes for codes in recent]
        items = [ITEMS_SEPARATOR.join(self.index.ids[codes - 1]) for codes in recent]
        return pd.DataFrame({"customer_id": np.asarray(users, dtype=str), "items": items})

    def input_sequences(self, inputs: pd.DataFrame) -> list[np.ndarray]:
        """The item codes of each row of `inputs` (see `inputs`); unknown products are dropped."""
        return [self._codes(items) for items in inputs["items"].fillna("").astype(str)]

    def _codes(self, items: str) -> np.ndarray:
        codes = self.index.codes(items.split(ITEMS_SEPARATOR)) if items else np.zeros(0, dtype=np.int64)
        return codes[codes != PAD]

    # -- persistence (see persistence.py) -----------------------------------------------------

    def save(self, path: Path | str) -> None:
        """Write the model to folder `path`: config and id maps as JSON, weights as safetensors.

        Args:
            path: the folder (created; the files in it are replaced).
        """
        persistence.save(self, path)

    @classmethod
    def load(
        cls, path: Path | str, params: Params | None = None, run_dir: Path | None = None
    ) -> SASRecRecommender:
        """Read a model written by `save`.

        Args:
            path: the folder.
            params: params for a later refit (scoring and serving do not need them).
            run_dir: the folder of a later fit.

        Returns:
            The recommender, ready for `inputs`, `score_sequences` and the fused states.
        """
        model = cls(params, run_dir)
        persistence.load_into(model, path)
        return model
