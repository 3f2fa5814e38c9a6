"""Erasure on a platform the real pipelines filled: after `retention customers forget`, two customers'
ids and e-mails are in no table of the platform or MLflow database, no file under the home (Parquet,
CSV, JSON, NumPy states, model files as bytes) and no Redis key; everyone else is as before.

The trained platform (tests/trained_platform.py: simulate, extract, features, both models trained,
registered and promoted) is copied, then a campaign is published (exports, staging, customer states),
the answers are materialised into Redis and the offline features exported: every store holds data.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from cli.main import app
from feature_store.online_store import RedisDocuments
from retention.db import create_db_engine
from retention.db.platform import Erasure
from tests.feature_store.test_online_store import REDIS_URL, redis_documents  # noqa: F401 (a fixture)
from tests.pipelines.privacy.search import search_database, search_files, search_redis
from tests.trained_platform import TrainedPlatform

runner = CliRunner()
pytestmark = (
    pytest.mark.slow
)  # runs the pipelines on a copy of the trained platform, then searches every store (minutes)

CAMPAIGN = "winback-2026-04-01"


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, f"{args}: {result.output}"
    return result.output


def _counts(engine, exclude: set[str]) -> dict[str, int]:  # noqa: ANN001
    """Rows per table of customers other than `exclude`, for the tables keyed by customer."""
    tables = ["customers", "events", "orders", "reviews", "wh_customers", "wh_events", "wh_orders"]
    tables += ["wh_reviews", "online_features", "platform_campaign_targets"]
    marks = ", ".join(f"'{c}'" for c in exclude)
    with engine.connect() as connection:
        return {
            t: connection.execute(
                text(f"SELECT count(*) FROM {t} WHERE customer_id NOT IN ({marks})")
            ).scalar_one()
            for t in tables
        }


def test_forgotten_customers_are_in_no_store_of_a_filled_platform(
    trained_platform: TrainedPlatform,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    redis_documents: RedisDocuments,  # noqa: F811
) -> None:
    # given a private copy of the trained platform, with a published campaign, Redis answers, feature exports
    home = tmp_path / "home"
    shutil.copytree(trained_platform.home, home)
    env = {
        "RETENTION_HOME": str(home),
        "RETENTION_PARAMS": str(trained_platform.params_path),
        "RETENTION_DATABASE_URL": f"sqlite:///{home / 'retention.db'}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "RETENTION_ONLINE_STORE": REDIS_URL,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    _ok(["campaigns", "run", "--as-of", "2026-04-01"])
    _ok(["features", "materialise-results", "--as-of", "2026-04-01"])
    _ok(["features", "materialize", "--as-of", "2026-04-01"])
    engine = create_db_engine(env["RETENTION_DATABASE_URL"])
    with engine.connect() as connection:
        chosen = connection.execute(
            text(
                "SELECT t.customer_id, c.email FROM platform_campaign_targets t JOIN customers c USING "
                "(customer_id) WHERE c.email IS NOT NULL AND t.arm = 'treatment' ORDER BY t.customer_id LIMIT 2"
            )
        ).all()
    assert len(chosen) == 2
    ids = [row.customer_id for row in chosen]
    terms = ids + [row.email for row in chosen]
    other = _counts(engine, set(ids))
    # every kind of store holds them before
    assert search_redis(redis_documents.client, terms)
    found = search_files(home, terms)
    for folder in ("campaigns/", "staging/", "customer_states/", "mlartifacts/", "features/", "simulator/"):
        assert any(f.startswith(folder) for f in found), folder

    # when they are forgotten
    output = _ok(["customers", "forget", *ids, "--actor", "privacy-test"])

    # then no table, file or Redis key holds their ids or e-mails
    assert "2 customer(s) forgotten" in output
    assert search_database(engine, terms) == []
    mlflow_engine = create_db_engine(env["MLFLOW_TRACKING_URI"])
    assert search_database(mlflow_engine, terms) == []
    assert search_files(home, terms) == []
    assert search_redis(redis_documents.client, terms) == []
    # everyone else is untouched, and the exports still list them
    assert _counts(engine, set(ids)) == other
    exported = pd.read_csv(home / "campaigns" / CAMPAIGN / "targets.csv")
    assert len(exported) > 0 and not set(ids) & set(exported["customer_id"])
    assert redis_documents.ids("churn")
    # and the audit row exists (the database search above shows it holds no id or e-mail)
    with engine.connect() as connection:
        audit = connection.execute(select(Erasure)).one()
        assert connection.execute(select(func.count()).select_from(Erasure)).scalar_one() == 1
    assert audit.actor == "privacy-test" and audit.n_customers == 2 and audit.removed["online_store"] >= 2
    engine.dispose()
    mlflow_engine.dispose()
