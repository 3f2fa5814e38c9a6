"""End to end in headless Chromium: log in, open a campaign, download its list, check the file.

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

from pipelines.campaigns.store import export_frame
from tests.serving.conftest import CAMPAIGN_ID, MARKETING_TOKEN, Served

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
STARTUP_SECONDS = 20.0  # uvicorn start and the download both finish well within this
POLL_SECONDS = 0.1


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
        io.StringIO(export_frame(served.engine, CAMPAIGN_ID).to_csv(index=False)), dtype={"email": object}
    )
    pd.testing.assert_frame_equal(downloaded, expected)
    assert downloaded["email"].notna().any()
