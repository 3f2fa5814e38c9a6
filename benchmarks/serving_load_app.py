"""The API that benchmarks/serving_load.py serves: the real app plus `/bench/hello`, the ceiling route.

`/bench/hello` goes through the same middleware (overload guard included) and the same threadpool as
the customer routes but does no work, so its latency in the same run is what the server itself costs
under that load. It exists only in this benchmark's app, never in the product's.
"""

from __future__ import annotations

from fastapi import FastAPI

from serving.app import create_app

HELLO_PATH = "/bench/hello"


def bench_app() -> FastAPI:
    """The API from the environment (as `retention serve` builds it), with the hello-world route."""
    app = create_app()

    @app.get(HELLO_PATH, include_in_schema=False)
    def hello() -> dict[str, str]:  # sync, like the customer routes: a worker thread per request
        return {"hello": "world"}

    return app
