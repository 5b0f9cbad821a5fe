"""Alembic, driven from code: ``alphapulse db upgrade`` and the tests call :func:`upgrade`."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config

from alphapulse_dagster.db.engine import database_url, make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
log = logging.getLogger(__name__)


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # '%' must be escaped for ConfigParser interpolation
    config.set_main_option("sqlalchemy.url", database_url(url).replace("%", "%%"))
    return config


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Create or upgrade the schema of the app database to ``revision``."""
    command.upgrade(alembic_config(url), revision)


def current_revision(url: str | None = None) -> str | None:
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def ensure_schema(url: str) -> bool:
    """Create or upgrade the schema when it is behind the code; True when it did.

    For the embedded SQLite database only (the Dagster resource calls it once per process):
    plain ``dagster dev`` or ``dagster asset materialize`` on a fresh checkout then works
    without ``alphapulse db upgrade`` first. A Postgres database is migrated deliberately,
    by ``alphapulse db upgrade`` in the deployment.
    """
    if current_revision(url) == head_revision():
        return False
    log.info("migrating the embedded database %s to the current schema", url)
    upgrade(url)
    return True
