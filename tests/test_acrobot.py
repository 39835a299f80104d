"""Acrobot: agreement with gymnasium's Acrobot-v1 step by step, rewards, termination, truncation."""

import math

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import superlearner as sl
from superlearner.envs.acrobot import Acrobot

FIELDS = ("theta1", "theta2", "theta1_dot", "theta2_dot")


@pytest.fixture(scope="module")
def env():
    return Acrobot()


def _gym():
    gym_env = gymnasium.make("Acrobot-v1").unwrapped
    gym_env.reset(seed=0)
    return gym_env


def _with(env, values, step_count=0):
    state = env.reset(jax.random.key(0))
    return state.replace(step_count=jnp.int32(step_count), **{k: jnp.float32(v) for k, v in zip(FIELDS, values)})


def test_registry_builds_acrobot(env):
    made = sl.make("acrobot")
    assert isinstance(made, Acrobot)
    assert made.num_players == 1 and made.num_actions == 3
    assert made.observation_shape == (6,) and made.max_episode_steps == 500
    assert made.reward_threshold == gymnasium.spec("Acrobot-v1").reward_threshold == -100.0


def test_default_params_are_gymnasium_constants(env):
    params, gym_env = env.default_params, _gym()
    for name, gym_value in [
        ("link_length_1", gym_env.LINK_LENGTH_1),
        ("link_mass_1", gym_env.LINK_MASS_1),
        ("link_mass_2", gym_env.LINK_MASS_2),
        ("link_com_1", gym_env.LINK_COM_POS_1),
        ("link_com_2", gym_env.LINK_COM_POS_2),
        ("link_moi", gym_env.LINK_MOI),
        ("dt", gym_env.dt),
        ("max_vel_1", gym_env.MAX_VEL_1),
        ("max_vel_2", gym_env.MAX_VEL_2),
        ("torque", gym_env.AVAIL_TORQUE[2]),
    ]:
        value = getattr(params, name)
        assert value.dtype == jnp.float32 and value.shape == ()
        assert float(value) == pytest.approx(gym_value, rel=1e-7), name
    assert gym_env.book_or_nips == "book" and gym_env.torque_noise_max == 0.0
    assert gym_env.LINK_LENGTH_2 == 1.0  # the goal test assumes both links are 1 m


def test_every_step_of_random_play_matches_gymnasium(env):
    """Along our own trajectories under random actions, gymnasium takes the same step from the same
    state: observation, reward and termination agree at every step (the state is re-synchronised
    each step, as float32 and float64 trajectories of a chaotic system drift apart)."""
    gym_env = _gym()
    reset, step = jax.jit(env.reset), jax.jit(env.step)
    rng = np.random.default_rng(0)
    key = jax.random.key(0)
    state = reset(key)
    compared = 0
    for index in range(1500):
        action = int(rng.integers(3))
        gym_env.state = np.asarray([getattr(state, k) for k in FIELDS], np.float64)
        after = step(state, jnp.int32(action), jax.random.fold_in(key, index))
        gym_obs, gym_reward, gym_terminated, _, _ = gym_env.step(action)
        np.testing.assert_allclose(after.observation, gym_obs, rtol=2e-5, atol=2e-5)
        assert float(after.rewards[0]) == gym_reward
        assert bool(after.terminated) == gym_terminated
        compared += 1
        state = reset(jax.random.fold_in(key, 10_000 + index)) if bool(after.terminated | after.truncated) else after
    assert compared == 1500


def test_steps_from_fast_states_match_gymnasium_including_wraps_and_clips(env):
    """Hand-made states that wrap an angle past pi or hit a velocity limit in one step."""
    gym_env = _gym()
    step = jax.jit(env.step)
    starts = [
        (3.1, 0.0, 3.0, 0.0),  # theta1 wraps from +pi to -pi
        (-3.1, 0.0, -3.0, 0.0),
        (0.0, 3.05, 0.0, 5.0),  # theta2 wraps
        (0.0, 0.0, 12.5, 0.0),  # theta1_dot at its 4 pi limit
        (0.5, -1.0, -12.0, 28.0),  # theta2_dot near its 9 pi limit
        (2.0, 1.0, 1.0, -1.0),
    ]
    for start in starts:
        for action in (0, 1, 2):
            gym_env.state = np.asarray(start, np.float64)
            after = step(_with(env, start), jnp.int32(action), jax.random.key(1))
            gym_obs, gym_reward, gym_terminated, _, _ = gym_env.step(action)
            np.testing.assert_allclose(after.observation, gym_obs, rtol=2e-5, atol=2e-5)
            assert bool(after.terminated) == gym_terminated and float(after.rewards[0]) == gym_reward
            assert -math.pi <= float(after.theta1) < math.pi and -math.pi <= float(after.theta2) < math.pi
            assert abs(float(after.theta1_dot)) <= 4 * math.pi + 1e-6
            assert abs(float(after.theta2_dot)) <= 9 * math.pi + 1e-5


def test_the_goal_terminates_with_reward_zero_and_hanging_truncates_at_500(env):
    # Near the top (tip about 2 m above the pivot): the next step ends the episode.
    after = env.step(_with(env, (math.pi - 0.05, 0.0, 0.0, 0.0)), jnp.int32(1), jax.random.key(0))
    assert bool(after.terminated) and not bool(after.truncated) and float(after.rewards[0]) == 0.0

    # Without torque from rest at the bottom nothing moves: -1 per step, truncated on the 500th.
    def episode(key):
        state = env.reset(key).replace(**{k: jnp.float32(0) for k in FIELDS})

        def body(state, step_key):
            state = env.step(state, jnp.int32(1), step_key)
            return state, state

        return jax.lax.scan(body, state, jax.random.split(key, 505))[1]

    states = jax.jit(episode)(jax.random.key(1))
    truncated = np.asarray(states.truncated)
    assert not np.asarray(states.terminated).any()
    assert not truncated[:499].any() and truncated[499:].all()
    rewards = np.asarray(states.rewards[:, 0])
    np.testing.assert_array_equal(rewards[:500], -1.0)
    np.testing.assert_array_equal(rewards[500:], 0.0)  # the end is absorbing


def test_reset_is_uniform_in_the_start_box(env):
    states = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(3), 4000))
    values = np.stack([np.asarray(getattr(states, k)) for k in FIELDS], axis=1)
    assert np.all(np.abs(values) <= 0.1)
    np.testing.assert_allclose(values.mean(0), 0.0, atol=0.005)
    np.testing.assert_allclose(values.std(0), 0.2 / math.sqrt(12), rtol=0.05)
    obs = np.asarray(states.observation)
    np.testing.assert_allclose(obs[:, 0], np.cos(values[:, 0]), rtol=1e-6)
    np.testing.assert_allclose(obs[:, 3], np.sin(values[:, 1]), atol=1e-6)


def test_heavier_second_link_changes_the_dynamics_under_vmap_over_params(env):
    masses = jnp.array([0.5, 1.0, 2.0], jnp.float32)
    batch = jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, masses.shape), env.default_params)
    batch = batch.replace(link_mass_2=masses)
    start = _with(env, (0.3, 0.0, 0.0, 0.0))
    after = jax.jit(jax.vmap(env.step, in_axes=(None, None, None, 0)))(start, jnp.int32(1), jax.random.key(1), batch)
    speeds = np.asarray(after.theta1_dot)
    assert len(set(speeds.round(6).tolist())) == 3
    np.testing.assert_allclose(speeds[1], float(env.step(start, jnp.int32(1), jax.random.key(1)).theta1_dot), rtol=1e-6)


def test_text_moves_round_trip_and_bad_text_is_refused(env):
    for action in range(3):
        assert env.text_to_action(str(action)) == action
    assert env.text_to_action("+") == 2 and env.text_to_action("neg") == 0
    with pytest.raises(ValueError, match="unknown move"):
        env.text_to_action("up")
    assert "tip height" in env.render_text(env.reset(jax.random.key(0)))
    assert env.render_svg(env.reset(jax.random.key(0))).startswith("<svg")
