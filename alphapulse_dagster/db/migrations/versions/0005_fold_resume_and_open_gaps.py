"""the fold's resume point stored on the row; the open-gap index covers open gaps only

- ``signals.folded_until``: the latest ``event_time`` among the events folded into the
  row. The projection resumes a signal's fold from its stored row when every new event
  sorts after the folded ones; it used to aggregate the signal's whole history on each
  cycle to learn this time (a grouped query over ~10 events per signal, the largest read
  of an incremental cycle). Back-filled from the log; a row left NULL is simply
  re-folded from all its events once, which sets it.
- ``ix_signal_gaps_open`` becomes partial (``WHERE resolved_at IS NULL``) and on
  ``signal_id`` alone: every query by signal id wants the open gaps, and resolved ones
  accumulate with history. For a 1,000-signal batch Postgres planned a sequential scan
  of the whole table (15–37 ms at 100k signals) with the (signal_id, gap_type) index,
  full or partial; it probes this smaller one (2–3 ms).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from alphapulse_dagster.db import types as types_

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_BACKFILL = """
UPDATE signals SET folded_until = (
    SELECT max(e.event_time) FROM signal_events e
    WHERE e.signal_id = signals.signal_id AND e.event_id <= signals.last_event_id
)
"""


def upgrade() -> None:
    with op.batch_alter_table("signals") as batch_op:
        batch_op.add_column(
            sa.Column(
                "folded_until",
                types_.UtcDateTime(timezone=True),
                nullable=True,
                comment="latest event_time among the folded events",
            )
        )
    op.execute(_BACKFILL)
    with op.batch_alter_table("signal_gaps") as batch_op:
        batch_op.drop_index("ix_signal_gaps_open")
        batch_op.create_index(
            "ix_signal_gaps_open",
            ["signal_id"],
            unique=False,
            postgresql_where=sa.text("resolved_at IS NULL"),
            sqlite_where=sa.text("resolved_at IS NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("signal_gaps") as batch_op:
        batch_op.drop_index("ix_signal_gaps_open")
        batch_op.create_index("ix_signal_gaps_open", ["signal_id", "gap_type"], unique=False)
    with op.batch_alter_table("signals") as batch_op:
        batch_op.drop_column("folded_until")
