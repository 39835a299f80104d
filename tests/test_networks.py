"""The networks' orthogonal initializer: orthogonal, the standard distribution, and LAPACK-free."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from superlearner.networks import orthogonal


@pytest.mark.parametrize("shape", [(64, 64), (4, 64), (64, 2), (3, 3, 5, 32), (300, 17)])
def test_orthogonal_matches_the_qr_initializer(shape):
    key = jax.random.key(3)
    ours = np.asarray(orthogonal(1.7)(key, shape))
    reference = np.asarray(jax.nn.initializers.orthogonal(1.7)(key, shape))
    assert ours.shape == shape
    # The same draw and the same Q (R's diagonal positive), so the same values up to rounding.
    np.testing.assert_allclose(ours, reference, atol=2e-5)
    matrix = ours.reshape(-1, shape[-1]) / 1.7
    gram = matrix.T @ matrix if matrix.shape[0] >= matrix.shape[1] else matrix @ matrix.T
    np.testing.assert_allclose(gram, np.eye(gram.shape[0]), atol=1e-5)


def test_vmapped_orthogonal_init_calls_no_lapack_kernel():
    # A batched LAPACK QR (a vmapped population's init) deadlocked XLA:CPU's thread pool; the
    # initializer must lower to plain arithmetic, batched or not.
    init = jax.vmap(lambda k: orthogonal(1.0)(k, (64, 64)))
    text = jax.jit(init).lower(jax.random.split(jax.random.key(0), 2)).as_text()
    assert "custom_call" not in text
    values = np.asarray(init(jax.random.split(jax.random.key(0), 2)))
    assert not np.allclose(values[0], values[1])
    np.testing.assert_allclose(values[1].T @ values[1], np.eye(64), atol=1e-5)


def test_orthogonal_rejects_vectors():
    with pytest.raises(ValueError, match="rank >= 2"):
        orthogonal()(jax.random.key(0), (8,), jnp.float32)


@pytest.mark.parametrize(
    "preset, overrides",
    [("cartpole_metagrad", []), ("maze_dr", ["learner.memory=none"]), ("maze_dr", []), ("connect_four_pbt", [])],
)
def test_population_inits_call_no_lapack_kernel(preset, overrides):
    # Every network of a run (the meta-gradient's outer critic and the LSTM's recurrent kernel
    # too) must use the initializer above.
    from superlearner.config import load_config
    from superlearner.engine import make_engine

    engine = make_engine(load_config(preset, ["train.population_size=2", *overrides]))
    text = jax.jit(engine.init).lower(jnp.int32(0)).as_text()
    assert "lapack" not in text.lower()
