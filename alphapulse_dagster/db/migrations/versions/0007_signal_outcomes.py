"""signal_outcomes and strategy_performance (SPEC §17)

- ``signal_outcomes``: one row per (signal, entry mode) — what the signal did after it
  fired, read from candles by the one trade rule (signals/trade_management.py): fill or
  NOT_FILLED, exit, R, MFE/MAE, bars held, the same-bar ambiguity flag, and a TradingView
  signal's reported EXIT beside it. Indexed by signal time (the assets rewrite a window).
- ``strategy_performance``: the evaluation per UTC day of signal time and grouping.

Revision ID: 0007
Revises: 0009 (landed before this one; the chain stays linear)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from alphapulse_dagster.db import types as types_

revision = "0007"
down_revision = "0009"
branch_labels = None
depends_on = None

UTC = types_.UtcDateTime(timezone=True)
PRICE = sa.Float(precision=53)


def upgrade() -> None:
    op.create_table(
        "signal_outcomes",
        sa.Column("signal_id", sa.String(128), nullable=False),
        sa.Column("entry_mode", sa.String(32), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("symbol", sa.String(40), nullable=False),
        sa.Column("direction", sa.String(5), nullable=False),
        sa.Column("timeframe", sa.String(8), nullable=False),
        sa.Column("signal_time", UTC, nullable=False),
        sa.Column("signal_timeframe", sa.String(8), nullable=True),
        sa.Column("entry_strategy", sa.String(64), nullable=True),
        sa.Column("entry_pattern", sa.String(64), nullable=True),
        sa.Column("htf_agreement", sa.String(8), nullable=True),
        sa.Column("session", sa.String(32), nullable=True),
        sa.Column("consensus_size", sa.Integer(), nullable=True),
        sa.Column("heads", types_.JsonDoc, nullable=True),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("market_price", PRICE, nullable=True),
        sa.Column("entry_price", PRICE, nullable=True),
        sa.Column("stop_loss", PRICE, nullable=True),
        sa.Column("first_target", PRICE, nullable=True),
        sa.Column("last_target", PRICE, nullable=True),
        sa.Column("entry_improvement_bps", sa.Float(), nullable=True),
        sa.Column("filled_at", UTC, nullable=True),
        sa.Column("exit_at", UTC, nullable=True),
        sa.Column("exit_price", PRICE, nullable=True),
        sa.Column("exit_reason", sa.String(16), nullable=True),
        sa.Column("r_multiple", sa.Float(), nullable=True),
        sa.Column("mfe_r", sa.Float(), nullable=True),
        sa.Column("mae_r", sa.Float(), nullable=True),
        sa.Column("mfe_price", PRICE, nullable=True),
        sa.Column("mae_price", PRICE, nullable=True),
        sa.Column("bars_to_mfe", sa.Integer(), nullable=True),
        sa.Column("bars_held", sa.Integer(), nullable=True),
        sa.Column("ambiguous", sa.Boolean(), nullable=False),
        sa.Column("reported_exit_price", PRICE, nullable=True),
        sa.Column("reported_exit_reason", sa.String(16), nullable=True),
        sa.Column("evaluated_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("signal_id", "entry_mode", name="pk_signal_outcomes"),
    )
    op.create_index("ix_signal_outcomes_signal_time", "signal_outcomes", ["signal_time"])
    op.create_table(
        "strategy_performance",
        sa.Column("day", UTC, nullable=False),
        sa.Column("group_by", sa.String(64), nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("n_signals", sa.Integer(), nullable=False),
        sa.Column("fill_rate", sa.Float(), nullable=True),
        sa.Column("win_rate", sa.Float(), nullable=True),
        sa.Column("expectancy_r", sa.Float(), nullable=True),
        sa.Column("expectancy_ci_lo", sa.Float(), nullable=True),
        sa.Column("expectancy_ci_hi", sa.Float(), nullable=True),
        sa.Column("profit_factor", sa.Float(), nullable=True),
        sa.Column("max_drawdown_r", sa.Float(), nullable=True),
        sa.Column("mean_mfe_r", sa.Float(), nullable=True),
        sa.Column("mean_mae_r", sa.Float(), nullable=True),
        sa.Column("entry_improvement_bps", sa.Float(), nullable=True),
        sa.Column("missed_r", sa.Float(), nullable=True),
        sa.Column("flag", sa.String(32), nullable=True),
        sa.Column("computed_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("day", "group_by", "key", name="pk_strategy_performance"),
    )


def downgrade() -> None:
    op.drop_table("strategy_performance")
    op.drop_index("ix_signal_outcomes_signal_time", table_name="signal_outcomes")
    op.drop_table("signal_outcomes")
