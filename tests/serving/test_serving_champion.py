"""A promotion reaches the running API without a restart; loads are cached per (name, version).

The shared registry must not change, so the test promotes in a private copy of the registry
database: version 2 is registered there from version 1's logged model (the artifacts themselves
are shared and only read), then `champion` is moved with MlflowClient.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from serving.models import ChampionModels, NoChampion
from tests.serving.conftest import MARKETING_TOKEN, auth, serve_copy
from tests.trained_platform import TrainedPlatform
from training.registry import CHAMPION

RETURN, RECOMMENDER = "retention-return", "retention-recommender"


def private_registry(platform: TrainedPlatform, folder: Path) -> str:
    """A copy of the platform's MLflow database (same artifact locations); returns its URI."""
    target = folder / "mlflow-copy.db"
    shutil.copyfile(platform.home / "mlflow.db", target)
    return f"sqlite:///{target}"


def register_copy(client: MlflowClient, name: str, of_version: str) -> str:
    """Register a new version of `name` from the logged model of `of_version`; returns its number."""
    source = client.get_model_version(name, of_version)
    return str(client.create_model_version(name, source.source, run_id=source.run_id).version)


def test_a_new_champion_is_served_on_the_next_request(
    trained_platform: TrainedPlatform, tmp_path: Path
) -> None:
    # given an API on a private registry, refreshing the alias on every request
    uri = private_registry(trained_platform, tmp_path)
    registry = MlflowClient(tracking_uri=uri)
    _, engine, app = serve_copy(trained_platform, tmp_path / "served", refresh_seconds=0, tracking_uri=uri)
    customer = "C0000000"
    with TestClient(app) as client:
        first = client.get(
            f"/customers/{customer}/recommendations", params={"k": 3}, headers=auth(MARKETING_TOKEN)
        )
        assert first.json()["model"]["version"] == "1"
        # when version 2 becomes the champion
        version = register_copy(registry, RECOMMENDER, "1")
        registry.set_registered_model_alias(RECOMMENDER, CHAMPION, version)
        # then the next request is served by it, with the same answer (the same weights)
        second = client.get(
            f"/customers/{customer}/recommendations", params={"k": 3}, headers=auth(MARKETING_TOKEN)
        )
        assert second.json()["model"] == {"name": RECOMMENDER, "version": version}
        assert second.json()["recommendations"] == first.json()["recommendations"]
        assert client.get("/healthz").json()["models"][RECOMMENDER] == version
        # and a rollback is picked up the same way
        registry.set_registered_model_alias(RECOMMENDER, CHAMPION, "1")
        third = client.get(
            f"/customers/{customer}/recommendations", params={"k": 3}, headers=auth(MARKETING_TOKEN)
        )
        assert third.json()["model"]["version"] == "1"
        # and without any champion the route is unavailable, not broken
        registry.delete_registered_model_alias(RECOMMENDER, CHAMPION)
        fourth = client.get(f"/customers/{customer}/recommendations", headers=auth(MARKETING_TOKEN))
        assert fourth.status_code == 503 and "no champion" in fourth.json()["detail"]
    engine.dispose()


def test_the_alias_is_reread_only_after_the_refresh_interval(
    trained_platform: TrainedPlatform, tmp_path: Path
) -> None:
    # given a cache with a long refresh interval and a counting loader
    uri = private_registry(trained_platform, tmp_path)
    registry = MlflowClient(tracking_uri=uri)
    loads: list[tuple[str, str]] = []
    models = ChampionModels(uri, refresh_seconds=3600, loader=lambda _, name, v: loads.append((name, v)) or v)
    assert models.get("return").version == "1"
    # when the champion moves
    version = register_copy(registry, RETURN, "1")
    registry.set_registered_model_alias(RETURN, CHAMPION, version)
    # then the cached alias is kept until the interval passes, and each version loads once
    assert models.get("return").version == "1"
    models.refresh_seconds = 0
    assert models.get("return").version == version
    assert models.get("return").version == version
    assert loads == [(RETURN, "1"), (RETURN, version)]
    # and with no champion at all, the kind is unavailable (503 in the API)
    registry.delete_registered_model_alias(RETURN, CHAMPION)
    with pytest.raises(NoChampion, match="no champion"):
        models.get("return")


def test_past_the_interval_requests_keep_the_old_champion_while_the_new_one_loads(
    trained_platform: TrainedPlatform, tmp_path: Path
) -> None:
    # given a cache with a short refresh interval whose loader blocks on any version but the first
    uri = private_registry(trained_platform, tmp_path)
    registry = MlflowClient(tracking_uri=uri)
    release = threading.Event()
    loads: list[tuple[str, str]] = []

    def loader(_: str, name: str, version: str) -> str:
        if loads:
            release.wait(30)
        loads.append((name, version))
        return version

    models = ChampionModels(uri, refresh_seconds=0.05, loader=loader)
    assert models.get("return").version == "1"
    # when the champion moves and a request comes past the interval while the new version loads
    version = register_copy(registry, RETURN, "1")
    registry.set_registered_model_alias(RETURN, CHAMPION, version)
    time.sleep(0.1)
    started = time.monotonic()
    assert models.get("return").version == "1"
    assert time.monotonic() - started < 1.0  # the request did not wait on the registry or the load
    # then the new champion is served once loaded, loaded once
    release.set()
    deadline = time.monotonic() + 30
    while models.get("return").version != version and time.monotonic() < deadline:
        time.sleep(0.02)
    assert models.get("return").version == version
    assert loads == [(RETURN, "1"), (RETURN, version)]
