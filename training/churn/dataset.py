"""Point-in-time inputs of the return model: training examples at many cutoffs, rolled-forward states.

An example is (customer, cutoff c): the feature store's features at c plus a few inter-purchase
features of our own, the customer's last L events before c, and the days from c to the next
purchase (censored where the log ends). Everything an example's inputs hold is strictly before c;
its outcome is only read before the censoring time the caller gives (never at or after as-of).
A rolled state is a customer's inputs at as-of + j bins computed from the rows before as-of only:
where the customer stands then if nothing happens meanwhile (what the hazard rollout scores).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np
import pandas as pd

from feature_store.core import build_sequences, compute_features, to_padded
from feature_store.frames import PURCHASE, FeatureContext, Frames
from retention.params import FeatureParams

DAY = pd.Timedelta(days=1)
SEQUENCE_FIELDS = ("event_type", "gap_days", "age_days", "amount")  # per event, oldest .. newest
EXTRA_FEATURES = (
    "orders_total",
    "first_order_days",
    "order_span_days",
    "repeat_rate_per_day",
    "recency_over_ipt",
    "last_gap_days",
    "amount_mean",
    "amount_last",
    "amount_first",
    "items_total",
    "items_per_order",
)


@dataclass(frozen=True)
class CustomerInputs:
    """The model's raw inputs for customers at one or several cutoffs, row-aligned.

    Attributes:
        customer_id: (N,) customer ids.
        tabular: (N, F) numeric features, NaN = unknown (not yet scaled).
        sequence: per `SEQUENCE_FIELDS` name an (N, L) array of the last L events, left-padded
            (most recent last): event_type codes (0 = padding), gap_days since the customer's
            previous event, age_days before the cutoff, amount (0 for views, carts and padding).
    """

    customer_id: np.ndarray
    tabular: pd.DataFrame
    sequence: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.customer_id)

    def take(self, rows: np.ndarray) -> CustomerInputs:
        """The rows at the given positions."""
        return CustomerInputs(
            self.customer_id[rows],
            self.tabular.iloc[rows].reset_index(drop=True),
            {name: values[rows] for name, values in self.sequence.items()},
        )


def concat_inputs(parts: list[CustomerInputs]) -> CustomerInputs:
    """Stack inputs of several cutoffs (same columns and sequence length) row-wise."""
    return CustomerInputs(
        np.concatenate([p.customer_id for p in parts]),
        pd.concat([p.tabular for p in parts], ignore_index=True),
        {name: np.concatenate([p.sequence[name] for p in parts]) for name in SEQUENCE_FIELDS},
    )


def _order_features(ctx: FeatureContext) -> pd.DataFrame:
    """Inter-purchase and basket features from the orders (and lines) before the cutoff."""
    orders = ctx.orders  # sorted by customer then time; ages in days before the cutoff
    codes = orders["code"].to_numpy()
    count = ctx.count(codes)
    grouped = orders.groupby("code")
    first_age = grouped["age_days"].max().reindex(range(ctx.n)).to_numpy(dtype=float)
    last_age = grouped["age_days"].min().reindex(range(ctx.n)).to_numpy(dtype=float)
    amount_last = grouped["amount"].last().reindex(range(ctx.n)).to_numpy(dtype=float)
    amount_first = grouped["amount"].first().reindex(range(ctx.n)).to_numpy(dtype=float)
    previous = orders["age_days"].shift()
    gaps = (previous - orders["age_days"]).where(orders["code"].eq(orders["code"].shift()))
    last_gap = gaps.groupby(codes).last().reindex(range(ctx.n)).to_numpy(dtype=float)
    # mean gap of at least a day: same-day orders would otherwise divide by zero
    ipt = np.maximum(gaps.groupby(codes).mean().reindex(range(ctx.n)).to_numpy(dtype=float), 1.0)
    lines = ctx.purchases
    items = ctx.count(lines["code"].to_numpy(), lines["quantity"].to_numpy(dtype=float))
    span = first_age - last_age
    recency = ctx.days_before(ctx.last_purchase_ts)
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.DataFrame(
            {
                "orders_total": count.astype(float),
                "first_order_days": first_age,
                "order_span_days": span,
                # repeat orders per day since the first order: the BG/NBD rate x / T
                "repeat_rate_per_day": np.where(count > 0, (count - 1) / np.maximum(first_age, 1.0), np.nan),
                "recency_over_ipt": recency / ipt,
                "last_gap_days": last_gap,
                "amount_mean": np.where(
                    count > 0, ctx.count(codes, orders["amount"].to_numpy()) / count, np.nan
                ),
                "amount_last": amount_last,
                "amount_first": amount_first,
                "items_total": items,
                "items_per_order": np.where(count > 0, items / count, np.nan),
            },
            columns=list(EXTRA_FEATURES),
        )


def _sequences(frames: Frames, ids: np.ndarray, as_of: datetime, params: FeatureParams, length: int) -> dict:
    """The last `length` events of each customer in `ids` before `as_of`, as left-padded arrays."""
    long = build_sequences(
        frames.events, frames.products, as_of, params.model_copy(update={"sequence_length": length})
    )
    padded = to_padded(long, length)
    rows = pd.Index(padded["customer_id"]).get_indexer(ids)  # every population customer has events
    hours_per_day = DAY / pd.Timedelta(hours=1)
    return {
        "event_type": padded["event_type"][rows],
        "gap_days": padded["gap_hours"][rows] / hours_per_day,
        "age_days": padded["age_hours"][rows] / hours_per_day,
        "amount": padded["amount"][rows],
    }


def customer_inputs(
    frames: Frames, as_of: datetime, params: FeatureParams, sequence_length: int
) -> CustomerInputs:
    """Inputs of every customer with a purchase before `as_of`, sorted by customer_id.

    Args:
        frames: the shop's rows; only those strictly before `as_of` are used.
        as_of: the cutoff.
        params: the feature store's parameters.
        sequence_length: L, the events kept per customer.

    Returns:
        The inputs: the feature store's numeric features then `EXTRA_FEATURES`, and the sequences.
    """
    frames = replace(frames, lifetime=None)  # lifetime aggregates belong to one as-of; derive them
    features = compute_features(frames, as_of, params)
    ids = features["customer_id"].to_numpy(dtype=object)
    numeric = features.drop(columns="customer_id").select_dtypes("number").astype(float)
    extra = _order_features(FeatureContext(frames, as_of, params))
    tabular = pd.concat([numeric.reset_index(drop=True), extra], axis=1)
    return CustomerInputs(ids, tabular, _sequences(frames, ids, as_of, params, sequence_length))


def flatten_inputs(inputs: CustomerInputs) -> pd.DataFrame:
    """One row per customer: customer_id, the tabular columns, then `seq{i}_{field}` for each event slot.

    Args:
        inputs: the inputs.

    Returns:
        The flat frame (slot 0 is the oldest of the L kept events).
    """
    length = inputs.sequence["event_type"].shape[1]
    width = len(str(max(length - 1, 0)))
    slots = {
        f"seq{i:0{width}d}_{name}": inputs.sequence[name][:, i].astype(float)
        for i in range(length)
        for name in SEQUENCE_FIELDS
    }
    flat = pd.concat([inputs.tabular.reset_index(drop=True), pd.DataFrame(slots)], axis=1)
    flat.insert(0, "customer_id", inputs.customer_id.astype(str))
    return flat


def unflatten_inputs(flat: pd.DataFrame, tabular_columns: list[str], sequence_length: int) -> CustomerInputs:
    """Inverse of `flatten_inputs`.

    Args:
        flat: the flat frame.
        tabular_columns: the tabular column names, in model order.
        sequence_length: L.

    Returns:
        The inputs.
    """
    width = len(str(max(sequence_length - 1, 0)))
    sequence = {
        name: flat[[f"seq{i:0{width}d}_{name}" for i in range(sequence_length)]].to_numpy(dtype=float)
        for name in SEQUENCE_FIELDS
    }
    sequence["event_type"] = sequence["event_type"].astype(np.int64)
    tabular = flat[tabular_columns].astype(float).reset_index(drop=True)
    return CustomerInputs(flat["customer_id"].to_numpy(dtype=object), tabular, sequence)


def cut_frames(frames: Frames, as_of: datetime) -> Frames:
    """The frames as known at `as_of`: events and reviews before it, signup dates before it (else unknown)."""
    as_of = pd.Timestamp(as_of)
    events, reviews, customers = frames.events, frames.reviews, frames.customers
    signup = pd.to_datetime(customers["signup_date"])
    return replace(
        frames,
        events=events.loc[(pd.to_datetime(events["ts"]) < as_of).to_numpy()],
        reviews=reviews.loc[(pd.to_datetime(reviews["ts"]) < as_of).to_numpy()],
        customers=customers.assign(signup_date=signup.where(signup < as_of)),
        lifetime=None,
    )


def rolled_inputs(
    frames: Frames, as_of: datetime, bins: int, bin_days: int, params: FeatureParams, sequence_length: int
) -> list[CustomerInputs]:
    """Each population customer's inputs at as_of + j * w (j < bins) had nothing happened from as_of on.

    That is the state the customer is in at the start of bin j given no purchase (nor any other
    event) since as_of: recency and tenure grow, windowed counts empty, sequence ages grow.

    Args:
        frames: the shop's rows (those at or after `as_of` are ignored).
        as_of: the scoring time.
        bins: K.
        bin_days: w.
        params: the feature store's parameters.
        sequence_length: L.

    Returns:
        K row-aligned inputs (same customers, sorted by id).
    """
    known = cut_frames(frames, as_of)
    start = pd.Timestamp(as_of)
    return [customer_inputs(known, start + j * bin_days * DAY, params, sequence_length) for j in range(bins)]


def _rolled_name(name: str, j: int) -> str:
    return f"bin{j}_{name}"


def flatten_rollout(states: list[CustomerInputs]) -> pd.DataFrame:
    """One row per customer: `flatten_inputs` of the state at as-of, then `bin{j}_{feature}` of each
    later bin's tabular state (its sequence is the first one's, aged: not repeated).

    Args:
        states: `rolled_inputs`' output.

    Returns:
        The flat frame.
    """
    later = [state.tabular.add_prefix(f"bin{j}_") for j, state in enumerate(states[1:], start=1)]
    return pd.concat([flatten_inputs(states[0]), *later], axis=1)


def unflatten_rollout(
    flat: pd.DataFrame, tabular_columns: list[str], sequence_length: int, bin_days: int
) -> list[CustomerInputs]:
    """Inverse of `flatten_rollout`: as many states as the frame holds bins.

    Args:
        flat: the flat frame.
        tabular_columns: the tabular columns to read, in model order.
        sequence_length: L.
        bin_days: w (the sequence's ages grow by w per bin).

    Returns:
        The states, bin 0 first.
    """
    first = unflatten_inputs(flat, tabular_columns, sequence_length)
    states = [first]
    while all(_rolled_name(name, len(states)) in flat for name in tabular_columns):
        j = len(states)
        tabular = flat[[_rolled_name(name, j) for name in tabular_columns]].astype(float)
        tabular.columns = tabular_columns
        aged = first.sequence["age_days"] + j * bin_days * (first.sequence["event_type"] > 0)
        sequence = first.sequence | {"age_days": aged}
        states.append(CustomerInputs(first.customer_id, tabular.reset_index(drop=True), sequence))
    return states


@dataclass(frozen=True)
class SurvivalExamples:
    """Inputs at several cutoffs with each customer's time to the next purchase.

    Attributes:
        inputs: the stacked inputs.
        cutoff: (N,) the cutoff of each row.
        event_days: (N,) days from the cutoff to the first purchase at or after it and before
            `censor`; +inf when there is none (censored).
        censor: the time after which outcomes are unknown (the fit's as-of).
    """

    inputs: CustomerInputs
    cutoff: np.ndarray
    event_days: np.ndarray
    censor: pd.Timestamp

    def take(self, rows: np.ndarray) -> SurvivalExamples:
        """The rows at the given positions."""
        return SurvivalExamples(self.inputs.take(rows), self.cutoff[rows], self.event_days[rows], self.censor)


def training_cutoffs(
    first_purchase: pd.Timestamp, as_of: pd.Timestamp, step_days: int, most: int
) -> list[pd.Timestamp]:
    """Cutoffs `as_of - k * step_days` (k >= 1) after the first purchase, at most `most`, oldest first.

    Args:
        first_purchase: the log's first purchase (no population before it).
        as_of: the censoring time.
        step_days: the spacing.
        most: the most recent `most` cutoffs are kept.

    Returns:
        The cutoffs.
    """
    cutoffs: list[pd.Timestamp] = []
    cutoff = pd.Timestamp(as_of) - step_days * DAY
    while cutoff > first_purchase and len(cutoffs) < most:
        cutoffs.append(cutoff)
        cutoff -= step_days * DAY
    return cutoffs[::-1]


def next_purchase_days(
    events: pd.DataFrame, ids: np.ndarray, cutoff: pd.Timestamp, censor: pd.Timestamp
) -> np.ndarray:
    """Days from `cutoff` to each customer's first purchase in [cutoff, censor); +inf if none.

    Args:
        events: event rows (customer_id, event_type, ts).
        ids: the customers.
        cutoff: the start of the window.
        censor: its end (excluded; nothing at or after it is read).

    Returns:
        (len(ids),) float days.
    """
    ts = events["ts"]
    window = events.loc[
        (events["event_type"] == PURCHASE).to_numpy() & (ts >= cutoff).to_numpy() & (ts < censor).to_numpy()
    ]
    first = window.groupby(window["customer_id"].astype(str))["ts"].min()
    days = (first - cutoff) / DAY
    return days.reindex(pd.Index(ids.astype(str))).fillna(np.inf).to_numpy(dtype=float)


def build_examples(
    frames: Frames,
    as_of: datetime,
    params: FeatureParams,
    sequence_length: int,
    step_days: int,
    most_cutoffs: int,
) -> SurvivalExamples:
    """Survival examples at every `training_cutoffs` cutoff, outcomes censored at `as_of`.

    Args:
        frames: the shop's rows (rows at or after `as_of` are ignored).
        as_of: the censoring time: no input or outcome at or after it is read.
        params: the feature store's parameters.
        sequence_length: L.
        step_days: days between cutoffs.
        most_cutoffs: the most recent cutoffs kept.

    Returns:
        The examples, oldest cutoff first; empty (no rows) when no cutoff has a population.
    """
    as_of = pd.Timestamp(as_of)
    events = frames.events.loc[(pd.to_datetime(frames.events["ts"]) < as_of).to_numpy()]
    events = events.assign(ts=pd.to_datetime(events["ts"]))
    frames = replace(frames, events=events, lifetime=None)
    bought = events.loc[events["event_type"] == PURCHASE, "ts"]
    parts, cutoffs, outcomes = [], [], []
    if len(bought):
        for cutoff in training_cutoffs(bought.min(), as_of, step_days, most_cutoffs):
            inputs = customer_inputs(frames, cutoff, params, sequence_length)
            if len(inputs) == 0:
                continue
            parts.append(inputs)
            cutoffs.append(np.full(len(inputs), cutoff.to_datetime64(), dtype="datetime64[ns]"))
            outcomes.append(next_purchase_days(events, inputs.customer_id, cutoff, as_of))
    if not parts:
        raise ValueError(f"no purchase far enough before {as_of} to build a training example")
    return SurvivalExamples(concat_inputs(parts), np.concatenate(cutoffs), np.concatenate(outcomes), as_of)
