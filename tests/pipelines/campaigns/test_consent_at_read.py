"""Consent at read time: a withdrawal (or a new address) in the shop's `customers` changes the next CSV and
Parquet download and the next campaign page, with no extraction in between (SQLite and PostgreSQL)."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from html import unescape

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, update

from pipelines.campaigns.store import CONTACT, NO_CONSENT, write_campaign
from retention.db.models import Customer
from retention.db.warehouse import WAREHOUSE
from retention.settings import Settings
from serving.app import create_app
from serving.settings import ServingSettings
from tests.pipelines.campaigns.test_export import add_shop, campaign_row, offer_targets

TOKEN = "marketing-consent-test-token-0123"
SAME_ORIGIN = {"Origin": "http://testserver"}  # a form post from our own page (TestClient's host)


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    """The API on the test's database (settings from the environment), logged in for the pages."""
    serving = ServingSettings(marketing_token=TOKEN, admin_token="admin-consent-test-token-987654")
    client = TestClient(create_app(Settings.from_env(), serving))
    login = client.post("/ui/login", data={"token": TOKEN}, headers=SAME_ORIGIN, follow_redirects=False)
    assert login.status_code == 303
    yield client
    client.app.state.engine.dispose()  # type: ignore[attr-defined]


def _downloads(client: TestClient) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The CSV and Parquet downloads of campaign "c" and its page's row of C2, as visible text."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    csv = client.get("/campaigns/c/targets.csv", headers=auth)
    parquet = client.get("/campaigns/c/targets.parquet", headers=auth)
    page = client.get("/ui/campaigns/c")
    assert csv.status_code == parquet.status_code == page.status_code == 200
    rows = [r for r in page.text.split('<tr class="target">') if re.search(r">\s*C2\s*</a>", r)]
    assert len(rows) == 1, page.text
    row_text = " ".join(unescape(re.sub(r"<[^>]+>", " ", rows[0].split("</tr>")[0])).split())
    return (
        pd.read_csv(io.StringIO(csv.text), dtype={"email": object}).set_index("customer_id"),
        pd.read_parquet(io.BytesIO(parquet.content)).set_index("customer_id"),
        row_text,
    )


def test_a_withdrawal_in_the_shop_counts_at_the_next_download_and_page(
    engine: Engine, client: TestClient
) -> None:
    # given a published campaign whose contacts C1 and C2 consent, served by the API
    write_campaign(engine, campaign_row("c", 4), offer_targets("c"))
    add_shop(engine, {"C1": True, "C2": True, "C3": True, "C4": True})
    csv, parquet, page_row = _downloads(client)
    for export in (csv, parquet):
        assert export.loc["C2", "action"] == CONTACT and export.loc["C2", "email"] == "c2@example.org"
    assert CONTACT in page_row and NO_CONSENT not in page_row
    # when C2 withdraws consent and C1 changes address in the shop, and nothing is extracted
    with engine.begin() as connection:
        connection.execute(
            update(Customer).where(Customer.customer_id == "C2").values(marketing_consent=False)
        )
        connection.execute(update(Customer).where(Customer.customer_id == "C1").values(email="c1@new.org"))
    with engine.connect() as connection:  # the warehouse still has the consent of the last extraction
        warehouse = WAREHOUSE["customers"]
        stale = connection.execute(
            select(warehouse.c.marketing_consent).where(warehouse.c.customer_id == "C2")
        )
        assert stale.scalar_one() is True
    csv, parquet, page_row = _downloads(client)
    # then the next downloads drop C2's address, offer and expected figures, and say not to contact
    for export in (csv, parquet):
        assert export.loc["C2", "action"] == NO_CONSENT
        assert export.loc[["C2"], ["email", "offer", "expected_profit_eur"]].isna().to_numpy().all()
        assert export.loc["C1", "email"] == "c1@new.org"  # the address is joined at read time too
    assert (
        "c2@example.org"
        not in client.get("/campaigns/c/targets.csv", headers={"Authorization": f"Bearer {TOKEN}"}).text
    )
    # and the next page view shows C2 as not to be contacted
    assert NO_CONSENT in page_row and "reminder" not in page_row
