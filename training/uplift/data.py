"""Campaign logs for the uplift backtest: read and check a log (or a customers file), encode its features.

A campaign log (EVALUATION.md task 3) has one row per (customer, campaign): `user_id`, `arm` (the
offer given, or the control arm's name), outcome columns (0/1 or a non-negative amount), an
optional `propensity` (P(this customer got this arm); default: the arm's share of the log) and
feature columns known before the campaign, numbers or categories. Every check fails here, at the
edge, with a message that names the column or value at fault, so a learner never sees a bad frame.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

LogFormat = Literal["log", "hillstrom"]
FORMATS: tuple[str, ...] = ("log", "hillstrom")
HILLSTROM_FEATURES = (
    "recency",
    "history_segment",
    "history",
    "mens",
    "womens",
    "zip_code",
    "newbie",
    "channel",
)
HILLSTROM_OUTCOMES = ("visit", "conversion", "spend")
HILLSTROM_CONTROL = "No E-Mail"
PROPENSITY = "propensity"
MAX_CATEGORIES = 50  # a text column with more distinct values is an identifier, not a category


class UpliftDataError(ValueError):
    """A campaign log or customers file that cannot be used; the message says what and where."""


@dataclass(frozen=True)
class CampaignLog:
    """A checked campaign log.

    Attributes:
        user_id: customer id per row (as text).
        arm: the arm per row (as text, names as in the log).
        outcome: the outcome per row (float; 0/1 or an amount >= 0).
        propensity: P(row's arm) per row, in (0, 1].
        features: the feature columns (raw: numbers or categories).
        control: the control arm's name.
        outcome_name: the outcome column it was read for.
        treatments: the treatment arms, sorted (the control excluded).
    """

    user_id: pd.Series
    arm: pd.Series
    outcome: np.ndarray
    propensity: np.ndarray
    features: pd.DataFrame
    control: str
    outcome_name: str
    treatments: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.arm)

    @property
    def binary(self) -> bool:
        """Whether the outcome is 0/1 (classifiers, Qini) rather than an amount (regressors)."""
        return bool(np.isin(self.outcome, (0.0, 1.0)).all())

    def subset(self, rows: np.ndarray) -> CampaignLog:
        """The log restricted to `rows` (positions); propensities are kept as logged."""
        return CampaignLog(
            user_id=self.user_id.iloc[rows].reset_index(drop=True),
            arm=self.arm.iloc[rows].reset_index(drop=True),
            outcome=self.outcome[rows],
            propensity=self.propensity[rows],
            features=self.features.iloc[rows].reset_index(drop=True),
            control=self.control,
            outcome_name=self.outcome_name,
            treatments=self.treatments,
        )

    def fingerprint(self) -> str:
        """A short content hash of the rows (ids, arms, outcome, features): equal logs, equal hashes."""
        frame = pd.concat(
            [self.user_id, self.arm, pd.Series(self.outcome, name="outcome"), self.features], axis=1
        )
        hashed = pd.util.hash_pandas_object(frame.astype(str), index=False).to_numpy()
        return hashlib.sha256(np.sort(hashed).tobytes()).hexdigest()[:16]


def read_table(
    path: Path, fmt: LogFormat = "log", id_col: str = "user_id", arm_col: str = "arm"
) -> pd.DataFrame:
    """A CSV file as a frame, mapped to the log's column names when `fmt` is a known dataset.

    `hillstrom` (MineThatData's e-mail experiment): user_id = the row number, arm = `segment`.

    Raises:
        UpliftDataError: the file is missing, empty or not CSV, or `fmt` is unknown.
    """
    if fmt not in FORMATS:
        raise UpliftDataError(f"--format must be one of: {', '.join(FORMATS)} (got '{fmt}')")
    try:
        frame = pd.read_csv(path, dtype={id_col: str})
    except FileNotFoundError:
        raise UpliftDataError(f"{path}: file not found") from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise UpliftDataError(f"{path}: not a readable CSV file ({error})") from None
    if frame.empty:
        raise UpliftDataError(f"{path}: has no rows")
    if fmt == "hillstrom":
        frame = frame.rename(columns={"segment": arm_col})
        if id_col not in frame:
            frame.insert(0, id_col, np.arange(len(frame)).astype(str))
    return frame


def _require(frame: pd.DataFrame, columns: Sequence[str], path: Path | str, what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UpliftDataError(
            f"{path}: {what} has no column {', '.join(repr(c) for c in missing)} "
            f"(columns: {', '.join(map(str, frame.columns))})"
        )


def _outcome(values: pd.Series, path: Path | str) -> np.ndarray:
    numbers = pd.to_numeric(values, errors="coerce")
    bad = values.notna() & numbers.isna()
    if bad.any():
        example = values[bad].iloc[0]
        raise UpliftDataError(
            f"{path}: outcome {values.name!r} is not numeric (row {bad.idxmax()}: {example!r})"
        )
    if numbers.isna().any():
        raise UpliftDataError(f"{path}: outcome {values.name!r} is empty in {int(numbers.isna().sum())} rows")
    if (numbers < 0).any():
        raise UpliftDataError(
            f"{path}: outcome {values.name!r} must be 0/1 or an amount >= 0 (found {numbers.min()})"
        )
    return numbers.to_numpy(dtype=float)


def _propensity(frame: pd.DataFrame, arm: pd.Series, path: Path | str) -> np.ndarray:
    if PROPENSITY not in frame:  # a randomised log: each arm's share of the log
        return arm.map(arm.value_counts(normalize=True)).to_numpy(dtype=float)
    p = pd.to_numeric(frame[PROPENSITY], errors="coerce")
    if p.isna().any() or ((p <= 0) | (p > 1)).any():
        raise UpliftDataError(f"{path}: column 'propensity' must be a probability in (0, 1] on every row")
    return p.to_numpy(dtype=float)


def read_campaign_log(
    path: Path,
    outcome: str,
    control: str,
    *,
    features: Sequence[str] | None = None,
    fmt: LogFormat = "log",
    arm_col: str = "arm",
    id_col: str = "user_id",
) -> CampaignLog:
    """Read and check a campaign log.

    Args:
        path: the CSV file.
        outcome: the outcome column to model.
        control: the control arm's name as it appears in the arm column.
        features: the feature columns; None: every column other than the id, arm, propensity and
            outcome (for `hillstrom`: its eight pre-campaign columns; its other outcomes never are features).
        fmt: `log` (the contract's columns) or `hillstrom` (hillstrom.csv as shipped).
        arm_col: the arm column's name.
        id_col: the customer id column's name.

    Raises:
        UpliftDataError: a missing column, the control arm absent, no treatment arm, a non-numeric,
            empty or negative outcome, or an invalid propensity.
    """
    frame = read_table(path, fmt, id_col, arm_col)
    if features is None and fmt == "hillstrom":
        features = HILLSTROM_FEATURES
    _require(frame, [id_col, arm_col, outcome], path, "the campaign log")
    if features is None:
        features = [c for c in frame.columns if c not in {id_col, arm_col, outcome, PROPENSITY}]
    _require(frame, list(features), path, "the campaign log")
    if not features:
        raise UpliftDataError(f"{path}: the campaign log has no feature columns")
    if frame[arm_col].isna().any():
        raise UpliftDataError(
            f"{path}: column {arm_col!r} is empty in {int(frame[arm_col].isna().sum())} rows"
        )
    arm = frame[arm_col].astype(str)
    arms = sorted(arm.unique())
    source = "segment" if fmt == "hillstrom" else arm_col  # the arm column as the file spells it
    if control not in arms:
        raise UpliftDataError(
            f"{path}: control arm {control!r} is not in column {source!r} (arms: {', '.join(arms)})"
        )
    treatments = tuple(a for a in arms if a != control)
    if not treatments:
        raise UpliftDataError(
            f"{path}: column {source!r} holds only the control arm {control!r}: nothing to compare"
        )
    return CampaignLog(
        user_id=frame[id_col].astype(str).rename("user_id"),
        arm=arm.rename("arm"),
        outcome=_outcome(frame[outcome], path),
        propensity=_propensity(frame, arm, path),
        features=frame[list(features)].reset_index(drop=True),
        control=control,
        outcome_name=outcome,
        treatments=treatments,
    )


def read_customers(
    path: Path, features: Sequence[str], *, fmt: LogFormat = "log", id_col: str = "user_id"
) -> tuple[pd.Series, pd.DataFrame]:
    """Read the customers to score: their ids and the training log's feature columns.

    Raises:
        UpliftDataError: the file lacks the id or one of the features.
    """
    frame = read_table(path, fmt, id_col)
    _require(frame, [id_col, *features], path, "the customers file")
    return frame[id_col].astype(str).rename("user_id"), frame[list(features)].reset_index(drop=True)


def shared_features(
    train_path: Path, test_path: Path, fmt: LogFormat, id_col: str, arm_col: str, outcome: str
) -> list[str]:
    """The feature columns of a backtest: the log's columns that the customers file has too.

    The customers file holds only what is known before the campaign (EVALUATION.md), so this
    keeps the log's other outcome columns (a conversion beside a visit) out of the features.
    """
    if fmt == "hillstrom":
        return list(HILLSTROM_FEATURES)
    train = read_table(train_path, fmt, id_col, arm_col).columns
    test = set(read_table(test_path, fmt, id_col, arm_col).columns)
    shared = [c for c in train if c in test and c not in {id_col, arm_col, outcome, PROPENSITY}]
    if not shared:
        raise UpliftDataError(f"{test_path}: shares no feature column with {train_path}")
    return shared


def _safe(name: str) -> str:
    """LightGBM refuses JSON special characters in feature names (`$`, `,`, `:`, quotes...)."""
    return re.sub(r"[^0-9A-Za-z_=.+-]", "_", name)


@dataclass
class FeatureEncoder:
    """Numbers as they are (missing -> the training median), categories one-hot; fitted on training rows.

    The one place features are encoded, so training and scoring cannot drift: a category unseen in
    training scores as all-zero indicators, a numeric column that became text fails loudly.
    """

    numeric: list[str] = field(default_factory=list)
    medians: dict[str, float] = field(default_factory=dict)
    categories: dict[str, list[str]] = field(default_factory=dict)

    def fit(self, features: pd.DataFrame) -> FeatureEncoder:
        """Learn which columns are numbers, their medians, and each category column's values.

        Raises:
            UpliftDataError: a text column with more than MAX_CATEGORIES values (an identifier?).
        """
        self.numeric, self.medians, self.categories = [], {}, {}
        for column in features.columns:
            values = features[column]
            if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
                self.numeric.append(column)
                median = values.median()
                self.medians[column] = 0.0 if pd.isna(median) else float(median)
            else:
                levels = sorted(values.dropna().astype(str).unique())
                if len(levels) > MAX_CATEGORIES:
                    raise UpliftDataError(
                        f"feature {column!r} has {len(levels)} distinct text values (at most {MAX_CATEGORIES} "
                        "are treated as categories): leave identifiers out of the features"
                    )
                self.categories[column] = levels
        return self

    @property
    def names(self) -> list[str]:
        """The encoded column names (LightGBM-safe)."""
        one_hot = [f"{c}={v}" for c, levels in self.categories.items() for v in levels]
        return [_safe(n) for n in [*self.numeric, *one_hot]]

    def transform(self, features: pd.DataFrame) -> np.ndarray:
        """The model matrix (rows x encoded columns, float).

        Raises:
            UpliftDataError: a column is missing or a numeric column holds text.
        """
        _require(features, [*self.numeric, *self.categories], "features", "the frame")
        blocks = []
        for column in self.numeric:
            values = pd.to_numeric(features[column], errors="coerce")
            if (values.isna() & features[column].notna()).any():
                raise UpliftDataError(f"feature {column!r} was numeric in training but holds text here")
            blocks.append(values.fillna(self.medians[column]).to_numpy(dtype=float)[:, None])
        for column, levels in self.categories.items():
            text = features[column].astype(str).to_numpy()
            blocks.append((text[:, None] == np.asarray(levels, dtype=object)[None, :]).astype(float))
        return np.hstack(blocks) if blocks else np.zeros((len(features), 0))

    def to_dict(self) -> dict[str, object]:
        """The fitted encoding, for metrics.json and saved models."""
        return {"numeric": self.numeric, "medians": self.medians, "categories": self.categories}
