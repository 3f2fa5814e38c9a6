"""The API's access rules, campaign routes and target-list exports (auth, 404/422, CSV content)."""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from pipelines.campaigns.store import CONTACT, EXPORT_COLUMNS, EXPORTED_ARMS, campaign_targets
from retention.db.models import Customer
from serving.auth import Role, Tokens, TokensError, ensure_tokens, load_tokens, tokens_path
from serving.settings import ServingSettings, ServingSettingsError
from tests.serving.conftest import (
    ADMIN_TOKEN,
    CAMPAIGN_ID,
    CAMPAIGN_TARGETS,
    EMPTY_CAMPAIGN_ID,
    MARKETING_TOKEN,
    OLD_CAMPAIGN_ID,
    SAME_ORIGIN,
    SUMMARY,
    Served,
    auth,
)

PROTECTED = [
    "/campaigns",
    f"/campaigns/{CAMPAIGN_ID}",
    f"/campaigns/{CAMPAIGN_ID}/targets.csv",
    f"/campaigns/{CAMPAIGN_ID}/targets.parquet",
    "/customers/C0000001/recommendations",
    "/customers/C0000001/churn",
    "/customers/C0000001/profile",
    "/admin/models",
]


# -- authentication and roles ---------------------------------------------------------------------


@pytest.mark.parametrize("path", PROTECTED)
def test_no_or_bad_token_is_401_with_a_challenge(served: Served, path: str) -> None:
    # given no token, a wrong one, and a non-bearer scheme
    for headers in ({}, auth("not-a-token"), {"Authorization": f"Basic {MARKETING_TOKEN}"}):
        # when
        response = served.client.get(path, headers=headers)
        # then
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_marketing_token_reads_but_is_403_on_admin_routes(served: Served) -> None:
    assert served.client.get("/campaigns", headers=auth(MARKETING_TOKEN)).status_code == 200
    forbidden = served.client.get("/admin/models", headers=auth(MARKETING_TOKEN))
    assert forbidden.status_code == 403
    assert "admin" in forbidden.json()["detail"]


def test_admin_token_sees_the_registry_and_the_served_versions(served: Served) -> None:
    response = served.client.get("/admin/models", headers=auth(ADMIN_TOKEN))
    assert response.status_code == 200
    body = response.json()
    # every registered family is listed; the two the fixture promoted are served
    assert {"retention-return": "1", "retention-recommender": "1"}.items() <= body["served"].items()
    by_version = {v["version"]: v["aliases"] for v in body["registry"]["retention-return"]}
    assert by_version["1"] == ["champion"]


def test_health_needs_no_token_and_reports_the_served_versions(served: Served) -> None:
    response = served.client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert {"retention-return": "1", "retention-recommender": "1"}.items() <= body["models"].items()


def test_the_openapi_schema_is_served_and_documents_bearer_auth(served: Served) -> None:
    schema = served.client.get("/openapi.json").json()
    assert "/customers/{customer_id}/churn" in schema["paths"]
    assert "/ui/login" not in schema["paths"]  # HTML pages stay out of the API contract
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_tokens_compare_to_roles_and_never_show_in_repr() -> None:
    tokens = Tokens.of(marketing="m" * 20, admin="a" * 20)
    assert tokens.role_of("m" * 20) is Role.MARKETING
    assert tokens.role_of("a" * 20) is Role.ADMIN
    assert tokens.role_of("m" * 19) is None
    assert tokens.role_of("ünïcode") is None
    assert "m" * 20 not in repr(tokens) and "a" * 20 not in repr(tokens)
    with pytest.raises(TokensError, match="differ"):
        Tokens.of(marketing="same", admin="same")
    with pytest.raises(TokensError, match="differ"):
        Tokens.of(marketing="m" * 20, admin="a" * 20, events="m" * 20)
    with pytest.raises(TokensError, match="empty"):
        Tokens.of(marketing="", admin="a" * 20)
    # the write token is a role of its own; without one, no token is the events role
    assert Tokens.of(marketing="m" * 20, admin="a" * 20, events="e" * 20).role_of("e" * 20) is Role.EVENTS
    assert "e" * 20 not in repr(Tokens.of(marketing="m" * 20, admin="a" * 20, events="e" * 20))


def test_generated_tokens_are_private_kept_and_overridable(tmp_path: Path) -> None:
    # given no token in the environment
    home, unset = tmp_path / "home", ServingSettings()
    with pytest.raises(TokensError, match="retention serve"):
        load_tokens(unset, home)
    # when the tokens are generated (twice)
    generated = ensure_tokens(unset, home)
    assert generated is not None and set(generated.generated) == set(Role)
    again = ensure_tokens(unset, home)
    assert again is not None and again.path == generated.path == tokens_path(home)
    assert not again.generated and not again.migrated  # shown once only
    path, first = generated.path, generated.generated
    # then the file is 0600 in a 0700 folder and its tokens stay the same
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    loaded = load_tokens(unset, home)
    assert {role: loaded.role_of(token) for role, token in first.items()} == {role: role for role in Role}
    # and an environment token wins over the file's
    overridden = load_tokens(ServingSettings(marketing_token="from-env-token"), home)
    assert overridden.role_of("from-env-token") is Role.MARKETING
    assert overridden.role_of(first[Role.MARKETING]) is None
    assert overridden.role_of(first[Role.ADMIN]) is Role.ADMIN
    assert ensure_tokens(ServingSettings(marketing_token="x-token", admin_token="y-token"), home) is None


def test_serve_shows_new_tokens_once_and_the_tokens_file(
    tmp_path: Path,
    migrated_home: Path,  # `retention serve` refuses a home without a platform database
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import typer
    import uvicorn

    from cli.serve import serve

    # given a serve command whose uvicorn is replaced by a recorder
    calls: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append({"app": app, **kwargs}))
    monkeypatch.setenv("RETENTION_API_PORT", "8123")
    monkeypatch.setenv("RETENTION_API_WORKERS", "3")
    for name in (
        "RETENTION_API_MARKETING_TOKEN",
        "RETENTION_API_ADMIN_TOKEN",
        "RETENTION_API_EVENTS_TOKEN",
        "RETENTION_API_HOST",
    ):
        monkeypatch.delenv(name, raising=False)
    cli = typer.Typer()
    cli.command()(serve)
    # when it runs twice
    result = CliRunner().invoke(cli, ["--host", "127.0.0.2"])
    rerun = CliRunner().invoke(cli, ["--host", "127.0.0.2"])
    # then the first run shows the generated tokens (the file keeps digests only), the second none
    assert result.exit_code == 0, result.output
    home = Path(os.environ["RETENTION_HOME"]).resolve()
    stored = json.loads(tokens_path(home).read_text())
    assert str(tokens_path(home)) in result.output and str(tokens_path(home)) in rerun.output
    shown = dict(line.strip().split(" token: ") for line in result.output.splitlines() if " token: " in line)
    assert set(shown) == {"marketing", "admin", "events"}
    assert all(token not in json.dumps(stored) for token in shown.values())
    assert load_tokens(ServingSettings(), home).role_of(shown["admin"]) is Role.ADMIN
    assert " token: " not in rerun.output
    calls.pop()
    assert calls == [
        {
            "app": "serving.app:create_app",
            "factory": True,
            "host": "127.0.0.2",
            "port": 8123,
            "workers": 3,
            "log_level": "info",
        }
    ]


def test_bad_serving_settings_fail_clearly() -> None:
    with pytest.raises(ServingSettingsError, match="RETENTION_API_PORT"):
        ServingSettings.from_env({"RETENTION_API_PORT": "eighty"})
    with pytest.raises(ServingSettingsError, match="RETENTION_API_MODEL_REFRESH_SECONDS"):
        ServingSettings.from_env({"RETENTION_API_MODEL_REFRESH_SECONDS": "-1"})
    assert ServingSettings.from_env({}).model_refresh_seconds == 30
    with pytest.raises(ServingSettingsError, match="RETENTION_API_COMPUTE_BUDGET_SECONDS"):
        ServingSettings.from_env({"RETENTION_API_COMPUTE_BUDGET_SECONDS": "0"})
    read = ServingSettings.from_env(
        {"RETENTION_API_EVENTS_TOKEN": "e-token", "RETENTION_API_COMPUTE_BUDGET_SECONDS": "0.5"}
    )
    assert (read.events_token, read.compute_budget_seconds) == ("e-token", 0.5)


# -- campaigns ------------------------------------------------------------------------------------


def test_campaign_list_newest_first_with_lift_when_measured(served: Served) -> None:
    body = served.client.get("/campaigns", headers=auth(MARKETING_TOKEN)).json()
    assert [c["campaign_id"] for c in body] == [CAMPAIGN_ID, EMPTY_CAMPAIGN_ID, OLD_CAMPAIGN_ID]
    listed = body[0]
    assert listed["n_targets"] == CAMPAIGN_TARGETS and listed["n_control"] == CAMPAIGN_TARGETS // 4
    assert listed["control_share"] == pytest.approx(0.25)
    assert sum(listed["segments"].values()) == CAMPAIGN_TARGETS
    assert listed["model_versions"] == {"retention-return": "1", "retention-recommender": "1"}
    assert listed["lift"] is None and body[1]["lift"]["lift"] == pytest.approx(0.042)


def test_campaign_detail_has_the_funnel_and_download_links(served: Served) -> None:
    body = served.client.get(f"/campaigns/{CAMPAIGN_ID}", headers=auth(MARKETING_TOKEN)).json()
    assert body["funnel"]["selected"] == CAMPAIGN_TARGETS
    assert body["downloads"] == {
        "csv": f"/campaigns/{CAMPAIGN_ID}/targets.csv",
        "parquet": f"/campaigns/{CAMPAIGN_ID}/targets.parquet",
    }


@pytest.mark.parametrize("suffix", ["", "/targets.csv", "/targets.parquet"])
def test_unknown_campaign_is_404(served: Served, suffix: str) -> None:
    response = served.client.get(f"/campaigns/no-such-campaign{suffix}", headers=auth(MARKETING_TOKEN))
    assert response.status_code == 404
    assert "no-such-campaign" in response.json()["detail"]


def test_too_long_ids_are_422(served: Served) -> None:
    headers = auth(MARKETING_TOKEN)
    assert served.client.get(f"/campaigns/{'x' * 129}", headers=headers).status_code == 422
    assert served.client.get(f"/customers/{'C' * 65}/churn", headers=headers).status_code == 422


def test_csv_export_rows_columns_and_contacts(served: Served) -> None:
    # when
    response = served.client.get(f"/campaigns/{CAMPAIGN_ID}/targets.csv", headers=auth(MARKETING_TOKEN))
    # then it is a CSV attachment
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == f'attachment; filename="{CAMPAIGN_ID}.csv"'
    exported = pd.read_csv(io.StringIO(response.text), dtype={"email": object})
    # with the export columns and one row per customer to contact or hold out, in rank order
    targets = campaign_targets(served.engine, CAMPAIGN_ID)
    listed = targets.loc[targets["arm"].isin(EXPORTED_ARMS)]
    assert len(listed) < len(targets)  # the untreated rows are only logged
    assert list(exported.columns) == EXPORT_COLUMNS
    assert exported["customer_id"].tolist() == listed["customer_id"].tolist()
    assert exported["recommended_product_ids"].iloc[0] == " ".join(listed["recommendations"].iloc[0])
    # and an e-mail exactly for the consenting customers of the treatment arm (read from the shop table)
    customers = Customer.__table__
    with served.engine.connect() as connection:
        rows = connection.execute(
            select(customers.c.customer_id, customers.c.email, customers.c.marketing_consent)
        ).all()
    consent = {r.customer_id: r.marketing_consent for r in rows}
    email = {r.customer_id: r.email for r in rows}
    contactable = exported["action"].eq(CONTACT) & exported["customer_id"].map(consent).astype(bool)
    assert contactable.any() and (~contactable).any()
    assert (
        exported.loc[contactable, "email"].tolist()
        == exported.loc[contactable, "customer_id"].map(email).tolist()
    )
    assert exported.loc[~contactable, "email"].isna().all()


def test_parquet_export_matches_the_csv(served: Served) -> None:
    headers = auth(MARKETING_TOKEN)
    parquet = served.client.get(f"/campaigns/{CAMPAIGN_ID}/targets.parquet", headers=headers)
    assert parquet.status_code == 200
    assert parquet.headers["content-type"] == "application/vnd.apache.parquet"
    csv = served.client.get(f"/campaigns/{CAMPAIGN_ID}/targets.csv", headers=headers)
    from_parquet = pd.read_parquet(io.BytesIO(parquet.content))
    from_csv = pd.read_csv(io.StringIO(csv.text), dtype={"email": object})
    pd.testing.assert_frame_equal(from_parquet, from_csv, check_dtype=False)


def test_an_empty_campaign_exports_a_header_only(served: Served) -> None:
    response = served.client.get(f"/campaigns/{EMPTY_CAMPAIGN_ID}/targets.csv", headers=auth(MARKETING_TOKEN))
    assert response.status_code == 200
    assert response.text.strip() == ",".join(EXPORT_COLUMNS)


# -- web pages ----------------------------------------------------------------------------------


def test_pages_redirect_to_login_and_the_cookie_is_strict(served: Served) -> None:
    client = served.client
    client.cookies.clear()
    assert client.get("/ui/campaigns", follow_redirects=False).headers["location"] == "/ui/login"
    refused = client.post("/ui/login", data={"token": "wrong"}, headers=SAME_ORIGIN, follow_redirects=False)
    assert refused.status_code == 401 and "not valid" in refused.text
    accepted = client.post(
        "/ui/login", data={"token": MARKETING_TOKEN}, headers=SAME_ORIGIN, follow_redirects=False
    )
    assert accepted.status_code == 303
    cookie = accepted.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    page = client.get("/ui/campaigns")
    assert page.status_code == 200 and CAMPAIGN_ID in page.text and "pending" in page.text
    assert "+0.042 [-0.010, +0.094]" in page.text
    assert "script-src" not in page.headers["content-security-policy"]  # no scripts at all
    assert client.get(f"/ui/campaigns/{CAMPAIGN_ID}").status_code == 200
    assert client.get("/ui/campaigns/nope").status_code == 404
    client.post("/ui/logout", headers=SAME_ORIGIN)
    client.cookies.clear()


@pytest.fixture
def logged_in(served: Served):
    """The served client with the marketing login cookie (cleared afterwards)."""
    client = served.client
    client.cookies.clear()
    login = client.post(
        "/ui/login", data={"token": MARKETING_TOKEN}, headers=SAME_ORIGIN, follow_redirects=False
    )
    assert login.status_code == 303
    yield client
    client.cookies.clear()


def _text(html: str) -> str:
    """The page's visible text, whitespace collapsed (tags dropped)."""
    import re
    from html import unescape

    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def test_the_campaign_page_shows_offers_hold_outs_money_and_the_top_targets(
    served: Served, logged_in
) -> None:
    # when
    page = logged_in.get(f"/ui/campaigns/{CAMPAIGN_ID}")
    # then
    assert page.status_code == 200
    text = _text(page.text)
    # the policy with the summary's explanation, and the arm counts of the rows
    assert "risk (cold-start rule)" in text and SUMMARY["policy_reason"] in text
    targets = campaign_targets(served.engine, CAMPAIGN_ID)
    contacts, hold_outs = int((targets["arm"] == "treatment").sum()), int((targets["arm"] == "control").sum())
    assert f"Contact {contacts}" in text and f"Hold out (do not contact) {hold_outs}" in text
    # cost, expected returns and profit with their intervals, and the summary's notes
    assert "Cost €12.50" in text
    assert "€30.25 (95% interval €10.50 to €50.00)" in text and "1.8 (95% interval 0.2 to 3.4)" in text
    assert SUMMARY["hold_out_note"] in text
    # the offer mix: contacts per offer, and the lift pending until the horizon has passed
    for offer, n in targets.loc[targets["arm"] == "treatment", "offer"].value_counts().items():
        assert f"{offer} {n} " in text
    assert "pending" in text
    # the top targets with the marketer columns, linked to their profiles, never an e-mail address
    assert (
        "hold out — do not contact" in text and "no purchase for 40 days; usually buys every 21 days" in text
    )
    assert f'href="/ui/customers/{targets["customer_id"].iloc[0]}"' in page.text
    assert "@" not in text


def test_the_page_of_a_campaign_from_before_offers(served: Served, logged_in) -> None:
    # given a campaign with summary {} and lift null, whose contacts have offer "none"
    page = logged_in.get(f"/ui/campaigns/{OLD_CAMPAIGN_ID}")
    assert page.status_code == 200
    text = _text(page.text)
    assert "unspecified" in text and "not estimated" in text and "Cost -" in text
    assert "time since the last purchase" in text  # reasons without stored values
    assert logged_in.get(f"/ui/campaigns/{EMPTY_CAMPAIGN_ID}").status_code == 200


def test_lift_per_offer_and_the_summary_are_read_robustly() -> None:
    from serving.web import offer_lifts, summary_view

    assert summary_view({}, 0.95) == {
        "cost": None,
        "profit": None,
        "returns": None,
        "reason": None,
        "notes": [],
        "other": {},
    }
    assert summary_view(None, 0.95)["profit"] is None
    view = summary_view({"incremental_profit": 5.0, "incremental_profit_interval": [None, None]}, 0.9)
    assert view["profit"] == {"estimate": 5.0, "low": None, "high": None, "confidence": 0.9}
    assert offer_lifts(None) == {} and offer_lifts({"lift": 0.1, "ci_low": 0.0, "ci_high": 0.2}) == {}
    measured = {
        "per_offer": {
            "coupon_10": {
                "returned": {"lift": 0.05, "ci_low": 0.01, "ci_high": 0.09},
                "revenue": {"lift": 2.5, "ci_low": -1.0, "ci_high": 6.0},
                "n": 120,
            }
        }
    }
    assert offer_lifts(measured) == {
        "coupon_10": {"returned": "+0.050 [+0.010, +0.090]", "revenue": "+2.50 EUR [-1.00, +6.00]", "n": 120}
    }


def test_the_profile_page_needs_a_login_and_is_404_for_unknown_customers(served: Served, logged_in) -> None:
    assert logged_in.get("/ui/customers/C9999999").status_code == 404
    logged_in.cookies.clear()
    page = logged_in.get("/ui/customers/C9999999", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/ui/login"
