"""Database layer: table models, engine creation, migrations and idempotent bulk writes."""

from retention.db.engine import create_db_engine
from retention.db.migrate import upgrade
from retention.db.models import Base

__all__ = ["Base", "create_db_engine", "upgrade"]
