"""The champion models the API serves: loaded once per (name, version), the alias re-read periodically.

A promotion moves the registry's `champion` alias; the next request after the refresh interval sees
the new version, loads it (once) and serves it, without a restart. A failing registry keeps the
model already loaded in service and logs the failure instead of failing requests.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlflow import MlflowClient

from training.families import FAMILIES, family
from training.registry import CHAMPION, alias_version, load_native

log = logging.getLogger("retention.serving")


class NoChampion(LookupError):
    """A model kind has no champion in the registry (nothing was promoted yet)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"{name} has no champion yet (see `retention models list`)")
        self.name = name


@dataclass(frozen=True)
class ServedModel:
    """A loaded champion: its registered name, version and native model."""

    name: str
    version: str
    model: Any


class ChampionModels:
    """Champion models by kind ("return", "recommender"), cached per (name, version).

    Args:
        tracking_uri: the MLflow registry.
        refresh_seconds: the alias is re-read at most this often per kind (0: on every call).
        loader: (tracking_uri, name, version) -> native model (tests may count the loads).
    """

    def __init__(
        self,
        tracking_uri: str,
        refresh_seconds: float,
        loader: Callable[[str, str, str], Any] = load_native,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.refresh_seconds = refresh_seconds
        self.loader = loader
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self._lock = threading.Lock()
        self._loaded: dict[tuple[str, str], Any] = {}
        self._champion: dict[str, str | None] = {}  # name -> version last read from the alias
        self._checked: dict[str, float] = {}  # name -> monotonic time of that read

    def _champion_version(self, name: str) -> str | None:
        now = time.monotonic()
        last = self._checked.get(name)
        if last is not None and now - last < self.refresh_seconds:
            return self._champion[name]
        try:
            version = alias_version(self.client, name, CHAMPION)
        except Exception:  # the registry is down: keep serving what we have, loudly
            if name not in self._champion:
                raise
            log.exception("cannot read the %s champion alias; serving version %s", name, self._champion[name])
            return self._champion[name]
        if version != self._champion.get(name) and name in self._champion:
            log.info("%s champion moved from %s to %s", name, self._champion[name], version)
        self._champion[name], self._checked[name] = version, now
        return version

    def get(self, kind: str) -> ServedModel:
        """The current champion of `kind`, loading it on first use.

        Raises:
            NoChampion: nothing is promoted for this kind.
        """
        name = family(kind).registered_name
        with self._lock:  # one alias read and at most one load at a time
            version = self._champion_version(name)
            if version is None:
                raise NoChampion(name)
            key = (name, version)
            if key not in self._loaded:
                started = time.perf_counter()
                model = self.loader(self.tracking_uri, name, version)
                # keep one version per name in memory: a replaced champion is released
                self._loaded = {k: v for k, v in self._loaded.items() if k[0] != name} | {key: model}
                log.info("loaded %s version %s in %.1fs", name, version, time.perf_counter() - started)
            return ServedModel(name, version, self._loaded[key])

    def served_versions(self) -> dict[str, str | None]:
        """The champion version last read per registered model (None: never read or none promoted)."""
        # No lock: /healthz calls this on the event loop and must not wait behind a model load; one
        # dict lookup per name is atomic, and a version read a moment early is as good as one read late.
        return {name: self._champion.get(name) for name in (f.registered_name for f in FAMILIES.values())}
