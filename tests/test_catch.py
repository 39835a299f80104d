"""Catch: bsuite's rules (falling ball, clipped paddle, +1 or -1 at the bottom) and its preset."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import superlearner as sl
from superlearner.envs.catch import LEFT, RIGHT, STAY, Catch
from superlearner.errors import UserError


@pytest.fixture(scope="module")
def env():
    return Catch()


def _play(env, state, actions):
    states = [state]
    for action in actions:
        state = env.step(state, jnp.int32(action), jax.random.key(0))
        states.append(state)
    return states


def test_registry_builds_bsuite_catch():
    env = sl.make("catch")
    assert isinstance(env, Catch) and env.num_players == 1 and env.num_actions == 3
    assert env.observation_shape == (10, 5)
    assert sl.make("catch", rows=6, columns=3).observation_shape == (6, 3)
    for options, message in [({"rows": 1}, "rows=1 is out of range"), ({"columns": 2.5}, "columns=2.5 has type float")]:
        with pytest.raises(UserError, match=message):
            sl.make("catch", **options)


def test_the_start_is_a_ball_in_the_top_row_and_the_paddle_in_the_middle(env):
    states = jax.vmap(env.reset)(jax.random.split(jax.random.key(1), 2000))
    assert np.all(states.ball_row == 0) and np.all(states.paddle_column == 2)
    counts = np.bincount(np.asarray(states.ball_column), minlength=5)
    assert counts.sum() == 2000 and np.all(np.abs(counts - 400) < 80)  # uniform over the 5 columns
    board = np.asarray(states.observation[0])
    assert board.sum() == 2 and board[9, 2] == 1 and board[0, int(states.ball_column[0])] == 1


def test_the_ball_falls_a_row_per_step_and_the_paddle_clips_at_the_walls(env):
    state = env.reset(jax.random.key(0)).replace(ball_column=jnp.int32(4))
    states = _play(env, state, [LEFT, LEFT, LEFT, RIGHT, STAY])
    assert [int(s.ball_row) for s in states] == [0, 1, 2, 3, 4, 5]
    assert [int(s.paddle_column) for s in states] == [2, 1, 0, 0, 1, 1]
    assert all(float(s.rewards[0]) == 0.0 and not bool(s.terminated) for s in states)


@pytest.mark.parametrize("ball_column, moves, reward", [(4, [RIGHT, RIGHT], 1.0), (0, [LEFT], -1.0), (2, [], 1.0), (3, [], -1.0)])
def test_the_episode_ends_after_rows_minus_one_steps_with_a_catch_or_a_miss(env, ball_column, moves, reward):
    state = env.reset(jax.random.key(0)).replace(ball_column=jnp.int32(ball_column))
    actions = moves + [STAY] * (9 - len(moves))
    states = _play(env, state, actions)
    assert all(not bool(s.terminated) for s in states[:-1])
    last = states[-1]
    assert bool(last.terminated) and not bool(last.truncated) and int(last.step_count) == 9
    assert float(last.rewards[0]) == reward and int(last.ball_row) == 9
    # Exactly the rewards of bsuite: nothing before the last step.
    assert sum(float(s.rewards[0]) for s in states) == reward
    board = np.asarray(last.observation)
    assert board[9].sum() == (1 if reward > 0 else 2) and board[:9].sum() == 0


def test_a_catch_is_the_only_success_and_random_play_catches_about_a_fifth(env):
    assert env.reward_threshold == 1.0

    def episode(key):
        def body(carry, step_key):
            state, total = carry
            action = jax.random.randint(step_key, (), 0, 3)
            state = env.step(state, action, step_key)
            return (state, total + state.rewards[0]), None

        reset_key, play_key = jax.random.split(key)
        (state, total), _ = jax.lax.scan(body, (env.reset(reset_key), 0.0), jax.random.split(play_key, 9))
        return total

    returns = np.asarray(jax.jit(jax.vmap(episode))(jax.random.split(jax.random.key(3), 4000)))
    assert set(np.unique(returns)) <= {-1.0, 1.0}
    caught = float(np.mean(returns > 0))
    assert 0.12 < caught < 0.35  # a random walk of the paddle ends under the ball now and then


def test_text_moves_round_trip_and_bad_text_is_refused(env):
    for action in range(3):
        assert env.text_to_action(env.action_to_text(action)) == action
    with pytest.raises(ValueError, match="0/l/left"):
        env.text_to_action("up")
    assert "=" in env.render_text(env.reset(jax.random.key(0)))


@pytest.mark.slow
def test_the_catch_preset_learns_to_catch_every_ball(tmp_path):
    from superlearner.run.agent import load_agent
    from superlearner.config import load_config
    from superlearner.core.evaluate import run_episodes, summarize
    from superlearner.run.trainer import train

    config = load_config("catch_ppo", ["log.tensorboard=false", "train.eval_episodes=0"])
    assert train(config, tmp_path / "run", show_progress=False).completed
    agent = load_agent(tmp_path / "run")
    returns = run_episodes(agent.env, lambda o, m, k: agent.act_batch(o, m, k), jax.random.key(5), 200)
    outcome = summarize(agent.env, returns)
    assert outcome.success_rate >= 0.95, outcome  # random play catches about a fifth
