"""The one place where the Dagster ``Definitions`` are assembled.

Each domain (``assets/market_data.py``, ``assets/mtf_signals.py``,
``assets/hybrid_sync.py``) owns its assets, checks, jobs, schedules and sensors and exposes
``defs``; this module merges them and binds the shared resources, whose values come from
the environment through ``dg.EnvVar`` (``make dev`` exports them; an empty value means
"embedded default / absent").
"""

from __future__ import annotations

import dagster as dg

from assets import hybrid_sync, market_data, mtf_signals
from resources import ConfigResource, DatabaseResource
from resources.cache import SignalCacheResource
from resources.market_data import MarketDataResource
from sensors import operations

resources = {
    "database": DatabaseResource(url=dg.EnvVar("ALPHAPULSE_DATABASE_URL")),
    "app_config": ConfigResource(config_dir=dg.EnvVar("ALPHAPULSE_CONFIG_DIR")),
    "market_data": MarketDataResource(csv_dir=dg.EnvVar("ALPHAPULSE_MARKET_DATA_DIR")),
    "signal_cache": SignalCacheResource(url=dg.EnvVar("ALPHAPULSE_REDIS_URL")),
}

defs = dg.Definitions.merge(
    market_data.defs,
    mtf_signals.defs,
    hybrid_sync.defs,
    operations.defs,
    dg.Definitions(resources=resources),
)
