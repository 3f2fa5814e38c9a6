"""Multi-treatment uplift learners behind one interface: fit on a log, predict `uplift_<arm>` per treatment.

Meta-learners come from well-kept libraries on LightGBM base learners: the S-, T-, X- and
DR-learners from causalml, the class transformation from scikit-uplift. The baselines of
EVALUATION.md (random, the response model P(outcome | treated), the risk ranking
-P(outcome | control)) return scores that rank customers, not effect sizes.

Our own code is kept where no library does the job (measured on inner folds of the Hillstrom
training parts, see benchmarks/results/uplift_hillstrom.md):
- `InteractionLogit`: a logistic model with treatment x feature interactions whose heterogeneity
  is shrunk towards one constant log-odds effect (`scale` < 1 puts a stronger L2 penalty on the
  interactions than on the main effects). No library exposes separate penalties for the two blocks,
  and the shrinkage is what made the difference: inner-fold Qini on men's e-mail / visit 0.028 at
  scale 0 against 0.015 at scale 1 (the plain interaction model), while women's e-mail needs scale 1.
- `Blend`: per arm, a weighted mean of the causalml S-learner and `InteractionLogit`, the weight
  and the scale chosen per arm by inner cross-validation on the training log (training.uplift.tuning).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from retention.params import UpliftParams


def uplift_column(arm: str) -> str:
    """The output column of one treatment arm (`uplift_<arm name as in the log>`)."""
    return f"uplift_{arm}"


def is_binary(y: np.ndarray) -> bool:
    """Whether an outcome is 0/1 (classifiers) rather than an amount (regressors)."""
    return bool(np.isin(np.asarray(y, float), (0.0, 1.0)).all())


def lgbm(params: UpliftParams, binary: bool, seed: int, **overrides: Any) -> Any:
    """A LightGBM base learner as params.yaml `uplift:` says (the reference: 200 trees, 15 leaves, >= 200 rows a leaf)."""
    from lightgbm import LGBMClassifier, LGBMRegressor

    options = {
        "n_estimators": params.trees,
        "num_leaves": params.leaves,
        "min_child_samples": params.min_leaf_rows,
        "learning_rate": params.learning_rate,
        "reg_lambda": params.l2,
        "n_jobs": params.n_jobs,
        "random_state": seed,
        "verbose": -1,
        **overrides,
    }
    return LGBMClassifier(**options) if binary else LGBMRegressor(**options)


def pair_propensity(arm: np.ndarray, propensity: np.ndarray, treatment: str, control: str) -> np.ndarray:
    """P(treatment | treatment or control) per row: what a two-arm learner (X, DR) needs as `p`.

    A row of another arm gets the treatment's average, which those learners never read.
    """
    share = np.full(len(arm), np.nan)
    in_t, in_c = arm == treatment, arm == control
    p_t = propensity[in_t].mean()
    p_c = propensity[in_c].mean()
    share[in_t] = propensity[in_t] / (propensity[in_t] + p_c)
    share[in_c] = p_t / (p_t + propensity[in_c])
    share[~(in_t | in_c)] = p_t / (p_t + p_c)
    return np.clip(share, 1e-3, 1 - 1e-3)


class UpliftLearner(ABC):
    """Fit on a log (features, arm, outcome, propensity); predict one uplift column per treatment arm.

    Attributes:
        name: the learner's name (`--learner`).
        control: the control arm.
        treatments: the treatment arms seen in fit, sorted.
        binary: whether the outcome was 0/1.
    """

    name: ClassVar[str]
    effect_sizes: ClassVar[bool] = True  # False: scores that only rank (the baselines)

    def __init__(self, params: UpliftParams, control: str, seed: int | None = None) -> None:
        self.params = params
        self.control = control
        self.seed = params.seed if seed is None else seed
        self.treatments: list[str] = []
        self.binary = True

    def fit(self, X: np.ndarray, arm: np.ndarray, y: np.ndarray, propensity: np.ndarray) -> UpliftLearner:
        """Fit on the log's rows.

        Args:
            X: encoded features (rows x columns).
            arm: the arm per row (names; the control among them).
            y: the outcome per row (0/1 or an amount).
            propensity: P(row's arm) per row.

        Returns:
            self.
        """
        arm = np.asarray(arm).astype(str)
        if self.control not in arm:
            raise ValueError(f"control arm {self.control!r} is not in the training rows")
        self.treatments = sorted(str(a) for a in set(arm) - {self.control})
        if not self.treatments:
            raise ValueError("the training rows hold no treatment arm")
        self.binary = is_binary(y)
        self._fit(np.asarray(X, float), arm, np.asarray(y, float), np.asarray(propensity, float))
        return self

    def predict_uplift(self, X: np.ndarray) -> pd.DataFrame:
        """Estimated E[y | arm] - E[y | control] per row and treatment arm (`uplift_<arm>` columns)."""
        values = np.asarray(self._predict(np.asarray(X, float)), float).reshape(len(X), len(self.treatments))
        return pd.DataFrame(values, columns=[uplift_column(a) for a in self.treatments])

    def describe(self) -> dict[str, Any]:
        """The learner's parameters and any choices it made in fit (for metrics.json)."""
        return {"learner": self.name, "seed": self.seed, "outcome": "binary" if self.binary else "amount"}

    @abstractmethod
    def _fit(self, X: np.ndarray, arm: np.ndarray, y: np.ndarray, propensity: np.ndarray) -> None: ...

    @abstractmethod
    def _predict(self, X: np.ndarray) -> np.ndarray: ...

    def _base(self, binary: bool | None = None, **overrides: Any) -> Any:
        return lgbm(self.params, self.binary if binary is None else binary, self.seed, **overrides)

    def _lgbm_options(self) -> dict[str, Any]:
        p = self.params
        return {
            "trees": p.trees,
            "leaves": p.leaves,
            "min_leaf_rows": p.min_leaf_rows,
            "learning_rate": p.learning_rate,
            "l2": p.l2,
        }


class SLearner(UpliftLearner):
    """causalml S-learner: per arm one model on that arm's and the control's rows, the arm as a feature."""

    name = "s_learner"

    def _fit(self, X: np.ndarray, arm: np.ndarray, y: np.ndarray, propensity: np.ndarray) -> None:
        from causalml.inference.meta import BaseSClassifier, BaseSRegressor

        kind = BaseSClassifier if self.binary else BaseSRegressor
        self.model = kind(learner=self._base(), control_name=self.control).fit(X, treatment=arm, y=y)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(X))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **self._lgbm_options()}


class TLearner(SLearner):
    """causalml T-learner: one model per arm, uplift = the arm's prediction minus the control's."""

    name = "t_learner"

    def _fit(self, X: np.ndarray, arm: np.ndarray, y: np.ndarray, propensity: np.ndarray) -> None:
        from causalml.inference.meta import BaseTClassifier, BaseTRegressor

        kind = BaseTClassifier if self.binary else BaseTRegressor
        self.model = kind(learner=self._base(), control_name=self.control).fit(X, treatment=arm, y=y)


class XLearner(SLearner):
    """causalml X-learner: T-learner outcomes, imputed effects regressed per arm, mixed by the propensity."""

    name = "x_learner"

    def _fit(self, X: np.ndarray, arm: np.ndarray, y: np.ndarray, propensity: np.ndarray) -> None:
        from causalml.inference.meta import BaseXClassifier, BaseXRegressor

        p = {t: pair_propensity(arm, propensity, t, self.control) for t in self.treatments}
        self.p_mean = {t: float(v[(arm == t) | (arm == self.control)].mean()) for t, v in p.items()}
        if self.binary:
            self.model = BaseXClassifier(
                outcome_learner=self._base(True), effect_learner=self._base(False), control_name=self.control
            )
        else:
            self.model = BaseXRegressor(learner=self._base(False), control_name=self.control)
        self.model.fit(X, treatment=arm, y=y, p=p)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        p = {t: np.full(len(X), self.p_mean[t]) for t in self.treatments}
        return np.asarray(self.model.predict(X, p=p))


class DRLearner(SLearner):
    """causalml DR-learner: doubly robust pseudo-outcomes (3-fold cross-fitting) regressed on the features."""

    name = "dr_learner"

    def _fit(self, X: np.ndarray, arm: np.ndarray, y: np.ndarray, propensity: np.ndarray) -> None:
        from causalml.inference.meta import BaseDRRegressor

        p = {t: pair_propensity(arm, propensity, t, self.control) for t in self.treatments}
        self.model = BaseDRRegressor(learner=self._base(False), control_name=self.control)
        self.model.fit(X, treatment=arm, y=y, p=p, seed=self.seed)


class ClassTransformation(SLearner):
    """scikit-uplift class transformation per arm (binary), or the transformed outcome (amounts).

    Both assume the arm and the control are about equally likely within the pair; the amount form
    takes the pair's mean propensity.
    """

    name = "class_transformation"

    def _fit(self, X: np.ndarray, arm: np.ndarray, y: np.ndarray, propensity: np.ndarray) -> None:
        from sklift.models import ClassTransformation as CT
        from sklift.models import ClassTransformationReg

        self.models = {}
        for t in self.treatments:
            rows = (arm == t) | (arm == self.control)
            treated = (arm[rows] == t).astype(int)
            if self.binary:
                model = CT(self._base())
            else:
                p = float(pair_propensity(arm, propensity, t, self.control)[rows].mean())
                model = ClassTransformationReg(self._base(False), propensity_val=p)
            self.models[t] = model.fit(X[rows], y[rows], treated)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return np.column_stack([self.models[t].predict(X) for t in self.treatments])


class ResponseModel(SLearner):
    """Baseline: P(outcome | treated with the arm) (or the expected amount), one model per arm.

    It ranks those likely to act when treated, whether or not they would have acted anyway.
    """

    name = "response"
    effect_sizes = False

    def _fit(self, X: np.ndarray, arm: np.ndarray, y: np.ndarray, propensity: np.ndarray) -> None:
        self.models = {t: self._base().fit(X[arm == t], y[arm == t]) for t in self.treatments}

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return np.column_stack([_expected(self.models[t], X) for t in self.treatments])


class RiskModel(SLearner):
    """Baseline: the least likely to act untreated first, score = -P(outcome | control), the same for every arm."""

    name = "risk"
    effect_sizes = False

    def _fit(self, X: np.ndarray, arm: np.ndarray, y: np.ndarray, propensity: np.ndarray) -> None:
        self.model = self._base().fit(X[arm == self.control], y[arm == self.control])

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return np.repeat(-_expected(self.model, X)[:, None], len(self.treatments), axis=1)


class RandomScores(UpliftLearner):
    """Baseline: uniform random scores (seeded), independent per arm."""

    name = "random"
    effect_sizes = False

    def _fit(self, X: np.ndarray, arm: np.ndarray, y: np.ndarray, propensity: np.ndarray) -> None:
        self.rng = np.random.default_rng(self.seed)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return self.rng.random((len(X), len(self.treatments)))


def _expected(model: Any, X: np.ndarray) -> np.ndarray:
    """P(y = 1) of a classifier, the prediction of a regressor."""
    if hasattr(model, "predict_proba"):
        return np.asarray(model.predict_proba(X))[:, 1]
    return np.asarray(model.predict(X))


class Standardiser:
    """Inputs for linear models and networks: skewed non-negative columns log1p'd, then every column standardised.

    Money columns (Hillstrom's `history`) are heavy-tailed: on the raw scale a few customers would
    dominate a linear term. Learnt on the training rows only.
    """

    def fit(self, X: np.ndarray) -> Standardiser:
        """Learn which columns to log and the mean and spread of each."""
        from scipy.stats import skew

        many = np.array([len(np.unique(c)) > 2 for c in X.T], dtype=bool)
        positive = X.min(axis=0) >= 0 if len(X) else np.zeros(X.shape[1], dtype=bool)
        self.logged = many & positive & (np.nan_to_num(skew(X, axis=0)) > 1)
        logged = self._log(X)
        self.mean, self.std = logged.mean(axis=0), logged.std(axis=0) + 1e-9
        return self

    def _log(self, X: np.ndarray) -> np.ndarray:
        X = np.array(X, dtype=float)
        X[:, self.logged] = np.log1p(X[:, self.logged])
        return X

    def transform(self, X: np.ndarray) -> np.ndarray:
        """The standardised inputs."""
        return np.asarray((self._log(X) - self.mean) / self.std)


class InteractionLogit:
    """Logistic regression on [x, w, scale * w * x] for one arm vs control (binary outcome).

    Standardised inputs share one L2 penalty 1/C, so the interaction block's effective penalty is
    1/(C scale^2): scale 0 is one constant log-odds effect (uplift then follows the baseline rate),
    scale 1 the plain interaction model.
    """

    def __init__(self, C: float, scale: float) -> None:
        self.C, self.scale = C, scale

    def fit(self, X: np.ndarray, treated: np.ndarray, y: np.ndarray) -> InteractionLogit:
        """Fit on one arm's and the control's rows (`treated` = 1 for the arm)."""
        from sklearn.linear_model import LogisticRegression

        self.inputs = Standardiser().fit(X)
        Z = self.inputs.transform(X)
        w = treated.astype(float)[:, None]
        self.model = LogisticRegression(C=self.C, max_iter=3000).fit(np.hstack([Z, w, self.scale * w * Z]), y)
        return self

    def uplift(self, X: np.ndarray) -> np.ndarray:
        """P(y | arm, x) - P(y | control, x)."""
        Z = self.inputs.transform(X)
        one, zero = np.ones((len(Z), 1)), np.zeros((len(Z), 1))
        treated = self.model.predict_proba(np.hstack([Z, one, self.scale * Z]))[:, 1]
        untreated = self.model.predict_proba(np.hstack([Z, zero, 0 * Z]))[:, 1]
        return np.asarray(treated - untreated)


class Blend(UpliftLearner):
    """Ours: per arm alpha x S-learner + (1 - alpha) x InteractionLogit(scale), both chosen by inner CV.

    Amount outcomes (spend) go through a hurdle: the blend models the event y > 0 and its uplift is
    scaled by the mean positive amount of the log, i.e. the effect is taken to work through the
    share of customers who act, not through the amount they spend once they do (on Hillstrom
    spend per conversion is about equal across arms, and far too noisy to model per customer).
    """

    name = "blend"

    def __init__(
        self,
        params: UpliftParams,
        control: str,
        seed: int | None = None,
        choice: dict[str, dict[str, float]] | None = None,
    ) -> None:
        super().__init__(params, control, seed)
        self.fixed = choice  # (alpha, scale) per arm chosen earlier: no inner cross-validation

    def _fit(self, X: np.ndarray, arm: np.ndarray, y: np.ndarray, propensity: np.ndarray) -> None:
        from training.uplift.tuning import tune_blend

        event = (y > 0).astype(float)
        if event.min() == event.max():
            raise ValueError(
                "the blend models an amount through the share of rows with outcome > 0, and here "
                f"{'every' if event.max() else 'no'} row has one: use t_learner or dr_learner"
            )
        self.amount = float(y[y > 0].mean()) if not self.binary else 1.0
        if self.fixed is not None:
            self.choice, self.figures = self.fixed, {"folds": 0, "fixed": True}
        else:
            self.choice, self.figures = tune_blend(self, X, arm, event, propensity)
        self.parts = {t: self.fit_arm(X, arm, event, t, **self.choice[t]) for t in self.treatments}

    def fit_arm(
        self, X: np.ndarray, arm: np.ndarray, event: np.ndarray, treatment: str, alpha: float, scale: float
    ) -> Callable[[np.ndarray], np.ndarray]:
        """The fitted blend of one arm vs control, as a function of X."""
        rows = (arm == treatment) | (arm == self.control)
        treated = (arm[rows] == treatment).astype(float)
        s = self.s_model(X[rows], treated, event[rows]) if alpha > 0 else None
        logit = (
            InteractionLogit(self.params.blend.logistic_c, scale).fit(X[rows], treated, event[rows])
            if alpha < 1
            else None
        )

        def predict(Z: np.ndarray) -> np.ndarray:
            total = np.zeros(len(Z))
            if s is not None:
                total += alpha * s(Z)
            if logit is not None:
                total += (1 - alpha) * logit.uplift(Z)
            return total

        return predict

    def s_model(
        self, X: np.ndarray, treated: np.ndarray, event: np.ndarray
    ) -> Callable[[np.ndarray], np.ndarray]:
        """The blend's S-learner part (causalml, more regularised LightGBM than the reference)."""
        from causalml.inference.meta import BaseSClassifier

        b = self.params.blend
        base = self._base(True, learning_rate=b.s_learning_rate, reg_lambda=b.s_l2)
        model = BaseSClassifier(learner=base, control_name=0).fit(X, treatment=treated.astype(int), y=event)
        return lambda Z: np.asarray(model.predict(Z))[:, 0]

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return self.amount * np.column_stack([self.parts[t](X) for t in self.treatments])

    def describe(self) -> dict[str, Any]:
        b = self.params.blend
        return {
            **super().describe(),
            **self._lgbm_options(),
            "s_learning_rate": b.s_learning_rate,
            "s_l2": b.s_l2,
            "logistic_c": b.logistic_c,
            "chosen": self.choice,
            "amount_per_event": self.amount,
            "inner_cv": self.figures,
        }


class ArmOutcomes:
    """E[y | arm, x] for every arm, the control included: one LightGBM model per arm.

    The outcome model of the doubly robust policy value (training.uplift.evaluation.policy_value_dr).
    """

    def __init__(self, params: UpliftParams, seed: int | None = None) -> None:
        self.params, self.seed = params, params.seed if seed is None else seed

    def fit(self, X: np.ndarray, arm: np.ndarray, y: np.ndarray) -> ArmOutcomes:
        """One model per arm on that arm's rows."""
        arm = np.asarray(arm).astype(str)
        binary = is_binary(y)
        self.models = {
            str(a): lgbm(self.params, binary, self.seed).fit(X[arm == a], y[arm == a])
            for a in sorted(set(arm))
        }
        return self

    def predict(self, X: np.ndarray) -> pd.DataFrame:
        """One column per arm name."""
        return pd.DataFrame({a: _expected(m, X) for a, m in self.models.items()})
