"""An example user-defined model head, registered through config by its dotted path.

To use it (or your own head, e.g. a trained model's predictions), list it under
``mtf_strategies.signal.heads`` in ``config/mtf_config.yaml``::

    mtf_strategies:
      signal:
        heads:
          - trend
          - momentum
          - breakout
          - volume
          - alphapulse_dagster.signals.example_heads:mean_reversion_head
        min_agreeing_heads: 3
        min_mean_confidence: 0.6

The pipeline resolves each entry with :func:`alphapulse_dagster.signals.model_heads.resolve_head`
(a built-in name, or ``"package.module:function"`` importable on the Python path). A head
is any callable ``(Bars) -> HeadOutput`` obeying the contract in
:mod:`alphapulse_dagster.signals.model_heads`: arrays shaped ``(n_symbols, n_bars)``, value at bar
``i`` computed from bars ``<= i`` only, direction in {-1, 0, +1}, confidence in [0, 1].
Parameterised heads can be exposed as module-level ``functools.partial`` objects.
"""

from __future__ import annotations

import numpy as np

from alphapulse_dagster.market import indicators as ind
from alphapulse_dagster.market.bars import Bars
from alphapulse_dagster.signals.model_heads import LONG, NONE, SHORT, HeadOutput


def mean_reversion_head(bars: Bars) -> HeadOutput:
    """Fade stretched moves: LONG when RSI(2) < 10, SHORT when RSI(2) > 90.

    Confidence 0.5 + 0.5 * (distance beyond the threshold / 10), capped at 1.
    Feature: rsi_2 (0-100).
    """
    rsi2 = ind.rsi(bars.close, 2)
    with np.errstate(invalid="ignore"):
        long, short = rsi2 < 10, rsi2 > 90
        stretch = np.where(long, 10 - rsi2, np.where(short, rsi2 - 90, 0.0))
    direction = np.where(long, LONG, np.where(short, SHORT, NONE)).astype(np.int8)
    confidence = np.where(direction != NONE, np.clip(0.5 + 0.05 * stretch, 0.0, 1.0), 0.0)
    return HeadOutput(direction, confidence, {"rsi_2": rsi2})
