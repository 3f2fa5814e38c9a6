"""Buy-again: the decay, the repurchase-interval rule, the personal baseline and the include-seen path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feature_store.events import EventLog, event_log_from_frames
from pipelines.materialise import ListContext, customer_facts, list_documents
from tests.training.recommender.conftest import DAY0, small_params
from training.backtest import BacktestRequest, run_backtest
from training.protocol import RecSplit, leave_last_split, ranking_metrics, recommend
from training.recommender.blend import blend_grid, validation_split
from training.recommender.repeat import (
    BuyAgain,
    RepeatModel,
    repeat_scores,
    repurchase_intervals,
)
from training.recommender.sasrec import SASRecRecommender
from training.scoring import StateScorer, history_scores, repeat_of


def day(n: float) -> pd.Timestamp:
    return DAY0 + pd.Timedelta(days=n)


def purchases_log(rows: list[tuple[str, str, float]], categories: dict[str, str] | None = None) -> EventLog:
    """(customer, product, day) purchases; products in `categories` get that category."""
    events = pd.DataFrame([{"customer_id": c, "product_id": p, "ts": day(d)} for c, p, d in rows])
    products = None
    if categories is not None:
        ids = sorted(set(events["product_id"]))
        products = pd.DataFrame({"product_id": ids, "category": [categories.get(i) for i in ids]})
    return event_log_from_frames(events, products=products)


def model(half_life: float, intervals: list[float], not_due_weight: float = 0.25) -> RepeatModel:
    return RepeatModel(half_life, not_due_weight, np.asarray(intervals, dtype=float), 30.0, ("purchase",))


def score_row(repeat: RepeatModel, log: EventLog, items: list[str], as_of: pd.Timestamp) -> dict[str, float]:
    scores = repeat_scores(repeat, log.events, np.array(items), np.array(["u"]), as_of).toarray()[0]
    return dict(zip(items, scores, strict=True))


def test_the_half_life_decides_between_often_long_ago_and_once_recently() -> None:
    # given a customer who bought a three times long ago and b once just before now
    log = purchases_log([("u", "a", 0), ("u", "a", 10), ("u", "a", 20), ("u", "b", 95)])
    items, now = ["a", "b"], day(100)
    unknown = [np.nan, np.nan]  # no repurchase interval: due plays no part
    # when scored with a short and with a long half-life
    short = score_row(model(7, unknown), log, items, now)
    long = score_row(model(3650, unknown), log, items, now)
    # then the short half-life prefers the recent purchase, the long one the frequent product
    assert short["b"] > short["a"] > 0
    assert long["a"] > 2.5 * long["b"]
    # and each purchase counts 0.5 ** (age / half-life), the age taken to the customer's next basket
    next_basket = 95 + 10  # the last purchase plus the customer's median gap (10 days), after now
    assert long["b"] == pytest.approx(0.5 ** ((next_basket - 95) / 3650))


def test_a_product_bought_recently_counts_less_until_its_interval_has_passed() -> None:
    # given bread bought 10 days before now and milk 1 day before, both with a 30-day cycle
    log = purchases_log([("u", "bread", 0), ("u", "milk", 9)])
    items, now = ["bread", "milk"], day(10)
    # when scored with the cycle known, and without
    cycled = score_row(model(3650, [30, 30]), log, items, now)
    unknown = score_row(model(3650, [np.nan, np.nan]), log, items, now)
    # then without a cycle the recent milk ranks first; with it bread, further into its cycle, does
    assert unknown["milk"] > unknown["bread"]
    assert cycled["bread"] > cycled["milk"]
    # and the due factor rises from not_due_weight to 1 with the share of the interval elapsed
    # (the customer's next basket: day 9 + their 9-day gap = day 18)
    assert cycled["bread"] / unknown["bread"] == pytest.approx(0.25 + 0.75 * 18 / 30)
    assert cycled["milk"] / unknown["milk"] == pytest.approx(0.25 + 0.75 * 9 / 30)
    overdue = score_row(model(3650, [5, 5]), log, items, now)
    assert overdue == pytest.approx(unknown)


def test_intervals_come_from_the_product_else_its_category_else_none() -> None:
    # given milk re-bought every 7 days by 5 customers, cheese (same category) re-bought once,
    # and a television bought once by each
    rows = [(f"c{c}", "milk", 7 * k + c) for c in range(5) for k in range(4)]
    rows += [("c0", "cheese", 1), ("c0", "cheese", 4)]
    rows += [(f"c{c}", "tv", 2 + c) for c in range(5)]
    log = purchases_log(rows, {"milk": "dairy", "cheese": "dairy", "tv": "electronics"})
    # when the intervals are learned with at least 5 gaps per product or category
    intervals = repurchase_intervals(log, np.array(["cheese", "milk", "tv", "unknown"]), ["purchase"], 5)
    # then milk has its own 7 days, cheese its category's median, the others none
    assert intervals[1] == 7
    assert intervals[0] == 7  # dairy: 15 gaps of 7 days and one of 3 -> median 7
    assert np.isnan(intervals[2]) and np.isnan(intervals[3])
    # and with a higher bar cheese and milk have none either
    assert np.isnan(repurchase_intervals(log, np.array(["cheese", "milk"]), ["purchase"], 20)).all()


def staples_log(customers: int, recent_wins: bool, new_in_last: bool = False) -> EventLog:
    """Each customer has staples bought weekly long ago (the first one most often) and fads bought
    once lately; the last two baskets repeat the first staple (`recent_wins` False) or the latest
    fad (True), plus a product new to the customer when `new_in_last`."""
    rows = []
    for c in range(customers):
        staples = [f"s{(c + k) % 30:02d}" for k in range(3)]
        for week, which in enumerate([0, 1, 0, 2, 0, 1, 0, 2, 0, 0]):
            rows += [(f"u{c:03d}", staples[which], 7 * week + c % 3)]
        fads = [f"f{(c + k) % 20:02d}" for k in range(3)]
        rows += [(f"u{c:03d}", fad, 75 + 5 * k + c % 3) for k, fad in enumerate(fads)]
        rows += [(f"u{c:03d}", fads[-1] if recent_wins else staples[0], 100 + c % 3)]
        rows += [(f"u{c:03d}", fads[-1] if recent_wins else staples[0], 110 + c % 3)]
        if new_in_last:
            rows += [(f"u{c:03d}", f"n{c % 5}", 110 + c % 3)]
    return purchases_log(rows)


@pytest.mark.parametrize("recent_wins", [True, False])
def test_the_baseline_chooses_its_half_life_on_the_history(recent_wins: bool) -> None:
    # given a shop where the next basket repeats the latest product (or the most frequent one)
    split = leave_last_split(staples_log(60, recent_wins), exclude_seen=False)
    baseline = BuyAgain(small_params())
    # when the baseline tunes on the inner split of the history, then fits and ranks
    tuning = baseline.tune(validation_split(split), [10])
    baseline.fit(split.history, split.candidates)
    ndcg = ranking_metrics(split, recommend(split, baseline, 10), [10])["ndcg@10"]
    # then the half-life that fits the history wins (the shortest when the latest product returns,
    # a long one when the staples do), and the test baskets are found
    assert tuning is not None and set(tuning["grid"]) == {"7.0", "30.0", "90.0", "365.0", "3650.0"}
    chosen = tuning["half_life_days"]
    assert tuning["grid"][str(chosen)] == max(tuning["grid"].values())
    assert (chosen == 7.0) if recent_wins else (tuning["grid"]["7.0"] < tuning["grid"][str(chosen)])
    assert ndcg > 0.9


def test_the_baseline_ranks_own_products_first_then_by_popularity() -> None:
    # given one customer who bought x, and a shop where z is more popular than y
    rows = [("u", "x", 0), ("v", "z", 1), ("w", "z", 2), ("v", "y", 3)]
    log = purchases_log(rows)
    baseline = BuyAgain(small_params())
    baseline.fit(log, np.array(["x", "y", "z"]))
    # when scored
    scores = baseline.score(np.array(["u", "nobody"]))
    # then u's own product comes first, the rest by popularity; a stranger gets popularity alone
    assert list(np.argsort(-scores[0], kind="stable")) == [0, 2, 1]
    assert list(np.argsort(-scores[1], kind="stable")) == [2, 0, 1]


def test_seen_items_excluded_turn_the_buy_again_part_and_baseline_off(tmp_path: Path) -> None:
    # given the grid with a buy-again weight grid
    config = small_params().recommender.sasrec
    # then it is tried only when seen items are included
    assert {weights[3] for weights in blend_grid(config, exclude_seen=True)} == {0.0}
    assert {weights[3] for weights in blend_grid(config, exclude_seen=False)} == set(config.repeat_weights)
    # and a backtest with seen items excluded shows no buy-again baseline
    params = small_params(max_epochs=1, mf_weights=[], popularity_weights=[], knn_weights=[])
    log = staples_log(20, recent_wins=False, new_in_last=True)
    request = BacktestRequest("recommender", "leave-last", None, None, True, tmp_path / "out")
    names = [r.name for r in run_backtest(log, request, params, tmp_path / "work")]
    assert "buy_again" not in names and "popularity" in names


@pytest.fixture(scope="module")
def repeat_recommender(tmp_path_factory: pytest.TempPathFactory) -> tuple[SASRecRecommender, RecSplit]:
    """SASRec tuned and fitted on a repeat-purchase shop, seen items included."""
    split = leave_last_split(staples_log(60, recent_wins=False), exclude_seen=False)
    params = small_params(max_epochs=6, mf_weights=[0.0], popularity_weights=[0.0], knn_weights=[0.0])
    recommender = SASRecRecommender(params, tmp_path_factory.mktemp("repeat") / "sasrec")
    recommender.tune(validation_split(split), [10])
    recommender.fit(split.history, split.candidates)
    return recommender, split


@pytest.mark.slow  # a SASRec tuning and fit (about 20 s on 2 cores)
def test_the_recommender_learns_the_buy_again_part_and_keeps_it(
    repeat_recommender: tuple[SASRecRecommender, RecSplit], tmp_path: Path
) -> None:
    # given SASRec tuned on the inner split of a repeat-purchase shop and fitted
    recommender, split = repeat_recommender
    tuning = recommender.tuning
    # then a buy-again weight and half-life were chosen on history, and they lift its ranking
    assert tuning is not None and tuning["repeat_weight"] > 0 and tuning["half_life_days"] > 7.0
    ndcg = ranking_metrics(split, recommend(split, recommender, 10), [10])["ndcg@10"]
    assert ndcg > 0.9
    empty = np.zeros(0, dtype=np.int64)
    sequence_only = recommender.score_sequences([recommender.sequences.get(str(split.users[0]), empty)])
    assert not np.allclose(recommender.score(split.users[:1]), sequence_only)
    # and the saved model scores a history exactly as the fitted one
    recommender.save(tmp_path / "saved")
    loaded = SASRecRecommender.load(tmp_path / "saved")
    users = split.users[:5]
    np.testing.assert_allclose(
        history_scores(loaded, split.history, users), recommender.score(users), rtol=1e-5, atol=1e-5
    )


@pytest.mark.slow  # a SASRec tuning and fit (about 20 s on 2 cores)
def test_materialised_lists_and_campaign_scores_include_the_buy_again_part(
    repeat_recommender: tuple[SASRecRecommender, RecSplit],
) -> None:
    # given the fitted model, its customers' states and their buy-again part at one time
    recommender, split = repeat_recommender
    users = split.users[:20]
    history, as_of = split.history, split.history.events["ts"].max() + pd.Timedelta(days=1)
    tails = recommender.state_tails(recommender.history_sequences(history), users)
    vectors = recommender.state_vectors(tails)
    repeat = repeat_of(recommender, history, users, as_of)
    assert repeat is not None
    # when lists are made from the states (materialised lists, campaigns) and from the history
    context = ListContext.of(recommender, "m", "1", set(recommender.index.ids.astype(str)))
    purchased, last = customer_facts(recommender, history.events)
    documents = list_documents(
        recommender, context, list(users), tails, vectors, purchased, last, None, repeat
    )
    dense = history_scores(recommender, history, users, as_of)
    from_states = StateScorer(recommender).scores(vectors, tails, repeat)
    # then both score as the history does, buy-again part included
    np.testing.assert_allclose(from_states, dense, rtol=1e-4, atol=1e-4)
    for row, user in enumerate(users):
        best = recommender.index.ids[np.argsort(-dense[row], kind="stable")[:5]]
        assert documents[user]["products"][:5] == best.tolist()


def test_the_buy_again_baseline_joins_the_family_only_with_seen_items_included() -> None:
    # given the recommender family (its training runs, backtests and gate list these baselines)
    from training.families import family

    recommender = family("recommender")
    # then buy_again is among them only when seen items are included
    shown = [b.name for b in recommender.applicable_baselines(small_params(), exclude_seen=False)]
    hidden = [b.name for b in recommender.applicable_baselines(small_params(), exclude_seen=True)]
    assert shown == ["popularity", "item_knn", "mf_als", "buy_again"]
    assert hidden == ["popularity", "item_knn", "mf_als"]
