"""The API under uvicorn on a free loopback port, for the serving benchmarks (as `retention serve` runs it)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
STARTUP_SECONDS = 180  # every worker loads both champions before it answers


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_uvicorn(app: str, env: dict[str, str], port: int, *options: str) -> subprocess.Popen:
    """`uvicorn APP --factory` on 127.0.0.1:port; returns once /healthz answers 200.

    Raises:
        RuntimeError: the server exited, or did not answer within STARTUP_SECONDS (it is killed).
    """
    command = [sys.executable, "-m", "uvicorn", app, "--factory", *options]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"]
    server = subprocess.Popen(command, env=env, cwd=ROOT)
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if server.poll() is not None:
            raise RuntimeError(f"the API exited with {server.returncode}")
        time.sleep(0.5)
    server.kill()
    raise RuntimeError(f"the API did not answer within {STARTUP_SECONDS}s")
