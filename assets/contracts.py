"""pandera contracts as Dagster asset-check results: the schema is the single source of the
rule; a check runs it lazily and puts the failure cases in its metadata."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pandera.pandas as pa

MAX_CASES_SHOWN = 20


def contract_check(
    schema: type[pa.DataFrameModel] | pa.DataFrameSchema,
    frame: pd.DataFrame,
    *,
    asset_key: str,
    check_name: str,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> dg.AssetCheckResult:
    """Validate ``frame`` against ``schema`` (all failures collected) as a check result."""
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        by_check = cases.groupby("check")["index"].nunique().to_dict()
        failing_rows = sorted({int(i) for i in cases["index"].dropna()})
        shown = frame.loc[[i for i in failing_rows if i in frame.index][:MAX_CASES_SHOWN]]
        return dg.AssetCheckResult(
            asset_key=asset_key,
            check_name=check_name,
            passed=False,
            severity=severity,
            metadata={
                "rows_checked": len(frame),
                "failing_rows": len(failing_rows),
                "failures_by_check": dg.MetadataValue.json(
                    {str(k): int(v) for k, v in by_check.items()}
                ),
                "failure_cases": dg.MetadataValue.md(shown.to_markdown() if len(shown) else "-"),
            },
        )
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=check_name,
        passed=True,
        severity=severity,
        metadata={"rows_checked": len(frame), "failing_rows": 0},
    )
