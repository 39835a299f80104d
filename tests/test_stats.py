"""Student-t quantiles and intervals against scipy's, for 2 to 100 seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from superlearner.stats import mean_interval, paired_interval, t_cdf, t_quantile

scipy_stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 9, 10, 11, 19, 30, 50, 99, 2.5])
@pytest.mark.parametrize("probability", [0.975, 0.95, 0.995, 0.6, 0.025])
def test_t_quantile_matches_scipy(df, probability):
    assert t_quantile(probability, df) == pytest.approx(scipy_stats.t.ppf(probability, df), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("value", [-3.0, -0.5, 0.0, 0.7, 2.2, 8.0])
def test_t_cdf_matches_scipy(value):
    for df in (1, 4, 17, 60):
        assert t_cdf(value, df) == pytest.approx(scipy_stats.t.cdf(value, df), abs=1e-12)


@pytest.mark.parametrize("seeds", [2, 3, 5, 12, 100])
def test_intervals_match_scipy(seeds):
    rng = np.random.default_rng(seeds)
    values, baselines = rng.normal(1.0, 0.3, seeds), rng.normal(0.8, 0.3, seeds)
    mean, half = mean_interval(values)
    low, high = scipy_stats.t.interval(0.95, seeds - 1, loc=values.mean(), scale=scipy_stats.sem(values))
    assert mean == pytest.approx(values.mean()) and half == pytest.approx((high - low) / 2, rel=1e-9)
    diff, diff_half = paired_interval(values, baselines)
    d = values - baselines
    assert diff == pytest.approx(d.mean())
    assert diff_half == pytest.approx(scipy_stats.t.ppf(0.975, seeds - 1) * d.std(ddof=1) / math.sqrt(seeds), rel=1e-9)


def test_one_value_has_no_interval_and_bad_input_is_refused():
    from superlearner.errors import UserError

    assert math.isnan(mean_interval([3.0])[1])
    with pytest.raises(UserError, match="pairs need both"):
        paired_interval([1.0, 2.0], [1.0])
    with pytest.raises(UserError, match="probability"):
        t_quantile(1.0, 3)
