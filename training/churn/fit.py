"""`ReturnModel`: fit the next-purchase hazard network at many cutoffs, calibrate it on a time-based
split, and predict P(return within H days) by rolling each customer's state forward, with reason codes.

Fit at as-of T with horizon H (only rows before T are read):
1. Examples at cutoffs T - k * stride * w inside the history: the customer's inputs at the cutoff
   and whether they purchased within the next w days (`dataset.build_examples`).
2. Time-based split at T_v = T - validation_share of the cutoffs' span: training rows are the
   cutoffs whose w days end by T_v, validation rows the cutoffs from T_v on.
3. `ensemble` networks (successive seeds) are trained with early stopping on val_loss (with
   `return.dp` enabled: by DP-SGD, see `privacy.py`). A SIGTERM stops the ensemble at an epoch's
   end; the same call then loads the networks that had finished and resumes the one that had
   not (`trainer.fit`), so the result equals an uninterrupted fit's. A Platt
   scaling of the averaged hazard logit is fitted on the validation rows. Brier, ROC-AUC and a
   reliability curve are measured by rolling out from T_v for min(H, T - T_v) days, where the
   labels are fully observed before T: the long-horizon check of the whole method.
4. With `refit`, each network is retrained on all rows for its best epoch count (the latest
   cutoffs resemble the customers scored at T most); the calibration of step 3 is kept.
Prediction: P(return within H) = 1 - prod_{j < H / w} (1 - h(state at T + j w)), the states being
the customer's own as if no purchase happened (`dataset.rolled_inputs`). So a horizon longer than
the history (CDNOW: 39 weeks of history, 39 weeks ahead) needs no label window of length H.
Reason codes: occlusion. A feature (with its missing flag) is set to its training mean in every
rolled state; the features whose occlusion moves p_return most, either way, come first.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import brier_score_loss

from feature_store.events import EventLog
from feature_store.frames import Frames
from retention.atomic import atomic_path
from retention.params import Params, params_sections, saved_params
from training.churn.dataset import (
    CustomerInputs,
    SurvivalExamples,
    build_examples,
    flatten_rollout,
    next_purchase_days,
    rolled_inputs,
    unflatten_rollout,
)
from training.churn.encoding import EncodedInputs, InputEncoder
from training.churn.model import (
    HAZARD_CLAMP,
    INPUT_KEYS,
    ReturnDataModule,
    ReturnModule,
    ReturnNetwork,
    bins_for,
    return_probability,
)
from training.churn.privacy import PrivacyPlan, plan_privacy, privacy_report
from training.plots import reliability_table
from training.protocol import return_metrics
from training.tracking import params_hash
from training.trainer import FitResult, fit, raise_if_stopped

log = logging.getLogger("retention.training")
DAY = pd.Timedelta(days=1)
MODEL_FILE = "model.json"
WEIGHTS_FILE = "network_{}.pt"
SAVED_SECTIONS = ("features", "return", "training")  # what a loaded model reads of its params
PREDICT_ROWS = 4096  # customers scored per chunk (bounds memory: K bins x ensemble states)
CALIBRATION_STEPS = 100  # L-BFGS iterations of the two-parameter Platt scaling
ENSEMBLE_FILE = "ensemble.json"  # an ensemble fit in progress: its key (gone once every network finished)


class ReturnModelError(ValueError):
    """The return model cannot be fitted or used as asked (too little history, not fitted)."""


@dataclass
class _RolledCache:
    """The last rolled states and their occlusion scores.

    `fit` rolls every customer out over H for the feature importance, and the backtest (and
    training) then predicts the same history at the same as-of: the states (one feature-store
    computation per bin) and the occlusion rollout are computed once and reused.
    """

    history: EventLog
    as_of: pd.Timestamp
    bins: int
    states: list[CustomerInputs]
    scored: dict[float, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # horizon -> p, effects


def _sample(examples: SurvivalExamples, most: int, seed: int) -> SurvivalExamples:
    """At most `most` examples, drawn at random without replacement (order kept)."""
    if len(examples.cutoff) <= most:
        return examples
    rows = np.sort(np.random.default_rng(seed).choice(len(examples.cutoff), most, replace=False))
    return examples.take(rows)


def _digest(params: Params, *parts: dict[str, np.ndarray]) -> str:
    """A key of the fits' parameters and rows: a resumed ensemble reuses only networks of the same key."""
    digest = hashlib.sha256(params_hash(params_sections(params, SAVED_SECTIONS)).encode())
    for arrays in parts:
        for name in sorted(arrays):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(arrays[name]).tobytes())
    return digest.hexdigest()[:16]


def platt_scaling(logits: torch.Tensor, returned: torch.Tensor) -> tuple[float, float]:
    """Platt scaling (scale, shift) of `logits` that minimises the log loss of `returned`, scale > 0.

    The scale is kept positive (fitted as its logarithm): calibration may stretch the network's
    ranking but never reverse it, even when a barely trained network fits noise. This is why the
    fit is not scikit-learn's (docs/architecture.md, "Hand-written vs library"): where the optimum
    has scale > 0 it equals `LogisticRegression(C=inf)` on the one logit feature to 1e-4 (test
    `test_platt_scaling_equals_logistic_regression`), but that has no bound on the coefficient (true
    slope -0.3: scikit-learn -0.306, this fit just above 0), and `CalibratedClassifierCV(method=
    "sigmoid")` fits Platt's smoothed targets, not the labels (`benchmarks/platt_library.py`).
    """
    log_scale, shift = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_scale, shift], max_iter=CALIBRATION_STEPS)

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        calibrated = log_scale.exp() * logits + shift
        loss = torch.nn.functional.binary_cross_entropy_with_logits(calibrated, returned)
        loss.backward()
        return loss

    optimiser.step(closure)
    return log_scale.exp().item(), shift.item()


def _tensors(encoded: EncodedInputs, rows: slice) -> dict[str, torch.Tensor]:
    return {key: torch.from_numpy(getattr(encoded, key)[rows]) for key in INPUT_KEYS}


class ReturnModel:
    """P(return within H days) per customer: an ensemble of hazard networks rolled out over H.

    Args:
        params: all of params.yaml (`return`, `features` and `training` are used).
        run_dir: where the Lightning fits write their checkpoints (one folder per network and phase).

    Attributes:
        fit_result: the first network's validated fit (its history shows the early stopping).
        fit_results: every fit, in order (validated fits, then the refits).
        privacy: with `return.dp` enabled, the DP-SGD budget spent (`privacy.privacy_report`:
            epsilon, delta, max_grad_norm, noise_multiplier, ...); empty otherwise.
        validation: at the time split T_v (`as_of`) for `horizon_days` = min(H, T - T_v): brier,
            brier_uncalibrated, roc_auc, log_loss, base_rate, n_users, reliability (DataFrame
            p_mean, observed, count); val_loss and val_loss_uncalibrated (next-bin loss of the
            validation rows) and calibration (scale, shift of the hazard logit).
        feature_importance: feature, importance (mean |occlusion effect| on p_return over the
            customers scored at the fit's as-of), most important first.
    """

    name = "return_model"

    def __init__(self, params: Params, run_dir: Path) -> None:
        self.params = params
        self.config = params.return_
        self.run_dir = Path(run_dir)
        self.encoder: InputEncoder | None = None
        self.networks: list[ReturnNetwork] = []
        self.calibration: tuple[float, float] = (1.0, 0.0)  # hazard logit -> scale * logit + shift
        self.horizon_days: int | None = None
        self.fit_result: FitResult | None = None
        self.fit_results: list[FitResult] = []
        self.validation: dict = {}
        self.feature_importance = pd.DataFrame({"feature": [], "importance": []})
        self.privacy: dict[str, float] = {}
        self._rolled: _RolledCache | None = None

    # -- fitting ------------------------------------------------------------------------------

    def _network(self, n_features: int, seed: int, private: bool = False) -> ReturnNetwork:
        torch.manual_seed(seed)  # initial weights depend on the seed only
        c = self.config
        return ReturnNetwork(
            n_features, c.hidden_size, c.sequence_size, c.event_embedding, c.dropout, private=private
        )

    def _train(
        self,
        seed: int,
        train: dict,
        val: dict,
        folder: str,
        max_epochs: int | None = None,
        privacy: PrivacyPlan | None = None,
        key: str = "",
        reuse_finished: bool = False,
    ) -> tuple[ReturnNetwork, FitResult]:
        c = self.config
        network = self._network(train["features"].shape[1], seed, private=privacy is not None)
        module = ReturnModule(network, c.learning_rate, c.weight_decay, privacy)
        update: dict = {"seed": seed} | ({"max_epochs": max_epochs} if max_epochs else {})
        trainer_params = self.params.training.model_copy(update=update)
        workers = self.params.training.dataloader_workers
        try:
            result = fit(
                module,
                ReturnDataModule(train, val, c.batch_size, workers, poisson=privacy is not None),
                trainer_params,
                self.run_dir / folder,
                key=key,
                reuse_finished=reuse_finished,
            )
        finally:
            module.close_private()  # also when SIGTERM or an error ended the fit
        self.fit_results.append(result)
        return network.plain().eval(), result

    def _privacy_plan(self, train: dict, customers: np.ndarray) -> PrivacyPlan | None:
        """The DP-SGD noise of the ensemble's fits on the training rows (None without `return.dp`)."""
        c = self.config
        if not c.dp.enabled:
            return None
        if self.params.training.devices != 1:
            raise ReturnModelError(
                "return.dp.enabled needs training.devices: 1 (DP-SGD is not set up for DDP)"
            )
        return plan_privacy(
            c.dp,
            len(train["returned"]),
            c.batch_size,
            len(np.unique(customers)),
            c.ensemble,
            self.params.training.max_epochs,
        )

    def _train_ensemble(
        self, train: dict, val: dict, customers: np.ndarray
    ) -> tuple[list[ReturnNetwork], list[int]]:
        """The validated networks and their best epoch counts; resumes an ensemble SIGTERM stopped."""
        c = self.config
        plan = self._privacy_plan(train, customers)
        key = _digest(self.params, train, val)
        marker = self.run_dir / ENSEMBLE_FILE
        resuming = marker.exists() and json.loads(marker.read_text()).get("key") == key
        with atomic_path(marker) as tmp:
            tmp.write_text(json.dumps({"key": key}))
        networks, epochs = [], []
        for member in range(c.ensemble):
            raise_if_stopped(f"return model network {member + 1} of {c.ensemble}")
            seed = self.params.training.seed + member
            folder = f"member{member}/validation"
            network, result = self._train(seed, train, val, folder, None, plan, key, resuming)
            log.info(
                "return model: network %d of %d %s (%d epochs)",
                member + 1,
                c.ensemble,
                "loaded, finished before an interruption" if result.reused else "trained",
                result.epochs,
            )
            networks.append(network)
            losses = [row.get("val_loss", np.inf) for row in result.history]
            epochs.append(int(np.argmin(losses)) + 1 if losses else result.epochs)
        marker.unlink()
        if plan is not None:
            _, per_customer = np.unique(customers, return_counts=True)
            self.privacy = privacy_report(plan, [r.epochs for r in self.fit_results], int(per_customer.max()))
            log.info(
                "return model: DP-SGD spent epsilon %.3f of %.3f at delta %.2e (noise multiplier %.3f)",
                self.privacy["epsilon"],
                plan.target_epsilon,
                plan.delta,
                plan.noise_multiplier,
            )
        return networks, epochs

    def fit(self, history: EventLog, as_of: pd.Timestamp, horizon_days: int) -> None:
        """Fit on the history before `as_of` for horizon `horizon_days`.

        Args:
            history: the event log (rows at or after `as_of` are ignored).
            as_of: T; nothing at or after it is read.
            horizon_days: H.

        Raises:
            ReturnModelError: the history is too short for one training and one validation cutoff.
        """
        c, as_of = self.config, pd.Timestamp(as_of)
        self.fit_results, self._rolled, self.privacy = [], None, {}
        frames = history.before(as_of).frames()
        step = c.bin_days * c.cutoff_stride
        examples = build_examples(frames, as_of, self.params.features, c.sequence_length, step, c.max_cutoffs)
        examples = _sample(examples, c.max_examples, self.params.training.seed)
        cutoffs = np.unique(examples.cutoff)
        if len(cutoffs) < 2:
            raise ReturnModelError(
                f"history before {as_of.date()} holds {len(cutoffs)} cutoff(s) {step} days apart; need 2"
            )
        split = pd.Timestamp(
            cutoffs[-min(max(1, round(c.validation_share * len(cutoffs))), len(cutoffs) - 1)]
        )
        log.info(
            "return model: %d examples at %d cutoffs, validation from %s",
            len(examples.cutoff),
            len(cutoffs),
            split.date(),
        )
        self.encoder = InputEncoder.fit(examples.inputs)
        self.horizon_days = horizon_days
        encoded = self.encoder.transform(examples.inputs).arrays()
        encoded["returned"] = (examples.event_days < c.bin_days).astype(np.float32)
        # a row's next bin must end by the phase's censoring time: T_v for training, T for the rest
        bin_end = examples.cutoff + np.timedelta64(c.bin_days, "D")
        train_rows = bin_end <= split.to_datetime64()
        val_rows = (examples.cutoff >= split.to_datetime64()) & (bin_end <= as_of.to_datetime64())
        train = {k: v[train_rows] for k, v in encoded.items()}
        val = {k: v[val_rows] for k, v in encoded.items()}
        self.networks, epochs = self._train_ensemble(train, val, examples.inputs.customer_id[train_rows])
        self.fit_result = self.fit_results[0]
        self.calibration = self._fit_calibration(val)
        self.validation = self._validate(frames, split, as_of, horizon_days, val)
        if c.refit:
            everything = {k: v[bin_end <= as_of.to_datetime64()] for k, v in encoded.items()}
            self.networks = [
                self._train(self.params.training.seed + m, everything, val, f"member{m}/refit", epochs[m])[0]
                for m in range(c.ensemble)
            ]
        self.feature_importance = self._importance(self.states(history, as_of, horizon_days), horizon_days)

    def _importance(self, states: list[CustomerInputs], horizon_days: int) -> pd.DataFrame:
        """feature, importance: mean |occlusion effect| on p_return over the scored customers."""
        columns = self._require_fitted().columns
        _, effects = self._occluded(states, horizon_days)
        importance = np.abs(effects).mean(axis=0) if len(effects) else np.zeros(len(columns))
        order = np.argsort(-importance, kind="stable")
        return pd.DataFrame(
            {"feature": np.array(columns, dtype=object)[order], "importance": importance[order]}
        )

    def _bin_logits(self, arrays: dict[str, np.ndarray]) -> torch.Tensor:
        """(N,) logit of the ensemble's mean next-bin hazard, before calibration."""
        encoded = EncodedInputs(**{key: arrays[key] for key in INPUT_KEYS})
        parts = []
        with torch.no_grad():
            for start in range(0, len(encoded.features), PREDICT_ROWS):
                batch = _tensors(encoded, slice(start, start + PREDICT_ROWS))
                hazards = torch.stack([torch.sigmoid(net(*batch.values())) for net in self.networks])
                parts.append(torch.logit(hazards.mean(0), eps=HAZARD_CLAMP))
        return torch.cat(parts) if parts else torch.zeros(0)

    def _fit_calibration(self, val: dict[str, np.ndarray]) -> tuple[float, float]:
        """`platt_scaling` of the ensemble's hazard logit on the validation rows."""
        return platt_scaling(self._bin_logits(val), torch.from_numpy(val["returned"]))

    def _validate(
        self,
        frames: Frames,
        split: pd.Timestamp,
        as_of: pd.Timestamp,
        horizon_days: int,
        val: dict[str, np.ndarray],
    ) -> dict:
        """The rollout from T_v over min(H, T - T_v) days against what happened before T."""
        c = self.config
        horizon = min(horizon_days, int((as_of - split) / DAY))
        states = rolled_inputs(
            frames, split, bins_for(horizon, c.bin_days), c.bin_days, self.params.features, c.sequence_length
        )
        p, _ = self._rollout(states, horizon)
        p_raw, _ = self._rollout(states, horizon, calibrated=False)
        events = frames.events
        y = (next_purchase_days(events, states[0].customer_id, split, as_of) < horizon).astype(float)
        logits, returned = self._bin_logits(val), torch.from_numpy(val["returned"])
        scale, shift = self.calibration
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        return {
            "as_of": str(split),
            "horizon_days": horizon,
            **return_metrics(y, p),  # the protocol's own formulas: roc_auc, pr_auc, brier, log_loss, ...
            "brier_uncalibrated": float(brier_score_loss(y, p_raw, labels=[0, 1])),
            "val_loss": float(bce(scale * logits + shift, returned)),
            "val_loss_uncalibrated": float(bce(logits, returned)),
            "calibration": {"scale": scale, "shift": shift},
            "reliability": reliability_table(y, p, c.reliability_bins),
        }

    # -- prediction ---------------------------------------------------------------------------

    def _require_fitted(self) -> InputEncoder:
        if self.encoder is None or not self.networks or self.horizon_days is None:
            raise ReturnModelError("the return model is not fitted (call fit or load first)")
        return self.encoder

    def _horizon(self, horizon_days: float | None) -> float:
        """`horizon_days`, or by default the fitted horizon."""
        if horizon_days:
            return horizon_days
        if self.horizon_days is None:
            raise ReturnModelError("the return model is not fitted (call fit or load first)")
        return self.horizon_days

    def _probability(
        self,
        features: list[torch.Tensor],
        sequence: list[list[torch.Tensor]],
        horizon_days: float,
        scale: float,
        shift: float,
    ) -> torch.Tensor:
        """(n,) P(return within H) from per-bin features and per-network, per-bin sequence states."""
        hazards = torch.stack(
            [
                torch.stack(
                    [torch.sigmoid(net.hazard_logit(f, s)) for f, s in zip(features, states, strict=True)], -1
                )
                for net, states in zip(self.networks, sequence, strict=True)
            ]
        ).mean(0)  # (n, K): the ensemble's mean hazard per bin
        calibrated = torch.sigmoid(scale * torch.logit(hazards, eps=HAZARD_CLAMP) + shift)
        return return_probability(calibrated, self.config.bin_days, horizon_days)

    def _rollout(
        self,
        states: list[CustomerInputs],
        horizon_days: float,
        calibrated: bool = True,
        occlusion: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """P(return within `horizon_days`) from rolled states, and optionally the occlusion effects.

        Args:
            states: the customer's inputs at the start of each bin (at least enough bins for H).
            horizon_days: H.
            calibrated: apply the Platt scaling.
            occlusion: also compute, per feature, p - p with the feature at its training mean.

        Returns:
            p (N,) and effects (N, F) (empty when not asked for).
        """
        encoder = self._require_fitted()
        bins = bins_for(horizon_days, self.config.bin_days)
        if len(states) < bins:
            raise ReturnModelError(f"{len(states)} rolled states cover less than {horizon_days} days")
        encoded = [encoder.transform(state) for state in states[:bins]]
        scale, shift = self.calibration if calibrated else (1.0, 0.0)
        baseline = torch.from_numpy(encoder.baseline())
        groups = [
            [k for k, name in enumerate(encoder.feature_names) if name == feature]
            for feature in encoder.columns
        ]
        n = len(encoded[0].features)
        p, effects = np.zeros(n), np.zeros((n, len(groups) if occlusion else 0))
        with torch.no_grad():
            for start in range(0, n, PREDICT_ROWS):
                rows = slice(start, start + PREDICT_ROWS)
                tensors = [_tensors(e, rows) for e in encoded]
                sequence = [
                    [net.sequence_state(t["events"], t["event_type"], t["lengths"]) for t in tensors]
                    for net in self.networks
                ]

                features = [t["features"] for t in tensors]
                chunk = self._probability(features, sequence, horizon_days, scale, shift)
                p[rows] = chunk.numpy()
                for g, columns in enumerate(groups if occlusion else []):
                    occluded = [f.clone() for f in features]
                    for f in occluded:
                        f[:, columns] = baseline[columns]
                    effects[rows, g] = (
                        chunk - self._probability(occluded, sequence, horizon_days, scale, shift)
                    ).numpy()
        return np.clip(p, 0.0, 1.0), effects

    def _occluded(self, states: list[CustomerInputs], horizon_days: float) -> tuple[np.ndarray, np.ndarray]:
        """`_rollout` with occlusion, reused when `states` are the cached ones (see `_RolledCache`)."""
        cache = self._rolled
        if cache is not None and cache.states is states and horizon_days in cache.scored:
            return cache.scored[horizon_days]
        scored = self._rollout(states, horizon_days, occlusion=True)
        if cache is not None and cache.states is states:
            cache.scored[horizon_days] = scored
        return scored

    def _scores(self, states: list[CustomerInputs], horizon_days: float) -> pd.DataFrame:
        encoder = self._require_fitted()
        p, effects = self._occluded(states, horizon_days)
        order = np.argsort(-np.abs(effects), axis=1, kind="stable")
        names = np.array([*encoder.columns, None], dtype=object)
        frame = pd.DataFrame({"customer_id": states[0].customer_id.astype(str), "p_return": p})
        for k in range(self.config.reason_codes):
            column = order[:, k] if k < order.shape[1] else np.full(len(p), len(encoder.columns))
            frame[f"reason_{k + 1}"] = names[column]
        return frame.sort_values("customer_id", kind="stable").reset_index(drop=True)

    def states(
        self, history: EventLog, as_of: pd.Timestamp, horizon_days: float | None = None
    ) -> list[CustomerInputs]:
        """Each customer's inputs at the start of every bin of the horizon (default: the fitted one)."""
        c = self.config
        as_of = pd.Timestamp(as_of)
        bins = bins_for(self._horizon(horizon_days), c.bin_days)
        cache = self._rolled
        if cache is not None and cache.history is history and cache.as_of == as_of and cache.bins == bins:
            return cache.states
        states = rolled_inputs(
            history.before(as_of).frames(), as_of, bins, c.bin_days, self.params.features, c.sequence_length
        )
        self._rolled = _RolledCache(history, as_of, bins, states)
        return states

    def inputs(self, history: EventLog, as_of: pd.Timestamp) -> pd.DataFrame:
        """The flat model input at `as_of` for the fitted horizon: one row per customer with a purchase.

        Args:
            history: the event log (rows at or after `as_of` are ignored).
            as_of: the scoring time.

        Returns:
            customer_id, the raw features at as-of, `seq{i}_{field}` of the last L events (slot 0
            oldest), then `bin{j}_{feature}`: the features at as-of + j * bin_days had no purchase
            happened (j = 1 .. K - 1, K bins covering the horizon).
        """
        self._require_fitted()
        return flatten_rollout(self.states(history, as_of, self.horizon_days))

    def predict_inputs(self, inputs: pd.DataFrame, horizon_days: int | None = None) -> pd.DataFrame:
        """Scores of flat inputs (`inputs`' output) for the fitted horizon, or a shorter `horizon_days`.

        Args:
            inputs: the flat frame.
            horizon_days: H (default: the horizon of the fit).

        Returns:
            customer_id, p_return, reason_1..reason_k, sorted by customer_id.
        """
        encoder = self._require_fitted()
        states = unflatten_rollout(inputs, encoder.columns, encoder.sequence_length, self.config.bin_days)
        return self._scores(states, self._horizon(horizon_days))

    def predict_states(self, states: list[CustomerInputs], horizon_days: int | None = None) -> pd.DataFrame:
        """Scores of rolled states built by the caller (serving builds one customer's with
        `dataset.rolled_inputs` and takes the population-relative features from the online store).

        Args:
            states: the inputs at the start of each bin, bin 0 first (enough bins for the horizon).
            horizon_days: H (default: the horizon of the fit).

        Returns:
            customer_id, p_return, reason_1..reason_k, sorted by customer_id.
        """
        self._require_fitted()
        return self._scores(states, self._horizon(horizon_days))

    def predict(self, history: EventLog, as_of: pd.Timestamp, horizon_days: int) -> pd.DataFrame:
        """P(return within `horizon_days`) of every customer with a purchase before `as_of`.

        Args:
            history: the event log (rows at or after `as_of` are ignored).
            as_of: the scoring time.
            horizon_days: H.

        Returns:
            customer_id, p_return, reason_1..reason_k (feature names, most contributing first),
            sorted by customer_id.
        """
        self._require_fitted()
        return self._scores(self.states(history, as_of, horizon_days), horizon_days)

    # -- persistence --------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write the weights (one state_dict per network) and model.json (encoder, params, calibration).

        Args:
            path: a folder (created).
        """
        encoder = self._require_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for index, network in enumerate(self.networks):
            torch.save(network.state_dict(), path / WEIGHTS_FILE.format(index))
        validation = {k: v for k, v in self.validation.items() if k != "reliability"}
        if "reliability" in self.validation:
            validation["reliability"] = self.validation["reliability"].to_dict(orient="list")
        state = {
            "params": params_sections(self.params, SAVED_SECTIONS),
            "encoder": encoder.to_dict(),
            "n_features": len(encoder.feature_names),
            "networks": len(self.networks),
            "calibration": list(self.calibration),
            "horizon_days": self.horizon_days,
            "validation": validation,
            "feature_importance": self.feature_importance.to_dict(orient="list"),
            "privacy": self.privacy,
        }
        (path / MODEL_FILE).write_text(json.dumps(state, indent=1))

    @classmethod
    def load(cls, path: Path) -> ReturnModel:
        """A model written by `save` (ready to predict; run_dir = `path`).

        Args:
            path: the folder.

        Returns:
            The model.
        """
        path = Path(path)
        state = json.loads((path / MODEL_FILE).read_text())
        model = cls(saved_params(state["params"], SAVED_SECTIONS), path)
        model.encoder = InputEncoder.from_dict(state["encoder"])
        model.horizon_days = state["horizon_days"]
        model.calibration = tuple(state["calibration"])
        for index in range(state["networks"]):
            network = model._network(state["n_features"], 0)
            network.load_state_dict(torch.load(path / WEIGHTS_FILE.format(index), weights_only=True))
            model.networks.append(network.eval())
        validation = dict(state["validation"])
        if "reliability" in validation:
            validation["reliability"] = pd.DataFrame(validation["reliability"])
        model.validation = validation
        model.feature_importance = pd.DataFrame(state["feature_importance"])
        model.privacy = state.get("privacy", {})  # absent in models saved before DP
        return model
