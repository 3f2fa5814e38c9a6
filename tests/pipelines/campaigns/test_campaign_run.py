"""The campaign pipeline on a trained platform: champions score every active customer, the list obeys
its rules, publication is idempotent, and the GX suite stops corrupted lists."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from cli.main import app
from pipelines.campaigns.run import (
    CampaignRejected,
    build,
    publish,
    read_staged,
    validate,
    write_staged,
)
from pipelines.campaigns.score import CampaignError
from pipelines.campaigns.store import campaign_targets, export_frame, get_campaign, list_campaigns
from retention.db import create_db_engine
from retention.params import load_params
from retention.paths import home_path
from retention.settings import Settings

AS_OF = datetime(2026, 4, 1)
runner = CliRunner()


def _engine():  # noqa: ANN202
    return create_db_engine(Settings.from_env().database_url)


def _sql(query: str, **values: object) -> list:
    engine = _engine()
    with engine.begin() as connection:
        result = connection.execute(text(query), values)
        rows = result.all() if result.returns_rows else []
    engine.dispose()
    return rows


def test_campaign_follows_its_rules_and_reruns_without_change(on_trained_platform) -> None:  # noqa: ANN001
    params = load_params(Settings.from_env().params_path).campaign
    first = runner.invoke(app, ["campaigns", "run", "--as-of", "2026-04-01"])
    assert first.exit_code == 0, first.output
    engine = _engine()
    campaign = get_campaign(engine, "winback-2026-04-01")
    logged = campaign_targets(engine, "winback-2026-04-01")
    targets = logged.loc[logged["arm"].isin(["treatment", "control"])]
    assert campaign["n_targets"] == len(targets) > 0
    funnel = campaign["funnel"]
    assert (
        sum(funnel["excluded"].values()) + funnel["eligible"]
        == funnel["scored"]
        == len(logged) + sum(funnel["excluded"].values())
    )
    # No uplift model yet: the cold-start rule targets by risk, with the larger exploration share.
    assert campaign["policy"] == "risk" and "no uplift model" in campaign["summary"]["policy_reason"]
    assert campaign["summary"]["exploration_share"] == params.cold_start.exploration_share
    assert logged["propensity"].between(0, 1, inclusive="right").all()
    assert (logged.loc[logged["arm"] == "control", "offer"] == "none").all()
    assert (logged.loc[logged["arm"] == "treatment", "offer"] != "none").all()
    assert logged["features"].map(lambda f: "recency_days" in f).all()  # the inputs are logged
    active = _sql(
        "SELECT COUNT(DISTINCT customer_id) FROM wh_events WHERE event_type = 'purchase' AND ts < :t", t=AS_OF
    )
    assert funnel["scored"] == active[0][0]  # every active customer was scored
    consent = dict(_sql("SELECT customer_id, marketing_consent FROM wh_customers"))
    assert all(consent[c] for c in logged["customer_id"])
    chosen = logged.loc[logged["policy_offer"] != "none"]
    assert len(chosen) and chosen["p_churn"].between(*params.risk_band).all()
    assert campaign["model_versions"] == {"retention-return": "1", "retention-recommender": "1"}
    # Recommendations: active products, none bought by that customer in the last recent_purchase_days
    # unless due for reorder (its repurchase interval, kept with the campaign, has passed since).
    active_products = {p for (p,) in _sql("SELECT product_id FROM wh_products WHERE active")}
    recent = _sql(
        "SELECT customer_id, product_id, MAX(ts) FROM wh_events WHERE event_type = 'purchase' "
        "AND ts >= :t AND ts < :e GROUP BY customer_id, product_id",
        t=AS_OF - timedelta(days=params.recent_purchase_days),
        e=AS_OF,
    )
    last_bought = {(c, p): pd.Timestamp(ts) for c, p, ts in recent}
    intervals = campaign["summary"]["reorder_intervals"]
    for customer, products in zip(targets["customer_id"], targets["recommendations"], strict=True):
        assert 0 < len(products) <= params.recommendations
        assert set(products) <= active_products
        for p in products:
            if (customer, p) in last_bought:
                days = (pd.Timestamp(AS_OF).floor("D") - last_bought[customer, p].floor("D")).days
                assert p in intervals and days >= intervals[p], (customer, p, days)
    assert targets["reasons"].map(len).min() >= 1
    # The stored CSV export: one row per listed target, and no e-mail (an address at rest would
    # outlive a withdrawal); the export pulled now has e-mail only for consenting customers to contact.
    csv = pd.read_csv(home_path(Settings.from_env().home, campaign["exports"]["csv"]))  # stored home-relative
    assert len(csv) == len(targets)
    assert csv["email"].isna().all()
    pulled = export_frame(engine, "winback-2026-04-01")
    assert pulled["customer_id"].tolist() == csv["customer_id"].astype(str).tolist()
    assert pulled.loc[pulled["action"] != "contact", "email"].isna().all()
    assert pulled.loc[pulled["action"] == "contact", "email"].notna().all()
    # A rerun of the same interval rebuilds the same list and changes nothing.
    again = runner.invoke(app, ["campaigns", "run", "--as-of", "2026-04-01"])
    assert again.exit_code == 0, again.output
    assert len(list_campaigns(engine)) == 1
    rerun = get_campaign(engine, "winback-2026-04-01")
    assert rerun["published_at"] == campaign["published_at"]
    assert rerun["content_hash"] == campaign["content_hash"]
    engine.dispose()


def test_cooldown_keeps_recently_treated_customers_out(on_trained_platform) -> None:  # noqa: ANN001
    publish(_validated(build(AS_OF)))
    engine = _engine()
    treated = set(campaign_targets(engine, "winback-2026-04-01").query("arm == 'treatment'")["customer_id"])
    second = publish(_validated(build(AS_OF + timedelta(days=1))))
    later = campaign_targets(engine, second["campaign_id"])
    engine.dispose()
    assert treated and not (treated & set(later["customer_id"]))
    assert second["funnel"]["excluded"]["cooldown"] > 0


def _validated(folder: Path) -> Path:
    validate(folder)
    return folder


@pytest.fixture(scope="module")
def built_list(trained_platform, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:  # noqa: ANN001
    """The list built once for this module (scoring is the slow part), on a private copy of the
    platform; returns (its home, the staged folder). Tests get their own copy through `staged`."""
    from tests.trained_platform import copy_database

    folder = tmp_path_factory.mktemp("built-list")
    with pytest.MonkeyPatch.context() as patch:
        for key, value in trained_platform.env.items():
            patch.setenv(key, value)
        patch.setenv("RETENTION_HOME", str(folder / "home"))
        patch.setenv("RETENTION_DATABASE_URL", copy_database(trained_platform, folder))
        patch.delenv("AIRFLOW_HOME", raising=False)
        return folder / "home", build(AS_OF)


@pytest.fixture
def staged(built_list: tuple[Path, Path], on_trained_platform) -> Path:  # noqa: ANN001
    """A freshly built (not yet validated) list: a private copy of the module's build, staged where
    `build` stages it in this test's home, beside a private copy of the platform database."""
    home, folder = built_list
    return Path(shutil.copytree(folder, Settings.from_env().home / folder.relative_to(home)))


def _corrupt(folder: Path, how: str) -> str:
    targets, _ = read_staged(folder)
    if how == "duplicate_customer":
        targets = pd.concat([targets, targets.head(1)], ignore_index=True)
        expected = "expect_column_values_to_be_unique(customer_id)"
    elif how == "probability_out_of_range":
        targets.loc[0, "p_churn"] = 1.5
        expected = "expect_column_values_to_be_between(p_churn)"
    elif how == "no_recommendations":
        targets.at[targets.index[targets["arm"] == "treatment"][0], "recommendations"] = []
        expected = "expect_column_values_to_be_between(n_recommendations)"
    elif how == "control_share":
        policy = targets["policy_offer"] != "none"
        targets.loc[policy, "offer"], targets.loc[policy, "arm"] = "none", "control"
        expected = "expect_column_mean_to_be_between(is_control)"
    else:  # consent withdrawn in the shop after the list was built (no extraction since)
        _sql(
            "UPDATE customers SET marketing_consent = :f WHERE customer_id = :c",
            f=False,
            c=targets.loc[targets["arm"] == "treatment", "customer_id"].iloc[0],
        )
        expected = "expect_column_values_to_be_in_set(marketing_consent)"
    write_staged(folder, targets)
    return expected


@pytest.mark.parametrize(
    "how",
    ["duplicate_customer", "probability_out_of_range", "no_recommendations", "control_share", "no_consent"],
)
def test_gx_rejects_a_corrupted_list_and_nothing_is_published(staged: Path, how: str) -> None:
    expected = _corrupt(staged, how)
    with pytest.raises(CampaignRejected, match=r"not published") as rejected:
        validate(staged)
    assert expected in str(rejected.value)
    with pytest.raises(CampaignRejected, match="no passing validation"):
        publish(staged)
    engine = _engine()
    assert list_campaigns(engine) == []
    engine.dispose()


def test_a_list_changed_after_validation_is_not_published(staged: Path) -> None:
    validate(staged)
    targets, _ = read_staged(staged)
    write_staged(staged, targets.head(len(targets) - 1))
    with pytest.raises(CampaignRejected, match="changed after validation"):
        publish(staged)


def test_stale_data_and_missing_champions_fail_with_what_to_do(on_trained_platform, tmp_path: Path) -> None:  # noqa: ANN001
    with pytest.raises(CampaignError, match="max_feature_age_hours"):
        build(AS_OF + timedelta(days=10))
    result = runner.invoke(app, ["campaigns", "run", "--as-of", "2026-04-11"])
    assert result.exit_code == 2 and "run the extraction DAG first" in result.output
    empty_registry = tmp_path / "empty-mlflow"
    empty_registry.mkdir()
    import os

    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{empty_registry / 'mlflow.db'}"
    try:
        with pytest.raises(CampaignError, match="no champion"):
            build(AS_OF)
    finally:
        os.environ["MLFLOW_TRACKING_URI"] = on_trained_platform.tracking_uri
    shutil.rmtree(empty_registry)
