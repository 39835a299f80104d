"""Statistics of studies over seeds: Student-t quantiles, intervals of means and of paired differences.

Pure Python (no array library), so a study script, the CLI and a test all use the same numbers.

* `t_quantile(probability, df)`: the Student-t quantile for any positive degrees of freedom.
* `mean_interval(values)`: the mean with the half-width of its two-sided Student-t interval.
* `paired_interval(values, baselines)`: the same for the differences of paired runs (the same
  seed, two methods).
"""

from __future__ import annotations

import math
from typing import Sequence

from superlearner.errors import UserError


def _incomplete_beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny, fraction_c = 1e-300, 1.0
    fraction_d = 1.0 - (a + b) * x / (a + 1.0)
    fraction_d = 1.0 / (fraction_d if abs(fraction_d) > tiny else tiny)
    result = fraction_d
    for m in range(1, 400):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            fraction_d = 1.0 + numerator * fraction_d
            fraction_d = 1.0 / (fraction_d if abs(fraction_d) > tiny else tiny)
            fraction_c = 1.0 + numerator / fraction_c
            fraction_c = fraction_c if abs(fraction_c) > tiny else tiny
            result *= fraction_d * fraction_c
        if abs(fraction_d * fraction_c - 1.0) < 1e-15:
            break
    return result


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _incomplete_beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _incomplete_beta_fraction(b, a, 1.0 - x) / b


def t_cdf(value: float, df: float) -> float:
    """The Student-t distribution function with ``df`` degrees of freedom."""
    tail = 0.5 * regularized_incomplete_beta(0.5 * df, 0.5, df / (df + value * value))
    return 1.0 - tail if value >= 0 else tail


def t_quantile(probability: float, df: float) -> float:
    """The Student-t quantile: the value below which ``probability`` of the distribution lies."""
    if not 0.0 < probability < 1.0:
        raise UserError(f"t_quantile: probability must be in (0, 1), got {probability}")
    if not df > 0:
        raise UserError(f"t_quantile: degrees of freedom must be positive, got {df}")
    if probability < 0.5:
        return -t_quantile(1.0 - probability, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < probability:
        high *= 2.0
    for _ in range(200):  # bisection to float precision
        middle = 0.5 * (low + high)
        if t_cdf(middle, df) < probability:
            low = middle
        else:
            high = middle
        if high - low < 1e-13 * max(1.0, high):
            break
    return 0.5 * (low + high)


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """``(mean, half_width)`` of the two-sided Student-t interval of the mean of ``values`` (NaN
    half-width for fewer than two values)."""
    values = [float(v) for v in values]
    if not values:
        raise UserError("mean_interval: no values")
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, math.nan
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    quantile = t_quantile(0.5 + 0.5 * confidence, len(values) - 1)
    return mean, quantile * math.sqrt(variance / len(values))


def paired_interval(values: Sequence[float], baselines: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """``(mean, half_width)`` of the differences ``values[i] - baselines[i]`` of paired runs."""
    if len(values) != len(baselines):
        raise UserError(f"paired_interval: {len(values)} values against {len(baselines)} baselines; pairs need both")
    return mean_interval([v - b for v, b in zip(values, baselines)], confidence)
