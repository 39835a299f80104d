"""Tests of superlearner.selfplay.ratings: score intervals, Elo helpers, Bradley-Terry fits."""

import math

import numpy as np
import pytest

from superlearner.errors import UserError
from superlearner.selfplay.ratings import (
    bradley_terry,
    elo_difference,
    elo_expected_score,
    score_summary,
    wilson_interval,
)


# ------------------------------------------------------------------------------------------
# score_summary


def test_score_summary_counts_draws_as_half():
    s = score_summary(6, 2, 2)
    assert (s.wins, s.draws, s.losses, s.games) == (6, 2, 2, 10)
    assert s.score == pytest.approx(0.7)
    assert s.low < s.score < s.high
    assert 0.0 <= s.low and s.high <= 1.0


def test_score_summary_known_wilson_value():
    # Wilson interval for 8 successes in 10 trials at 95%: [0.4902, 0.9433].
    s = score_summary(8, 0, 2)
    assert s.low == pytest.approx(0.4902, abs=1e-4)
    assert s.high == pytest.approx(0.9433, abs=1e-4)


def test_score_summary_extremes_have_width_and_no_nan():
    all_wins = score_summary(20, 0, 0)
    assert all_wins.score == 1.0 and all_wins.high == pytest.approx(1.0)
    assert 0.8 < all_wins.low < 1.0
    all_losses = score_summary(0, 0, 20)
    assert all_losses.low == 0.0 and 0.0 < all_losses.high < 0.2
    empty = score_summary(0, 0, 0)
    assert (empty.score, empty.low, empty.high, empty.games) == (0.5, 0.0, 1.0, 0)


def test_score_summary_width_shrinks_like_one_over_root_n():
    small = score_summary(60, 20, 20)
    large = score_summary(600, 200, 200)
    huge = score_summary(2400, 800, 800)
    w_small, w_large, w_huge = (s.high - s.low for s in (small, large, huge))
    assert w_small / w_large == pytest.approx(math.sqrt(10), rel=0.05)
    assert w_large / w_huge == pytest.approx(2.0, rel=0.02)


def test_score_interval_covers_the_true_mean_on_synthetic_data():
    # Games with P(win)=0.45, P(draw)=0.2, P(loss)=0.35: true score 0.55. The 95% interval
    # should cover it in at least ~95% of repetitions (Wilson is conservative with draws).
    rng = np.random.default_rng(0)
    true_score = 0.45 + 0.5 * 0.2
    outcomes = rng.choice(3, size=(400, 200), p=[0.45, 0.2, 0.35])
    covered = 0
    for row in outcomes:
        counts = np.bincount(row, minlength=3)
        s = score_summary(*counts)
        covered += s.low <= true_score <= s.high
    assert covered / len(outcomes) >= 0.93


def test_score_summary_rejects_bad_counts():
    with pytest.raises(UserError, match="non-negative integers"):
        score_summary(-1, 0, 3)
    with pytest.raises(UserError, match="non-negative integers"):
        score_summary(1.5, 0, 3)


def test_wilson_interval_is_symmetric_around_a_half():
    low, high = wilson_interval(0.5, 100)
    assert low + high == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------
# Elo helpers


def test_elo_expected_score_known_values():
    assert elo_expected_score(0.0, 0.0) == pytest.approx(0.5)
    assert elo_expected_score(400.0, 0.0) == pytest.approx(10 / 11)
    assert elo_expected_score(0.0, 400.0) == pytest.approx(1 / 11)
    both = elo_expected_score(np.array([100.0, -100.0]), 0.0)
    assert both.shape == (2,) and both.sum() == pytest.approx(1.0)


def test_elo_difference_inverts_expected_score():
    for diff in (-700.0, -150.0, 0.0, 42.0, 900.0):
        assert elo_difference(elo_expected_score(diff, 0.0)) == pytest.approx(diff, abs=1e-6)
    assert np.isfinite(elo_difference(1.0)) and elo_difference(1.0) > 1000


# ------------------------------------------------------------------------------------------
# Bradley-Terry


def _synthetic_round_robin(true_ratings, games_per_pair, rng, draw_rate=0.0):
    """Results {(a, b): (w, d, l)} drawn from the Elo model (draws split the win probability)."""
    names = list(true_ratings)
    results = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            p = elo_expected_score(true_ratings[a], true_ratings[b])
            # A draw takes draw_rate of the mass, half from each side, so the expected score is p.
            p_draw = draw_rate * min(p, 1 - p) * 2
            p_win = p - p_draw / 2
            w, d, l = rng.multinomial(games_per_pair, [p_win, p_draw, 1 - p_win - p_draw])
            results[(a, b)] = (int(w), int(d), int(l))
    return names, results


def test_bradley_terry_recovers_known_ratings_within_intervals():
    true = {"random": 0.0, "minimax:1": 150.0, "minimax:2": 350.0, "agent": 500.0, "weak": -200.0}
    rng = np.random.default_rng(1)
    names, results = _synthetic_round_robin(true, 400, rng, draw_rate=0.3)
    table = bradley_terry(names, results, anchor="random")
    by_name = {row.name: row for row in table}
    assert by_name["random"].rating == 0.0
    for name, rating in true.items():
        row = by_name[name]
        assert row.low <= rating <= row.high, (name, row, rating)
        assert row.rating == pytest.approx(rating, abs=60)
    # Sorted best first, and the order is the true order.
    assert [row.name for row in table] == sorted(true, key=true.get, reverse=True)
    assert all(math.isfinite(x) for row in table for x in (row.rating, row.low, row.high))


def test_bradley_terry_interval_coverage_over_repetitions():
    true = {"random": 0.0, "a": 200.0, "b": 400.0}
    rng = np.random.default_rng(2)
    hits, trials = 0, 60
    for _ in range(trials):
        names, results = _synthetic_round_robin(true, 150, rng)
        rows = {r.name: r for r in bradley_terry(names, results, anchor="random")}
        hits += rows["b"].low <= 400.0 <= rows["b"].high
    assert hits / trials >= 0.88


def test_bradley_terry_anchoring_shifts_every_rating():
    true = {"random": 0.0, "a": 200.0, "b": 450.0}
    names, results = _synthetic_round_robin(true, 300, np.random.default_rng(3))
    base = {r.name: r.rating for r in bradley_terry(names, results, anchor="random")}
    shifted = {r.name: r for r in bradley_terry(names, results, anchor="random", anchor_rating=1000.0)}
    assert shifted["random"].rating == 1000.0
    assert shifted["random"].low == shifted["random"].high == 1000.0
    for name in names:
        assert shifted[name].rating == pytest.approx(base[name] + 1000.0, abs=1e-6)
    by_a = {r.name: r.rating for r in bradley_terry(names, results, anchor="a", anchor_rating=0.0)}
    assert by_a["a"] == 0.0
    # Re-anchoring changes only the reference point (up to the prior's small pull).
    assert by_a["b"] - by_a["random"] == pytest.approx(base["b"] - base["random"], abs=5.0)


def test_bradley_terry_matrix_and_mapping_forms_agree():
    names = ["random", "x", "y"]
    results = {("x", "random"): (30, 10, 10), ("y", "x"): (20, 0, 30), ("random", "y"): (5, 5, 40)}
    points = np.zeros((3, 3))
    points[1, 0], points[0, 1] = 35, 15
    points[2, 1], points[1, 2] = 20, 30
    points[0, 2], points[2, 0] = 7.5, 42.5
    a = bradley_terry(names, results)
    b = bradley_terry(names, points)
    assert [r.name for r in a] == [r.name for r in b]
    for ra, rb in zip(a, b):
        assert ra.rating == pytest.approx(rb.rating) and ra.stderr == pytest.approx(rb.stderr)
        assert ra.games == rb.games and ra.score == rb.score


def test_bradley_terry_unbeaten_player_is_finite_and_on_top():
    names = ["random", "mid", "champ"]
    results = {("mid", "random"): (70, 0, 30), ("champ", "random"): (100, 0, 0), ("champ", "mid"): (100, 0, 0)}
    rows = bradley_terry(names, results)
    assert rows[0].name == "champ"
    for row in rows:
        assert all(math.isfinite(v) for v in (row.rating, row.low, row.high, row.stderr))
    assert rows[0].rating > 600


def test_bradley_terry_disconnected_and_empty_players_do_not_fail():
    names = ["random", "a", "b", "c", "idle"]
    # a plays random; b and c only play each other; idle plays nobody; one pair is one-sided.
    results = {("a", "random"): (10, 0, 0), ("b", "c"): (30, 10, 10)}
    rows = {r.name: r for r in bradley_terry(names, results)}
    for row in rows.values():
        assert all(math.isfinite(v) for v in (row.rating, row.low, row.high, row.stderr))
    assert rows["b"].rating > rows["c"].rating
    # Players with no path to the anchor are only located by the prior: very wide intervals.
    assert rows["idle"].rating == pytest.approx(0.0, abs=1e-6)
    assert rows["idle"].high - rows["idle"].low > 3000
    assert rows["idle"].games == 0


def test_bradley_terry_rejects_bad_input():
    with pytest.raises(UserError, match="anchor"):
        bradley_terry(["a", "b"], np.zeros((2, 2)), anchor="random")
    with pytest.raises(UserError, match="shape"):
        bradley_terry(["random", "b"], np.zeros((3, 3)))
    with pytest.raises(UserError, match="unknown players"):
        bradley_terry(["random", "b"], {("random", "zz"): (1, 0, 0)})
    with pytest.raises(UserError, match="distinct"):
        bradley_terry(["random", "random"], np.zeros((2, 2)))
