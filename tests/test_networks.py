"""The networks' orthogonal initializer (orthogonal, the standard distribution, LAPACK-free) and
convolution (the values and gradients of XLA's own)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flax import nnx

from superlearner.learners.networks import Torso, conv2d_same, orthogonal


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


def _native(x, kernel):
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def test_conv2d_same_gradients_match_the_native_convolution():
    x = jax.random.normal(jax.random.key(0), (4, 6, 7, 3))
    for size in (1, 3, 5):
        kernel = jax.random.normal(jax.random.key(size), (size, size, 3, 5))
        ours = lambda x, k: jnp.sum(jnp.sin(conv2d_same(x, k)))  # noqa: E731
        theirs = lambda x, k: jnp.sum(jnp.sin(_native(x, k)))  # noqa: E731
        np.testing.assert_allclose(conv2d_same(x, kernel), _native(x, kernel), atol=1e-5)
        for a, b in zip(jax.jit(jax.grad(ours, (0, 1)))(x, kernel), jax.grad(theirs, (0, 1))(x, kernel)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
        kernels = jnp.stack([kernel, -2.0 * kernel])
        got = jax.vmap(jax.grad(ours, (0, 1)), (None, 0))(x, kernels)
        want = jax.vmap(jax.grad(theirs, (0, 1)), (None, 0))(x, kernels)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype, tolerance", [(jnp.float32, 1e-5), (jnp.bfloat16, 5e-2)])
def test_conv_torso_matches_the_native_convolution_in_values_and_gradients(dtype, tolerance):
    """PPO's conv torso (convolutions, then dense layers) computes what XLA's convolution would, in
    its compute dtype, with the parameter gradients of that computation."""
    torso = Torso((6, 7, 2), kind="conv", hidden_sizes=(16,), conv_channels=(8, 4), activation="relu",
                  dtype=dtype, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(torso)
    observation = jax.random.bernoulli(jax.random.key(1), 0.4, (5, 6, 7, 2)).astype(jnp.float32)

    def reference(params, x):
        module = nnx.merge(graphdef, params)
        x = x.astype(dtype)
        for conv in module.convs:
            x = jax.nn.relu(_native(x, conv.kernel[...].astype(dtype)) + conv.bias[...].astype(dtype))
        x = x.reshape((x.shape[0], -1))
        for layer in module.layers:
            x = jax.nn.relu(layer(x))
        return x

    ours = lambda p, x: nnx.merge(graphdef, p)(x)  # noqa: E731
    want = reference(params, observation)
    got = ours(params, observation)
    assert got.dtype == want.dtype == dtype
    np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want, np.float32), rtol=tolerance, atol=tolerance)
    loss = lambda f: lambda p: jnp.sum(jnp.sin(f(p, observation).astype(jnp.float32)))  # noqa: E731
    got_grads = jax.tree.leaves(jax.jit(jax.grad(loss(ours)))(params))
    want_grads = jax.tree.leaves(jax.grad(loss(reference))(params))
    for a, b in zip(got_grads, want_grads):
        assert a.dtype == jnp.float32
        scale = max(float(jnp.max(jnp.abs(b))), 1.0)
        np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance * scale)
