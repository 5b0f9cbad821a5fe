"""The app database as a Dagster resource (SQLite by default, Postgres in production)."""

from __future__ import annotations

from functools import lru_cache

import dagster as dg
from pydantic import Field
from sqlalchemy import Engine

from alphapulse_dagster.db.engine import database_url, make_engine


@lru_cache(maxsize=8)
def _engine_for(url: str) -> Engine:
    # one pool per process and URL: a sensor tick or a run reuses connections
    return make_engine(url)


class DatabaseResource(dg.ConfigurableResource):
    """The app database. ``url`` comes from ``ALPHAPULSE_DATABASE_URL`` (``dg.EnvVar``);
    empty means the embedded SQLite file ``.alphapulse/alphapulse.db``."""

    url: str = Field(
        default="",
        description="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db; empty = SQLite",
    )

    def resolved_url(self) -> str:
        return database_url(self.url or None)

    def get_engine(self) -> Engine:
        return _engine_for(self.resolved_url())
