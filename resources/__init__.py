"""Dagster resources: thin ``ConfigurableResource`` adapters over the domain core."""

from resources.config import ConfigResource
from resources.database import DatabaseResource

__all__ = ["ConfigResource", "DatabaseResource"]
