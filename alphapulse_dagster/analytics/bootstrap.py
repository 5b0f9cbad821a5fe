"""A seeded bootstrap interval for a mean (expectancy in R, paired ΔR).

Percentile bootstrap: ``resamples`` means of samples drawn with replacement, and the
(2.5 %, 97.5 %) percentiles of those means for a 95 % interval. The generator is seeded
and the values sorted first, so the same values (in any order, e.g. as a database returns
them) and seed always give the same interval.

Many samples are bootstrapped at once (:func:`bootstrap_mean_cis`, a year of daily groups):
the draws depend only on the seed and the sample's size, so samples of one size share
them, and for samples of at most ``MAX_DRAW`` values the resampled means are one matrix
product (the draws as counts per value) instead of a gather per draw.

Large samples are resampled ``m`` out of ``n`` (``m = MAX_DRAW``) and the spread of the
resampled means is scaled by √(m / n) around the sample mean: for a mean this is the same
interval to sampling error (the mean of m draws has variance σ²/m), at a cost that stops
growing with n. Below ``MAX_DRAW`` values it is the plain bootstrap.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

DEFAULT_SEED = 17
RESAMPLES = 2000
MAX_DRAW = 2000
_BLOCK = 1_000_000  # draws per vectorised step
_ROWS = 256  # samples of one size whose means are computed together


def bootstrap_mean_ci(
    values: ArrayLike,
    *,
    seed: int = DEFAULT_SEED,
    resamples: int = RESAMPLES,
    level: float = 0.95,
) -> tuple[float, float] | None:
    """``(lo, hi)`` of the mean of ``values`` (NaN dropped); None for fewer than 2."""
    return bootstrap_mean_cis([values], seed=seed, resamples=resamples, level=level)[0]


def bootstrap_mean_cis(
    samples: Sequence[ArrayLike],
    *,
    seed: int = DEFAULT_SEED,
    resamples: int = RESAMPLES,
    level: float = 0.95,
) -> list[tuple[float, float] | None]:
    """:func:`bootstrap_mean_ci` of each sample, in order (module docstring)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    sorted_samples = []
    for values in samples:
        x = np.asarray(values, dtype=np.float64)
        sorted_samples.append(np.sort(x[np.isfinite(x)]))  # any order: the same interval
    by_size: dict[int, list[int]] = defaultdict(list)
    for i, x in enumerate(sorted_samples):
        if len(x) >= 2:
            by_size[len(x)].append(i)
    out: list[tuple[float, float] | None] = [None] * len(sorted_samples)
    alpha = (1 - level) / 2
    for n, members in by_size.items():
        draws = _draws(n, seed, resamples)
        for first in range(0, len(members), _ROWS):
            rows = members[first : first + _ROWS]
            x = np.stack([sorted_samples[i] for i in rows])
            means = _resampled_means(x, draws)
            centre = x.mean(axis=1, keepdims=True)
            m = draws.shape[1]
            spread = (
                (means - means.mean(axis=1, keepdims=True)) * np.sqrt(m / n)
                if m < n
                else means - centre
            )
            lo, hi = np.quantile(spread, [alpha, 1 - alpha], axis=1)
            for k, i in enumerate(rows):
                out[i] = (float(centre[k, 0] + lo[k]), float(centre[k, 0] + hi[k]))
    return out


def _draws(n: int, seed: int, resamples: int) -> NDArray[np.int64]:
    """The indices drawn for a sample of ``n`` values: ``resamples`` rows of
    ``m = min(n, MAX_DRAW)``, from the seeded generator, in blocks."""
    rng = np.random.default_rng(seed)
    m = min(n, MAX_DRAW)
    step = max(1, _BLOCK // m)
    blocks = [
        rng.integers(0, n, size=(min(step, resamples - first), m), dtype=np.int64)
        for first in range(0, resamples, step)
    ]
    return np.concatenate(blocks)


def _resampled_means(x: NDArray[np.float64], draws: NDArray[np.int64]) -> NDArray[np.float64]:
    """The mean of each row of ``draws`` for each sample (a row of ``x``): (samples,
    resamples). Up to ``MAX_DRAW`` values, the draws as counts per value times the values
    (one matrix product); above, each sample's drawn values are gathered."""
    resamples, m = draws.shape
    n = x.shape[1]
    if n <= MAX_DRAW:
        offsets = (np.arange(resamples, dtype=np.int64) * n)[:, None]
        counts = np.bincount((draws + offsets).ravel(), minlength=resamples * n)
        weights = counts.reshape(resamples, n) / m
        return x @ weights.T  # type: ignore[no-any-return]
    return np.stack([row[draws].mean(axis=1) for row in x])
