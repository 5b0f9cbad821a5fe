"""The config loader: defaults, typed validation, errors that name file, key and problem."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from alphapulse_dagster.config import ConfigError, load_config


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_bundled_config_loads_with_desk_timeframes() -> None:
    config = load_config(Path(__file__).parents[1] / "config")
    btc = next(s for s in config.symbols.enabled() if s.symbol == "BTCUSD")
    assert config.signal_timeframe(btc) == "4h"
    assert config.entry_timeframe(btc) == "1h"
    assert config.higher_timeframes("4h") == ("1d",)
    assert config.mtf.risk.take_profit_atr_multipliers == (2.0, 3.0, 5.0)
    assert config.cache.ttl_seconds == 3600
    assert config.hybrid_sync.gap_rules["no_mfe_update"].kind == "expected"


def test_bad_type_names_file_key_and_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "mtf_config.yaml", "mtf_strategies:\n  min_entry_candles: lots\n")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    message = str(caught.value)
    assert str(path) in message
    assert "mtf_strategies.min_entry_candles" in message
    assert "integer" in message


def test_unknown_timeframe_names_file_and_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "symbol_config.yaml",
        "symbols:\n  - symbol: BTCUSD\n    signal_timeframe: 3h\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    message = str(caught.value)
    assert str(path) in message
    assert "symbols.0.signal_timeframe" in message
    assert "unknown timeframe '3h'" in message


def test_unknown_timeframe_in_mapping(tmp_path: Path) -> None:
    write(tmp_path, "mtf_config.yaml", "mtf_strategies:\n  timeframe_mappings:\n    1h: 7m\n")
    with pytest.raises(
        ConfigError, match=r"mtf_strategies\.timeframe_mappings.*unknown timeframe '7m'"
    ):
        load_config(tmp_path)


def test_unknown_key_is_an_error_not_silently_ignored(tmp_path: Path) -> None:
    write(tmp_path, "mtf_config.yaml", "mtf_strategies:\n  min_entry_candle: 100\n")
    with pytest.raises(ConfigError, match=r"mtf_strategies\.min_entry_candle.*Extra inputs"):
        load_config(tmp_path)


def test_signal_timeframe_without_entry_mapping(tmp_path: Path) -> None:
    write(tmp_path, "symbol_config.yaml", "symbols:\n  - symbol: X\n    signal_timeframe: 12h\n")
    with pytest.raises(ConfigError, match=r"timeframe_mappings.*'12h'.*symbol X"):
        load_config(tmp_path)


def test_missing_files_fall_back_to_defaults_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="alphapulse_dagster.config"):
        config = load_config(tmp_path)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "symbol_config.yaml and mtf_config.yaml not found" in warnings[0].getMessage()
    assert config.mtf.min_entry_candles == 200
    assert config.mtf.fallback_atr_pct == 0.01
    assert config.mtf.risk.stop_loss_atr_multiplier == 1.5
    assert [s.symbol for s in config.symbols.enabled()] == ["BTCUSD"]


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "mtf_config.yaml", "mtf_strategies: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML") as caught:
        load_config(tmp_path)
    assert str(path) in str(caught.value)


def test_env_var_selects_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "symbol_config.yaml", "symbols:\n  - symbol: ETHUSD\n")
    write(tmp_path, "mtf_config.yaml", "mtf_strategies:\n  min_entry_candles: 150\n")
    monkeypatch.setenv("ALPHAPULSE_CONFIG_DIR", str(tmp_path))
    config = load_config()
    assert [s.symbol for s in config.symbols.symbols] == ["ETHUSD"]
    assert config.mtf.min_entry_candles == 150


def test_unknown_head_names_file_and_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "mtf_config.yaml",
        "mtf_strategies:\n  signal:\n    heads: [trend, momentum, my_pkg.heads:nope, volume]\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    message = str(caught.value)
    assert str(path) in message and "mtf_strategies.signal.heads.2" in message
    assert "cannot import head 'my_pkg.heads:nope'" in message


def test_custom_head_by_dotted_path_loads(tmp_path: Path) -> None:
    write(
        tmp_path,
        "mtf_config.yaml",
        "mtf_strategies:\n  signal:\n    heads: [trend, momentum, "
        "'alphapulse_dagster.signals.example_heads:mean_reversion_head']\n"
        "    min_agreeing_heads: 2\n",
    )
    config = load_config(tmp_path)
    assert (
        config.mtf.signal.heads[-1]
        == "alphapulse_dagster.signals.example_heads:mean_reversion_head"
    )
