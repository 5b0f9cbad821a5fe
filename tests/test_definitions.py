"""The Dagster definitions load and validate; the package works as an installed wheel."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from alphapulse_dagster.definitions import defs

ROOT = Path(__file__).parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "target", [["-m", "alphapulse_dagster.definitions"], ["-w", "workspace.yaml"]]
)
def test_definitions_validate_cli(tmp_path: Path, target: list[str]) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    result = subprocess.run(
        [str(BIN / "dagster"), "definitions", "validate", *target],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All code locations passed validation" in result.stdout + result.stderr


def test_pinned_asset_keys_present() -> None:
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert "candles" in keys


def test_every_asset_links_to_its_source() -> None:
    """Code references: each materializable asset's metadata names the file (in this
    checkout) and line that define it, so the UI can open the source."""
    graph = defs.resolve_asset_graph()
    keys = graph.materializable_asset_keys
    assert {"candles", "signal_health"} <= {key.to_user_string() for key in keys}
    for key in keys:
        refs = graph.get(key).metadata.get("dagster/code_references")
        assert refs is not None, key
        (ref,) = refs.code_references
        path = Path(ref.file_path)
        assert path.is_file() and ROOT in path.parents, (key, ref.file_path)
        assert ref.line_number >= 1


@pytest.mark.slow
def test_installed_wheel_carries_config_and_sample(tmp_path: Path) -> None:
    wheel_dir, target = tmp_path / "wheel", tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheel_dir), str(ROOT)],
        check=True,
        timeout=300,
    )
    (wheel,) = wheel_dir.glob("alphapulse_dagster-*.whl")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    probe = (
        "import alphapulse_dagster, assets, resources, sensors, schemas, demo.run;"
        "from alphapulse_dagster.config import load_config;"
        "from alphapulse_dagster.paths import sample_market_data_dir;"
        "c = load_config();"
        "print(alphapulse_dagster.__file__);"
        "print(sorted(s.symbol for s in c.symbols.enabled()));"
        "print((sample_market_data_dir() / 'BTCUSD_1h.csv').is_file())"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("ALPHAPULSE_CONFIG_DIR", None)
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")
    assert lines[0].startswith(str(target))
    assert lines[1] == "['BTCUSD', 'EURUSD']"
    assert lines[2] == "True"
