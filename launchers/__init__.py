"""Dagster instance plug-ins named in ``deploy/dagster.yaml`` (thin, no domain code)."""
