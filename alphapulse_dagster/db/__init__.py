"""Storage: SQLAlchemy 2 Core tables, the engine, migrations. The one database access layer."""

from alphapulse_dagster.db.engine import DEFAULT_DATABASE_URL, database_url, make_engine
from alphapulse_dagster.db.tables import metadata

__all__ = ["DEFAULT_DATABASE_URL", "database_url", "make_engine", "metadata"]
