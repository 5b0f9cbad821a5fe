"""Shared fixtures: real SQLite, real Postgres, real Redis.

Postgres and Redis tests skip with a one-line reason when the server is absent locally, and
FAIL instead of skipping when ``CI=true``. Each test session gets its own Postgres database
(created and dropped here) and its own Redis key namespace, so parallel runs don't collide.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from alphapulse_dagster.db.engine import make_engine
from alphapulse_dagster.db.migrate import upgrade
from tests.sample_data import SAMPLE_DIR

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_ADMIN_URL = os.environ.get(
    "ALPHAPULSE_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_TEST_URL = os.environ.get("ALPHAPULSE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(autouse=True)
def _no_outer_dagster_home(monkeypatch: pytest.MonkeyPatch) -> None:
    """``make test`` exports the dev ``DAGSTER_HOME``; a test that wants an instance sets
    its own, so nothing a test does (e.g. ``import-candles`` marking partitions) lands in
    the developer's instance."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)


def _unavailable(what: str, error: Exception) -> None:
    message = f"{what} not reachable ({type(error).__name__}: {error})"
    if IN_CI:
        pytest.fail(f"CI=true and {message}: real services are required in CI", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def pg_admin_engine() -> Iterator[sa.Engine]:
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except Exception as exc:
        engine.dispose()
        _unavailable("PostgreSQL", exc)
    yield engine
    engine.dispose()


def _new_pg_database(admin: sa.Engine) -> str:
    name = f"alphapulse_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    return name


def _drop_pg_database(admin: sa.Engine, name: str) -> None:
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _pg_url(name: str) -> str:
    return sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


@contextmanager
def _scratch_pg_database(admin: sa.Engine, migrated: bool = True) -> Iterator[str]:
    name = _new_pg_database(admin)
    url = _pg_url(name)
    if migrated:
        upgrade(url)
    try:
        yield url
    finally:
        _drop_pg_database(admin, name)


@pytest.fixture
def pg_url(pg_admin_engine: sa.Engine) -> Iterator[str]:
    """A fresh, migrated Postgres database for one test."""
    with _scratch_pg_database(pg_admin_engine) as url:
        yield url


@pytest.fixture
def second_pg_url(pg_admin_engine: sa.Engine) -> Iterator[str]:
    """Another fresh, migrated Postgres database (for comparing two runs)."""
    with _scratch_pg_database(pg_admin_engine) as url:
        yield url


@pytest.fixture
def empty_pg_url(pg_admin_engine: sa.Engine) -> Iterator[str]:
    """A fresh Postgres database with no schema (for migration tests)."""
    with _scratch_pg_database(pg_admin_engine, migrated=False) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh, migrated SQLite database file for one test."""
    url = f"sqlite:///{tmp_path / 'alphapulse.db'}"
    upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Run the test once on SQLite and once on the real Postgres."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def redis_url() -> str:
    import redis

    client = redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        client.ping()
    except Exception as exc:
        _unavailable("Redis", exc)
    finally:
        client.close()
    return REDIS_TEST_URL


@pytest.fixture
def redis_namespace(redis_url: str) -> Iterator[str]:
    """A unique key prefix; its keys are deleted after the test."""
    import redis

    prefix = f"test:{uuid.uuid4().hex[:10]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)
    client.close()


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE_DIR
