"""AlphaPulse: the domain core of a crypto trading-signal desk (no Dagster imports here,
except in :mod:`alphapulse_dagster.definitions`, where the Dagster layer is assembled)."""

__version__ = "0.1.0"
