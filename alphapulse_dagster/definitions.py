"""The one place where the Dagster ``Definitions`` are assembled.

Each domain (``assets/market_data.py``, ``assets/mtf_signals.py``, ``assets/hybrid_sync.py``,
``assets/analytics.py``) owns its assets, checks, jobs, schedules and sensors and exposes
``defs``; this module merges them and binds the shared resources, whose values come from
the environment through ``dg.EnvVar``.

An unset ``ALPHAPULSE_*`` variable means its embedded default (SPEC §2), so plain
``dagster dev`` / ``dagster asset materialize`` work from the project root with nothing
exported. Dagster's ``EnvVar`` has no default (an unset one fails the run), so a field is
bound to ``EnvVar`` only when its variable is set; otherwise it keeps the resource's own
default, which is resolved when the run uses it. Definitions are loaded again in every run
process from the same environment, so the decision is the same there.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import dagster as dg

from assets import analytics, hybrid_sync, market_data, mtf_signals
from resources import ConfigResource, DatabaseResource
from resources.cache import SignalCacheResource
from resources.market_data import MarketDataResource
from sensors import mtf_signals as mtf_schedules
from sensors import operations


def env_or_default(name: str) -> str:
    """``dg.EnvVar(name)`` when ``name`` is set (its value is read at run time and never
    stored in the definitions), else ``""``: the resource's embedded default."""
    return dg.EnvVar(name) if name in os.environ else ""


resources = {
    "database": DatabaseResource(url=env_or_default("ALPHAPULSE_DATABASE_URL")),
    "app_config": ConfigResource(config_dir=env_or_default("ALPHAPULSE_CONFIG_DIR")),
    "market_data": MarketDataResource(csv_dir=env_or_default("ALPHAPULSE_MARKET_DATA_DIR")),
    "signal_cache": SignalCacheResource(url=env_or_default("ALPHAPULSE_REDIS_URL")),
}


def with_code_references(domains: dg.Definitions, resources: Mapping[str, Any]) -> dg.Definitions:
    """The domains' definitions with the shared resources, every asset linked to the file
    and line that defines it (the UI's code references)."""
    return dg.Definitions(
        assets=dg.with_source_code_references(list(domains.assets or [])),
        asset_checks=domains.asset_checks,
        jobs=domains.jobs,
        schedules=domains.schedules,
        sensors=domains.sensors,
        resources=resources,
        # every asset job (the UI's materialisations and backfills, `dagster asset
        # materialize`) runs its steps in the run's own process: the desk's steps are a
        # short chain with nothing to parallelise, and a process per step would load the
        # definitions again each time
        executor=dg.in_process_executor,
    )


defs = with_code_references(
    dg.Definitions.merge(
        market_data.defs,
        mtf_signals.defs,
        mtf_schedules.defs,
        hybrid_sync.defs,
        analytics.defs,
        operations.defs,
    ),
    resources,
)
