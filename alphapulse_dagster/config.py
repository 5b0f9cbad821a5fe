"""The one configuration loader.

Two YAML files in one folder (``ALPHAPULSE_CONFIG_DIR``, default ``config/`` of a
checkout, else the copy bundled in the installed package):

- ``symbol_config.yaml`` — the symbol universe (``symbols:`` list).
- ``mtf_config.yaml`` — ``mtf_strategies`` (timeframes, entry and risk parameters, signal
  thresholds), ``history`` (the first day of the daily partitions), ``cache`` and
  ``hybrid_sync`` (interval, cancellation windows, gap weights, health thresholds).

Both are validated with typed models. A wrong type, an unknown key or an unknown timeframe
raises :class:`ConfigError` naming the file, the key path and the problem. A missing file
falls back to the documented defaults (the values of the models below) with one warning.
"""

from __future__ import annotations

import logging
import os
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from alphapulse_dagster.market.timeframes import TIMEFRAME_SECONDS, is_timeframe
from alphapulse_dagster.paths import bundled_dir
from alphapulse_dagster.sync.gap_rules import GAP_RULES, GapKind

log = logging.getLogger(__name__)

SYMBOL_FILE = "symbol_config.yaml"
MTF_FILE = "mtf_config.yaml"


class ConfigError(ValueError):
    """A configuration file is invalid. The message names the file, the key and the problem."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_timeframe(value: str) -> str:
    if not is_timeframe(value):
        raise ValueError(
            f"unknown timeframe {value!r} (expected one of {', '.join(TIMEFRAME_SECONDS)})"
        )
    return value


# --- symbol_config.yaml -------------------------------------------------------------------


class SymbolConfig(_Model):
    symbol: str = Field(min_length=1)
    exchange: str = "csv"
    enabled: bool = True
    signal_timeframe: str | None = None
    entry_timeframe: str | None = None

    @field_validator("signal_timeframe", "entry_timeframe")
    @classmethod
    def _tf(cls, value: str | None) -> str | None:
        return None if value is None else _check_timeframe(value)


class SymbolUniverse(_Model):
    symbols: tuple[SymbolConfig, ...] = (
        SymbolConfig(symbol="BTCUSD", exchange="csv", enabled=True),
    )

    def enabled(self) -> list[SymbolConfig]:
        return [s for s in self.symbols if s.enabled]


# --- mtf_config.yaml ----------------------------------------------------------------------


# Entry refinement (SPEC §6) reads these models directly: ``mtf_strategies.entry`` and
# ``.risk`` with ``min_entry_candles``/``fallback_atr_pct`` beside them; validated once, here.


class EntryParameters(_Model):
    """Where a refined entry may sit. Distances in ATR multiples of the entry timeframe."""

    fibonacci_levels: tuple[float, ...] = (0.5, 0.618, 0.786)
    ema_periods: tuple[int, ...] = (21, 50)
    swing_confirmation_bars: int = Field(default=3, ge=1)
    max_entry_distance_atr: float = Field(default=3.0, gt=0)
    confluence_atr_fraction: float = Field(default=0.25, ge=0)
    order_block_entry: Literal["top", "middle"] = "top"
    order_block_lookback_bars: int = Field(default=100, ge=1)
    entry_valid_bars: int = Field(default=4, ge=1)
    atr_period: int = Field(default=14, ge=1)

    @field_validator("fibonacci_levels")
    @classmethod
    def _retracements(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0 < f < 1 for f in value):
            raise ValueError("every Fibonacci level must be in (0, 1)")
        return value

    @field_validator("ema_periods")
    @classmethod
    def _periods(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(p < 1 for p in value):
            raise ValueError("must be a non-empty list of periods >= 1")
        return value


class RiskParameters(_Model):
    """Stop and targets of an entry, in ATR multiples of the entry timeframe."""

    stop_loss_atr_multiplier: float = Field(default=1.5, gt=0)
    # a stop beyond an invalidating swing / order-block edge sits this far past it
    stop_buffer_atr: float = Field(default=0.1, ge=0)
    take_profit_atr_multipliers: tuple[float, ...] = (2.0, 3.0, 5.0)
    # the time exit: a trade still open this many entry-timeframe bars after its fill
    # closes at the last bar's close (signals/trade_management.py)
    max_holding_bars: int = Field(default=96, ge=1)

    @field_validator("take_profit_atr_multipliers")
    @classmethod
    def _increasing(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(v <= 0 for v in value) or list(value) != sorted(value):
            raise ValueError("must be a non-empty list of positive, increasing multipliers")
        return value


class SignalThresholds(_Model):
    heads: tuple[str, ...] = ("trend", "momentum", "volatility_breakout", "volume")
    min_agreeing_heads: int = Field(default=3, ge=1)
    min_mean_confidence: float = Field(default=0.6, ge=0, le=1)
    # "change": a signal only on the bar where the consensus turns or flips (no repeats
    # while it holds); "every_bar": on every bar with a consensus
    fire_on: Literal["change", "every_bar"] = "change"


class MtfStrategies(_Model):
    # signal timeframe -> entry timeframe
    timeframe_mappings: dict[str, str] = {"1h": "15m", "4h": "1h", "1d": "4h"}
    # signal timeframe -> higher timeframes used for alignment
    htf_mappings: dict[str, tuple[str, ...]] = {
        "1h": ("4h", "1d"),
        "4h": ("1d",),
        "1d": ("1w",),
    }
    default_signal_timeframe: str = "4h"
    min_entry_candles: int = Field(default=200, ge=1)
    fallback_atr_pct: float = Field(default=0.01, gt=0, lt=1)
    max_fallback_share: float = Field(default=0.5, ge=0, le=1)
    entry: EntryParameters = EntryParameters()
    risk: RiskParameters = RiskParameters()
    signal: SignalThresholds = SignalThresholds()

    @field_validator("timeframe_mappings")
    @classmethod
    def _tf_map(cls, value: dict[str, str]) -> dict[str, str]:
        for signal_tf, entry_tf in value.items():
            _check_timeframe(signal_tf)
            _check_timeframe(entry_tf)
            if TIMEFRAME_SECONDS[entry_tf] >= TIMEFRAME_SECONDS[signal_tf]:
                raise ValueError(f"entry timeframe {entry_tf} must be finer than {signal_tf}")
        return value

    @field_validator("htf_mappings")
    @classmethod
    def _htf_map(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for signal_tf, higher in value.items():
            _check_timeframe(signal_tf)
            for tf in higher:
                _check_timeframe(tf)
        return value

    @field_validator("default_signal_timeframe")
    @classmethod
    def _default_tf(cls, value: str) -> str:
        return _check_timeframe(value)

    @model_validator(mode="after")
    def _fallback_stays_positive(self) -> MtfStrategies:
        # A fallback entry's SHORT targets sit fallback_atr_pct x multiplier below the price:
        # they must stay positive, or the fallback itself would break the risk invariants.
        widest = max(self.risk.stop_loss_atr_multiplier, *self.risk.take_profit_atr_multipliers)
        if not self.fallback_atr_pct * widest < 1:
            raise ValueError(
                f"fallback_atr_pct {self.fallback_atr_pct} x the widest ATR multiplier "
                f"{widest} must be < 1"
            )
        return self


class CacheConfig(_Model):
    ttl_seconds: int = Field(default=3600, gt=0)


class GapRule(_Model):
    weight: float = Field(ge=0, le=100)
    kind: GapKind


# the defaults are the gap rules' own (sync/gap_rules.py: one entry per gap type)
DEFAULT_GAP_RULES: dict[str, GapRule] = {
    rule.name: GapRule(weight=rule.weight, kind=rule.kind) for rule in GAP_RULES
}


class HealthThresholds(_Model):
    min_health_score: float = Field(default=70, ge=0, le=100)
    min_signal_coverage: float = Field(default=0.8, ge=0, le=1)


class HybridSyncConfig(_Model):
    interval_seconds: int = Field(default=120, gt=0)
    # PENDING signals older than this many bars of their timeframe are expired.
    cancellation_window_bars: int = Field(default=12, ge=1)
    cancellation_window_overrides: dict[str, int] = {}
    # an active trade without an MFE_UPDATE for longer than this is a `no_mfe_update` gap
    mfe_update_window_minutes: int = Field(default=60, ge=1)
    health_window_days: int = Field(default=30, ge=1)
    sensor_batch_limit: int = Field(default=500, ge=1)
    # how long the projection's barrier on signal_events may make writers wait (log_horizon)
    log_barrier_timeout_ms: int = Field(default=2000, gt=0)
    gap_rules: dict[str, GapRule] = DEFAULT_GAP_RULES
    health: HealthThresholds = HealthThresholds()

    @field_validator("gap_rules")
    @classmethod
    def _known_gaps(cls, value: dict[str, GapRule]) -> dict[str, GapRule]:
        unknown = set(value) - set(DEFAULT_GAP_RULES)
        if unknown:
            raise ValueError(
                f"unknown gap type(s) {sorted(unknown)}; known: {sorted(DEFAULT_GAP_RULES)}"
            )
        return {**DEFAULT_GAP_RULES, **value}

    @field_validator("cancellation_window_overrides")
    @classmethod
    def _override_tfs(cls, value: dict[str, int]) -> dict[str, int]:
        for tf in value:
            _check_timeframe(tf)
        return value


class HistoryConfig(_Model):
    """The desk's history: the first UTC day of the daily partitions (candles, MTF and
    outcome assets). The default is the bundled sample's first day."""

    start: date = date(2017, 1, 1)


class MtfFile(_Model):
    mtf_strategies: MtfStrategies = MtfStrategies()
    history: HistoryConfig = HistoryConfig()
    cache: CacheConfig = CacheConfig()
    hybrid_sync: HybridSyncConfig = HybridSyncConfig()


class AppConfig(_Model):
    """Both files merged: what the rest of the code reads."""

    symbols: SymbolUniverse = SymbolUniverse()
    mtf: MtfStrategies = MtfStrategies()
    history: HistoryConfig = HistoryConfig()
    cache: CacheConfig = CacheConfig()
    hybrid_sync: HybridSyncConfig = HybridSyncConfig()
    source_dir: str = ""

    def signal_timeframe(self, symbol: SymbolConfig) -> str:
        return symbol.signal_timeframe or self.mtf.default_signal_timeframe

    def entry_timeframe(self, symbol: SymbolConfig) -> str:
        signal_tf = self.signal_timeframe(symbol)
        if symbol.entry_timeframe:
            return symbol.entry_timeframe
        try:
            return self.mtf.timeframe_mappings[signal_tf]
        except KeyError:
            raise ConfigError(
                f"key 'mtf_strategies.timeframe_mappings': no entry timeframe for "
                f"signal timeframe {signal_tf!r} (used by symbol {symbol.symbol})"
            ) from None

    def higher_timeframes(self, signal_tf: str) -> tuple[str, ...]:
        return tuple(self.mtf.htf_mappings.get(signal_tf, ()))


def default_config_dir() -> Path:
    env = os.environ.get("ALPHAPULSE_CONFIG_DIR")
    if env:
        return Path(env)
    local = Path("config")
    if (local / MTF_FILE).exists() or (local / SYMBOL_FILE).exists():
        return local
    return bundled_dir("config")


def _format_errors(path: Path, error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"]) or "(top level)"
        lines.append(f"{path}: key '{key}': {item['msg']}")
    return "\n".join(lines)


def _read_yaml(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: key '(top level)': expected a mapping, got {type(data).__name__}"
        )
    return data


def _check_heads(config: AppConfig, path: Path) -> None:
    """Every head named in ``mtf_strategies.signal.heads`` must resolve (built-in name or
    ``package.module:function``), and the consensus must be reachable."""
    from alphapulse_dagster.signals.model_heads import resolve_head

    signal = config.mtf.signal
    for index, name in enumerate(signal.heads):
        try:
            resolve_head(name)
        except (ValueError, ImportError, AttributeError) as exc:
            raise ConfigError(f"{path}: key 'mtf_strategies.signal.heads.{index}': {exc}") from None
    if signal.min_agreeing_heads > len(signal.heads):
        raise ConfigError(
            f"{path}: key 'mtf_strategies.signal.min_agreeing_heads': "
            f"{signal.min_agreeing_heads} exceeds the {len(signal.heads)} configured heads"
        )


def load_config(config_dir: str | Path | None = None) -> AppConfig:
    """Load, merge and validate both files. See the module docstring for the rules."""
    folder = Path(config_dir) if config_dir is not None else default_config_dir()
    missing: list[str] = []

    symbol_path = folder / SYMBOL_FILE
    raw_symbols = _read_yaml(symbol_path)
    if raw_symbols is None:
        missing.append(SYMBOL_FILE)
        symbols = SymbolUniverse()
    else:
        try:
            symbols = SymbolUniverse.model_validate(raw_symbols)
        except ValidationError as exc:
            raise ConfigError(_format_errors(symbol_path, exc)) from None

    mtf_path = folder / MTF_FILE
    raw_mtf = _read_yaml(mtf_path)
    if raw_mtf is None:
        missing.append(MTF_FILE)
        mtf_file = MtfFile()
    else:
        try:
            mtf_file = MtfFile.model_validate(raw_mtf)
        except ValidationError as exc:
            raise ConfigError(_format_errors(mtf_path, exc)) from None

    config = AppConfig(
        symbols=symbols,
        mtf=mtf_file.mtf_strategies,
        history=mtf_file.history,
        cache=mtf_file.cache,
        hybrid_sync=mtf_file.hybrid_sync,
        source_dir=str(folder),
    )
    for symbol in symbols.enabled():  # every enabled symbol must resolve its timeframes
        try:
            config.entry_timeframe(symbol)
        except ConfigError as exc:
            raise ConfigError(f"{folder / MTF_FILE}: {exc}") from None
    _check_heads(config, folder / MTF_FILE)
    if missing:
        log.warning(
            "config: %s not found in %s; using the documented defaults",
            " and ".join(missing),
            folder,
        )
    return config
