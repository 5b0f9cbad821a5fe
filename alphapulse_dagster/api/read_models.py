"""The read API's response models: what ``GET /signals``, ``GET /signals/{id}``,
``GET /health`` and ``GET /healthz`` answer (prices in quote currency, MFE/MAE in R,
times UTC)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

Status = Literal["PENDING", "CONFIRMED", "CLOSED", "CANCELLED"]


class Unauthorized(BaseModel):
    detail: str


class SignalItem(BaseModel):
    """One registry row. Prices in quote currency; ``mfe``/``mae`` in R; times UTC;
    ``confirmation_time`` in seconds from SIGNAL_CREATED to ENTRY."""

    signal_id: str
    source: str
    trade_id: str | None = None
    symbol: str
    direction: str | None = None
    timeframe: str | None = None
    status: str
    status_reason: str | None = None
    status_confidence: float | None = None
    signal_time: datetime | None = None
    created_at: datetime | None = None
    confirmed_at: datetime | None = None
    confirmation_time: float | None = None
    entry_price: float | None = None
    stop_loss: float | None = None
    targets: list[Any] | None = None
    htf_alignment: dict[str, Any] | None = None
    session: str | None = None
    market_state: str | None = None
    mfe: float | None = None
    mae: float | None = None
    mfe_price: float | None = None
    mae_price: float | None = None
    highest: float | None = None
    lowest: float | None = None
    target_hit: int | None = None
    stop_hit: bool | None = None
    last_mfe_update_at: datetime | None = None
    exit_price: float | None = None
    exit_reason: str | None = None
    closed_at: datetime | None = None
    cancelled_at: datetime | None = None
    health_score: float | None = None
    entry_strategy: str | None = Field(
        default=None, description="the MTF entry strategy (AlphaPulse signals only)"
    )
    gaps: list[str] = Field(default_factory=list, description="open gap types")
    field_provenance: dict[str, Any] = Field(
        default_factory=dict, description="field -> {tier, confidence, source, …}"
    )
    updated_at: datetime | None = None


class SignalPage(BaseModel):
    items: list[SignalItem]
    next_cursor: str | None = None


class EventItem(BaseModel):
    event_id: int
    source: str
    event_type: str
    event_time: datetime
    received_at: datetime
    idempotency_key: str
    payload: dict[str, Any]
    inferred: bool = Field(
        default=False, description="appended by the sync (an inferred expiry), not reported"
    )
    superseded: bool = Field(
        default=False,
        description="an inferred expiry that no longer holds (a later ENTRY "
        "re-opened the signal, or an explicit event outranked it)",
    )


class AuditItem(BaseModel):
    audit_id: int
    sync_run_id: str
    field: str
    old_value: Any = None
    new_value: Any = None
    tier: str
    confidence: float
    reason: str
    action_timestamp: datetime


class GapItem(BaseModel):
    gap_type: str
    kind: str
    weight: float
    fillable: bool
    detected_at: datetime


class SignalDetail(SignalItem):
    events: list[EventItem] = Field(description="the event timeline, in event_time order")
    audit: list[AuditItem]
    gap_details: list[GapItem] = Field(description="open gaps with kind, weight, fillable")
    outcome: dict[str, Any] | None = Field(
        default=None,
        description="what the signal did after it fired, read from candles (SPEC §17): "
        "status OPEN / CLOSED / NOT_FILLED, fill, exit, R, MFE/MAE in R and price, bars "
        "held, the same-bar ambiguity flag, a TradingView signal's reported exit beside it, "
        "and the counterfactual entry modes; null until the outcomes asset has read it",
    )


class WebhookSpool(BaseModel):
    pending_bytes: int = Field(description="spooled bytes not yet replayed")
    dead_letters: int = Field(
        description="records set aside (unreadable, or refused by the database); kept in "
        "`dead_letter_file`, never deleted"
    )
    dead_letter_file: str


class HealthReport(BaseModel):
    """The latest persisted health report (SPEC §9, §16); zeros before the first sync."""

    total_gaps: int
    health_score: float
    gap_breakdown: dict[str, Any]
    signal_coverage: float | None = None
    data_confidence: float | None = None
    manual_intervention: int
    signals: int
    measured_at: datetime | None = None
    sync_run_id: str | None = None
    webhook_spool: WebhookSpool | None = Field(
        default=None, description="this server's webhook spool (SPEC §14)"
    )


class Liveness(BaseModel):
    status: Literal["ok", "degraded"]
    database: Literal["ok", "unavailable"]
    spool_pending_bytes: int = Field(description="spooled webhook bytes not yet replayed")
    spool_dead_letters: int = Field(
        description="spool records set aside (unreadable or refused) in the dead-letter file"
    )
    rejects_dropped: int = Field(
        description="refused webhooks not written to webhook_rejects (rate limit or cap), "
        "requests turned away unread (429) included"
    )
