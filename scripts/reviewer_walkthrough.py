"""Screenshots of what a reviewer sees, taken in headless Chromium from a trained platform home.

1. `mlflow_runs.png`: the return model's experiment in the MLflow UI, the runs table with each
   training run and its baseline child runs;
2. `mlflow_comparison.png`: a training run's comparison plot (ROC of the model and every baseline
   on the same axes) in the MLflow UI's artifact view;
3. `model_health.png`: the serving app's model-health page (one monitoring run is made first).

Run it after the main job or `make repro` (both leave a trained platform under RETENTION_HOME):

    python scripts/reviewer_walkthrough.py [--home var] [--out docs/walkthrough]

It starts `mlflow ui` and the serving app on free loopback ports and stops both at the end;
nothing leaves the machine (Chromium resolves no host but 127.0.0.1). Needs Debian's chromium and
chromedriver (`make browser`).
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
OFFLINE = "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
WINDOW = (1600, 1000)
RENDER_SECONDS = 8.0  # the MLflow UI renders its tables after its API calls return
STARTUP_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], Any], what: str, timeout: float = STARTUP_SECONDS) -> Any:
    """Poll `condition` until it returns something truthy; exit with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    sys.exit(f"reviewer_walkthrough: timed out waiting for {what}")


def answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback only)
            return bool(response.status == 200)
    except OSError:
        return False


@contextmanager
def mlflow_ui(tracking_uri: str) -> Iterator[str]:
    """`mlflow ui` on the platform's tracking store, on a free loopback port."""
    port = free_port()
    command = [str(Path(sys.executable).parent / "mlflow"), "ui", "--backend-store-uri", tracking_uri]
    process = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answers(f"{url}/health"), "mlflow ui")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def serving_app(token: str) -> Iterator[str]:
    """The serving app under uvicorn on a free loopback port, with a one-off marketing token."""
    import uvicorn

    from serving.app import create_app
    from serving.settings import ServingSettings

    app = create_app(serving=ServingSettings(marketing_token=token, admin_token=secrets.token_urlsafe(24)))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, "the serving app")
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(STARTUP_SECONDS)
        sock.close()


@contextmanager
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
    options.add_argument(f"--host-resolver-rules={OFFLINE}")
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def training_run(tracking_uri: str, experiment_name: str) -> tuple[str, str]:
    """(experiment id, run id) of the newest training run of a model (not a baseline, not a backtest)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        sys.exit(
            f"reviewer_walkthrough: no experiment {experiment_name}: run the main job or `make repro` first"
        )
    runs = client.search_runs(
        [experiment.experiment_id],
        "tags.role = 'model' and tags.kind = 'train'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        sys.exit(f"reviewer_walkthrough: no training run in {experiment_name}")
    return experiment.experiment_id, runs[0].info.run_id


def shoot(driver: Any, url: str, target: Path, wait: float = RENDER_SECONDS) -> Path:
    driver.get(url)
    time.sleep(wait)
    driver.save_screenshot(str(target))
    print(f"reviewer_walkthrough: {target}")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--home", type=Path, default=ROOT / "var", help="RETENTION_HOME of a trained platform"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "walkthrough", help="where the PNGs go")
    args = parser.parse_args()
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        sys.exit("reviewer_walkthrough: needs /usr/bin/chromium and /usr/bin/chromedriver (make browser)")
    os.environ["RETENTION_HOME"] = str(args.home.resolve())
    from pipelines.monitoring import task_monitor
    from retention.settings import Settings

    settings = Settings.from_env()
    print(f"reviewer_walkthrough: monitoring the champion ({task_monitor(None, settings).get('status')})")
    experiment_id, run_id = training_run(settings.mlflow_tracking_uri, "retention-return")
    args.out.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    with (
        mlflow_ui(settings.mlflow_tracking_uri) as mlflow_url,
        serving_app(token) as app_url,
        browser() as driver,
    ):
        from selenium.webdriver.common.by import By

        # MLflow 3's UI opens in its GenAI mode whatever the experiment's kind: switch it to
        # "Model training" once (kept in the browser), then open the runs table itself
        driver.get(f"{mlflow_url}/#/experiments/{experiment_id}/runs")
        time.sleep(RENDER_SECONDS)
        for toggle in driver.find_elements(By.XPATH, "//*[normalize-space(text())='Model training']"):
            toggle.click()
            break
        time.sleep(2.0)
        for close in driver.find_elements(By.CSS_SELECTOR, "button[aria-label='Close']"):
            if close.is_displayed():  # the assistant's side panel
                close.click()
        # the [+] before a training run's name shows its baseline child runs
        for expander in driver.find_elements(
            By.CSS_SELECTOR, "button[data-component-id*='runnamecellrenderer']"
        ):
            expander.click()
            time.sleep(1.0)
        shoot(driver, driver.current_url, args.out / "mlflow_runs.png", wait=2.0)
        artifact = (
            f"{mlflow_url}/#/experiments/{experiment_id}/runs/{run_id}/artifacts/plots/comparison/roc.png"
        )
        shoot(driver, artifact, args.out / "mlflow_comparison.png")
        driver.get(f"{app_url}/ui/login")
        driver.find_element(By.ID, "token").send_keys(token)
        driver.find_element(By.ID, "login").click()
        wait_for(lambda: driver.current_url.endswith("/ui/campaigns"), "the login")
        shoot(driver, f"{app_url}/ui/model-health", args.out / "model_health.png", wait=1.0)


if __name__ == "__main__":
    main()
