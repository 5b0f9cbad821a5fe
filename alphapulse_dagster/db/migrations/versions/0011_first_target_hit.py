"""signal_outcomes.first_target_hit (a win, SPEC §17) and strategy_performance.profitable_rate

A win is the first target traded before the stop (the issue's own definition, not R > 0:
a break-even exit after the first target is a win at 0 R). The trade rule now returns it
per outcome; ``strategy_performance.win_rate`` is its share and ``profitable_rate`` keeps
the share of trades with R > 0.

Stored outcomes get the flag from what they already hold: a TARGET or BREAKEVEN exit hit
the first target first; a TIME exit did if its MFE reached it (no stop was touched);
a STOP exit did not. Open outcomes are re-read by the next run anyway.

Revision ID: 0011
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0006"  # the head when it landed (0006 landed after 0010)
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("signal_outcomes") as batch:
        batch.add_column(
            sa.Column(
                "first_target_hit",
                sa.Boolean(),
                nullable=False,
                server_default=sa.false(),
                comment="first target traded before the stop: a win",
            )
        )
    op.execute(
        "UPDATE signal_outcomes SET first_target_hit = ("
        " exit_reason IN ('TARGET', 'BREAKEVEN')"
        " OR (exit_reason = 'TIME' AND mfe_price >= abs(first_target - entry_price)))"
        " WHERE status = 'CLOSED'"
    )
    with op.batch_alter_table("strategy_performance") as batch:
        batch.add_column(
            sa.Column("profitable_rate", sa.Float(), nullable=True, comment="share with R > 0")
        )


def downgrade() -> None:
    with op.batch_alter_table("strategy_performance") as batch:
        batch.drop_column("profitable_rate")
    with op.batch_alter_table("signal_outcomes") as batch:
        batch.drop_column("first_target_hit")
