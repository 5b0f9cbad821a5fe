"""health report as running per-hour aggregates kept by triggers

``signal_health_buckets`` (per epoch hour of a signal's moment: signals, Σ score,
Σ confidence, confirmed) and ``signal_gap_buckets`` (open gaps per hour, type, kind,
fillable), maintained by triggers on ``signals`` and ``signal_gaps`` — statement-level
with transition tables on Postgres, row-level on SQLite — and back-filled from the
existing rows. An index on the moment lets the report read the one partial hour at the
window's edge from ``signals`` (alphapulse_dagster/sync/health.py).

The triggers' joins to ``signals`` / ``signal_gaps`` are LATERAL index look-ups per changed
row: the planner knows nothing of a transition table's size and would otherwise scan the
whole table (a cost that grows with history).

Invariant kept by every statement: the buckets equal the same aggregates computed from
scratch over ``signals`` and the open ``signal_gaps`` (tests/test_health_buckets.py).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SCALE = "1000000000.0"
MOMENT = "coalesce({r}.signal_time, {r}.created_at, {r}.confirmed_at)"
BARE_MOMENT = "coalesce(signal_time, created_at, confirmed_at)"


def _pg_cols(r: str) -> str:
    """A signal row's contribution on Postgres (``r`` a row alias)."""
    moment = MOMENT.format(r=r)
    return (
        f"{r}.signal_id, alphapulse_health_bucket({moment}) AS bucket, "
        f"CAST(round(coalesce({r}.health_score, 100.0) * {SCALE}::float8) AS bigint) AS score, "
        f"CAST(round({r}.data_confidence * {SCALE}::float8) AS bigint) AS conf, "
        f"CASE WHEN {r}.status IN ('CONFIRMED', 'CLOSED') THEN 1 ELSE 0 END AS confirmed"
    )


_PG_SIGNAL_UPSERT = """
    INSERT INTO signal_health_buckets AS b
        (bucket, signals, score_sum, confidence_sum, confidence_n, confirmed)
    SELECT bucket, sum(sign), coalesce(sum(sign * score), 0), coalesce(sum(sign * conf), 0),
           sum(CASE WHEN conf IS NULL THEN 0 ELSE sign END), sum(sign * confirmed)
    FROM d WHERE bucket IS NOT NULL
    GROUP BY bucket
    HAVING sum(sign) <> 0 OR coalesce(sum(sign * score), 0) <> 0
        OR coalesce(sum(sign * conf), 0) <> 0
        OR sum(CASE WHEN conf IS NULL THEN 0 ELSE sign END) <> 0 OR sum(sign * confirmed) <> 0
    ON CONFLICT (bucket) DO UPDATE SET
        signals = b.signals + EXCLUDED.signals,
        score_sum = b.score_sum + EXCLUDED.score_sum,
        confidence_sum = b.confidence_sum + EXCLUDED.confidence_sum,
        confidence_n = b.confidence_n + EXCLUDED.confidence_n,
        confirmed = b.confirmed + EXCLUDED.confirmed
"""

# open gaps follow their signal when its bucket changes (or the signal appears / goes)
_PG_GAP_MOVE = """
    INSERT INTO signal_gap_buckets AS b (bucket, gap_type, kind, fillable, gaps)
    SELECT m.bucket, g.gap_type, g.kind, g.fillable, sum(m.sign)
    FROM m CROSS JOIN LATERAL (
        SELECT gg.gap_type, gg.kind, gg.fillable FROM signal_gaps gg
        WHERE gg.signal_id = m.signal_id AND gg.resolved_at IS NULL
    ) g
    WHERE m.bucket IS NOT NULL
    GROUP BY m.bucket, g.gap_type, g.kind, g.fillable
    HAVING sum(m.sign) <> 0
    ON CONFLICT (bucket, gap_type, kind, fillable) DO UPDATE SET gaps = b.gaps + EXCLUDED.gaps
"""

_PG_SIGNALS_FUNCTION = f"""
CREATE FUNCTION alphapulse_signals_health() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    IF TG_OP = 'INSERT' THEN
        WITH d AS (SELECT 1 AS sign, {_pg_cols("n")} FROM new_rows n)
        {_PG_SIGNAL_UPSERT};
        WITH m AS (SELECT signal_id, bucket, 1 AS sign FROM
                   (SELECT {_pg_cols("n")} FROM new_rows n) x)
        {_PG_GAP_MOVE};
    ELSIF TG_OP = 'DELETE' THEN
        WITH d AS (SELECT -1 AS sign, {_pg_cols("o")} FROM old_rows o)
        {_PG_SIGNAL_UPSERT};
        WITH m AS (SELECT signal_id, bucket, -1 AS sign FROM
                   (SELECT {_pg_cols("o")} FROM old_rows o) x)
        {_PG_GAP_MOVE};
    ELSE
        WITH d AS (SELECT -1 AS sign, {_pg_cols("o")} FROM old_rows o
                   UNION ALL SELECT 1 AS sign, {_pg_cols("n")} FROM new_rows n)
        {_PG_SIGNAL_UPSERT};
        WITH o AS (SELECT signal_id, bucket FROM (SELECT {_pg_cols("o")} FROM old_rows o) x),
             n AS (SELECT signal_id, bucket FROM (SELECT {_pg_cols("n")} FROM new_rows n) x),
             m AS (SELECT o.signal_id, o.bucket, -1 AS sign FROM o WHERE NOT EXISTS
                       (SELECT 1 FROM n WHERE n.signal_id = o.signal_id
                        AND n.bucket IS NOT DISTINCT FROM o.bucket)
                   UNION ALL
                   SELECT n.signal_id, n.bucket, 1 AS sign FROM n WHERE NOT EXISTS
                       (SELECT 1 FROM o WHERE o.signal_id = n.signal_id
                        AND o.bucket IS NOT DISTINCT FROM n.bucket))
        {_PG_GAP_MOVE};
    END IF;
    RETURN NULL;
END
$body$
"""

_PG_GAP_UPSERT = f"""
    INSERT INTO signal_gap_buckets AS b (bucket, gap_type, kind, fillable, gaps)
    SELECT alphapulse_health_bucket(s.moment), g.gap_type, g.kind, g.fillable, sum(g.sign)
    FROM d g CROSS JOIN LATERAL (
        SELECT {MOMENT.format(r="ss")} AS moment FROM signals ss
        WHERE ss.signal_id = g.signal_id
    ) s
    WHERE s.moment IS NOT NULL
    GROUP BY 1, g.gap_type, g.kind, g.fillable
    HAVING sum(g.sign) <> 0
    ON CONFLICT (bucket, gap_type, kind, fillable) DO UPDATE SET gaps = b.gaps + EXCLUDED.gaps
"""

_GAP_COLS = "{r}.signal_id, {r}.gap_type, {r}.kind, {r}.fillable"

_PG_GAPS_FUNCTION = f"""
CREATE FUNCTION alphapulse_gaps_health() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    IF TG_OP = 'INSERT' THEN
        WITH d AS (SELECT 1 AS sign, {_GAP_COLS.format(r="n")} FROM new_rows n
                   WHERE n.resolved_at IS NULL)
        {_PG_GAP_UPSERT};
    ELSIF TG_OP = 'DELETE' THEN
        WITH d AS (SELECT -1 AS sign, {_GAP_COLS.format(r="o")} FROM old_rows o
                   WHERE o.resolved_at IS NULL)
        {_PG_GAP_UPSERT};
    ELSE
        WITH d AS (SELECT -1 AS sign, {_GAP_COLS.format(r="o")} FROM old_rows o
                   WHERE o.resolved_at IS NULL
                   UNION ALL
                   SELECT 1 AS sign, {_GAP_COLS.format(r="n")} FROM new_rows n
                   WHERE n.resolved_at IS NULL)
        {_PG_GAP_UPSERT};
    END IF;
    RETURN NULL;
END
$body$
"""


def _pg_upgrade() -> None:
    op.execute(
        "CREATE FUNCTION alphapulse_health_bucket(m timestamptz) RETURNS bigint "
        "LANGUAGE sql IMMUTABLE AS "
        "$$ SELECT CAST(floor(extract(epoch FROM m) / 3600) AS bigint) $$"
    )
    op.execute(f"CREATE INDEX ix_signals_moment ON signals (({BARE_MOMENT}))")
    # back-fill
    op.execute(f"""
        WITH d AS (SELECT 1 AS sign, {_pg_cols("s")} FROM signals s)
        {_PG_SIGNAL_UPSERT}
    """)
    op.execute(f"""
        WITH d AS (SELECT 1 AS sign, {_GAP_COLS.format(r="g")} FROM signal_gaps g
                   WHERE g.resolved_at IS NULL)
        {_PG_GAP_UPSERT}
    """)
    op.execute(_PG_SIGNALS_FUNCTION)
    op.execute(_PG_GAPS_FUNCTION)
    for table, function in (
        ("signals", "alphapulse_signals_health"),
        ("signal_gaps", "alphapulse_gaps_health"),
    ):
        op.execute(
            f"CREATE TRIGGER trg_{table}_health_ins AFTER INSERT ON {table} "
            f"REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        )
        op.execute(
            f"CREATE TRIGGER trg_{table}_health_upd AFTER UPDATE ON {table} "
            "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        )
        op.execute(
            f"CREATE TRIGGER trg_{table}_health_del AFTER DELETE ON {table} "
            f"REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        )


# --- SQLite: row-level triggers -------------------------------------------------------


def _sq_bucket(r: str) -> str:
    return f"(CAST(strftime('%s', {MOMENT.format(r=r)}) AS INTEGER) / 3600)"


def _sq_signal_add(r: str, sign: int) -> str:
    bucket = _sq_bucket(r)
    return f"""
        INSERT OR IGNORE INTO signal_health_buckets
            (bucket, signals, score_sum, confidence_sum, confidence_n, confirmed)
        SELECT {bucket}, 0, 0, 0, 0, 0 WHERE {bucket} IS NOT NULL;
        UPDATE signal_health_buckets SET
            signals = signals + {sign},
            score_sum = score_sum
                + {sign} * CAST(round(coalesce({r}.health_score, 100.0) * {SCALE}) AS INTEGER),
            confidence_sum = confidence_sum
                + {sign} * coalesce(CAST(round({r}.data_confidence * {SCALE}) AS INTEGER), 0),
            confidence_n = confidence_n
                + {sign} * (CASE WHEN {r}.data_confidence IS NULL THEN 0 ELSE 1 END),
            confirmed = confirmed
                + {sign} * (CASE WHEN {r}.status IN ('CONFIRMED', 'CLOSED') THEN 1 ELSE 0 END)
        WHERE bucket = {bucket};
    """


def _sq_gaps_of_signal(r: str, sign: int) -> str:
    """Add (+1) or remove (-1) the open gaps of signal row ``r`` in its bucket."""
    bucket = _sq_bucket(r)
    return f"""
        INSERT OR IGNORE INTO signal_gap_buckets (bucket, gap_type, kind, fillable, gaps)
        SELECT DISTINCT {bucket}, g.gap_type, g.kind, g.fillable, 0 FROM signal_gaps g
        WHERE g.signal_id = {r}.signal_id AND g.resolved_at IS NULL AND {bucket} IS NOT NULL;
        UPDATE signal_gap_buckets SET gaps = gaps + {sign} * (
            SELECT count(*) FROM signal_gaps g
            WHERE g.signal_id = {r}.signal_id AND g.resolved_at IS NULL
              AND g.gap_type = signal_gap_buckets.gap_type AND g.kind = signal_gap_buckets.kind
              AND g.fillable = signal_gap_buckets.fillable)
        WHERE bucket = {bucket};
    """


def _sq_gap_row(r: str, sign: int) -> str:
    """Add (+1) or remove (-1) open gap row ``r`` in its signal's bucket."""
    bucket = f"""(SELECT {_sq_bucket("s")} FROM signals s WHERE s.signal_id = {r}.signal_id)"""
    return f"""
        INSERT OR IGNORE INTO signal_gap_buckets (bucket, gap_type, kind, fillable, gaps)
        SELECT {bucket}, {r}.gap_type, {r}.kind, {r}.fillable, 0
        WHERE {r}.resolved_at IS NULL AND {bucket} IS NOT NULL;
        UPDATE signal_gap_buckets SET gaps = gaps + {sign}
        WHERE {r}.resolved_at IS NULL AND bucket = {bucket} AND gap_type = {r}.gap_type
          AND kind = {r}.kind AND fillable = {r}.fillable;
    """


_SQ_HEALTH_COLUMNS = "signal_time, created_at, confirmed_at, health_score, data_confidence, status"
_SQ_MOMENT_COLUMNS = "signal_time, created_at, confirmed_at, signal_id"


def _sqlite_upgrade() -> None:
    op.execute(f"CREATE INDEX ix_signals_moment ON signals ({BARE_MOMENT})")
    # back-fill
    op.execute(f"""
        INSERT INTO signal_health_buckets
            (bucket, signals, score_sum, confidence_sum, confidence_n, confirmed)
        SELECT {_sq_bucket("s")}, count(*),
            sum(CAST(round(coalesce(s.health_score, 100.0) * {SCALE}) AS INTEGER)),
            coalesce(sum(CAST(round(s.data_confidence * {SCALE}) AS INTEGER)), 0),
            count(s.data_confidence),
            sum(CASE WHEN s.status IN ('CONFIRMED', 'CLOSED') THEN 1 ELSE 0 END)
        FROM signals s WHERE {_sq_bucket("s")} IS NOT NULL GROUP BY 1
    """)
    op.execute(f"""
        INSERT INTO signal_gap_buckets (bucket, gap_type, kind, fillable, gaps)
        SELECT {_sq_bucket("s")}, g.gap_type, g.kind, g.fillable, count(*)
        FROM signal_gaps g JOIN signals s ON s.signal_id = g.signal_id
        WHERE g.resolved_at IS NULL AND {_sq_bucket("s")} IS NOT NULL
        GROUP BY 1, g.gap_type, g.kind, g.fillable
    """)
    triggers = {
        "trg_signals_health_ins AFTER INSERT ON signals": _sq_signal_add("NEW", 1)
        + _sq_gaps_of_signal("NEW", 1),
        "trg_signals_health_del AFTER DELETE ON signals": _sq_signal_add("OLD", -1)
        + _sq_gaps_of_signal("OLD", -1),
        f"trg_signals_health_upd AFTER UPDATE OF {_SQ_HEALTH_COLUMNS} ON signals": (
            _sq_signal_add("OLD", -1) + _sq_signal_add("NEW", 1)
        ),
        f"trg_signals_health_move AFTER UPDATE OF {_SQ_MOMENT_COLUMNS} ON signals "
        f"WHEN {_sq_bucket('OLD')} IS NOT {_sq_bucket('NEW')} "
        "OR OLD.signal_id IS NOT NEW.signal_id": (
            _sq_gaps_of_signal("OLD", -1) + _sq_gaps_of_signal("NEW", 1)
        ),
        "trg_signal_gaps_health_ins AFTER INSERT ON signal_gaps": _sq_gap_row("NEW", 1),
        "trg_signal_gaps_health_del AFTER DELETE ON signal_gaps": _sq_gap_row("OLD", -1),
        "trg_signal_gaps_health_upd AFTER UPDATE ON signal_gaps": (
            _sq_gap_row("OLD", -1) + _sq_gap_row("NEW", 1)
        ),
    }
    for head, body in triggers.items():
        op.execute(f"CREATE TRIGGER {head} BEGIN {body} END")


def upgrade() -> None:
    op.execute("""
        CREATE TABLE IF NOT EXISTS signal_health_buckets (
            bucket BIGINT NOT NULL PRIMARY KEY,
            signals INTEGER NOT NULL,
            score_sum BIGINT NOT NULL,
            confidence_sum BIGINT NOT NULL,
            confidence_n INTEGER NOT NULL,
            confirmed INTEGER NOT NULL
        )
    """)
    op.execute("""
        CREATE TABLE IF NOT EXISTS signal_gap_buckets (
            bucket BIGINT NOT NULL,
            gap_type VARCHAR(32) NOT NULL,
            kind VARCHAR(12) NOT NULL,
            fillable BOOLEAN NOT NULL,
            gaps INTEGER NOT NULL,
            PRIMARY KEY (bucket, gap_type, kind, fillable)
        )
    """)
    if op.get_bind().dialect.name == "postgresql":
        _pg_upgrade()
    else:
        _sqlite_upgrade()


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table in ("signals", "signal_gaps"):
        for suffix in ("ins", "upd", "del", "move"):
            name = f"trg_{table}_health_{suffix}"
            op.execute(f"DROP TRIGGER IF EXISTS {name}" + (f" ON {table}" if postgres else ""))
    if postgres:
        op.execute("DROP FUNCTION IF EXISTS alphapulse_signals_health()")
        op.execute("DROP FUNCTION IF EXISTS alphapulse_gaps_health()")
    op.execute("DROP INDEX IF EXISTS ix_signals_moment")
    if postgres:
        op.execute("DROP FUNCTION IF EXISTS alphapulse_health_bucket(timestamptz)")
    op.execute("DROP TABLE signal_gap_buckets")
    op.execute("DROP TABLE signal_health_buckets")
