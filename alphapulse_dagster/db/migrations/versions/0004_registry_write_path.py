"""cheaper registry writes: two unused indexes dropped, provenance compressed with lz4

The hybrid sync rewrites each touched ``signals`` row once per cycle; every index is one
more entry to insert per rewrite. Two served no query:

- ``ix_signals_last_event_id``: the sync's scopes read the log's own ``event_id`` range;
- ``ix_signals_signal_time``: the API filters on ``coalesce(signal_time, confirmed_at)``
  and the health report on the moment index (0003) — neither can use it.

On Postgres ≥ 14 built with lz4, ``field_provenance`` (~1.8 KB of JSON per row, compressed
inline) switches to lz4: compressing and decompressing it is several times cheaper than
pglz. Values already stored keep their compression until rewritten. Skipped (with a
notice) where lz4 is not available.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_LZ4 = """
DO $$
BEGIN
    ALTER TABLE signals ALTER COLUMN field_provenance SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value OR syntax_error THEN
    RAISE NOTICE 'lz4 compression not available: field_provenance keeps pglz';
END
$$;
"""


def upgrade() -> None:
    with op.batch_alter_table("signals") as batch_op:
        batch_op.drop_index("ix_signals_last_event_id")
        batch_op.drop_index("ix_signals_signal_time")
    bind = op.get_bind()
    if bind.dialect.name == "postgresql" and bind.dialect.server_version_info >= (14,):
        op.execute(_LZ4)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql" and bind.dialect.server_version_info >= (14,):
        op.execute("ALTER TABLE signals ALTER COLUMN field_provenance SET COMPRESSION DEFAULT")
    with op.batch_alter_table("signals") as batch_op:
        batch_op.create_index("ix_signals_signal_time", ["signal_time"], unique=False)
        batch_op.create_index("ix_signals_last_event_id", ["last_event_id"], unique=False)
