"""A private, throw-away PostgreSQL schema: isolates tests and benchmarks on a shared server."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


@contextlib.contextmanager
def private_schema(server_url: str, prefix: str = "scratch") -> Iterator[str]:
    """Create a fresh schema and yield a URL whose connections use it; drop it afterwards.

    Args:
        server_url: a PostgreSQL URL the caller may create schemas with.
        prefix: start of the schema's name (a random suffix follows).

    Yields:
        `server_url` with `search_path` set to the new schema (tables, Alembic's version table too).
    """
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url)
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(server_url).update_query_dict({"options": f"-csearch_path={schema}"})
        try:
            yield url.render_as_string(hide_password=False)
        finally:
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()
