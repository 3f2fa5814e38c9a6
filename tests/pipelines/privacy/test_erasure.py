"""The right to erasure on SQLite and PostgreSQL: a forgotten customer is in no table, file or Redis key
afterwards, the others are untouched, an audit row without personal data is written, repeating is
harmless and ids that break the id rules are refused before anything changes."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine, MetaData, func, insert, select
from typer.testing import CliRunner

from cli.main import app
from feature_store.online_store import RedisDocuments
from pipelines.privacy.erasure import ErasureError, check_customer_ids, forget_customers
from pipelines.privacy.scrub import ERASED
from retention.db.models import Customer, Event, Load, Order, Product, Review
from retention.db.platform import Campaign, CampaignTarget, Erasure
from retention.db.warehouse import WAREHOUSE, Batch, OnlineFeatures, OnlineResult, Quarantine, ReviewSentiment
from tests.feature_store.test_online_store import REDIS_URL, redis_documents  # noqa: F401 (a fixture)
from tests.pipelines.privacy.search import search_database, search_files, search_redis

runner = CliRunner()
GONE, KEPT = "C0000001", "C0000002"
GONE_EMAIL, KEPT_EMAIL = "anna.gone1@example.com", "bob.kept2@example.net"
TERMS = [GONE, GONE_EMAIL]
T0 = datetime(2026, 3, 1, 12)
CAMPAIGN = "winback-2026-04-01"


def _customer_rows(email: bool) -> list[dict]:
    rows = [
        {
            "customer_id": c,
            "signup_date": T0.date(),
            "country": "DE",
            "marketing_consent": True,
            "updated_at": T0,
        }
        for c in (GONE, KEPT)
    ]
    if email:
        for row, address in zip(rows, (GONE_EMAIL, KEPT_EMAIL), strict=True):
            row["email"] = address
    return rows


def _facts(customer: str, n: int) -> dict[str, dict]:
    return {
        "events": {
            "event_id": f"e{n}",
            "customer_id": customer,
            "product_id": "P1",
            "event_type": "purchase",
            "ts": T0,
            "quantity": 1,
            "price": 9.5,
            "order_id": f"o{n}",
            "updated_at": T0,
        },
        "orders": {
            "order_id": f"o{n}",
            "customer_id": customer,
            "ts": T0,
            "n_items": 1,
            "total_amount": 9.5,
            "updated_at": T0,
        },
        "reviews": {
            "review_id": f"r{n}",
            "customer_id": customer,
            "product_id": "P1",
            "ts": T0,
            "rating": 2,
            "text": "meh",
            "updated_at": T0,
        },
    }


def seed_database(engine: Engine) -> None:
    """Two customers in every table that can hold one, and mentions of the first in the logs."""
    facts = [_facts(GONE, 1), _facts(KEPT, 2)]
    product = {"product_id": "P1", "category": "books", "price": 9.5, "active": True, "updated_at": T0}
    with engine.begin() as connection:
        connection.execute(insert(Customer), _customer_rows(email=True))
        connection.execute(insert(Product), [product])
        for name, model in (("events", Event), ("orders", Order), ("reviews", Review)):
            connection.execute(insert(model), [f[name] for f in facts])
        batch = {"batch_id": "b1"}
        connection.execute(
            insert(WAREHOUSE["customers"]),
            [{**r, **batch} for r in _customer_rows(email="email" in WAREHOUSE["customers"].c)],
        )
        connection.execute(insert(WAREHOUSE["products"]), [{**product, **batch}])
        for name in ("events", "orders", "reviews"):
            connection.execute(insert(WAREHOUSE[name]), [{**f[name], **batch} for f in facts])
        connection.execute(
            insert(ReviewSentiment),
            [{"review_id": r, "score": 0.2, "model_version": "v1", "scored_at": T0} for r in ("r1", "r2")],
        )
        connection.execute(
            insert(OnlineFeatures),
            [
                {
                    "customer_id": c,
                    "as_of": T0,
                    "feature_version": "f",
                    "features": {"x": 1.0},
                    "updated_at": T0,
                }
                for c in (GONE, KEPT)
            ],
        )
        connection.execute(
            insert(OnlineResult),
            [
                {"kind": k, "customer_id": c, "document": json.dumps({"p": 0.5}), "updated_at": T0}
                for k in ("churn", "recommendations")
                for c in (GONE, KEPT)
            ],
        )
        connection.execute(
            insert(Campaign),
            [
                {
                    "campaign_id": CAMPAIGN,
                    "name": "winback",
                    "as_of": T0,
                    "horizon_days": 14,
                    "published_at": T0,
                    "n_targets": 2,
                    "n_control": 0,
                    "control_share": 0.0,
                    "segments": {"at_risk": 2},
                    "model_versions": {},
                    "params_hash": "p",
                    "content_hash": "c",
                    "funnel": {"scored": 2},
                    "exports": {},
                    "summary": {},
                }
            ],
        )
        connection.execute(
            insert(CampaignTarget),
            [
                {
                    "campaign_id": CAMPAIGN,
                    "customer_id": c,
                    "arm": "treatment",
                    "rank": i,
                    "segment": "at_risk",
                    "risk_decile": 9,
                    "p_churn": 0.8,
                    "predicted_value": 50.0,
                    "value_at_stake": 40.0,
                    "reasons": ["recency_days"],
                    "recommendations": ["P1"],
                    "features": {"recency_days": 40.0},
                }
                for i, c in enumerate((GONE, KEPT), start=1)
            ],
        )
        records = [{"customer_id": c, "email": e} for c, e in ((GONE, GONE_EMAIL), (KEPT, KEPT_EMAIL))]
        connection.execute(
            insert(Quarantine),
            [
                {
                    "batch_id": "b0",
                    "table_name": "customers",
                    "quarantined_at": T0,
                    "n_rows": 2,
                    "failed": [f"customers: 1 unexpected of 2 (e.g. {GONE})"],
                    "validation": {"result": {"partial_unexpected_list": [GONE_EMAIL, KEPT_EMAIL]}},
                    "rows": json.dumps(records),
                }
            ],
        )
        connection.execute(
            insert(Batch),
            [
                {
                    "batch_id": "b0",
                    "interval_start": T0,
                    "interval_end": T0,
                    "status": "quarantined",
                    "attempts": 1,
                    "finished_at": T0,
                    "interval_events": 2,
                    "rows_read": {"customers": 2},
                    "rows_changed": {},
                    "failed": [f"customers: 1 unexpected of 2 (e.g. {GONE}, {KEPT})"],
                    "warnings": [],
                }
            ],
        )
        connection.execute(
            insert(Load),
            [
                {
                    "kind": "ingest",
                    "source": "customers.csv",
                    "content_hash": "h",
                    "status": "rejected",
                    "started_at": T0,
                    "finished_at": T0,
                    "rows_read": 2,
                    "rows_inserted": 0,
                    "detail": {
                        "problems": [
                            f"customers.csv: column 'country': unknown at line 2 (got '{GONE_EMAIL}')"
                        ]
                    },
                }
            ],
        )


def seed_files(home: Path) -> None:
    """The files the platform writes under its home, each holding both customers."""
    both = pd.DataFrame({"customer_id": [GONE, KEPT], "email": [GONE_EMAIL, KEPT_EMAIL], "score": [0.1, 0.2]})
    (home / "staging" / "b1").mkdir(parents=True)
    both.to_parquet(home / "staging" / "b1" / "customers.parquet", index=False)
    (home / "campaigns" / CAMPAIGN).mkdir(parents=True)
    both.to_csv(home / "campaigns" / CAMPAIGN / "targets.csv", index=False)
    both.to_parquet(home / "campaigns" / CAMPAIGN / "targets.parquet", index=False)
    (home / "customer_states").mkdir()
    np.savez(
        home / "customer_states" / "retention-recommender-v1.npz",
        meta=np.array(json.dumps({"model_key": "m"})),
        customer_ids=np.array([GONE, KEPT]),
        vectors=np.ones((2, 3), dtype=np.float32),
    )
    artifacts = home / "mlartifacts" / "retention-return" / "run" / "artifacts"
    (artifacts / "backtest").mkdir(parents=True)
    pd.DataFrame({"user_id": [GONE, KEPT], "p_return": [0.3, 0.4]}).to_csv(
        artifacts / "backtest" / "churn_scores.csv", index=False
    )
    example = {"columns": ["customer_id", "recency_days"], "data": [[GONE, 3.0], [KEPT, 4.0]]}
    (artifacts / "input_example.json").write_text(json.dumps(example))
    (home / "gx").mkdir()
    (home / "gx" / "result.json").write_text(
        json.dumps({"partial_unexpected_list": [GONE, KEPT], "note": f"e.g. {GONE}, {GONE_EMAIL}"})
    )
    (home / "gx" / "page.html").write_text(f"<td>{GONE}</td><td>{KEPT}</td>")
    (home / "weights.bin").write_bytes(b"\x00\x01\xff no customer here")


def _count(engine: Engine, table, customer: str) -> int:  # noqa: ANN001
    with engine.connect() as connection:
        return connection.execute(
            select(func.count()).select_from(table).where(table.c.customer_id == customer)
        ).scalar_one()


def _audit(engine: Engine) -> list:
    with engine.connect() as connection:
        return connection.execute(select(Erasure).order_by(Erasure.erasure_id)).all()


@pytest.fixture
def seeded(engine: Engine, isolated_env: Path) -> Iterator[tuple[Engine, Path]]:
    seed_database(engine)
    seed_files(isolated_env)
    yield engine, isolated_env


def test_a_forgotten_customer_is_in_no_table_or_file_and_the_others_stay(seeded) -> None:  # noqa: ANN001
    engine, home = seeded
    # given both customers everywhere
    assert search_database(engine, TERMS) and search_files(home, TERMS)
    export = home / "campaigns" / CAMPAIGN / "targets.csv"
    written = export.stat().st_mtime_ns - 10**12  # as if written long ago
    os.utime(export, ns=(written, written))

    # when the first is forgotten, with an id nobody has
    result = runner.invoke(app, ["customers", "forget", GONE, "nobody-9", "--actor", "dpo"])

    # then it is in no table, no file; the unknown id is reported, not an error
    assert result.exit_code == 0, result.output
    assert "1 customer(s) forgotten" in result.output and "not found" in result.output
    assert "nobody-9" in result.output
    assert search_database(engine, TERMS) == []
    assert search_files(home, TERMS) == []
    # the other customer is untouched, in the tables and in the files
    for table in (
        Customer.__table__,
        WAREHOUSE["customers"],
        Event.__table__,
        WAREHOUSE["events"],
        Order.__table__,
        Review.__table__,
        OnlineFeatures.__table__,
        CampaignTarget.__table__,
    ):
        assert _count(engine, table, KEPT) == 1, table.name
    assert _count(engine, OnlineResult.__table__, KEPT) == 2
    for name in (
        "campaigns/winback-2026-04-01/targets.csv",
        "mlartifacts/retention-return/run/artifacts/backtest/churn_scores.csv",
    ):
        kept = pd.read_csv(home / name)
        assert len(kept) == 1 and KEPT in kept.iloc[0].tolist()
    assert pd.read_parquet(home / "staging" / "b1" / "customers.parquet")["email"].tolist() == [KEPT_EMAIL]
    assert export.stat().st_mtime_ns == written  # rewritten, not made young for the retention periods
    with np.load(home / "customer_states" / "retention-recommender-v1.npz") as states:
        assert states["customer_ids"].tolist() == [KEPT] and states["vectors"].shape == (1, 3)
    example = json.loads((home / "mlartifacts/retention-return/run/artifacts/input_example.json").read_text())
    assert example["data"] == [[KEPT, 4.0]]
    assert f"<td>{ERASED}</td><td>{KEPT}</td>" == (home / "gx" / "page.html").read_text()
    with engine.connect() as connection:
        quarantined = connection.execute(select(Quarantine)).one()
        assert json.loads(quarantined.rows) == [{"customer_id": KEPT, "email": KEPT_EMAIL}]
        assert quarantined.n_rows == 1
        assert connection.execute(select(Batch.failed)).scalar_one() == [
            f"customers: 1 unexpected of 2 (e.g. {ERASED}, {KEPT})"
        ]
        assert connection.execute(select(func.count()).select_from(ReviewSentiment)).scalar_one() == 1
    # and the audit row says who, when and how much, with no personal data (the search above covers it)
    (audit,) = _audit(engine)
    assert audit.actor == "dpo" and audit.n_customers == 1
    assert audit.removed["customers"] == audit.removed["wh_customers"] == audit.removed["events"] == 1
    assert audit.removed["files:campaigns"] == 2 and audit.removed["files:customer_states"] == 1


def test_forgetting_again_changes_nothing_but_adds_an_audit_row(seeded) -> None:  # noqa: ANN001
    engine, home = seeded
    first = forget_customers([GONE], "dpo")
    snapshot = {p: p.read_bytes() for p in home.rglob("*") if p.is_file() and not p.name.endswith(".db")}
    again = forget_customers([GONE], "dpo")
    assert first.erased == [GONE] and first.unknown == []
    assert again.erased == [] and again.unknown == [GONE] and again.removed == {}
    assert {p: p.read_bytes() for p in snapshot} == snapshot
    assert [a.n_customers for a in _audit(engine)] == [1, 0]


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("", "non-empty"),
        (" C0000001", "surrounding blanks"),
        ("C" * 65, "longer than 64"),
        ("C\x00001", "control characters"),
    ],
)
def test_ids_that_break_the_id_rules_are_refused_and_nothing_changes(seeded, bad: str, reason: str) -> None:  # noqa: ANN001
    engine, home = seeded
    result = runner.invoke(app, ["customers", "forget", GONE, bad])
    assert result.exit_code == 2
    assert reason in result.output and len(result.output.strip().splitlines()) == 1
    assert _count(engine, Customer.__table__, GONE) == 1 and _audit(engine) == []
    assert GONE in (home / "campaigns" / CAMPAIGN / "targets.csv").read_text()


def test_id_rules() -> None:
    assert check_customer_ids(["a", "b", "a"]) == ["a", "b"]  # distinct, in order
    with pytest.raises(ErasureError, match="no customer id"):
        check_customer_ids([])
    with pytest.raises(ErasureError, match="at most 1000"):
        check_customer_ids([f"C{i}" for i in range(1001)])


def test_the_redis_online_store_forgets_too(seeded, redis_documents: RedisDocuments, monkeypatch) -> None:  # noqa: ANN001, F811
    engine, _ = seeded
    monkeypatch.setenv("RETENTION_ONLINE_STORE", REDIS_URL)
    for kind in ("churn", "recommendations"):
        redis_documents.put_many(kind, {GONE: {"p": 0.5}, KEPT: {"p": 0.4}})
    report = forget_customers([GONE], "dpo")
    assert report.removed["online_store"] == 2
    assert search_redis(redis_documents.client, TERMS) == []
    assert redis_documents.ids("churn") == redis_documents.ids("recommendations") == {KEPT}
    assert search_database(engine, TERMS) == []


def test_every_table_of_the_schema_is_searched(engine: Engine) -> None:
    # the search helper sees every table of the migrated schema, so a new table cannot hide a customer
    metadata = MetaData()
    metadata.reflect(engine)
    assert {"customers", "wh_customers", "platform_erasures", "online_results"} <= set(metadata.tables)


def test_the_admin_api_forgets_with_the_admin_token_only(seeded) -> None:  # noqa: ANN001
    from fastapi.testclient import TestClient

    from retention.settings import Settings
    from serving.app import create_app
    from serving.auth import COOKIE_NAME
    from serving.settings import ServingSettings

    engine, home = seeded
    admin, marketing = "admin-erasure-test-token-0123456", "marketing-erasure-test-token-012"
    app = create_app(Settings.from_env(), ServingSettings(marketing_token=marketing, admin_token=admin))
    route = "/admin/customers/forget"
    with TestClient(app) as client:
        body = {"customer_ids": [GONE, "nobody-9"]}
        refused = client.post(route, json=body, headers={"Authorization": f"Bearer {marketing}"})
        assert refused.status_code == 403
        assert client.post(route, json=body).status_code == 401
        client.cookies.set(COOKIE_NAME, admin)
        cookie_only = client.post(route, json=body)
        assert cookie_only.status_code == 401  # never the login cookie: no cross-site erasure
        client.cookies.clear()
        bad = client.post(
            route, json={"customer_ids": [" C0000001"]}, headers={"Authorization": f"Bearer {admin}"}
        )
        assert bad.status_code == 422 and "customer_ids" in bad.text  # the schema's id rule
        assert _count(engine, Customer.__table__, GONE) == 1 and _audit(engine) == []
        done = client.post(route, json=body, headers={"Authorization": f"Bearer {admin}"})
    assert done.status_code == 200, done.text
    assert done.json()["erased"] == [GONE] and done.json()["unknown"] == ["nobody-9"]
    (audit,) = _audit(engine)
    assert audit.actor == "api:admin" and audit.n_customers == 1
    assert search_database(engine, TERMS) == [] and search_files(home, TERMS) == []
