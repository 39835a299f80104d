"""GAE against values computed by hand."""

import jax
import jax.numpy as jnp
import numpy as np

from superlearner.learners.returns import generalized_advantage_estimation


def _by_hand(r, v, v_next, gamma, cont, lam):
    advantages = np.zeros(len(r))
    running = 0.0
    for t in reversed(range(len(r))):
        delta = r[t] + gamma * v_next[t] - v[t]
        running = delta + gamma * lam * cont[t] * running
        advantages[t] = running
    return advantages


def test_gae_matches_hand_computed_values():
    r = np.array([1.0, 0.0, 2.0, 1.0], np.float32)
    v = np.array([0.5, 0.4, 0.3, 0.2], np.float32)
    # The episode ends after t=1 (terminal: next value 0), a new one starts at t=2.
    v_next = np.array([0.4, 0.0, 0.2, 0.7], np.float32)
    cont = np.array([1.0, 0.0, 1.0, 1.0], np.float32)
    gamma, lam = 0.9, 0.8
    got = generalized_advantage_estimation(
        jnp.asarray(r), jnp.asarray(v), jnp.asarray(v_next), jnp.full((4,), gamma), jnp.asarray(cont), jnp.float32(lam)
    )
    # Spelled out for t=3 and t=2: delta_3 = 1 + 0.9*0.7 - 0.2 = 1.43; A_2 = delta_2 + 0.72*A_3.
    assert np.isclose(got[3], 1.43, atol=1e-6)
    assert np.isclose(got[2], (2.0 + 0.9 * 0.2 - 0.3) + 0.72 * 1.43, atol=1e-6)
    # Nothing flows across the episode boundary at t=1.
    assert np.isclose(got[1], 0.0 - 0.4, atol=1e-6)
    np.testing.assert_allclose(got, _by_hand(r, v, v_next, gamma, cont, lam), atol=1e-6)


def test_gae_jit_and_vmap_agree_with_eager():
    key = jax.random.key(0)
    r, v, vn = jax.random.normal(key, (3, 5, 7))
    cont = (jax.random.uniform(jax.random.key(1), (5, 7)) > 0.2).astype(jnp.float32)
    gamma = jnp.full((7,), 0.97)
    eager = [generalized_advantage_estimation(r[i], v[i], vn[i], gamma, cont[i], 0.95) for i in range(5)]
    batched = jax.jit(jax.vmap(generalized_advantage_estimation, in_axes=(0, 0, 0, None, 0, None)))(
        r, v, vn, gamma, cont, 0.95
    )
    np.testing.assert_allclose(np.stack(eager), batched, atol=1e-5)
    for i in range(5):
        np.testing.assert_allclose(eager[i], _by_hand(*(np.asarray(x) for x in (r[i], v[i], vn[i])), 0.97, np.asarray(cont[i]), 0.95), atol=1e-5)
