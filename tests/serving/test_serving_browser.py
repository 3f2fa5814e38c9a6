"""End to end in headless Chromium: log in, open a campaign (offer mix, hold-outs, top targets), download
its list and check the file, open a customer's profile from the list.

The API runs under a real uvicorn on a free loopback port; Debian's chromium and chromedriver
are used through an explicit Service path (selenium-manager never downloads anything).
"""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import uvicorn

from pipelines.campaigns.store import campaign_targets, export_csv, export_frame
from tests.serving.conftest import CAMPAIGN_ID, MARKETING_TOKEN, Served

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
STARTUP_SECONDS = 20.0  # uvicorn start and the download both finish well within this
POLL_SECONDS = 0.1
OFFLINE = "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"


@pytest.fixture(autouse=True)
def _browser_installed() -> None:
    """A clear failure, not a skip: `make test` installs the browser (scripts/install_browser.sh)."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail(f"{CHROMIUM} and {CHROMEDRIVER} are needed: run scripts/install_browser.sh")


def wait_for(condition, what: str, timeout: float = STARTUP_SECONDS):  # noqa: ANN001, ANN201
    """Poll `condition` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(POLL_SECONDS)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def live_url(served: Served) -> Iterator[str]:
    """The app under uvicorn on a loopback port chosen by the kernel (the socket is bound first: no race)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(served.app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, "uvicorn to start")
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(STARTUP_SECONDS)
    sock.close()


@pytest.fixture
def browser(tmp_path: Path):  # noqa: ANN201
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    # offline, as on a machine without internet: any host but the loopback API fails to resolve, so
    # a page that needs a CDN (scripts, styles, fonts) shows up broken here too
    options.add_argument(f"--host-resolver-rules={OFFLINE}")
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads  # type: ignore[attr-defined]
    try:
        yield driver
    finally:
        driver.quit()


def test_log_in_open_a_campaign_and_download_its_list(served: Served, live_url: str, browser) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    # given the campaign page, which first sends us to the login form
    browser.get(f"{live_url}/ui/campaigns")
    assert browser.current_url.endswith("/ui/login")
    # when we log in with the marketing token
    browser.find_element(By.ID, "token").send_keys(MARKETING_TOKEN)
    browser.find_element(By.ID, "login").click()
    wait_for(lambda: browser.current_url.endswith("/ui/campaigns"), "the campaign list")
    # and open the campaign and click its CSV download
    browser.find_element(By.LINK_TEXT, CAMPAIGN_ID).click()
    wait_for(lambda: browser.find_elements(By.ID, "download-csv"), "the campaign page")
    assert browser.find_element(By.ID, "lift").text == "pending"
    browser.find_element(By.ID, "download-csv").click()
    # then the browser saves the marketing export, row for row
    path = browser.downloads / f"{CAMPAIGN_ID}.csv"
    wait_for(lambda: path.exists() and not list(browser.downloads.glob("*.crdownload")), "the download")
    downloaded = pd.read_csv(path, dtype={"email": object})
    expected = pd.read_csv(
        io.StringIO(export_csv(export_frame(served.engine, CAMPAIGN_ID))), dtype={"email": object}
    )
    pd.testing.assert_frame_equal(downloaded, expected)
    assert downloaded["email"].notna().any()


def _log_in(browser, live_url: str) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    browser.get(f"{live_url}/ui/login")
    browser.find_element(By.ID, "token").send_keys(MARKETING_TOKEN)
    browser.find_element(By.ID, "login").click()
    wait_for(lambda: browser.current_url.endswith("/ui/campaigns"), "the campaign list")


def test_the_campaign_page_shows_the_offer_mix_and_the_hold_outs(
    served: Served, live_url: str, browser
) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    # given the logged-in campaign list
    _log_in(browser, live_url)
    # when we open the campaign
    browser.find_element(By.LINK_TEXT, CAMPAIGN_ID).click()
    wait_for(lambda: browser.find_elements(By.ID, "offer-mix"), "the campaign page")
    # then it shows how many to contact and to hold out, and contacts per offer, as the rows say
    targets = campaign_targets(served.engine, CAMPAIGN_ID)
    contacted = targets.loc[targets["arm"] == "treatment"]
    assert browser.find_element(By.ID, "n-contacts").text == str(len(contacted))
    assert browser.find_element(By.ID, "n-hold-outs").text == str(int((targets["arm"] == "control").sum()))
    rows = browser.find_elements(By.CSS_SELECTOR, "#offer-mix tr.offer")
    shown = {
        r.find_elements(By.TAG_NAME, "td")[0].text: int(r.find_elements(By.TAG_NAME, "td")[1].text)
        for r in rows
    }
    assert shown == contacted["offer"].value_counts().to_dict()
    assert "interval" in browser.find_element(By.ID, "expected-profit").text
    # and the top targets say what to do with each customer, as the export does (consent read now)
    actions = [
        r.find_elements(By.TAG_NAME, "td")[2].text
        for r in browser.find_elements(By.CSS_SELECTOR, "#preview tr.target")
    ]
    assert actions == export_frame(served.engine, CAMPAIGN_ID)["action"].tolist()[: len(actions)]
    assert {"contact", "hold out — do not contact"} <= set(actions)


def test_a_customer_profile_opens_from_the_campaign_page(served: Served, live_url: str, browser) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    # given the campaign page
    _log_in(browser, live_url)
    browser.get(f"{live_url}/ui/campaigns/{CAMPAIGN_ID}")
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "a.customer-link"), "the top targets")
    # when we click the first scored customer of the list
    scored = [
        link
        for link in browser.find_elements(By.CSS_SELECTOR, "a.customer-link")
        if link.text in set(_online_ids(served))
    ]
    customer = scored[0].text
    scored[0].click()
    wait_for(lambda: browser.find_elements(By.ID, "churn"), "the profile page")
    # then the profile shows the customer's sections, with the risk explained in words
    assert browser.find_element(By.TAG_NAME, "h1").text == f"Customer {customer}"
    for section in ("overview", "rfm", "churn", "sentiment", "categories", "recommendations", "campaigns"):
        assert browser.find_element(By.ID, section).is_displayed()
    assert browser.find_element(By.ID, "churn-risk").text.endswith("%")
    assert browser.find_elements(By.CSS_SELECTOR, "#reasons li")
    assert browser.find_elements(By.CSS_SELECTOR, "#recommendations tr.recommendation")
    history = browser.find_elements(By.CSS_SELECTOR, "#campaigns tr.campaign-entry")
    assert any(CAMPAIGN_ID in row.text for row in history)
    assert "@" not in browser.find_element(By.TAG_NAME, "body").text  # no e-mail address


def _online_ids(served: Served) -> list[str]:
    from sqlalchemy import text

    with served.engine.connect() as connection:
        return [r[0] for r in connection.execute(text("SELECT customer_id FROM online_features"))]


def test_the_api_docs_render_offline(live_url: str, browser) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    # given a browser that reaches nothing but the API
    # when it opens the interactive API docs
    browser.get(f"{live_url}/docs")
    # then Swagger UI (served by the API itself) renders every documented route
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"), "Swagger UI")
    paths = {
        e.get_attribute("data-path") for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
    }
    assert {"/healthz", "/customers/{customer_id}/churn", "/events"} <= paths
    # and so does ReDoc
    browser.get(f"{live_url}/redoc")
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "h1"), "ReDoc")
    assert "Retention platform API" in browser.find_element(By.TAG_NAME, "h1").text
