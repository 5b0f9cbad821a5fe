"""What the read endpoints accept in a query, checked: a UTC time, text without NUL. A bad
value is a 422 that names it, in FastAPI's own error shape. And the app's engine."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import HTTPException, Request
from sqlalchemy import Engine

from alphapulse_dagster.clock import as_utc


def app_engine(request: Request) -> Engine:
    """The database the app serves (``app.state.engine``)."""
    engine: Engine = request.app.state.engine
    return engine


def query_error(name: str, message: str) -> dict[str, Any]:
    return {"loc": ["query", name], "msg": message, "type": "value_error"}


def utc_time(value: datetime | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return as_utc(value)
    except (OverflowError, ValueError):
        raise HTTPException(
            status_code=422, detail=[query_error(name, "datetime out of range")]
        ) from None


def plain_text(value: str | None, name: str) -> str | None:
    if value is not None and "\x00" in value:
        raise HTTPException(status_code=422, detail=[query_error(name, "NUL character")])
    return value
