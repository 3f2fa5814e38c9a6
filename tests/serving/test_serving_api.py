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

from pipelines.campaigns.store import EXPORT_COLUMNS, campaign_targets
from retention.db.warehouse import WAREHOUSE
from serving.auth import Role, Tokens, TokensError, ensure_tokens, load_tokens, tokens_path
from serving.settings import ServingSettings, ServingSettingsError
from tests.serving.conftest import (
    ADMIN_TOKEN,
    CAMPAIGN_ID,
    CAMPAIGN_TARGETS,
    EMPTY_CAMPAIGN_ID,
    MARKETING_TOKEN,
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
    assert body["served"] == {"retention-return": "1", "retention-recommender": "1"}
    by_version = {v["version"]: v["aliases"] for v in body["registry"]["retention-return"]}
    assert by_version["1"] == ["champion"]


def test_health_needs_no_token_and_reports_the_served_versions(served: Served) -> None:
    response = served.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "models": {"retention-return": "1", "retention-recommender": "1"},
    }


def test_the_openapi_schema_is_served_and_documents_bearer_auth(served: Served) -> None:
    schema = served.client.get("/openapi.json").json()
    assert "/customers/{customer_id}/churn" in schema["paths"]
    assert "/ui/login" not in schema["paths"]  # HTML pages stay out of the API contract
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_tokens_compare_to_roles_and_never_show_in_repr() -> None:
    tokens = Tokens(marketing="m" * 20, admin="a" * 20)
    assert tokens.role_of("m" * 20) is Role.MARKETING
    assert tokens.role_of("a" * 20) is Role.ADMIN
    assert tokens.role_of("m" * 19) is None
    assert tokens.role_of("ünïcode") is None
    assert "m" * 20 not in repr(tokens) and "a" * 20 not in repr(tokens)
    with pytest.raises(TokensError, match="differ"):
        Tokens(marketing="same", admin="same")


def test_generated_tokens_are_private_kept_and_overridable(tmp_path: Path) -> None:
    # given no token in the environment
    home, unset = tmp_path / "home", ServingSettings()
    with pytest.raises(TokensError, match="retention serve"):
        load_tokens(unset, home)
    # when the tokens are generated (twice)
    path = ensure_tokens(unset, home)
    first = load_tokens(unset, home)
    assert ensure_tokens(unset, home) == path == tokens_path(home)
    # then the file is 0600 in a 0700 folder and its tokens stay the same
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert json.loads(path.read_text()) == {"marketing": first.marketing, "admin": first.admin}
    assert load_tokens(unset, home).admin == first.admin
    # and an environment token wins over the file's
    overridden = load_tokens(ServingSettings(marketing_token="from-env-token"), home)
    assert overridden.marketing == "from-env-token" and overridden.admin == first.admin
    assert ensure_tokens(ServingSettings(marketing_token="x-token", admin_token="y-token"), home) is None


def test_serve_prints_the_tokens_file_never_a_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer
    import uvicorn

    from cli.serve import serve

    # given a serve command whose uvicorn is replaced by a recorder
    calls: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append({"app": app, **kwargs}))
    monkeypatch.setenv("RETENTION_API_PORT", "8123")
    for name in ("RETENTION_API_MARKETING_TOKEN", "RETENTION_API_ADMIN_TOKEN", "RETENTION_API_HOST"):
        monkeypatch.delenv(name, raising=False)
    cli = typer.Typer()
    cli.command()(serve)
    # when
    result = CliRunner().invoke(cli, ["--host", "127.0.0.2"])
    # then
    assert result.exit_code == 0, result.output
    home = Path(os.environ["RETENTION_HOME"]).resolve()
    tokens = json.loads(tokens_path(home).read_text())
    assert str(tokens_path(home)) in result.output
    assert tokens["marketing"] not in result.output and tokens["admin"] not in result.output
    assert calls == [
        {
            "app": "serving.app:create_app",
            "factory": True,
            "host": "127.0.0.2",
            "port": 8123,
            "log_level": "info",
        }
    ]


def test_bad_serving_settings_fail_clearly() -> None:
    with pytest.raises(ServingSettingsError, match="RETENTION_API_PORT"):
        ServingSettings.from_env({"RETENTION_API_PORT": "eighty"})
    with pytest.raises(ServingSettingsError, match="RETENTION_API_MODEL_REFRESH_SECONDS"):
        ServingSettings.from_env({"RETENTION_API_MODEL_REFRESH_SECONDS": "-1"})
    assert ServingSettings.from_env({}).model_refresh_seconds == 30


# -- campaigns ------------------------------------------------------------------------------------


def test_campaign_list_newest_first_with_lift_when_measured(served: Served) -> None:
    body = served.client.get("/campaigns", headers=auth(MARKETING_TOKEN)).json()
    assert [c["campaign_id"] for c in body] == [CAMPAIGN_ID, EMPTY_CAMPAIGN_ID]
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
    # with the export columns and one row per target, in rank order
    targets = campaign_targets(served.engine, CAMPAIGN_ID)
    assert list(exported.columns) == EXPORT_COLUMNS
    assert exported["customer_id"].tolist() == targets["customer_id"].tolist()
    assert exported["recommendations"].iloc[0] == "P0000001 P0000002 P0000003"
    # and an e-mail exactly for the consenting customers of the treatment arm
    customers = WAREHOUSE["customers"]
    with served.engine.connect() as connection:
        rows = connection.execute(
            select(customers.c.customer_id, customers.c.email, customers.c.marketing_consent)
        ).all()
    consent = {r.customer_id: r.marketing_consent for r in rows}
    email = {r.customer_id: r.email for r in rows}
    contactable = exported["arm"].eq("treatment") & exported["customer_id"].map(consent).astype(bool)
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
    refused = client.post("/ui/login", data={"token": "wrong"}, follow_redirects=False)
    assert refused.status_code == 401 and "not valid" in refused.text
    accepted = client.post("/ui/login", data={"token": MARKETING_TOKEN}, follow_redirects=False)
    assert accepted.status_code == 303
    cookie = accepted.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    page = client.get("/ui/campaigns")
    assert page.status_code == 200 and CAMPAIGN_ID in page.text and "pending" in page.text
    assert "+0.042 [-0.010, +0.094]" in page.text
    assert "script-src" not in page.headers["content-security-policy"]  # no scripts at all
    assert client.get(f"/ui/campaigns/{CAMPAIGN_ID}").status_code == 200
    assert client.get("/ui/campaigns/nope").status_code == 404
    client.post("/ui/logout")
    client.cookies.clear()
