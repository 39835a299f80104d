"""CartPole: step-for-step agreement with gymnasium's CartPole-v1, truncation, params, rendering."""

import math
import xml.etree.ElementTree as ET

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import superlearner as sl
from superlearner.envs.cartpole import CartPole, CartPoleParams

NUM_STEPS = 300


@pytest.fixture(scope="module")
def env():
    return CartPole()


def balancing_action(state):
    """A linear controller that keeps the pole up and the cart near the centre indefinitely."""
    push = state.theta + 0.5 * state.theta_dot + 0.01 * state.x + 0.1 * state.x_dot
    return (push > 0).astype(jnp.int32)


def test_registry_builds_cartpole():
    env = sl.make("cartpole")
    assert isinstance(env, CartPole)
    assert env.num_players == 1 and env.num_actions == 2
    assert env.observation_shape == (4,) and env.max_episode_steps == 500


def test_default_params_are_gymnasium_constants(env):
    params = env.default_params
    gym_env = gymnasium.make("CartPole-v1").unwrapped
    for name, gym_value in [
        ("gravity", gym_env.gravity),
        ("masscart", gym_env.masscart),
        ("masspole", gym_env.masspole),
        ("length", gym_env.length),
        ("force_mag", gym_env.force_mag),
        ("tau", gym_env.tau),
        ("theta_threshold", gym_env.theta_threshold_radians),
        ("x_threshold", gym_env.x_threshold),
    ]:
        value = getattr(params, name)
        assert value.dtype == jnp.float32 and value.shape == ()
        assert float(value) == pytest.approx(gym_value, rel=1e-7), name
    assert gym_env.kinematics_integrator == "euler"


def test_matches_gymnasium_step_for_step(env):
    """Random actions over several episodes; gymnasium starts each episode from our start state.

    Within an episode the two run independently (float32 here, float64 there), so this also
    checks that rounding never moves the step at which an episode ends.
    """
    gym_env = gymnasium.make("CartPole-v1").unwrapped
    gym_env.reset(seed=0)
    reset, step = jax.jit(env.reset), jax.jit(env.step)
    rng = np.random.default_rng(0)
    key = jax.random.key(0)

    key, reset_key = jax.random.split(key)
    state = reset(reset_key)
    gym_env.state = np.asarray(state.observation, np.float64)
    episode_lengths, length = [], 0
    for _ in range(NUM_STEPS):
        action = int(rng.integers(2))
        key, step_key = jax.random.split(key)
        state = step(state, jnp.int32(action), step_key)
        gym_obs, gym_reward, gym_terminated, gym_truncated, _ = gym_env.step(action)
        length += 1
        np.testing.assert_allclose(state.observation, gym_obs, rtol=1e-5, atol=1e-5)
        assert bool(state.terminated) == gym_terminated, f"termination differs at step {length}"
        assert float(state.rewards[0]) == gym_reward == 1.0
        assert not bool(state.truncated) and not gym_truncated
        if gym_terminated:
            episode_lengths.append(length)
            length = 0
            key, reset_key = jax.random.split(key)
            state = reset(reset_key)
            gym_env.reset()
            gym_env.state = np.asarray(state.observation, np.float64)
    assert len(episode_lengths) >= 5, episode_lengths


def test_one_step_matches_gymnasium_from_states_near_the_limits(env):
    """From hand-made states close to the thresholds, including large velocities."""
    gym_env = gymnasium.make("CartPole-v1").unwrapped
    gym_env.reset(seed=0)
    step = jax.jit(env.step)
    starts = [
        (2.3, 4.0, 0.0, 0.0),  # leaves the track on the right
        (-2.3, -4.0, 0.0, 0.0),  # and on the left
        (0.0, 0.0, 0.2, 1.0),  # pole falls right
        (0.0, 0.0, -0.2, -1.0),  # pole falls left
        (1.0, -2.0, 0.19, -3.0),  # recovering
        (0.5, 1.5, -0.1, 2.5),
    ]
    for start in starts:
        for action in (0, 1):
            state = env.reset(jax.random.key(0))
            state = state.replace(**{k: jnp.float32(v) for k, v in zip(("x", "x_dot", "theta", "theta_dot"), start)})
            gym_env.state = np.asarray(env.observe(state, jnp.int32(0)), np.float64)
            gym_env.steps_beyond_terminated = None
            after = step(state, jnp.int32(action), jax.random.key(1))
            gym_obs, _, gym_terminated, _, _ = gym_env.step(action)
            np.testing.assert_allclose(after.observation, gym_obs, rtol=1e-5, atol=1e-5)
            assert bool(after.terminated) == gym_terminated, (start, action)


def test_reset_is_uniform_in_the_start_box(env):
    states = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(3), 4000))
    obs = np.asarray(states.observation)
    assert obs.dtype == np.float32
    assert np.all(np.abs(obs) <= 0.05)
    # Uniform on [-0.05, 0.05]: mean 0 and standard deviation 0.1 / sqrt(12) per coordinate.
    np.testing.assert_allclose(obs.mean(0), 0.0, atol=0.003)
    np.testing.assert_allclose(obs.std(0), 0.1 / math.sqrt(12), rtol=0.05)
    assert np.all(obs.min(0) < -0.049) and np.all(obs.max(0) > 0.049)


def test_truncates_at_exactly_500_steps_when_balanced(env):
    def episode(key):
        reset_key, play_key = jax.random.split(key)
        state = env.reset(reset_key)

        def body(state, step_key):
            state = env.step(state, balancing_action(state), step_key)
            return state, state

        return jax.lax.scan(body, state, jax.random.split(play_key, 510))[1]

    states = jax.jit(jax.vmap(episode))(jax.random.split(jax.random.key(0), 8))
    truncated = np.asarray(states.truncated)
    assert not np.asarray(states.terminated).any()
    assert not truncated[:, :499].any()
    assert truncated[:, 499:].all()  # the 500th step truncates, and the end is absorbing
    rewards = np.asarray(states.rewards[..., 0])
    np.testing.assert_array_equal(rewards[:, :500], 1.0)
    np.testing.assert_array_equal(rewards[:, 500:], 0.0)
    np.testing.assert_array_equal(np.asarray(states.step_count)[:, 499:], 500)


def test_step_limit_from_a_set_state(env):
    state = env.reset(jax.random.key(0)).replace(step_count=jnp.int32(499))
    after = env.step(state, jnp.int32(0), jax.random.key(1))
    assert bool(after.truncated) and not bool(after.terminated)
    assert float(after.rewards[0]) == 1.0
    # An episode that ends by the rules on the 500th step is terminated, not truncated.
    falling = state.replace(theta=jnp.float32(0.2094), theta_dot=jnp.float32(2.0))
    after = env.step(falling, jnp.int32(0), jax.random.key(1))
    assert bool(after.terminated) and not bool(after.truncated)
    assert float(after.rewards[0]) == 1.0


def test_params_of_the_wrong_shape_raise_user_error(env):
    params = env.default_params
    key = jax.random.key(0)
    bad = params.replace(gravity=jnp.full((2,), 9.8, jnp.float32))
    with pytest.raises(sl.UserError, match="gravity"):
        env.reset(key, bad)
    state = env.reset(key)
    with pytest.raises(sl.UserError, match="gravity"):
        env.step(state, jnp.int32(0), key, bad)
    with pytest.raises(sl.UserError):
        env.reset(key, sl.NoParams())


def test_gravity_changes_the_dynamics_under_vmap_over_params(env):
    default = env.default_params
    gravities = jnp.array([0.0, 9.8, 24.8], jnp.float32)
    batch = jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, gravities.shape), default)
    batch = batch.replace(gravity=gravities)

    start = env.reset(jax.random.key(0)).replace(
        x=jnp.float32(0), x_dot=jnp.float32(0), theta=jnp.float32(0.1), theta_dot=jnp.float32(0)
    )
    step = jax.jit(jax.vmap(env.step, in_axes=(None, None, None, 0)))
    after = step(start, jnp.int32(0), jax.random.key(1), batch)
    theta_dot = np.asarray(after.theta_dot)
    # Theta stays put for one Euler step; the angular velocity grows with gravity.
    np.testing.assert_allclose(after.theta, 0.1)
    assert theta_dot[0] < theta_dot[1] < theta_dot[2]
    np.testing.assert_allclose(
        np.asarray(after.observation)[1], np.asarray(env.step(start, jnp.int32(0), jax.random.key(1)).observation)
    )
    # Without gravity only the leftward push turns the pole: thetaacc = -cos(theta) * temp / ...
    total = 1.1
    temp = -10.0 / total
    expected = -math.cos(0.1) * temp / (0.5 * (4 / 3 - 0.1 * math.cos(0.1) ** 2 / total))
    assert theta_dot[0] == pytest.approx(0.02 * expected, rel=1e-5)


def test_episodes_last_longer_with_weaker_gravity(env):
    """Alternating pushes cancel out, so how soon the pole falls is set by gravity."""

    def mean_length(params, key):
        def episode(key):
            reset_key, play_key = jax.random.split(key)
            state = env.reset(reset_key, params)

            def body(carry, t):
                state, key = carry
                key, step_key = jax.random.split(key)
                state = env.step(state, (t % 2).astype(jnp.int32), step_key, params)
                return (state, key), state.terminated

            done = jax.lax.scan(body, (state, play_key), jnp.arange(300))[1]
            return jnp.argmax(done) + 1.0

        return jnp.mean(jax.vmap(episode)(jax.random.split(key, 256)))

    gravities = jnp.array([9.8, 2.0, 0.5], jnp.float32)
    params = jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, gravities.shape), env.default_params)
    params = params.replace(gravity=gravities)
    lengths = np.asarray(jax.jit(jax.vmap(mean_length))(params, jax.random.split(jax.random.key(0), 3)))
    assert lengths[0] + 5 < lengths[1] and lengths[1] + 5 < lengths[2], lengths


def test_text_and_svg_render(env):
    state = env.reset(jax.random.key(0)).replace(x=jnp.float32(1.2), theta=jnp.float32(0.15))
    text = env.render_text(state)
    assert "x=+1.200" in text and "+8.6 deg" in text and "[#]" in text
    lines = text.splitlines()
    track = lines[-1]
    cart_col = lines[-2].index("[#]") + 1
    # x = 1.2 is three quarters of the way along the 4.8 m track.
    assert abs(cart_col / (len(track) - 1) - 0.75) < 0.05
    svg = env.render_svg(state)
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    pole = [e for e in root if e.tag.endswith("line")][-1]
    # The pole leans right: its tip is right of its foot and above it.
    assert float(pole.get("x2")) > float(pole.get("x1"))
    assert float(pole.get("y2")) < float(pole.get("y1"))


def test_action_text(env):
    assert [env.action_to_text(a) for a in (0, 1)] == ["left", "right"]
    for text, action in [("left", 0), ("L", 0), ("0", 0), ("right", 1), (" r ", 1), ("1", 1)]:
        assert env.text_to_action(text) == action
    with pytest.raises(ValueError):
        env.text_to_action("up")


def test_params_is_a_pytree_of_float32_scalars(env):
    leaves = jax.tree.leaves(env.default_params)
    assert isinstance(env.default_params, CartPoleParams)
    assert len(leaves) == 9
    assert all(leaf.dtype == jnp.float32 and leaf.shape == () for leaf in leaves)
