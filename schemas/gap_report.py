"""Contract of the gap report: one row per open gap (``signal_gaps`` with ``resolved_at``
NULL). Used by the ``gap_report`` asset check (lazy validation, failure cases in metadata)."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing.pandas import Series

from alphapulse_dagster.sync.gap_rules import GAP_TYPES


class GapReportSchema(pa.DataFrameModel):
    """An open gap: a known type and kind, a weight in [0, 100], a fillability flag, and at
    most one open gap per (signal, type)."""

    signal_id: Series[str] = pa.Field(nullable=False, str_length={"min_value": 1})
    gap_type: Series[str] = pa.Field(isin=list(GAP_TYPES))
    kind: Series[str] = pa.Field(isin=["actionable", "expected"])
    weight: Series[float] = pa.Field(ge=0, le=100)
    fillable: Series[bool]
    detected_at: Series[pd.DatetimeTZDtype] = pa.Field(
        dtype_kwargs={"unit": "us", "tz": "UTC"}, coerce=True
    )

    class Config:
        unique = ["signal_id", "gap_type"]
        strict = False
