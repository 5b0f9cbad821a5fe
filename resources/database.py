"""The app database as a Dagster resource (SQLite by default, Postgres in production)."""

from __future__ import annotations

from functools import lru_cache

import dagster as dg
from pydantic import Field
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from alphapulse_dagster.db.engine import database_url, make_engine
from alphapulse_dagster.db.migrate import ensure_schema


@lru_cache(maxsize=8)
def _engine_for(url: str) -> Engine:
    # one pool per process and URL: a sensor tick or a run reuses connections
    if make_url(url).get_backend_name() == "sqlite":
        ensure_schema(url)  # the embedded database is created and migrated on first use
    return make_engine(url)


class DatabaseResource(dg.ConfigurableResource):
    """The app database. ``url`` comes from ``ALPHAPULSE_DATABASE_URL`` (``dg.EnvVar``);
    empty means the embedded SQLite file ``.alphapulse/alphapulse.db``. A SQLite database
    is created and migrated on first use; Postgres by ``alphapulse db upgrade``."""

    url: str = Field(
        default="",
        description="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db; empty = SQLite",
    )

    def resolved_url(self) -> str:
        return database_url(self.url or None)

    def get_engine(self) -> Engine:
        return _engine_for(self.resolved_url())
