"""Database layer: table models, engine creation, migrations and idempotent bulk writes."""

# Every table module is imported here, so `Base.metadata` always holds the whole schema.
from retention.db import models, platform, warehouse  # noqa: F401
from retention.db.base import Base
from retention.db.engine import create_db_engine
from retention.db.migrate import upgrade

__all__ = ["Base", "create_db_engine", "upgrade"]
