"""The return model's fitted input encoder: raw features and event sequences to scaled tensors' arrays.

Every numeric value goes through a signed log1p (counts, amounts and day spans are heavy-tailed in
any shop, shares and trends are barely changed) and is then standardised with statistics of the
training examples. Unknown values become the mean with a missing flag beside them; columns that
are constant or always unknown in training (e.g. views in a shop that only logs orders) are left
out. The encoder is plain data: it is saved as JSON next to the network's weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from training.churn.dataset import CustomerInputs

SEQUENCE_NUMERIC = ("gap_days", "age_days", "amount")  # scaled per event; event_type is embedded


def signed_log(values: np.ndarray) -> np.ndarray:
    """sign(x) * log(1 + |x|): compresses heavy tails, keeps zero and the sign."""
    return np.sign(values) * np.log1p(np.abs(values))


@dataclass(frozen=True)
class EncodedInputs:
    """Model-ready arrays (float32 / int64) of N customers.

    Attributes:
        features: (N, F) scaled tabular features followed by missing flags.
        events: (N, L, 3) scaled `SEQUENCE_NUMERIC` of the last L events, right-padded with zeros.
        event_type: (N, L) event codes, right-padded with 0.
        lengths: (N,) number of real events (at least 1).
    """

    features: np.ndarray
    events: np.ndarray
    event_type: np.ndarray
    lengths: np.ndarray

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays by name (what the data module and network consume)."""
        return asdict(self)


@dataclass(frozen=True)
class InputEncoder:
    """Scaling statistics learned on training examples.

    Attributes:
        columns: the raw tabular columns the model uses, in order.
        mean, scale: per column, of the signed-log values.
        low, high: per column, the range of the signed-log values seen in training; values outside
            are clipped to it, so that a state never seen (e.g. a recency longer than the history,
            reached when a rollout ages a customer) gets the hazard of the nearest seen state
            instead of a linear extrapolation of the network.
        flagged: the columns that get a missing flag (unknown somewhere in training).
        flag_mean: per flagged column, the share of training rows where it was unknown.
        sequence_mean, sequence_scale: per `SEQUENCE_NUMERIC` field, over real events.
        sequence_length: L.
    """

    columns: list[str]
    mean: list[float]
    scale: list[float]
    flagged: list[str]
    flag_mean: list[float]
    sequence_mean: list[float]
    sequence_scale: list[float]
    sequence_length: int
    low: list[float]
    high: list[float]

    @classmethod
    def fit(cls, inputs: CustomerInputs) -> InputEncoder:
        """Learn the statistics from training inputs.

        Args:
            inputs: the training examples' raw inputs.

        Returns:
            The encoder.
        """
        raw = inputs.tabular.to_numpy(dtype=float)
        raw = np.where(np.isfinite(raw), raw, np.nan)
        logged = signed_log(raw)
        known = ~np.isnan(logged)
        columns, mean, scale, flagged, flag_mean, low, high = [], [], [], [], [], [], []
        for j, name in enumerate(inputs.tabular.columns):
            values = logged[known[:, j], j]
            if len(values) == 0 or (values.std() == 0 and known[:, j].all()):
                continue  # carries no information in this shop
            columns.append(str(name))
            mean.append(float(values.mean()))
            low.append(float(values.min()))
            high.append(float(values.max()))
            scale.append(float(values.std()) or 1.0)
            if not known[:, j].all():
                flagged.append(str(name))
                flag_mean.append(float(1 - known[:, j].mean()))
        real = inputs.sequence["event_type"] > 0
        sequence_mean, sequence_scale = [], []
        for name in SEQUENCE_NUMERIC:
            values = signed_log(inputs.sequence[name][real])
            sequence_mean.append(float(values.mean()) if len(values) else 0.0)
            sequence_scale.append(float(values.std()) if len(values) and values.std() > 0 else 1.0)
        length = inputs.sequence["event_type"].shape[1]
        return cls(columns, mean, scale, flagged, flag_mean, sequence_mean, sequence_scale, length, low, high)

    @property
    def feature_names(self) -> list[str]:
        """The raw feature each encoded column comes from (a flag is named after its feature)."""
        return self.columns + self.flagged

    def transform(self, inputs: CustomerInputs) -> EncodedInputs:
        """Encode raw inputs (columns the encoder does not use are ignored).

        Args:
            inputs: raw inputs with at least `columns` and sequences of length L.

        Returns:
            The encoded arrays.
        """
        raw = inputs.tabular[self.columns].to_numpy(dtype=float)
        raw = np.where(np.isfinite(raw), raw, np.nan)
        logged = np.clip(signed_log(raw), np.array(self.low), np.array(self.high))  # NaN stays NaN
        scaled = (logged - np.array(self.mean)) / np.array(self.scale)
        flags = np.isnan(raw[:, [self.columns.index(name) for name in self.flagged]]).astype(float)
        features = np.concatenate([np.nan_to_num(scaled, nan=0.0), flags], axis=1)
        kinds = inputs.sequence["event_type"].astype(np.int64)
        lengths = (kinds > 0).sum(axis=1)
        # left-padded (most recent last) -> right-padded, as packed recurrent layers expect
        shift = lengths - kinds.shape[1]
        index = (np.arange(kinds.shape[1])[None, :] - shift[:, None]) % kinds.shape[1]
        numeric = np.stack(
            [
                (signed_log(inputs.sequence[name]) - m) / s
                for name, m, s in zip(SEQUENCE_NUMERIC, self.sequence_mean, self.sequence_scale, strict=True)
            ],
            axis=-1,
        )
        real = np.take_along_axis(kinds > 0, index, axis=1)
        events = np.take_along_axis(numeric, index[..., None], axis=1) * real[..., None]
        return EncodedInputs(
            features=features.astype(np.float32),
            events=events.astype(np.float32),
            event_type=np.take_along_axis(kinds, index, axis=1) * real,
            lengths=np.maximum(lengths, 1).astype(np.int64),  # a population customer has an event
        )

    def baseline(self) -> np.ndarray:
        """The training mean of each encoded column (0 for scaled values, the unknown share for flags)."""
        return np.concatenate([np.zeros(len(self.columns)), np.array(self.flag_mean)]).astype(np.float32)

    def to_dict(self) -> dict:
        """A JSON-ready copy."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> InputEncoder:
        """Inverse of `to_dict`."""
        return cls(**data)
