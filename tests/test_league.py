"""League bookkeeping on hand-computed cases."""

import jax
import jax.numpy as jnp
import numpy as np

from superlearner.selfplay.league import (
    SELF, LeagueHparams, add_snapshot, init_league, league_score, maybe_add_snapshot, meta_entropy,
    nash_meta_strategy, opponent_distribution, record_results, sample_opponents,
)


def _hparams(**kw):
    values = dict(weight_self=0.0, weight_uniform=0.0, weight_pfsp_hard=0.0, weight_pfsp_even=0.0,
                  weight_meta=0.0, payoff_decay=0.5, beat_margin=0.7)
    values.update(kw)
    return LeagueHparams(**{k: jnp.float32(v) for k, v in values.items()})


def _league(win_rates, **kw):
    league = init_league({"w": jnp.zeros((2,))}, 4, _hparams(**kw))
    for i in range(1, len(win_rates)):
        league = add_snapshot(league, {"w": jnp.full((2,), float(i))}, i)
    return league.replace(win_rate=league.win_rate.at[: len(win_rates)].set(jnp.asarray(win_rates, jnp.float32)))


def test_pfsp_weights_by_hand():
    league = _league([0.2, 0.5, 0.9], weight_pfsp_hard=1.0)
    hard = np.array([0.8**2, 0.5**2, 0.1**2])
    np.testing.assert_allclose(opponent_distribution(league), np.r_[hard / hard.sum(), 0.0, 0.0], rtol=1e-6)
    league = _league([0.2, 0.5, 0.9], weight_pfsp_even=1.0)
    even = np.array([0.16, 0.25, 0.09])
    np.testing.assert_allclose(opponent_distribution(league), np.r_[even / even.sum(), 0.0, 0.0], rtol=1e-6)
    # A mixture: half self, half uniform over the three filled slots (the fourth is empty).
    league = _league([0.2, 0.5, 0.9], weight_self=1.0, weight_uniform=1.0)
    np.testing.assert_allclose(opponent_distribution(league), [1 / 6, 1 / 6, 1 / 6, 0.0, 0.5], rtol=1e-6)


def test_no_weights_falls_back_to_self_and_sampling_follows_the_distribution():
    league = _league([0.5, 0.5])
    np.testing.assert_allclose(opponent_distribution(league), [0, 0, 0, 0, 1.0])
    league = _league([0.2, 0.5, 0.9], weight_self=1.0, weight_pfsp_hard=1.0)
    draws = np.asarray(jax.jit(sample_opponents, static_argnums=2)(league, jax.random.key(0), 20000))
    probs = np.asarray(opponent_distribution(league))
    freq = [np.mean(draws == k) for k in range(4)] + [np.mean(draws == SELF)]
    np.testing.assert_allclose(freq, probs, atol=0.015)


def test_payoff_updates_by_hand():
    league = _league([0.5, 0.5, 0.5], payoff_decay=0.5)
    # Two wins against slot 1, a draw against slot 2, a loss against self (not recorded), and an
    # unfinished game against slot 0.
    opponent = jnp.array([1, 1, 2, SELF, 0])
    score = jnp.array([1.0, 1.0, 0.5, 0.0, 0.0])
    finished = jnp.array([True, True, True, True, False])
    league = jax.jit(record_results)(league, opponent, score, finished)
    # Slot 1: two decay steps of 0.5 towards 1: 0.5 -> 0.75 -> 0.875.
    np.testing.assert_allclose(league.win_rate[:3], [0.5, 0.875, 0.5], atol=1e-6)
    np.testing.assert_allclose(league.games[:3], [0, 2, 1])
    np.testing.assert_allclose(league_score(league), (0.5 + 0.875 + 0.5) / 3, atol=1e-6)


def test_snapshots_fill_a_ring_and_reset_their_record():
    league = _league([0.3])
    league = league.replace(win_rate=league.win_rate.at[0].set(0.9))
    for i in range(1, 6):
        league = maybe_add_snapshot(league, {"w": jnp.full((2,), float(i))}, jnp.int32(10 * i), every=10, rule="every")
    # Five added after the first: the ring of 4 holds snapshots 2..5, slot 0 was overwritten by #4.
    assert int(league.num_added) == 6
    np.testing.assert_array_equal(league.added_at, [40, 50, 20, 30])
    np.testing.assert_allclose(league.params["w"][:, 0], [4, 5, 2, 3])
    np.testing.assert_allclose(league.win_rate, 0.5)
    # Not due: nothing changes.
    same = maybe_add_snapshot(league, {"w": jnp.ones(2)}, jnp.int32(55), every=10, rule="every")
    assert int(same.num_added) == 6
    # The "beat" rule waits for the margin.
    low = maybe_add_snapshot(league, {"w": jnp.ones(2)}, jnp.int32(100), every=10, rule="beat")
    assert int(low.num_added) == 6
    high = maybe_add_snapshot(league.replace(win_rate=jnp.full((4,), 0.8)), {"w": jnp.ones(2)}, jnp.int32(100), every=10, rule="beat")
    assert int(high.num_added) == 7


# Rock, paper, scissors and a dominated fourth strategy that loses to everything.
RPS = np.array([[0, -1, 1, 1], [1, 0, -1, 1], [-1, 1, 0, 1], [-1, -1, -1, 0]], np.float32)


def test_nash_meta_strategy_solves_rock_paper_scissors_eager_jit_and_vmap():
    filled = jnp.array([True, True, True, True, False])
    payoff = jnp.zeros((5, 5)).at[:4, :4].set(RPS)
    solve = lambda m, f: nash_meta_strategy(m, f, 2000)  # noqa: E731
    for fn in (solve, jax.jit(solve)):
        np.testing.assert_allclose(fn(payoff, filled), [1 / 3, 1 / 3, 1 / 3, 0, 0], atol=0.01)
    # Only rock and paper in the league: paper is the equilibrium.
    batched = jax.vmap(solve)(jnp.stack([payoff, payoff]), jnp.stack([filled, jnp.array([True, True] + [False] * 3)]))
    np.testing.assert_allclose(batched[1], [0, 1, 0, 0, 0], atol=0.01)


def test_add_snapshot_writes_an_antisymmetric_payoff_row_and_solves_the_meta_game():
    league = init_league({"w": jnp.zeros(())}, 4, _hparams())
    assert float(league.meta_strategy.sum()) == 1.0
    for i in range(1, 4):
        # Snapshot i's row: its mean return against the slots before the write.
        row = jnp.zeros(4).at[:i].set(jnp.asarray(RPS[i, :i]))
        league = add_snapshot(league, {"w": jnp.float32(i)}, i, row, meta_solver="nash", solver_iterations=2000)
    np.testing.assert_allclose(league.payoff, RPS, atol=1e-6)
    np.testing.assert_allclose(league.meta_strategy, [1 / 3, 1 / 3, 1 / 3, 0], atol=0.01)
    np.testing.assert_allclose(float(meta_entropy(league)), np.log(3), atol=0.01)
    uniform = add_snapshot(league, {"w": jnp.float32(9)}, 9, meta_solver="uniform")
    # The ring replaced slot 0 (rock): its row and column are the new snapshot's (zeros here).
    np.testing.assert_allclose(uniform.payoff[0], 0.0)
    np.testing.assert_allclose(uniform.payoff[:, 0], 0.0)
    np.testing.assert_allclose(uniform.meta_strategy, 0.25)


def test_opponents_follow_the_meta_strategy_with_weight_meta():
    league = _league([0.5, 0.5, 0.5], weight_meta=1.0, weight_self=1.0)
    league = league.replace(meta_strategy=jnp.array([0.0, 0.25, 0.75, 0.0]))
    np.testing.assert_allclose(opponent_distribution(league), [0, 0.125, 0.375, 0, 0.5], rtol=1e-6)


def test_maybe_add_snapshot_measures_the_payoff_row_only_when_due():
    calls = []

    def payoff_fn(league, params, key):
        calls.append(1)  # traced once per branch compilation
        return jnp.full((league.capacity,), jnp.asarray(params["w"]).mean())

    league = _league([0.5])
    step = jax.jit(
        lambda lg, i, k: maybe_add_snapshot(lg, {"w": jnp.full((2,), 0.3)}, i, 10, "every", payoff_fn, k, "nash", 100)
    )
    same = step(league, jnp.int32(5), jax.random.key(0))
    assert int(same.num_added) == 1
    added = step(league, jnp.int32(10), jax.random.key(1))
    assert int(added.num_added) == 2
    np.testing.assert_allclose(added.payoff[1, 0], 0.3, atol=1e-6)
    np.testing.assert_allclose(added.payoff[0, 1], -0.3, atol=1e-6)
    # The new snapshot beats the only other one: it takes all the weight.
    np.testing.assert_allclose(added.meta_strategy, [0, 1, 0, 0], atol=1e-3)
