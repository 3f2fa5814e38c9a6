"""The GX Data Docs of every validation (passed ones too) are linked from the web pages and served to a logged-in user."""

from __future__ import annotations

import re
import shutil

from retention.quality import DATA_DOCS_SITE
from tests.serving.conftest import MARKETING_TOKEN, SAME_ORIGIN, Served


def _log_in(served: Served) -> None:
    served.client.cookies.clear()
    response = served.client.post(
        "/ui/login", data={"token": MARKETING_TOKEN}, headers=SAME_ORIGIN, follow_redirects=False
    )
    assert response.status_code == 303


def test_passed_validations_have_data_docs_linked_from_the_pages(served: Served) -> None:
    # given the trained platform's validations, which all passed (its extraction and features)
    passed = served.platform.home / "gx" / DATA_DOCS_SITE / "validations"
    pages = {p.relative_to(passed).parts[:2] for p in passed.rglob("*.html")}
    assert {("extract", "events"), ("extract", "customers"), ("features", "customer")} <= pages
    shutil.copytree(
        served.platform.home / "gx", served.settings.gx_dir, dirs_exist_ok=True
    )  # the served home
    _log_in(served)
    # when a logged-in user follows the link on the campaign list
    listing = served.client.get("/ui/campaigns")
    assert 'href="/ui/data-docs/index.html"' in listing.text
    index = served.client.get("/ui/data-docs/index.html")
    # then the index lists each validation, newest first, and each page opens
    assert index.status_code == 200 and "text/html" in index.headers["content-type"]
    linked = re.findall(r'href="(/ui/data-docs/validations/[^"]+\.html)"', index.text)
    assert len(linked) >= 6 and "extract.events" in index.text and "features.customer" in index.text
    page = served.client.get(linked[0])
    assert page.status_code == 200 and "Validation" in page.text
    assert "script-src" not in page.headers["content-security-policy"]  # GX's CDN scripts are not run
    served.client.cookies.clear()


def test_data_docs_need_a_login_and_stay_inside_the_site(served: Served) -> None:
    served.client.cookies.clear()
    anonymous = served.client.get("/ui/data-docs/index.html", follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/ui/login"
    _log_in(served)
    for escape in ("..%2F..%2F..%2Fretention.db", "%2Fetc%2Fpasswd", "missing.html"):
        assert served.client.get(f"/ui/data-docs/{escape}").status_code == 404, escape
    served.client.cookies.clear()
