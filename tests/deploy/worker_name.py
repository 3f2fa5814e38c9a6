"""`[core] hostname_callable` for the Celery test: each worker records its own name on the task instances.

Both test workers run on one machine, so the default (the FQDN) could not tell them apart.
"""

from __future__ import annotations

import os
import socket


def worker_name() -> str:
    """RETENTION_TEST_WORKER_NAME when set (a test worker), else this machine's FQDN."""
    return os.environ.get("RETENTION_TEST_WORKER_NAME") or socket.getfqdn()
