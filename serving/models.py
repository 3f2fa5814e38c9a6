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
        self._refreshing: set[str] = set()  # names whose alias a background thread is re-reading

    def _read_alias(self, name: str) -> str | None:
        """The champion alias's version now; a failing registry keeps the version read last, if any."""
        try:
            version = alias_version(self.client, name, CHAMPION)
        except Exception:  # the registry is down: keep serving what we have, loudly
            if name not in self._champion:
                raise
            log.exception("cannot read the %s champion alias; serving version %s", name, self._champion[name])
            return self._champion[name]
        if version != self._champion.get(name) and name in self._champion:
            log.info("%s champion moved from %s to %s", name, self._champion[name], version)
        return version

    def _load(self, name: str, version: str) -> Any:
        """The native model of a version, loaded unless it is the one in memory."""
        loaded = self._loaded.get((name, version))
        if loaded is not None:
            return loaded
        started = time.perf_counter()
        model = self.loader(self.tracking_uri, name, version)
        log.info("loaded %s version %s in %.1fs", name, version, time.perf_counter() - started)
        return model

    def _keep(self, name: str, version: str | None, model: Any) -> None:
        """Record the alias's version and its model (under the lock); a replaced champion is released."""
        if version is not None:
            self._loaded = {k: v for k, v in self._loaded.items() if k[0] != name} | {(name, version): model}
        self._champion[name], self._checked[name] = version, time.monotonic()

    def _refresh(self, name: str) -> None:
        """Re-read the alias and load a new champion in the background; requests meanwhile get the old one."""
        try:
            version = self._read_alias(name)
            model = None if version is None else self._load(name, version)
            with self._lock:
                self._keep(name, version, model)
        except Exception:  # the next request past the interval tries again
            log.exception(
                "cannot refresh the %s champion; serving version %s", name, self._champion.get(name)
            )
        finally:
            with self._lock:
                self._refreshing.discard(name)

    def current(self, kind: str) -> ServedModel | None:
        """The champion of `kind` in memory, without waiting on the registry: cheap enough for the event loop.

        Past the refresh interval one background thread re-reads the alias and loads a new champion
        while callers keep the current one. None when the alias must be read now: on the first call
        for the kind, and on every call with an interval of 0 (`get` reads it).

        Raises:
            NoChampion: the alias, as last read, names no version.
        """
        name = family(kind).registered_name
        if self.refresh_seconds <= 0 or name not in self._checked:  # no lock: `get` may hold it to load
            return None
        with self._lock:
            if (
                time.monotonic() - self._checked[name] >= self.refresh_seconds
                and name not in self._refreshing
            ):
                self._refreshing.add(name)
                threading.Thread(
                    target=self._refresh, args=(name,), name="champion-refresh", daemon=True
                ).start()
            version = self._champion[name]
            if version is None:
                raise NoChampion(name)
            return ServedModel(name, version, self._loaded[(name, version)])

    def get(self, kind: str) -> ServedModel:
        """The current champion of `kind`, reading the alias and loading the model on first use.

        The first call per kind, and every call with a refresh interval of 0, reads the alias (and
        loads a new version) in the caller's thread; later calls are `current`'s.

        Raises:
            NoChampion: nothing is promoted for this kind.
        """
        served = self.current(kind)
        if served is not None:
            return served
        name = family(kind).registered_name
        with self._lock:  # one alias read and at most one load at a time
            version = self._read_alias(name)
            self._keep(name, version, None if version is None else self._load(name, version))
            if version is None:
                raise NoChampion(name)
            return ServedModel(name, version, self._loaded[(name, version)])

    def served_versions(self) -> dict[str, str | None]:
        """The champion version last read per registered model (None: never read or none promoted)."""
        # No lock: /healthz calls this on the event loop and must not wait behind a model load; one
        # dict lookup per name is atomic, and a version read a moment early is as good as one read late.
        return {name: self._champion.get(name) for name in (f.registered_name for f in FAMILIES.values())}
