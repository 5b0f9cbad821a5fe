"""The desk's YAML configuration as a Dagster resource."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from alphapulse_dagster.config import AppConfig, load_config


class ConfigResource(dg.ConfigurableResource):
    """``symbol_config.yaml`` + ``mtf_config.yaml`` from ``config_dir``
    (``ALPHAPULSE_CONFIG_DIR``; empty = ``config/`` or the bundled copy)."""

    config_dir: str = Field(default="", description="folder holding both YAML files")

    def load(self) -> AppConfig:
        return load_config(self.config_dir or None)
