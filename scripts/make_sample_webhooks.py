"""Regenerate ``data/sample_webhooks.jsonl``: a realistic day of TradingView webhooks.

Deterministic. Prices come from the bundled candles (``data/sample/*_1h.csv``) so the
sync can recompute MFE/MAE: a signal is created at a bar's *close* (its open time + 1h)
at that bar's close price; the entry fills at the next bar's open; stop = entry ∓ 1.5 ATR,
targets at 2 / 3 / 5 ATR (the bundled risk config); MFE updates every two bars from the
highs/lows since entry (in R); the exit is the first stop or last-target touch, else a
MANUAL close at the end of the window. The file is in *arrival* order, which is not
always event-time order (on purpose), with duplicates and coverage gaps:

- BTCUSD, 2019-06-14 (10 signals) and EURUSD, 2017-06-14 (3 signals);
- full lifecycles ending at TARGET, STOP and MANUAL; cancelled; still pending;
- ENTRY without SIGNAL_CREATED (coverage gaps), one of them without targets;
- an ENTRY that arrives before its SIGNAL_CREATED; exact resends and alert_id resends;
- TradingView spellings: intervals ``60``/``240``/``1h``, epoch-ms and ISO times,
  lower-case event names.

    python scripts/make_sample_webhooks.py
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE = REPO_ROOT / "data" / "sample"
OUTPUT = REPO_ROOT / "data" / "sample_webhooks.jsonl"
SECRET = "demo-secret"
HOUR = timedelta(hours=1)


@dataclass
class Bar:
    open_time: datetime
    open: float
    high: float
    low: float
    close: float


def load(symbol: str) -> list[Bar]:
    with open(SAMPLE / f"{symbol}_1h.csv", newline="") as handle:
        return [
            Bar(
                datetime.fromisoformat(row["open_time"].replace("Z", "+00:00")),
                float(row["open"]),
                float(row["high"]),
                float(row["low"]),
                float(row["close"]),
            )
            for row in csv.DictReader(handle)
        ]


def atr(bars: list[Bar], index: int, period: int = 14) -> float:
    """Simple mean true range of the ``period`` bars closed at ``index`` (no look-ahead)."""
    ranges = []
    for i in range(index - period + 1, index + 1):
        high, low, previous = bars[i].high, bars[i].low, bars[i - 1].close
        ranges.append(max(high - low, abs(high - previous), abs(low - previous)))
    return sum(ranges) / period


def session(at: datetime) -> str:
    hour = at.hour
    if hour < 7:
        return "ASIA"
    if hour < 12:
        return "LONDON"
    if hour < 16:
        return "LONDON_NEW_YORK"
    if hour < 21:
        return "NEW_YORK"
    return "OFF_HOURS"


@dataclass
class Outbox:
    lines: list[tuple[datetime, int, dict[str, Any]]] = field(default_factory=list)

    def send(self, payload: dict[str, Any], arrives: datetime) -> None:
        self.lines.append((arrives, len(self.lines), payload))


def iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch_ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def signal(
    out: Outbox,
    bars: list[Bar],
    symbol: str,
    created_bar: str,
    direction: str,
    *,
    digits: int,
    created: bool = True,
    confirm: bool = True,
    targets: bool = True,
    cancel_after: int | None = None,
    manage_bars: int = 12,
    interval: str = "60",
    epoch: bool = False,
    event_case: str = "upper",
    entry_early: bool = False,
    resend_created: bool = False,
    alert_ids: bool = False,
) -> None:
    index = next(i for i, bar in enumerate(bars) if iso(bar.open_time) == created_bar)
    bar = bars[index]
    signal_time = bar.open_time + HOUR  # the signal bar's close
    long = direction == "LONG"
    trade_id = f"{signal_time:%Y%m%d_%H%M%S}_{'BULLISH' if long else 'BEARISH'}"
    when = epoch_ms if epoch else iso
    name = (lambda e: e.lower()) if event_case == "lower" else (lambda e: e)
    base = {"secret": SECRET, "trade_id": trade_id, "symbol": symbol}
    volatility = atr(bars, index)

    if created:
        payload = {
            **base,
            "event": name("SIGNAL_CREATED"),
            "time": when(signal_time),
            "timeframe": interval,
            "direction": "BULLISH" if long else "BEARISH",
            "htf_alignment": {
                "240": "BULLISH" if long else "BEARISH",
                "1D": "NEUTRAL" if index % 2 else ("BULLISH" if long else "BEARISH"),
            },
            "session": session(signal_time),
            "market_state": "TRENDING" if index % 3 else "RANGING",
            "price": round(bar.close, digits),
        }
        # a delayed SIGNAL_CREATED arrives after its ENTRY (delivered at +5 min)
        delay = timedelta(minutes=6) if entry_early else timedelta(seconds=2)
        out.send(payload, signal_time + delay)
        if resend_created:  # TradingView fired the same alert twice
            out.send(dict(payload), signal_time + timedelta(seconds=9))
    if cancel_after is not None:
        cancelled_at = signal_time + cancel_after * HOUR
        out.send(
            {
                **base,
                "event": name("CANCELLED"),
                "time": when(cancelled_at),
                "reason": "price left the entry zone before a fill",
            },
            cancelled_at + timedelta(seconds=3),
        )
        return
    if not confirm:
        return

    entry_bar = bars[index + 1]
    entry_time = entry_bar.open_time + timedelta(minutes=5)
    entry = entry_bar.open
    risk = 1.5 * volatility
    sign = 1 if long else -1
    stop = entry - sign * risk
    levels = [entry + sign * m * volatility for m in (2.0, 3.0, 5.0)]
    entry_payload: dict[str, Any] = {
        **base,
        "event": name("ENTRY"),
        "time": when(entry_time),
        "timeframe": interval,
        "direction": direction,
        "entry_price": round(entry, digits),
        "stop_loss": round(stop, digits),
    }
    if targets:
        entry_payload["targets"] = [round(level, digits) for level in levels]
    if alert_ids:
        entry_payload["alert_id"] = f"{symbol}-{trade_id}-entry"
    out.send(entry_payload, entry_time + timedelta(seconds=1))
    if alert_ids:  # a retry of the same alert: same alert_id
        out.send(dict(entry_payload), entry_time + timedelta(seconds=40))

    highest, lowest = entry, entry
    for step, later in enumerate(bars[index + 1 : index + 1 + manage_bars], start=1):
        highest, lowest = max(highest, later.high), min(lowest, later.low)
        close_time = later.open_time + HOUR
        favourable = (highest - entry) if long else (entry - lowest)
        adverse = (entry - lowest) if long else (highest - entry)
        stopped = (later.low <= stop) if long else (later.high >= stop)
        finished = (later.high >= levels[-1]) if long else (later.low <= levels[-1])
        if stopped or finished or step == manage_bars:
            exit_price, reason = (
                (stop, "STOP")
                if stopped
                else (levels[-1], "TARGET")
                if finished
                else (later.close, "MANUAL")
            )
            exit_time = close_time - timedelta(minutes=1)
            out.send(
                {
                    **base,
                    "event": name("EXIT"),
                    "time": when(exit_time),
                    "exit_price": round(exit_price, digits),
                    "exit_reason": reason,
                },
                exit_time + timedelta(seconds=2),
            )
            return
        if step % 2 == 0:
            out.send(
                {
                    **base,
                    "event": name("MFE_UPDATE"),
                    "time": when(close_time),
                    "mfe": round(max(favourable, 0.0) / risk, 3),
                    "mae": round(max(adverse, 0.0) / risk, 3),
                    "highest": round(highest, digits),
                    "lowest": round(lowest, digits),
                },
                close_time + timedelta(seconds=4),
            )


def main() -> None:
    out = Outbox()
    btc, eur = load("BTCUSD"), load("EURUSD")
    b = {"bars": btc, "symbol": "BTCUSD", "digits": 2}
    signal(out, **b, created_bar="2019-06-14T01:00:00Z", direction="LONG", resend_created=True)
    signal(out, **b, created_bar="2019-06-14T03:00:00Z", direction="SHORT", manage_bars=10)
    signal(out, **b, created_bar="2019-06-14T05:00:00Z", direction="LONG", cancel_after=3)
    signal(out, **b, created_bar="2019-06-14T06:00:00Z", direction="SHORT", created=False)
    signal(
        out,
        **b,
        created_bar="2019-06-14T08:00:00Z",
        direction="LONG",
        entry_early=True,
        epoch=True,
        alert_ids=True,
    )
    signal(out, **b, created_bar="2019-06-14T11:00:00Z", direction="LONG", targets=False)
    signal(out, **b, created_bar="2019-06-14T12:00:00Z", direction="LONG", interval="1h",
           event_case="lower")  # fmt: skip
    signal(out, **b, created_bar="2019-06-14T14:00:00Z", direction="SHORT", created=False,
           targets=False)  # fmt: skip
    signal(out, **b, created_bar="2019-06-14T16:00:00Z", direction="LONG", interval="240",
           manage_bars=8)  # fmt: skip
    signal(out, **b, created_bar="2019-06-14T19:00:00Z", direction="SHORT", confirm=False)
    e = {"bars": eur, "symbol": "EURUSD", "digits": 5}
    signal(out, **e, created_bar="2017-06-14T07:00:00Z", direction="LONG", epoch=True)
    signal(out, **e, created_bar="2017-06-14T10:00:00Z", direction="SHORT", cancel_after=2)
    signal(out, **e, created_bar="2017-06-14T13:00:00Z", direction="SHORT", created=False,
           alert_ids=True)  # fmt: skip

    lines = [payload for _, _, payload in sorted(out.lines, key=lambda item: item[:2])]
    OUTPUT.write_text("".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines))
    print(f"wrote {len(lines)} webhooks to {OUTPUT.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
