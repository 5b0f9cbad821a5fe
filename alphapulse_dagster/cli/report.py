"""``alphapulse report``: the strategy evaluation (SPEC §17) from stored outcomes.

``alphapulse report [--since DATE] [--until DATE] [--group-by KEY] [--json]`` prints one
line per group (N, fill rate, win rate, expectancy in R with its 95 % interval, profit
factor, drawdown, MFE/MAE, entry improvement, flag) and the paired refined-vs-market ΔR.
``--claims`` measures the MTF seed's claims instead (``analytics/claims.py``).
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from alphapulse_dagster.analytics.strategy_performance import GROUP_KEYS, strategy_report
from alphapulse_dagster.db.engine import make_engine


def _date(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r}: expected a date or time, e.g. 2019-06-01 or 2019-06-01T12:00"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _group_by(value: str) -> str:
    if value in GROUP_KEYS or (value.startswith("head:") and len(value) > 5):
        return value
    raise argparse.ArgumentTypeError(
        f"{value!r}: expected one of {', '.join(GROUP_KEYS)} or head:<name>"
    )


def _num(value: Any, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def format_report(report: dict[str, Any]) -> str:
    """The report as a fixed-width table a trader reads at a glance."""
    head = (
        f"{report['group_by']:<24} {'N':>5} {'sig':>5} {'fill':>6} {'win':>6} "
        f"{'E[R]':>7} {'95% CI':>17} {'PF':>5} {'maxDD':>6} {'MFE':>5} {'MAE':>5} "
        f"{'bps':>7}  flag"
    )
    lines = [head, "-" * len(head)]
    for g in report["groups"]:
        ci = g["expectancy_ci"]
        interval = f"[{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else "-"
        lines.append(
            f"{str(g['key'])[:24]:<24} {g['n']:>5} {g['n_signals']:>5} "
            f"{_num(g['fill_rate'], '.0%'):>6} {_num(g['win_rate'], '.0%'):>6} "
            f"{_num(g['expectancy_r'], '+.2f'):>7} {interval:>17} "
            f"{_num(g['profit_factor']):>5} {_num(g['max_drawdown_r'], '.1f'):>6} "
            f"{_num(g['mean_mfe_r']):>5} {_num(g['mean_mae_r']):>5} "
            f"{_num(g['entry_improvement_bps'], '.1f'):>7}  {g['flag'] or ''}"
        )
    p = report["paired"]
    ci = p["delta_ci"]
    lines += [
        "",
        f"refined limit vs the same signal at market: N={p['n']}  "
        f"ΔR={_num(p['delta_r'], '+.3f')}  95% CI "
        + (f"[{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "-")
        + f"  {p['flag'] or ''}",
        f"unfilled limits missed {_num(p['missed_r'], '+.3f')} R each at market "
        f"(N={p['n_missed']})",
        "N = closed trades; a flagged group (small_sample: N < 30, ci_crosses_zero) is not a "
        "finding.",
    ]
    return "\n".join(lines)


def _report(args: argparse.Namespace) -> int:
    engine = make_engine()
    try:
        with engine.connect() as connection:
            if args.claims:
                from alphapulse_dagster.analytics.claims import format_claims, measure_claims
                from alphapulse_dagster.config import load_config

                symbols = [s.symbol for s in load_config().symbols.enabled()]
                claims = measure_claims(connection, symbols)
                print(
                    json.dumps(claims, indent=2, default=str)
                    if args.json
                    else format_claims(claims)
                )
                return 0
            report = strategy_report(
                connection, since=args.since, until=args.until, group_by=args.group_by
            )
    finally:
        engine.dispose()
    print(json.dumps(report, indent=2, default=str) if args.json else format_report(report))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "report",
        help="strategy evaluation from stored outcomes: N, win rate, expectancy with intervals",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--since", type=_date, help="signal time from (inclusive, UTC)")
    parser.add_argument("--until", type=_date, help="signal time until (exclusive, UTC)")
    parser.add_argument(
        "--group-by",
        type=_group_by,
        default="entry_strategy",
        help=f"one of {', '.join(GROUP_KEYS)} or head:<name> (default entry_strategy)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--claims", action="store_true", help="measure the MTF seed's claims instead"
    )
    parser.set_defaults(handler=_report)
