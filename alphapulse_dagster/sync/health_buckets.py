"""The health report's running aggregates — the one owner of their arithmetic, for the
report's queries (``health.py``) and for the database triggers that keep them.

``signal_health_buckets``: per epoch hour of a signal's moment (signal time, else created,
else confirmed), the signals, Σ score, Σ data confidence, how many have a confidence, how
many were ever confirmed. ``signal_gap_buckets``: open gaps per hour, type, kind and
fillability. Scores and confidences are summed as integers in units of 1e-9
(:data:`SCALE`), so the means are exact. A signal never scanned counts as complete
(:data:`MAX_SCORE`).

The triggers (statement-level with transition tables on Postgres, row-level on SQLite)
are generated here from the same constants (:func:`trigger_ddl`) and installed by
migration 0009; ``tests/test_health_buckets.py`` checks the buckets equal the same
aggregates computed from scratch, and that the installed trigger source is what this
module generates. The triggers' joins are LATERAL index look-ups per changed row: the
planner knows nothing of a transition table's size and would otherwise scan the table.
"""

from __future__ import annotations

SCALE = 10**9  # scores and confidences are summed as integers in units of 1e-9
BUCKET_SECONDS = 3600  # one bucket per epoch hour of the signal's moment
EVER_CONFIRMED = ("CONFIRMED", "CLOSED")
# a signal's score with no open gap (100 − Σ weights of its open gaps, floored at 0); a
# signal never scanned counts as complete
MAX_SCORE = 100.0

_SCALE_SQL = f"{SCALE}.0"
_CONFIRMED_SQL = ", ".join(f"'{status}'" for status in EVER_CONFIRMED)
BARE_MOMENT = "coalesce(signal_time, created_at, confirmed_at)"


def moment(r: str) -> str:
    """A signal row's moment (SQL; ``r`` its alias)."""
    return f"coalesce({r}.signal_time, {r}.created_at, {r}.confirmed_at)"


def scaled(expr: str, postgres: bool = True) -> str:
    """``expr`` in units of 1e-9, rounded to an integer (SQL; double precision throughout,
    as the report's own query computes it)."""
    if postgres:
        return f"CAST(round({expr} * {_SCALE_SQL}::float8) AS bigint)"
    return f"CAST(round({expr} * {_SCALE_SQL}) AS INTEGER)"


def score(r: str) -> str:
    return f"coalesce({r}.health_score, {MAX_SCORE})"


def confirmed(r: str) -> str:
    return f"CASE WHEN {r}.status IN ({_CONFIRMED_SQL}) THEN 1 ELSE 0 END"


# --- Postgres ------------------------------------------------------------------------------


def _pg_cols(r: str) -> str:
    """A signal row's contribution (``r`` a row alias)."""
    return (
        f"{r}.signal_id, alphapulse_health_bucket({moment(r)}) AS bucket, "
        f"{scaled(score(r))} AS score, {scaled(f'{r}.data_confidence')} AS conf, "
        f"{confirmed(r)} AS confirmed"
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
CREATE OR REPLACE FUNCTION alphapulse_signals_health() RETURNS trigger LANGUAGE plpgsql AS $body$
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
        SELECT {moment("ss")} AS moment FROM signals ss
        WHERE ss.signal_id = g.signal_id
    ) s
    WHERE s.moment IS NOT NULL
    GROUP BY 1, g.gap_type, g.kind, g.fillable
    HAVING sum(g.sign) <> 0
    ON CONFLICT (bucket, gap_type, kind, fillable) DO UPDATE SET gaps = b.gaps + EXCLUDED.gaps
"""

_GAP_COLS = "{r}.signal_id, {r}.gap_type, {r}.kind, {r}.fillable"

_PG_GAPS_FUNCTION = f"""
CREATE OR REPLACE FUNCTION alphapulse_gaps_health() RETURNS trigger LANGUAGE plpgsql AS $body$
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

PG_BUCKET_FUNCTION = (
    "CREATE OR REPLACE FUNCTION alphapulse_health_bucket(m timestamptz) RETURNS bigint "
    "LANGUAGE sql IMMUTABLE AS "
    f"$$ SELECT CAST(floor(extract(epoch FROM m) / {BUCKET_SECONDS}) AS bigint) $$"
)


def pg_trigger_ddl() -> list[str]:
    """The Postgres functions and triggers, in order (``CREATE OR REPLACE``)."""
    statements = [PG_BUCKET_FUNCTION, _PG_SIGNALS_FUNCTION, _PG_GAPS_FUNCTION]
    for table, function in (
        ("signals", "alphapulse_signals_health"),
        ("signal_gaps", "alphapulse_gaps_health"),
    ):
        statements += [
            f"CREATE TRIGGER trg_{table}_health_ins AFTER INSERT ON {table} "
            f"REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {function}()",
            f"CREATE TRIGGER trg_{table}_health_upd AFTER UPDATE ON {table} "
            "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()",
            f"CREATE TRIGGER trg_{table}_health_del AFTER DELETE ON {table} "
            f"REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION {function}()",
        ]
    return statements


# --- SQLite: row-level triggers ------------------------------------------------------------


def _sq_bucket(r: str) -> str:
    return f"(CAST(strftime('%s', {moment(r)}) AS INTEGER) / {BUCKET_SECONDS})"


def _sq_signal_add(r: str, sign: int) -> str:
    bucket = _sq_bucket(r)
    return f"""
        INSERT OR IGNORE INTO signal_health_buckets
            (bucket, signals, score_sum, confidence_sum, confidence_n, confirmed)
        SELECT {bucket}, 0, 0, 0, 0, 0 WHERE {bucket} IS NOT NULL;
        UPDATE signal_health_buckets SET
            signals = signals + {sign},
            score_sum = score_sum + {sign} * {scaled(score(r), postgres=False)},
            confidence_sum = confidence_sum
                + {sign} * coalesce({scaled(f"{r}.data_confidence", postgres=False)}, 0),
            confidence_n = confidence_n
                + {sign} * (CASE WHEN {r}.data_confidence IS NULL THEN 0 ELSE 1 END),
            confirmed = confirmed + {sign} * ({confirmed(r)})
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


def sqlite_trigger_ddl() -> list[str]:
    """The SQLite triggers, in order."""
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
    return [f"CREATE TRIGGER {head} BEGIN {body} END" for head, body in triggers.items()]


TRIGGER_NAMES: dict[str, tuple[str, ...]] = {
    table: tuple(f"trg_{table}_health_{suffix}" for suffix in ("ins", "upd", "del", "move"))
    for table in ("signals", "signal_gaps")
}


def drop_trigger_ddl(postgres: bool) -> list[str]:
    """Drop every health trigger (``IF EXISTS``); the functions stay (replaced)."""
    return [
        f"DROP TRIGGER IF EXISTS {name}" + (f" ON {table}" if postgres else "")
        for table, names in TRIGGER_NAMES.items()
        for name in names
    ]


def trigger_ddl(postgres: bool) -> list[str]:
    """Every statement that (re)installs the triggers on a database with the tables."""
    return drop_trigger_ddl(postgres) + (pg_trigger_ddl() if postgres else sqlite_trigger_ddl())
