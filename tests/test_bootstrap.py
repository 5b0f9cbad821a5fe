"""The seeded bootstrap interval of a mean."""

from __future__ import annotations

import numpy as np

from alphapulse_dagster.analytics.bootstrap import MAX_DRAW, bootstrap_mean_ci


def test_same_seed_same_interval_other_seed_other_interval() -> None:
    x = np.random.default_rng(3).normal(0.2, 1.0, 200)
    assert bootstrap_mean_ci(x, seed=5) == bootstrap_mean_ci(x, seed=5)
    assert bootstrap_mean_ci(x, seed=5) != bootstrap_mean_ci(x, seed=6)


def test_interval_covers_the_known_mean_about_95_percent_of_the_time() -> None:
    # R-like draws of known mean: -1 (stop) w.p. 0.6, +2 (target) w.p. 0.4 -> mean 0.2
    rng = np.random.default_rng(11)
    covered, trials = 0, 200
    for trial in range(trials):
        x = np.where(rng.random(150) < 0.6, -1.0, 2.0)
        lo, hi = bootstrap_mean_ci(x, seed=trial, resamples=1000)
        covered += lo <= 0.2 <= hi
    assert 0.90 <= covered / trials <= 0.99


def test_large_samples_are_resampled_m_out_of_n_and_still_cover() -> None:
    x = np.random.default_rng(1).normal(0.5, 2.0, 4 * MAX_DRAW)
    lo, hi = bootstrap_mean_ci(x, seed=1)
    half_width = 1.96 * 2.0 / np.sqrt(len(x))  # the textbook interval of this mean
    assert lo <= 0.5 <= hi
    assert abs((hi - lo) / 2 - half_width) < 0.15 * half_width


def test_too_few_values_have_no_interval() -> None:
    assert bootstrap_mean_ci([1.0]) is None
    assert bootstrap_mean_ci([np.nan, 2.0]) is None


def test_the_order_of_the_values_does_not_change_the_interval() -> None:
    x = np.random.default_rng(3).normal(0.2, 1.0, 500)
    shuffled = np.random.default_rng(4).permutation(x)
    assert bootstrap_mean_ci(x, seed=9) == bootstrap_mean_ci(shuffled, seed=9)
