"""Rating math for evaluation against fixed anchors: score intervals, Elo, Bradley-Terry.

Host-side numpy only. Everything here takes counts of finished games and returns plain numbers,
so it works the same on results from the arena, a checkpoint sweep or a hand-entered table.

* `score_summary`: a player's score ``(W + D/2) / N`` with a 95% Wilson interval.
* `elo_expected_score` / `elo_difference`: the Elo logistic curve and its inverse.
* `bradley_terry`: maximum a posteriori Bradley-Terry ratings on the Elo scale, anchored so a
  named player (by default ``"random"``) has a fixed rating, with 95% intervals from the
  inverse Fisher information.

References: E. B. Wilson, "Probable inference, the law of succession, and statistical
inference", JASA 1927. R. A. Bradley and M. E. Terry, "Rank analysis of incomplete block designs",
Biometrika 1952. D. R. Hunter, "MM algorithms for generalized Bradley-Terry models", Annals of
Statistics 2004 (the same likelihood; we maximise it by Newton's method).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np

from superlearner.errors import UserError

# 95% two-sided normal quantile.
Z_95 = 1.959963984540054
# Elo points per natural-log unit of strength: a difference of 400 Elo is odds of 10 to 1.
ELO_PER_NATS = 400.0 / math.log(10.0)


# ---------------------------------------------------------------------------------------------
# One player's score.


@dataclasses.dataclass(frozen=True)
class ScoreSummary:
    """A win/draw/loss record and its score with a 95% interval.

    Attributes:
      wins, draws, losses, games: the counts (``games = wins + draws + losses``).
      score: ``(wins + draws / 2) / games``; 0.5 when no game was played.
      low, high: the 95% Wilson score interval around ``score`` (0 and 1 when no game).
    """

    wins: int
    draws: int
    losses: int
    games: int
    score: float
    low: float
    high: float

    def __str__(self) -> str:
        return (
            f"+{self.wins} ={self.draws} -{self.losses} "
            f"score {self.score:.3f} [{self.low:.3f}, {self.high:.3f}]"
        )


def score_summary(wins: int, draws: int, losses: int, z: float = Z_95) -> ScoreSummary:
    """The score ``(W + D/2) / N`` of a record with a Wilson interval (95% by default).

    The interval is Wilson's score interval for a binomial proportion, applied to the score with
    each draw counted as half a win. Draws make the per-game variance smaller than the binomial
    ``p (1 - p)`` the interval assumes, so with draws the interval is conservative (a little
    wider than needed). Unlike the plain normal approximation it stays inside [0, 1] and keeps
    a non-zero width for all-win and all-loss records.

    Args:
      wins, draws, losses: non-negative game counts.
      z: the normal quantile of the two-sided level (1.96 for 95%).
    """
    counts = (wins, draws, losses)
    if any(not _is_count(c) for c in counts):
        raise UserError(
            f"score_summary: wins, draws and losses must be non-negative integers, got {counts}"
        )
    wins, draws, losses = (int(c) for c in counts)
    games = wins + draws + losses
    if games == 0:
        return ScoreSummary(wins, draws, losses, 0, 0.5, 0.0, 1.0)
    score = (wins + 0.5 * draws) / games
    low, high = wilson_interval(score, games, z)
    return ScoreSummary(wins, draws, losses, games, score, low, high)


def wilson_interval(p: float, n: float, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval ``(low, high)`` for a proportion ``p`` observed over ``n`` trials."""
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denom
    half = z / denom * math.sqrt(max(p * (1.0 - p), 0.0) / n + z2 / (4.0 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _is_count(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, np.integer)):
        return value >= 0
    if isinstance(value, (float, np.floating)):
        return value >= 0 and float(value).is_integer()
    return False


# ---------------------------------------------------------------------------------------------
# Elo.


def elo_expected_score(rating_a, rating_b):
    """The expected score of a player rated ``rating_a`` against one rated ``rating_b``.

    ``1 / (1 + 10 ** ((rating_b - rating_a) / 400))``; works on floats and numpy arrays.
    """
    diff = np.asarray(rating_b, np.float64) - np.asarray(rating_a, np.float64)
    result = 1.0 / (1.0 + np.power(10.0, diff / 400.0))
    return float(result) if np.ndim(result) == 0 else result


def elo_difference(score, clip: float = 1e-6):
    """The Elo difference that gives expected ``score`` (the inverse of `elo_expected_score`).

    ``score`` is clipped to ``[clip, 1 - clip]`` so a perfect record gives a large finite number.
    """
    s = np.clip(np.asarray(score, np.float64), clip, 1.0 - clip)
    result = 400.0 * np.log10(s / (1.0 - s))
    return float(result) if np.ndim(result) == 0 else result


# ---------------------------------------------------------------------------------------------
# Bradley-Terry.


@dataclasses.dataclass(frozen=True)
class Rating:
    """One row of a Bradley-Terry table.

    Attributes:
      name: the player.
      rating: the Elo-scale rating (the anchor's is fixed).
      low, high: the 95% interval of ``rating`` (both equal ``rating`` for the anchor, whose
        rating is fixed by definition: the intervals of the others are relative to it).
      stderr: the standard error of ``rating`` in Elo points.
      games: how many games the player took part in.
      score: the player's total score over those games (wins plus half the draws).
    """

    name: str
    rating: float
    low: float
    high: float
    stderr: float
    games: float
    score: float


PairResults = Mapping[tuple[str, str], Sequence[float]]


def bradley_terry(
    names: Sequence[str],
    results,
    anchor: str = "random",
    anchor_rating: float = 0.0,
    prior_sd: float = 1000.0,
    max_iterations: int = 100,
    tolerance: float = 1e-10,
    z: float = Z_95,
) -> list[Rating]:
    """Fits Bradley-Terry ratings on the Elo scale; returns rows sorted by rating, best first.

    The model: player i beats j with probability ``1 / (1 + 10 ** ((R_j - R_i) / 400))``. A draw
    counts as half a win for each side. The ratings maximise the log-likelihood plus a weak
    Gaussian prior (standard deviation ``prior_sd`` Elo) on each player's offset from the anchor,
    which keeps the ratings finite when a player won (or lost) every game and places players
    with no path of games to the anchor at the anchor's rating with a wide interval, instead of
    failing. With a few hundred games per pair the prior moves ratings by a few Elo at most.
    Newton's method with step halving solves it (the objective is strictly concave).

    The 95% intervals are ``rating +- z * stderr`` with the standard errors from the inverse of
    the observed information (Fisher information of the games plus the prior precision) over
    the free ratings; the anchor is fixed, so the others' intervals are relative to it.

    Args:
      names: the N distinct player names.
      results: either a float array ``[N, N]`` whose entry ``[i, j]`` is i's points against j
        (wins plus half the draws), or a mapping ``{(name_i, name_j): (wins, draws, losses)}``
        from i's side (a pair may appear in both orders; the records add up).
      anchor: the name whose rating is fixed.
      anchor_rating: the anchor's rating.
      prior_sd: the prior's standard deviation in Elo points (positive).
      max_iterations, tolerance: Newton stopping rules (tolerance on the step, in Elo).
      z: the normal quantile of the intervals.
    """
    names = list(names)
    if len(set(names)) != len(names):
        raise UserError(f"bradley_terry: player names must be distinct, got {names}")
    if anchor not in names:
        raise UserError(f"bradley_terry: anchor {anchor!r} is not among the players {names}")
    if not prior_sd > 0:
        raise UserError(f"bradley_terry: prior_sd must be positive, got {prior_sd}")
    points = _points_matrix(names, results)
    games = points + points.T
    num = len(names)

    # Work in natural-log strength units; the anchor's strength is 0 and is not a free variable.
    a = names.index(anchor)
    free = np.array([i for i in range(num) if i != a], dtype=np.int64)
    precision = (ELO_PER_NATS / prior_sd) ** 2
    theta = np.zeros(num)

    def objective(t):
        diff = t[:, None] - t[None, :]
        # points[i, j] * log sigmoid(t_i - t_j), written stably.
        loglik = -np.sum(points * np.logaddexp(0.0, -diff))
        return loglik - 0.5 * precision * np.sum(t**2)

    def gradient_and_information(t):
        diff = t[:, None] - t[None, :]
        p = _sigmoid(diff)
        grad = np.sum(points - games * p, axis=1) - precision * t
        weights = games * p * (1.0 - p)
        info = -weights
        info[np.diag_indices(num)] = weights.sum(axis=1)
        info = info + precision * np.eye(num)
        return grad, info

    for _ in range(max_iterations):
        grad, info = gradient_and_information(theta)
        step = np.zeros(num)
        step[free] = np.linalg.solve(info[np.ix_(free, free)], grad[free])
        current = objective(theta)
        scale = 1.0
        while scale > 1e-6 and objective(theta + scale * step) < current - 1e-12:
            scale *= 0.5
        theta = theta + scale * step
        if np.max(np.abs(scale * step), initial=0.0) * ELO_PER_NATS < tolerance:
            break

    _, info = gradient_and_information(theta)
    stderr = np.zeros(num)
    if free.size:
        covariance = np.linalg.inv(info[np.ix_(free, free)])
        stderr[free] = np.sqrt(np.clip(np.diag(covariance), 0.0, None)) * ELO_PER_NATS

    ratings = anchor_rating + theta * ELO_PER_NATS
    rows = [
        Rating(
            name=names[i],
            rating=float(ratings[i]),
            low=float(ratings[i] - z * stderr[i]),
            high=float(ratings[i] + z * stderr[i]),
            stderr=float(stderr[i]),
            games=float(games[i].sum()),
            score=float(points[i].sum()),
        )
        for i in range(num)
    ]
    return sorted(rows, key=lambda row: row.rating, reverse=True)


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _points_matrix(names: list[str], results) -> np.ndarray:
    num = len(names)
    if isinstance(results, Mapping):
        index = {name: i for i, name in enumerate(names)}
        points = np.zeros((num, num))
        for pair, record in results.items():
            if not (isinstance(pair, tuple) and len(pair) == 2):
                raise UserError(f"bradley_terry: result keys must be (name_i, name_j) pairs, got {pair!r}")
            unknown = [n for n in pair if n not in index]
            if unknown:
                raise UserError(f"bradley_terry: results name unknown players {unknown}; players are {names}")
            if len(record) != 3 or any(not _is_count(c) for c in record):
                raise UserError(
                    f"bradley_terry: result {pair!r} must be (wins, draws, losses) counts, got {record!r}"
                )
            i, j = index[pair[0]], index[pair[1]]
            if i == j:
                raise UserError(f"bradley_terry: result {pair!r} pairs a player with itself")
            wins, draws, losses = (float(c) for c in record)
            points[i, j] += wins + 0.5 * draws
            points[j, i] += losses + 0.5 * draws
        return points
    points = np.asarray(results, dtype=np.float64)
    if points.shape != (num, num):
        raise UserError(
            f"bradley_terry: results matrix has shape {points.shape}, expected ({num}, {num}) "
            f"for {num} players"
        )
    if not np.all(np.isfinite(points)) or np.any(points < 0):
        raise UserError("bradley_terry: results matrix entries must be finite and non-negative")
    points = points.copy()
    np.fill_diagonal(points, 0.0)
    return points
