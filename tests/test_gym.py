"""Gymnasium both ways: superlearner envs as gymnasium envs, gymnasium envs as a source."""

from __future__ import annotations

import importlib.util
import warnings

import gymnasium
import jax.numpy as jnp
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gymnasium_check_env

import superlearner as sl
from superlearner.errors import UserError
from superlearner.core.gym import GymnasiumEnv, GymnasiumSource

OTHER_BUILTIN_ENVS = ["connect_four", "othello", "kuhn_poker", "maze", "cartpole"]


def lowest_legal_cell(state) -> int:
    """A deterministic opponent: the first legal action."""
    return int(np.argmax(np.asarray(state.legal_action_mask)))


def play(env: gymnasium.Env, seed: int, actions) -> list:
    """Resets with ``seed`` and plays ``actions`` (skipping the rest once the episode ends)."""
    obs, info = env.reset(seed=seed)
    trace = [(obs, info["action_mask"])]
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        trace.append((obs, reward, terminated, truncated, info["action_mask"]))
        if terminated or truncated:
            break
    return trace


def run_gymnasium_checker(env: gymnasium.Env) -> None:
    # The only warnings allowed are those about an unbounded observation Box: the env contract
    # does not state observation ranges.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gymnasium_check_env(env)
    messages = [str(w.message) for w in caught]
    unexpected = [m for m in messages if "infinity" not in m]
    assert not unexpected, unexpected


# ---------------------------------------------------------------------------------------------
# Superlearner envs as gymnasium envs.


@pytest.mark.parametrize("seat", [0, 1])
def test_tic_tac_toe_passes_gymnasium_check_env(seat):
    env = gymnasium.make("superlearner/tic_tac_toe", seat=seat, render_mode="ansi")
    run_gymnasium_checker(env.unwrapped)


def test_spaces_follow_the_env():
    env = sl.to_gymnasium("tic_tac_toe")
    assert isinstance(env, GymnasiumEnv)
    assert env.observation_space.shape == (3, 3, 2)
    assert env.observation_space.dtype == np.float32
    assert env.action_space == gymnasium.spaces.Discrete(9)
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs in env.observation_space
    assert info["action_mask"].dtype == np.int8 and info["action_mask"].shape == (9,)


def test_random_opponent_replies_inside_step():
    env = sl.to_gymnasium("tic_tac_toe", seat=0)
    obs, info = env.reset(seed=1)
    assert obs.sum() == 0 and info["action_mask"].tolist() == [1] * 9
    obs, reward, terminated, truncated, info = env.step(4)
    # The agent's mark and exactly one reply; the mask lists the 7 free cells.
    assert obs[..., 0].reshape(-1).tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 0]
    assert obs[..., 1].sum() == 1 and obs[1, 1, 1] == 0
    free = (obs[..., 0] + obs[..., 1]).reshape(-1) == 0
    assert info["action_mask"].tolist() == free.astype(np.int8).tolist()
    assert (reward, terminated, truncated) == (0.0, False, False)


def test_second_seat_sees_the_opening_move_after_reset():
    env = sl.to_gymnasium("tic_tac_toe", seat=1)
    obs, info = env.reset(seed=5)
    assert obs[..., 0].sum() == 0 and obs[..., 1].sum() == 1
    assert info["action_mask"].sum() == 8
    assert int(env.state.current_player) == 1


def test_reward_sums_over_the_opponent_replies():
    # Opponent always takes the lowest free cell.
    win = sl.to_gymnasium("tic_tac_toe", opponent=lowest_legal_cell)
    trace = play(win, 0, [3, 4, 5])  # opponent answers 0, 1; the agent completes row 3-4-5
    assert [t[1] for t in trace[1:]] == [0.0, 0.0, 1.0]
    assert trace[-1][2] is True

    lose = sl.to_gymnasium("tic_tac_toe", opponent=lowest_legal_cell)
    trace = play(lose, 0, [8, 5, 6])  # opponent answers 0, 1, then completes row 0-1-2
    assert [t[1] for t in trace[1:]] == [0.0, 0.0, -1.0]
    assert trace[-1][2] is True
    board = trace[-1][0]
    assert board[0, :, 1].tolist() == [1.0, 1.0, 1.0]  # the opponent's line, seen by the agent


def test_illegal_actions_end_the_episode_with_minus_one():
    env = sl.to_gymnasium("tic_tac_toe", opponent=lowest_legal_cell)
    env.reset(seed=0)
    env.step(4)  # opponent replies 0
    obs, reward, terminated, truncated, info = env.step(0)  # occupied
    assert (reward, terminated, truncated) == (-1.0, True, False)
    assert info["action_mask"].tolist() == [1] * 9  # finished states allow every action
    env.reset(seed=0)
    _, reward, terminated, _, _ = env.step(9)  # out of range
    assert (reward, terminated) == (-1.0, True)


def test_seeded_reset_is_reproducible():
    actions = [0, 1, 2, 3, 4, 5, 6, 7, 8]  # illegal moves end the episode too: still reproducible
    env = sl.to_gymnasium("tic_tac_toe")
    first = play(env, 7, actions)
    again = play(env, 7, actions)
    assert len(first) == len(again)
    for a, b in zip(first, again):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    # Different seeds give different opponent replies somewhere.
    openings = {tuple(play(env, seed, [4])[1][0][..., 1].reshape(-1)) for seed in range(12)}
    assert len(openings) > 1
    # A seed given to the constructor seeds the first unseeded reset.
    seeded = sl.to_gymnasium("tic_tac_toe", seed=7)
    obs, _ = seeded.reset()
    np.testing.assert_array_equal(obs, first[0][0])
    np.testing.assert_array_equal(seeded.step(0)[0], first[1][0])


def test_each_instance_compiles_step_once():
    env = sl.to_gymnasium("tic_tac_toe")
    for seed in range(3):
        play(env, seed, [0, 1, 2, 3, 4, 5, 6, 7, 8])
    assert env._step_fn._cache_size() == 1
    assert env._reset_fn._cache_size() == 1


def test_ansi_rendering_uses_render_text():
    env = sl.to_gymnasium("tic_tac_toe", render_mode="ansi", opponent=lowest_legal_cell)
    env.reset(seed=0)
    env.step(4)
    text = env.render()
    assert text == sl.make("tic_tac_toe").render_text(env.state)
    assert text.count("X") == 1 and text.count("O") == 1
    assert sl.to_gymnasium("tic_tac_toe").render() is None


def test_gymnasium_make_forwards_options():
    env = gymnasium.make("superlearner/tic_tac_toe", seat=1, opponent=lowest_legal_cell, seed=3)
    assert env.unwrapped.seat == 1
    obs, _ = env.reset()
    assert obs[0, 0, 1] == 1.0  # the opening move of the lowest-cell opponent
    with pytest.raises(UserError, match="unknown option"):
        gymnasium.make("superlearner/tic_tac_toe", board_size=4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(seat=2), "seat=2"),
        (dict(seat=-1), "seat=-1"),
        (dict(opponent="minimax"), "opponent='minimax'"),
        (dict(render_mode="rgb_array"), "render_mode='rgb_array'"),
        (dict(params=jnp.zeros(3)), "params"),
    ],
)
def test_user_errors(kwargs, message):
    with pytest.raises(UserError, match=message):
        sl.to_gymnasium("tic_tac_toe", **kwargs)


def test_options_with_an_env_object_are_rejected():
    with pytest.raises(UserError, match="env id"):
        sl.to_gymnasium(sl.make("tic_tac_toe"), board_size=4)
    with pytest.raises(UserError, match="expected a superlearner Env"):
        sl.to_gymnasium(42)


@pytest.mark.parametrize("env_id", OTHER_BUILTIN_ENVS)
def test_other_builtin_envs_pass_gymnasium_check_env(env_id):
    if importlib.util.find_spec(f"superlearner.envs.{env_id}") is None:
        pytest.skip(f"{env_id} is not in envs/ yet")
    env = gymnasium.make(f"superlearner/{env_id}").unwrapped
    run_gymnasium_checker(env)
    # Random legal play to the end: the mask always has a legal action and rewards are finite.
    rng = np.random.default_rng(0)
    obs, info = env.reset(seed=0)
    for _ in range(2000):
        assert info["action_mask"].any()
        action = rng.choice(np.flatnonzero(info["action_mask"]))
        obs, reward, terminated, truncated, info = env.step(action)
        assert obs.shape == env.observation_space.shape and np.isfinite(reward)
        if terminated or truncated:
            break
    assert terminated or truncated


# ---------------------------------------------------------------------------------------------
# Gymnasium envs as a training source.


def test_cartpole_source_shapes_rewards_and_auto_reset():
    num_envs = 3
    with GymnasiumSource("CartPole-v1", num_envs=num_envs) as source:
        assert (source.num_envs, source.num_actions, source.observation_shape) == (3, 2, (4,))
        obs, mask = source.reset(seed=0)
        assert obs.shape == (3, 4) and obs.dtype == np.float32
        assert mask.shape == (3, 2) and mask.dtype == np.bool_ and mask.all()
        lengths = np.zeros(num_envs, np.int32)
        num_done = 0
        for _ in range(40):
            # Always pushing left topples the pole within a few dozen steps.
            obs, reward, terminated, truncated, mask, info = source.step(np.zeros(num_envs, np.int64))
            lengths += 1
            assert reward.dtype == np.float32 and np.all(reward == 1.0)
            assert obs.shape == (3, 4) and mask.shape == (3, 2)
            done = terminated | truncated
            not_done = ~done
            np.testing.assert_array_equal(info["final_observation"][not_done], obs[not_done])
            for i in np.flatnonzero(done):
                final = info["final_observation"][i]
                # The episode ended out of bounds; the next one starts near the origin.
                assert abs(final[2]) > 0.2095 or abs(final[0]) > 2.4
                assert np.all(np.abs(obs[i]) <= 0.05)
                assert info["episode_length"][i] == lengths[i]
                assert info["episode_return"][i] == float(lengths[i])
                lengths[i] = 0
                num_done += 1
            assert np.all(info["episode_length"][not_done] == 0)
        assert num_done >= num_envs


def test_cartpole_source_seeding_and_errors():
    with GymnasiumSource("CartPole-v1", num_envs=2) as source:
        first, _ = source.reset(seed=11)
        again, _ = source.reset(seed=11)
        np.testing.assert_array_equal(first, again)
        assert not np.array_equal(first[0], first[1])  # copy i is seeded with seed + i
        with pytest.raises(UserError, match="shape"):
            source.step(np.zeros(3, np.int64))
    with pytest.raises(UserError, match="CartPole-v9|CartPole"):
        GymnasiumSource("CartPole-v9", num_envs=1)
    with pytest.raises(UserError, match="Discrete"):
        GymnasiumSource("Pendulum-v1", num_envs=1)
    with pytest.raises(UserError, match="num_envs"):
        GymnasiumSource([lambda: gymnasium.make("CartPole-v1")], num_envs=2)


def test_source_reads_action_masks_from_info():
    # A superlearner env through gymnasium reports its legal actions in info["action_mask"].
    fns = [lambda: gymnasium.make("superlearner/tic_tac_toe", opponent=lowest_legal_cell)] * 2
    with GymnasiumSource(fns) as source:
        _, mask = source.reset(seed=0)
        assert mask.all()
        obs, reward, terminated, truncated, mask, _ = source.step(np.array([4, 8]))
        # The opponent took cell 0 in both; the agent's own cell is taken too.
        assert mask[0].tolist() == [False, True, True, True, False, True, True, True, True]
        assert mask[1].tolist() == [False, True, True, True, True, True, True, True, False]
        _, reward, terminated, _, mask, info = source.step(np.array([0, 0]))  # illegal
        np.testing.assert_array_equal(reward, [-1.0, -1.0])
        assert terminated.all() and info["episode_length"].tolist() == [2, 2]
        assert mask.all()  # fresh episodes


def test_reset_options_change_the_level():
    env = sl.to_gymnasium("tic_tac_toe", params=sl.NoParams())
    obs, _ = env.reset(seed=0, options={"params": sl.NoParams()})
    assert obs.sum() == 0
    with pytest.raises(UserError, match="params"):
        env.reset(seed=0, options={"params": jnp.zeros(3)})
