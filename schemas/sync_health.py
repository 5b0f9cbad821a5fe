"""Contracts of the hybrid sync's health checks: the latest system health report against
the configured thresholds, and the audit trail of one sync run (no field's confidence ever
goes down). Used by the ``health_thresholds`` and ``reconciliation_monotonicity`` asset
checks (lazy validation, failure cases in metadata)."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa

from alphapulse_dagster.config import HealthThresholds


def health_thresholds_schema(thresholds: HealthThresholds) -> pa.DataFrameSchema:
    """One row, the latest report: the system health score (0-100) at or above
    ``min_health_score``, the signal coverage (a share, 0-1; empty when no signal was
    confirmed) at or above ``min_signal_coverage``."""
    return pa.DataFrameSchema(
        {
            "health_score": pa.Column(float, pa.Check.ge(thresholds.min_health_score)),
            "signal_coverage": pa.Column(
                float, pa.Check.ge(thresholds.min_signal_coverage), nullable=True
            ),
        },
        coerce=True,
    )


def _never_lowered(frame: pd.DataFrame) -> pd.Series:
    return frame["old_confidence"].isna() | (frame["confidence"] >= frame["old_confidence"])


# one row per audit row of a run: a field written with ``confidence`` over one held at
# ``old_confidence`` (empty when the field was empty)
AUDIT_MONOTONICITY = pa.DataFrameSchema(
    {
        "signal_id": pa.Column(str),
        "field": pa.Column(str),
        "confidence": pa.Column(float, pa.Check.in_range(0, 1)),
        "old_confidence": pa.Column(float, pa.Check.in_range(0, 1), nullable=True),
    },
    checks=pa.Check(_never_lowered, name="confidence_never_lowered"),
    coerce=True,
)
