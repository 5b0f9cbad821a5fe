"""``GET /analytics/strategies`` (SPEC §16–17): the strategy evaluation over stored
outcomes, grouped, with seeded bootstrap intervals and the paired refined-vs-market ΔR."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from sqlalchemy import Engine

from alphapulse_dagster.analytics.strategy_performance import (
    GROUP_KEYS,
    check_group_by,
    strategy_report,
)
from alphapulse_dagster.api.auth import require_token
from alphapulse_dagster.clock import as_utc

router = APIRouter(dependencies=[Depends(require_token)])


@router.get(
    "/analytics/strategies",
    tags=["analytics"],
    summary="Which entries, heads and contexts pay: expectancy with intervals per group",
    description="Per group: n (closed trades), n_signals, fill_rate, win_rate (first target "
    "hit before the stop) and profitable_rate (R > 0) as fractions, "
    "expectancy_r with a seeded bootstrap 95% interval, profit_factor, max_drawdown_r, "
    "mean_mfe_r, mean_mae_r, entry_improvement_bps and flag (small_sample when n < 30, "
    "ci_crosses_zero when the interval holds 0: not a finding). paired: refined limits vs "
    "the same signals at market (delta_r, delta_ci, n, missed_r). group_by: "
    + ", ".join(GROUP_KEYS)
    + " or head:<name>.",
)
def get_strategies(
    request: Request,
    since: Annotated[datetime | None, Query(description="signal time, inclusive, UTC")] = None,
    until: Annotated[datetime | None, Query(description="signal time, exclusive, UTC")] = None,
    source: Annotated[str | None, Query(max_length=16)] = None,
    symbol: Annotated[str | None, Query(max_length=40)] = None,
    group_by: Annotated[str, Query(max_length=72)] = "entry_strategy",
) -> dict[str, Any]:
    try:
        check_group_by(group_by)
    except ValueError as exc:
        raise HTTPException(
            status_code=422, detail={"field": "group_by", "error": str(exc)}
        ) from None
    engine: Engine = request.app.state.engine
    with engine.connect() as connection:
        return strategy_report(
            connection,
            since=as_utc(since) if since else None,
            until=as_utc(until) if until else None,
            source=source,
            symbol=symbol,
            group_by=group_by,
        )
