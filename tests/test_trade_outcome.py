"""The limit fill and exit of a refined entry, on hand-built hourly bars."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from alphapulse_dagster.signals.trade_outcome import trade_outcome

T = datetime(2020, 1, 1, 4, tzinfo=UTC)
HOUR = pd.Timedelta(hours=1)


def bars(rows: list[tuple[float, float]]) -> pd.DataFrame:
    """(high, low) per hour, opening at T."""
    return pd.DataFrame(
        {
            "open_time": [pd.Timestamp(T) + i * HOUR for i in range(len(rows))],
            "high": [h for h, _ in rows],
            "low": [low for _, low in rows],
        }
    )


def outcome(direction: str, rows, as_of_hours: int, valid: int = 3):
    entry, stop, targets = (
        (100.0, 95.0, [105.0, 110.0]) if direction == "LONG" else (100.0, 105.0, [95.0, 90.0])
    )
    return trade_outcome(
        direction,
        entry,
        stop,
        targets,
        T,
        bars(rows),
        HOUR,
        valid,
        T + timedelta(hours=as_of_hours),
    )


def test_long_fills_then_hits_last_target() -> None:
    rows = [(103, 101), (102, 99.5), (108, 101), (111, 104)]
    result = outcome("LONG", rows, as_of_hours=4)
    assert result.status == "CLOSED" and result.reason == "TARGET"
    assert result.filled_at == T + timedelta(hours=1)  # the bar whose low 99.5 crossed 100
    assert result.closed_at == T + timedelta(hours=4) and result.exit_price == 110.0


def test_unclosed_bars_are_not_seen() -> None:
    rows = [(103, 101), (102, 99.5), (108, 101), (111, 104)]
    # as of 03:00 after T only bars 0..2 have closed: filled, first target seen, still open
    assert outcome("LONG", rows, as_of_hours=3).status == "CONFIRMED"
    assert outcome("LONG", rows, as_of_hours=1).status == "PENDING"


def test_expires_when_never_filled_within_valid_bars() -> None:
    rows = [(103, 101), (104, 100.5), (106, 102), (99, 97)]  # fills only on bar 3: too late
    assert outcome("LONG", rows, as_of_hours=2).status == "PENDING"
    result = outcome("LONG", rows, as_of_hours=4)
    assert (result.status, result.reason) == ("CANCELLED", "EXPIRED")


def test_stop_after_first_target_is_breakeven() -> None:
    rows = [(101, 99), (106, 101), (103, 99.9)]  # fill, TP1 at 105 trades, back to entry
    result = outcome("LONG", rows, as_of_hours=3)
    assert (result.status, result.reason, result.exit_price) == ("CLOSED", "BREAKEVEN", 100.0)


def test_short_mirror_and_stop_first_on_ambiguous_bar() -> None:
    rows = [(100.5, 98), (106, 89)]  # fill; next bar touches both stop 105 and target 90
    result = outcome("SHORT", rows, as_of_hours=2)
    assert (result.status, result.reason, result.exit_price) == ("CLOSED", "STOP", 105.0)
