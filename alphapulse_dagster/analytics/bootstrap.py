"""A seeded bootstrap interval for a mean (expectancy in R, paired ΔR).

Percentile bootstrap: ``resamples`` means of samples drawn with replacement, and the
(2.5 %, 97.5 %) percentiles of those means for a 95 % interval. The generator is seeded
and the values sorted first, so the same values (in any order, e.g. as a database returns
them) and seed always give the same interval.

Large samples are resampled ``m`` out of ``n`` (``m = MAX_DRAW``) and the spread of the
resampled means is scaled by √(m / n) around the sample mean: for a mean this is the same
interval to sampling error (the mean of m draws has variance σ²/m), at a cost that stops
growing with n. Below ``MAX_DRAW`` values it is the plain bootstrap.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

DEFAULT_SEED = 17
RESAMPLES = 2000
MAX_DRAW = 2000
_BLOCK = 1_000_000  # draws per vectorised step


def bootstrap_mean_ci(
    values: ArrayLike,
    *,
    seed: int = DEFAULT_SEED,
    resamples: int = RESAMPLES,
    level: float = 0.95,
) -> tuple[float, float] | None:
    """``(lo, hi)`` of the mean of ``values`` (NaN dropped); None for fewer than 2."""
    x = np.asarray(values, dtype=np.float64)
    x = np.sort(x[np.isfinite(x)])  # the same values in any order: the same interval
    n = len(x)
    if n < 2:
        return None
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    m = min(n, MAX_DRAW)
    means = np.empty(resamples)
    step = max(1, _BLOCK // m)
    for first in range(0, resamples, step):
        count = min(step, resamples - first)
        idx = rng.integers(0, n, size=(count, m), dtype=np.int64)
        means[first : first + count] = x[idx].mean(axis=1)
    centre = float(x.mean())
    spread = (means - means.mean()) * np.sqrt(m / n) if m < n else means - centre
    alpha = (1 - level) / 2
    lo, hi = np.quantile(spread, [alpha, 1 - alpha])
    return centre + float(lo), centre + float(hi)
