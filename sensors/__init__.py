"""Dagster sensors and schedules (thin: each calls the core or the Dagster instance)."""
