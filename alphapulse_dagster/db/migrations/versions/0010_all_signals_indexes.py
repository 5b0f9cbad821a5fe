"""All Signals pages by index: the keyset, status with the keyset, the MTF entry strategy

The desk's All Signals view (SPEC §18) reads ``signals`` newest first by the keyset
``(first_event_id DESC, signal_id DESC)``, 50 rows a page, with optional filters. With
100,000 signals Postgres sorted the whole table (or every row of a status) for each page
(bench/bench_desk.py: 50-110 ms a page, seq scans). Now:

- ``ix_signals_keyset (first_event_id, signal_id)``: a page is an index walk that stops
  after 51 rows; source and direction (two values each) are filtered along the walk;
- ``ix_signals_status_keyset (status, first_event_id, signal_id)`` replaces
  ``ix_signals_status`` (same leading column, so every status look-up keeps its index);
- ``ix_ai_signals_mtf_entry_strategy``: the strategy filter's semi-join.

The time filter uses ``ix_signals_moment`` (0003) and symbol ``ix_signals_symbol_direction``.

Revision ID: 0010
Revises: 0007 (0009 and 0007 landed first; the chain stays linear)
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_signals_keyset", "signals", ["first_event_id", "signal_id"])
    op.create_index(
        "ix_signals_status_keyset", "signals", ["status", "first_event_id", "signal_id"]
    )
    op.drop_index("ix_signals_status", table_name="signals")
    op.create_index(
        "ix_ai_signals_mtf_entry_strategy", "ai_signals_mtf", ["entry_strategy"]
    )


def downgrade() -> None:
    op.drop_index("ix_ai_signals_mtf_entry_strategy", table_name="ai_signals_mtf")
    op.create_index("ix_signals_status", "signals", ["status"])
    op.drop_index("ix_signals_status_keyset", table_name="signals")
    op.drop_index("ix_signals_keyset", table_name="signals")
