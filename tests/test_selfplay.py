"""Self-play rollouts: seats, perspective and signs, on real games."""

import jax
import jax.numpy as jnp
import numpy as np

import superlearner as sl
from superlearner.config import config_from_dict
from superlearner.engine import make_engine
from superlearner.selfplay import collect_self_play, outcome_score


def _engine(env_id="tic_tac_toe", **league):
    raw = {
        "env": {"id": env_id},
        "learner": {"num_envs": 16, "num_steps": 24, "num_minibatches": 2, "num_epochs": 1, "hidden_sizes": [16]},
        "league": {"capacity": 4, "snapshot_every": 1, **league},
        "train": {"total_env_steps": 16 * 24 * 4},
        "log": {"tensorboard": False},
    }
    return make_engine(config_from_dict(raw))


def test_learner_always_acts_at_its_own_decisions_and_rewards_have_its_sign():
    engine = _engine(weight_self=1.0, weight_uniform=1.0)
    state = engine.init(0)
    take = lambda x: jax.tree.map(lambda a: a[0], x)  # member 0
    params, league, matches = take(state.learner.params), take(state.league), take(state.env_state)
    collect = jax.jit(lambda m, l, k: collect_self_play(engine.env, engine.learner, params, l, m, take(state.env_params), k, 24))
    seats = []
    for seed in range(3):
        start = matches
        matches, league, rollout, stats = collect(matches, league, jax.random.key(seed))
        obs = np.asarray(rollout.observation)  # [T, N, 3, 3, 2]: mover's marks, then the opponent's
        own, other = obs[..., 0].sum((-1, -2)), obs[..., 1].sum((-1, -2))
        # At a learner decision, the learner has as many marks as the opponent (first seat) or one
        # fewer (second seat): the observation is the learner's own view.
        assert np.all((own == other) | (own == other - 1))
        seats.append(np.asarray(start.seat))
        # Rewards are the learner's: +1/-1 only at the end of a game, 0 otherwise.
        reward, cont = np.asarray(rollout.reward), np.asarray(rollout.continue_)
        assert np.all(reward[cont == 1] == 0)
        assert set(np.unique(reward[cont == 0])) <= {-1.0, 0.0, 1.0}
        # Transitions of finished games bootstrap from nothing.
        assert np.all(np.asarray(rollout.v_tp1)[cont == 0] == 0)
        assert float(stats.games) == float((cont == 0).sum())
        # The scores the league records agree with the rollout's final rewards.
        np.testing.assert_allclose(float(stats.score), np.mean(outcome_score(reward[cont == 0])), atol=1e-6)
    seats = np.concatenate(seats)
    assert 0.25 < seats.mean() < 0.75, "the learner must sit in both seats"


def test_against_a_random_snapshot_the_second_seat_moves_after_the_opening_reply():
    engine = _engine()
    state = engine.init(1)
    matches = jax.tree.map(lambda a: a[0], state.env_state)
    game = matches.game
    # Every game starts at a learner decision, with the opponent's opening move already made
    # where the learner sits second.
    np.testing.assert_array_equal(np.asarray(game.current_player), np.asarray(matches.seat))
    np.testing.assert_array_equal(np.asarray(game.step_count), np.asarray(matches.seat))


def test_kuhn_poker_rewards_are_the_learners_chips():
    engine = _engine("kuhn_poker", weight_self=1.0)
    state = engine.init(0)
    take = lambda x: jax.tree.map(lambda a: a[0], x)
    out = jax.jit(lambda k: collect_self_play(
        engine.env, engine.learner, take(state.learner.params), take(state.league), take(state.env_state),
        take(state.env_params), k, 24))(jax.random.key(3))
    reward, cont = np.asarray(out[2].reward), np.asarray(out[2].continue_)
    assert set(np.unique(reward[cont == 0])) <= {-2.0, -1.0, 1.0, 2.0}
    # Against itself the learner's expected result is zero: over many games, near zero.
    assert abs(reward[cont == 0].mean()) < 0.35
