"""The HTTP API (FastAPI): webhook ingestion and the read API."""

from alphapulse_dagster.api.app import create_app, create_app_from_env
from alphapulse_dagster.api.settings import ApiSettings

__all__ = ["ApiSettings", "create_app", "create_app_from_env"]
