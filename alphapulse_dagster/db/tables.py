"""Every table of SPEC §7, as SQLAlchemy 2 Core metadata (same schema on SQLite and Postgres).

Ownership (one owner per fact):

- ``candles`` — written by the candles asset / ``import-candles`` (idempotent upsert).
- ``ai_signals_mtf`` and ``mtf_entry_analysis_history`` — written by the MTF pipeline.
- ``signal_events`` — the append-only lifecycle log; webhooks and the MTF pipeline append.
- ``webhook_rejects`` — every webhook that was refused, with the reason.
- ``signals`` — the registry: a projection of ``signal_events`` (lifecycle fields) that the
  hybrid sync enriches field by field, with provenance in ``field_provenance``.
- ``signal_gaps``, ``signal_health_metrics``, ``sync_audit_log`` — written by the sync.
- ``signal_outcomes`` and ``strategy_performance`` — written by the analytics assets
  (SPEC §17): what each signal did after it fired, per entry mode, and the figures per
  group and day.

Times are UTC (:class:`UtcDateTime`); prices are floats in quote currency; MFE/MAE in
``signals`` are in R multiples (``*_price`` columns in price units).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from alphapulse_dagster.db.types import BigId, JsonDoc, UtcDateTime

# The single definition of "active": a signal in one of these states blocks another signal
# for the same symbol and direction (ai_signals_mtf) and is tracked in Redis.
ACTIVE_STATUSES: tuple[str, ...] = ("PENDING", "CONFIRMED")
_ACTIVE_SQL = text("status IN ('PENDING', 'CONFIRMED')")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Price = Float(53)

candles = Table(
    "candles",
    metadata,
    Column("symbol", String(40), primary_key=True),
    Column("timeframe", String(8), primary_key=True),
    Column("open_time", UtcDateTime, primary_key=True, comment="bar OPEN time, UTC"),
    Column("open", Price, nullable=False),
    Column("high", Price, nullable=False),
    Column("low", Price, nullable=False),
    Column("close", Price, nullable=False),
    Column("volume", Price, nullable=False),
)

ai_signals_mtf = Table(
    "ai_signals_mtf",
    metadata,
    Column("signal_id", String(36), primary_key=True, comment="UUID"),
    Column("symbol", String(40), nullable=False),
    Column("direction", String(5), nullable=False, comment="LONG | SHORT"),
    Column("signal_timeframe", String(8), nullable=False),
    Column("entry_timeframe", String(8), nullable=False),
    Column("timestamp", UtcDateTime, nullable=False, comment="signal bar CLOSE time, UTC"),
    Column("signal_confidence", Float, nullable=False),
    Column("model_heads_analysis", JsonDoc, nullable=False),
    Column("market_price", Price, nullable=False),
    Column("entry_price", Price, nullable=False),
    Column("stop_loss", Price, nullable=False),
    Column("take_profits", JsonDoc, nullable=False, comment="prices, nearest first"),
    Column("targets_r", JsonDoc, nullable=False, comment="R multiple of each target"),
    Column("risk_reward_ratio", Float, nullable=False),
    Column("entry_strategy", String(64), nullable=False),
    Column("entry_pattern", String(64), nullable=False),
    Column("entry_confidence", Float, nullable=False),
    Column("atr", Price, nullable=False, comment="entry-TF ATR(14) at timestamp"),
    Column("entry_improvement_bps", Float, nullable=False),
    Column("fallback_reason", Text, nullable=True),
    Column(
        "htf_alignment", JsonDoc, nullable=False, comment="timeframe -> BULLISH|BEARISH|NEUTRAL"
    ),
    Column("htf_agreement", String(8), nullable=True, comment="ALIGNED | COUNTER | MIXED"),
    Column("status", String(12), nullable=False, comment="PENDING|CONFIRMED|CLOSED|CANCELLED"),
    Column("status_reason", String(32), nullable=True, comment="e.g. EXPIRED"),
    Column("filled_at", UtcDateTime, nullable=True),
    Column("resolved_at", UtcDateTime, nullable=True, comment="when it left PENDING/CONFIRMED"),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("symbol", "direction", "signal_timeframe", "timestamp"),
    Index("ix_ai_signals_mtf_timestamp", "timestamp"),
    Index("ix_ai_signals_mtf_entry_strategy", "entry_strategy"),
    Index(
        "uq_ai_signals_mtf_active",
        "symbol",
        "direction",
        unique=True,
        sqlite_where=_ACTIVE_SQL,
        postgresql_where=_ACTIVE_SQL,
    ),
)

mtf_entry_analysis_history = Table(
    "mtf_entry_analysis_history",
    metadata,
    Column("analysis_id", BigId, primary_key=True, autoincrement=True),
    Column("signal_id", String(36), nullable=True, comment="null when the signal was skipped"),
    Column("symbol", String(40), nullable=False),
    Column("direction", String(5), nullable=False),
    Column("signal_timeframe", String(8), nullable=False),
    Column("entry_timeframe", String(8), nullable=False),
    Column("timestamp", UtcDateTime, nullable=False, comment="signal bar CLOSE time"),
    Column("entry_strategy", String(64), nullable=False),
    Column("entry_pattern", String(64), nullable=False),
    Column("analysis", JsonDoc, nullable=False, comment="candidates, scores, choice, fallback"),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("symbol", "direction", "signal_timeframe", "timestamp"),
)

signal_events = Table(
    "signal_events",
    metadata,
    Column("event_id", BigId, primary_key=True, autoincrement=True, comment="monotonic"),
    Column("source", String(16), nullable=False, comment="tradingview | alphapulse"),
    Column("event_type", String(20), nullable=False),
    Column("signal_id", String(128), nullable=False, comment="{symbol}:{trade_id} or UUID"),
    Column("trade_id", String(128), nullable=True),
    Column("symbol", String(40), nullable=False),
    Column("event_time", UtcDateTime, nullable=False, comment="from the payload"),
    Column("received_at", UtcDateTime, nullable=False),
    Column("payload", JsonDoc, nullable=False, comment="raw payload without the secret"),
    Column("idempotency_key", String(128), nullable=False, unique=True),
    Index("ix_signal_events_signal_id_event_time", "signal_id", "event_time"),
    Index("ix_signal_events_event_type_event_id", "event_type", "event_id"),
    # the sensor's and Tier 0's lookup: latest SIGNAL_CREATED of a signal (btree scans
    # backwards for event_id DESC)
    Index(
        "ix_signal_events_created_by_signal",
        "signal_id",
        "event_id",
        sqlite_where=text("event_type = 'SIGNAL_CREATED'"),
        postgresql_where=text("event_type = 'SIGNAL_CREATED'"),
    ),
)

webhook_rejects = Table(
    "webhook_rejects",
    metadata,
    Column("reject_id", BigId, primary_key=True, autoincrement=True),
    Column("received_at", UtcDateTime, nullable=False),
    Column("source_address", String(64), nullable=True),
    Column("status_code", Integer, nullable=False),
    Column("field", String(128), nullable=True, comment="the offending field, when one"),
    Column("reason", Text, nullable=False),
    Column("body", Text, nullable=False, comment="truncated raw body, secret redacted"),
)

signals = Table(
    "signals",
    metadata,
    Column("signal_id", String(128), primary_key=True),
    Column("source", String(16), nullable=False),
    Column("trade_id", String(128), nullable=True),
    Column("symbol", String(40), nullable=False),
    Column("direction", String(5), nullable=True),
    Column("timeframe", String(8), nullable=True),
    Column("status", String(12), nullable=False),
    Column("status_reason", String(32), nullable=True, comment="EXPIRED, TARGET, STOP, …"),
    Column("status_confidence", Float, nullable=False, server_default=text("1.0")),
    Column("signal_time", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=True, comment="SIGNAL_CREATED event time"),
    Column("confirmed_at", UtcDateTime, nullable=True, comment="ENTRY event time"),
    Column("confirmation_time", Float, nullable=True, comment="seconds created -> confirmed"),
    Column("entry_price", Price, nullable=True),
    Column("stop_loss", Price, nullable=True),
    Column("targets", JsonDoc, nullable=True),
    Column("htf_alignment", JsonDoc, nullable=True),
    Column("session", String(32), nullable=True),
    Column("market_state", String(32), nullable=True),
    Column("mfe", Float, nullable=True, comment="R"),
    Column("mae", Float, nullable=True, comment="R"),
    Column("mfe_price", Price, nullable=True),
    Column("mae_price", Price, nullable=True),
    Column("highest", Price, nullable=True),
    Column("lowest", Price, nullable=True),
    Column("target_hit", Integer, nullable=True, comment="highest target index touched, 1-based"),
    Column("stop_hit", Boolean, nullable=True),
    Column("last_mfe_update_at", UtcDateTime, nullable=True),
    Column("exit_price", Price, nullable=True),
    Column("exit_reason", String(16), nullable=True),
    Column("closed_at", UtcDateTime, nullable=True),
    Column("cancelled_at", UtcDateTime, nullable=True),
    Column("health_score", Float, nullable=True),
    Column("field_provenance", JsonDoc, nullable=False, comment="field -> {tier, confidence, …}"),
    Column("data_confidence", Float, nullable=True, comment="mean confidence of field_provenance"),
    Column("first_event_id", BigId, nullable=False),
    Column("last_event_id", BigId, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # the fold resumes from the row when new events sort after this (fold_resume.can_resume)
    Column(
        "folded_until",
        UtcDateTime,
        nullable=True,
        comment="latest event_time among the folded events",
    ),
    # All Signals pages newest first by (first_event_id, signal_id) (migration 0010)
    Index("ix_signals_keyset", "first_event_id", "signal_id"),
    Index("ix_signals_status_keyset", "status", "first_event_id", "signal_id"),
    Index("ix_signals_symbol_direction", "symbol", "direction"),
)

signal_gaps = Table(
    "signal_gaps",
    metadata,
    Column("gap_id", BigId, primary_key=True, autoincrement=True),
    Column("signal_id", String(128), nullable=False),
    Column("gap_type", String(32), nullable=False),
    Column("kind", String(12), nullable=False, comment="actionable | expected"),
    Column("weight", Float, nullable=False),
    Column("fillable", Boolean, nullable=False, comment="some tier can fill it"),
    Column("detected_at", UtcDateTime, nullable=False),
    Column("resolved_at", UtcDateTime, nullable=True),
    Column("sync_run_id", String(64), nullable=True),
    # every look-up by signal wants the open gaps; resolved ones pile up with history
    Index(
        "ix_signal_gaps_open",
        "signal_id",
        postgresql_where=text("resolved_at IS NULL"),
        sqlite_where=text("resolved_at IS NULL"),
    ),
)

# Running aggregates behind the health report (SPEC §9), per hour of each signal's moment
# (signal time, else created / confirmed time), kept by database triggers on ``signals`` and
# ``signal_gaps`` (migration 0003) so that every writer keeps them exact. Scores and
# confidences are summed as integers in units of 1e-9 (exact, order-independent).
signal_health_buckets = Table(
    "signal_health_buckets",
    metadata,
    Column("bucket", BigId, primary_key=True, autoincrement=False, comment="epoch hour"),
    Column("signals", Integer, nullable=False),
    Column("score_sum", BigId, nullable=False, comment="Σ coalesce(health_score, 100) · 1e9"),
    Column("confidence_sum", BigId, nullable=False, comment="Σ data_confidence · 1e9"),
    Column("confidence_n", Integer, nullable=False, comment="signals with a data_confidence"),
    Column("confirmed", Integer, nullable=False, comment="status CONFIRMED or CLOSED"),
)

signal_gap_buckets = Table(
    "signal_gap_buckets",
    metadata,
    Column("bucket", BigId, primary_key=True, autoincrement=False, comment="epoch hour"),
    Column("gap_type", String(32), primary_key=True),
    Column("kind", String(12), primary_key=True),
    Column("fillable", Boolean, primary_key=True),
    Column("gaps", Integer, nullable=False, comment="open gaps of the bucket's signals"),
)

signal_health_metrics = Table(
    "signal_health_metrics",
    metadata,
    Column("metric_id", BigId, primary_key=True, autoincrement=True),
    Column("measured_at", UtcDateTime, nullable=False),
    Column("sync_run_id", String(64), nullable=True),
    Column("total_signals", Integer, nullable=False),
    Column("total_gaps", Integer, nullable=False),
    Column("health_score", Float, nullable=False),
    Column("signal_coverage", Float, nullable=True),
    Column("data_confidence", Float, nullable=True),
    Column("manual_intervention", Integer, nullable=False),
    Column("gap_breakdown", JsonDoc, nullable=False),
    Index("ix_signal_health_metrics_measured_at", "measured_at"),
)

sync_audit_log = Table(
    "sync_audit_log",
    metadata,
    Column("audit_id", BigId, primary_key=True, autoincrement=True),
    Column("sync_run_id", String(64), nullable=False),
    Column("signal_id", String(128), nullable=False),
    Column("field", String(64), nullable=False),
    Column("old_value", JsonDoc, nullable=True),
    Column("new_value", JsonDoc, nullable=True),
    Column("tier", String(8), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("old_confidence", Float, nullable=True, comment="confidence before the change"),
    Column("reason", Text, nullable=False),
    Column("action_timestamp", UtcDateTime, nullable=False),
    Index("ix_sync_audit_log_signal_id", "signal_id"),
    Index("ix_sync_audit_log_sync_run_id", "sync_run_id"),
)

# The hybrid sync's bookkeeping: how far into ``signal_events`` each consumer has read
# (``name`` = ``lifecycle`` for the registry projection).
sync_cursors = Table(
    "sync_cursors",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("last_event_id", BigId, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# A lease that keeps two syncs from overlapping on SQLite (Postgres uses an advisory lock).
sync_locks = Table(
    "sync_locks",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(64), nullable=True),
    Column("locked_until", UtcDateTime, nullable=True),
)

# What every signal did after it fired (SPEC §17), one row per (signal, entry mode):
# ``actual`` (the signal as stored or reported), ``market`` and each valid refinement
# candidate of an MTF signal (counterfactuals with the same stop and target distances in
# ATR). Rewritten per window of ``signal_time`` by the ``signal_outcomes`` asset.
signal_outcomes = Table(
    "signal_outcomes",
    metadata,
    Column("signal_id", String(128), primary_key=True),
    Column("entry_mode", String(32), primary_key=True, comment="actual | market | candidate"),
    Column("source", String(16), nullable=False),
    Column("symbol", String(40), nullable=False),
    Column("direction", String(5), nullable=False),
    Column("timeframe", String(8), nullable=False, comment="bars the outcome is read on"),
    Column("signal_time", UtcDateTime, nullable=False, comment="signal bar CLOSE time"),
    Column("signal_timeframe", String(8), nullable=True),
    Column("entry_strategy", String(64), nullable=True),
    Column("entry_pattern", String(64), nullable=True),
    Column("htf_agreement", String(8), nullable=True),
    Column("session", String(32), nullable=True),
    Column("consensus_size", Integer, nullable=True, comment="heads that agreed"),
    Column("heads", JsonDoc, nullable=True, comment="head -> AGREE | DISAGREE | NONE"),
    Column("status", String(12), nullable=False, comment="OPEN | CLOSED | NOT_FILLED"),
    Column("market_price", Price, nullable=True, comment="close at the signal"),
    Column("entry_price", Price, nullable=True),
    Column("stop_loss", Price, nullable=True),
    Column("first_target", Price, nullable=True),
    Column("last_target", Price, nullable=True),
    Column("entry_improvement_bps", Float, nullable=True, comment="vs market, + = better"),
    Column("filled_at", UtcDateTime, nullable=True),
    Column("exit_at", UtcDateTime, nullable=True, comment="exit bar CLOSE time"),
    Column("exit_price", Price, nullable=True),
    Column("exit_reason", String(16), nullable=True, comment="STOP|BREAKEVEN|TARGET|TIME"),
    Column("r_multiple", Float, nullable=True, comment="R"),
    Column("mfe_r", Float, nullable=True, comment="R"),
    Column("mae_r", Float, nullable=True, comment="R"),
    Column("mfe_price", Price, nullable=True),
    Column("mae_price", Price, nullable=True),
    Column("bars_to_mfe", Integer, nullable=True),
    Column("bars_held", Integer, nullable=True),
    Column("ambiguous", Boolean, nullable=False, comment="same-bar stop/target unresolved"),
    Column(
        "first_target_hit",
        Boolean,
        nullable=False,
        server_default=text("false"),
        comment="first target traded before the stop: a win",
    ),
    Column("reported_exit_price", Price, nullable=True, comment="TradingView EXIT"),
    Column("reported_exit_reason", String(16), nullable=True, comment="TradingView EXIT"),
    Column("evaluated_at", UtcDateTime, nullable=False, comment="data horizon of the row"),
    Index("ix_signal_outcomes_signal_time", "signal_time"),
)

# The strategy evaluation per day of signal time and grouping (SPEC §16 ``groups`` shape);
# ``group_by = 'paired'`` rows carry the refined-vs-market comparison.
strategy_performance = Table(
    "strategy_performance",
    metadata,
    Column("day", UtcDateTime, primary_key=True, comment="UTC day of signal_time"),
    Column("group_by", String(64), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("n", Integer, nullable=False, comment="closed trades"),
    Column("n_signals", Integer, nullable=False),
    Column("fill_rate", Float, nullable=True),
    Column("win_rate", Float, nullable=True, comment="share with the first target hit"),
    Column("profitable_rate", Float, nullable=True, comment="share with R > 0"),
    Column("expectancy_r", Float, nullable=True),
    Column("expectancy_ci_lo", Float, nullable=True),
    Column("expectancy_ci_hi", Float, nullable=True),
    Column("profit_factor", Float, nullable=True),
    Column("max_drawdown_r", Float, nullable=True),
    Column("mean_mfe_r", Float, nullable=True),
    Column("mean_mae_r", Float, nullable=True),
    Column("entry_improvement_bps", Float, nullable=True),
    Column("missed_r", Float, nullable=True, comment="paired rows: market R of unfilled"),
    Column("flag", String(32), nullable=True),
    Column("computed_at", UtcDateTime, nullable=False),
)
