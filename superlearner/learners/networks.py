"""Policy-value networks in `flax.nnx`.

`ActorCritic` maps an observation batch to masked-policy logits and a value. The torso is an MLP
for vector observations or a small convolutional stack for boards and grids (observations of
shape ``[H, W, C]``). Actor and critic have separate torsos, as in the PPO reference
implementations, so the value loss does not disturb the policy's features. ``dtype`` is the compute
dtype of the layers (bfloat16 on accelerators); parameters stay float32 and the heads return
float32.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

# Finite, very negative logit for illegal actions: -inf would turn 0 * log(0) into NaN.
ILLEGAL_LOGIT = -1e9

_ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu}


def orthogonal(scale: float = 1.0, column_axis: int = -1):
    """An orthogonal initializer (Saxe et al. 2014) that never calls LAPACK.

    The same distribution as ``jax.nn.initializers.orthogonal`` (and, up to rounding, the same
    values for the same key): the Q factor, with a positive-diagonal R, of a standard normal
    matrix, computed here by Gram-Schmidt orthogonalisation (each column twice, which keeps it
    orthogonal to float32 precision) instead of LAPACK's QR. On CPU, XLA runs LAPACK kernels on
    its own intra-op thread pool, and a batched one (a vmapped population's init) splits into
    tasks on that same pool and blocks waiting for them; when every pool thread is inside such a
    kernel, none is left to run the tasks and the program hangs forever (seen with two members on
    a two-core machine). Plain matrix arithmetic has no such wait.
    """

    def init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
        shape = tuple(shape)
        if len(shape) < 2:
            raise ValueError(f"orthogonal initializer needs a shape of rank >= 2, got {shape}")
        n_cols = shape[column_axis]
        n_rows = math.prod(shape) // n_cols
        matrix_shape = (n_cols, n_rows) if n_rows < n_cols else (n_rows, n_cols)
        q = orthonormal_columns(jax.random.normal(key, matrix_shape, jnp.float32))
        if n_rows < n_cols:
            q = q.T
        q = jnp.reshape(q, tuple(np.delete(shape, column_axis)) + (n_cols,))
        q = jnp.moveaxis(q, -1, column_axis)
        return (scale * q).astype(dtype)

    return init


def orthonormal_columns(a: jax.Array) -> jax.Array:
    """``[m, k] -> [m, k]`` (m >= k): the Q of ``a = Q R`` with R's diagonal positive, by classical
    Gram-Schmidt with reorthogonalisation ("twice is enough"), one column per scan step."""
    highest = jax.lax.Precision.HIGHEST

    def add_column(q, j):
        v = jax.lax.dynamic_index_in_dim(a, j, axis=1, keepdims=False)
        for _ in range(2):  # q's columns from j on are still zero, so they project nothing out
            v = v - jnp.matmul(q, jnp.matmul(v, q, precision=highest), precision=highest)
        v = v / jnp.linalg.norm(v)
        return jax.lax.dynamic_update_index_in_dim(q, v, j, axis=1), None

    q, _ = jax.lax.scan(add_column, jnp.zeros_like(a), jnp.arange(a.shape[1]))
    return q


def masked_logits(logits: jax.Array, legal_action_mask: jax.Array) -> jax.Array:
    """Logits with illegal actions pushed to ``ILLEGAL_LOGIT``. Shapes: ``[..., A]``."""
    return jnp.where(legal_action_mask, logits, ILLEGAL_LOGIT)


def _conv_same(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


@jax.custom_vjp
def conv2d_same(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """A stride-1 "SAME" convolution of ``x`` [B, H, W, I] with ``kernel`` [kh, kw, I, O] (odd
    sizes), giving [B, H, W, O].

    The gradients are written as forward convolutions and matrix products in the standard
    layouts. XLA's CPU backend runs the kernel gradient it derives itself (a convolution with the
    batch as the contracted feature) tens of times slower inside a loop such as ``lax.scan`` than
    outside one, and every update here runs inside loops (epochs, minibatches, iterations);
    written this way it runs at about the speed of a forward pass.
    """
    return _conv_same(x, kernel)


def _conv2d_same_fwd(x, kernel):
    return _conv_same(x, kernel), (x, kernel)


def _conv2d_same_bwd(residuals, dy):
    x, kernel = residuals
    kh, kw = kernel.shape[:2]
    # dx: the correlation of dy with the spatially flipped kernel, input and output swapped.
    dx = _conv_same(dy, jnp.flip(kernel, (0, 1)).swapaxes(2, 3))
    # dkernel[i, j, ci, co] = sum over b, h, w of x_padded[b, h + i, w + j, ci] * dy[b, h, w, co]:
    # one matrix product per kernel tap, [ci, B*H*W] @ [B*H*W, co]. (As one convolution, batch
    # ci and kernel dy, XLA's CPU backend took 2.4 times as long at AlphaZero's sizes.)
    b, h, w, ci = x.shape
    x_padded = jnp.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    dy_rows = dy.reshape(b * h * w, dy.shape[-1])
    taps = [
        jnp.matmul(x_padded[:, i:i + h, j:j + w, :].reshape(b * h * w, ci).T, dy_rows)
        for i in range(kh) for j in range(kw)
    ]
    return dx, jnp.stack(taps).reshape(kh, kw, ci, dy.shape[-1])


conv2d_same.defvjp(_conv2d_same_fwd, _conv2d_same_bwd)


class Conv(nnx.Module):
    """A stride-1 "SAME" 2-D convolution with bias over ``[B, H, W, I]`` (see `conv2d_same`).

    Parameters are float32; ``dtype`` is the compute type (input, kernel and bias are cast to it).
    """

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3, *, kernel_init=None,
                 dtype: jnp.dtype = jnp.float32, rngs: nnx.Rngs):
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        init = kernel_init or nnx.initializers.lecun_normal()
        shape = (kernel_size, kernel_size, in_features, out_features)
        self.dtype = dtype
        self.kernel = nnx.Param(init(rngs.params(), shape, jnp.float32))
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        dtype = self.dtype
        return conv2d_same(x.astype(dtype), self.kernel[...].astype(dtype)) + self.bias[...].astype(dtype)


class Torso(nnx.Module):
    """An MLP (``kind="mlp"``) or a conv stack followed by an MLP (``kind="conv"``)."""

    def __init__(
        self,
        observation_shape: Sequence[int],
        *,
        kind: str,
        hidden_sizes: Sequence[int],
        conv_channels: Sequence[int],
        activation: str,
        rngs: nnx.Rngs,
        dtype: jnp.dtype = jnp.float32,
    ):
        self.kind = kind
        self.dtype = dtype
        self.observation_ndim = len(observation_shape)
        self.activation = _ACTIVATIONS[activation]
        init = orthogonal(math.sqrt(2.0))
        self.convs = nnx.List()
        if kind == "conv":
            if len(observation_shape) != 3:
                raise ValueError(f"a conv torso needs [H, W, C] observations, got shape {tuple(observation_shape)}")
            channels = observation_shape[-1]
            for width in conv_channels:
                self.convs.append(Conv(channels, width, 3, kernel_init=init, dtype=dtype, rngs=rngs))
                channels = width
            flat = observation_shape[0] * observation_shape[1] * channels
        else:
            flat = int(math.prod(observation_shape))
        self.layers = nnx.List()
        for width in hidden_sizes:
            self.layers.append(nnx.Linear(flat, width, kernel_init=init, dtype=dtype, rngs=rngs))
            flat = width
        self.output_size = flat

    def __call__(self, observation: jax.Array) -> jax.Array:
        batch_shape = observation.shape[: observation.ndim - self.observation_ndim]
        x = observation.astype(self.dtype).reshape((-1,) + observation.shape[len(batch_shape):])
        for conv in self.convs:
            x = self.activation(conv(x))
        x = x.reshape((x.shape[0], -1))
        for layer in self.layers:
            x = self.activation(layer(x))
        return x.reshape(batch_shape + (x.shape[-1],))


class ActorCritic(nnx.Module):
    """Policy logits ``[..., A]`` and value ``[...]`` for observations ``[..., *observation_shape]``."""

    def __init__(
        self,
        observation_shape: Sequence[int],
        num_actions: int,
        *,
        kind: str = "mlp",
        hidden_sizes: Sequence[int] = (64, 64),
        conv_channels: Sequence[int] = (32, 32),
        activation: str = "tanh",
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        options = dict(kind=kind, hidden_sizes=hidden_sizes, conv_channels=conv_channels, activation=activation, dtype=dtype)
        self.actor_torso = Torso(observation_shape, **options, rngs=rngs)
        self.critic_torso = Torso(observation_shape, **options, rngs=rngs)
        self.policy_head = nnx.Linear(
            self.actor_torso.output_size, num_actions,
            kernel_init=orthogonal(0.01), dtype=dtype, rngs=rngs,
        )
        self.value_head = nnx.Linear(
            self.critic_torso.output_size, 1, kernel_init=orthogonal(1.0), dtype=dtype, rngs=rngs
        )

    def __call__(self, observation: jax.Array) -> tuple[jax.Array, jax.Array]:
        # Heads return float32 whatever the compute dtype: log-probabilities, ratios and losses
        # lose too much in bfloat16.
        logits = self.policy_head(self.actor_torso(observation)).astype(jnp.float32)
        return logits, self.value(observation)

    def value(self, observation: jax.Array) -> jax.Array:
        return self.value_head(self.critic_torso(observation))[..., 0].astype(jnp.float32)


class RecurrentActorCritic(nnx.Module):
    """A policy with memory: a torso (as `ActorCritic`'s), an LSTM over its features, and policy
    and value heads on the LSTM's output.

    The torso and the LSTM are shared by actor and critic: the memory has to serve both, and two
    LSTMs would double the sequential work of every step. The carry is ``(c, h)``, each
    ``[..., memory_size]`` float32; a zero carry is the memory of a fresh episode.
    """

    def __init__(
        self,
        observation_shape: Sequence[int],
        num_actions: int,
        *,
        kind: str = "mlp",
        hidden_sizes: Sequence[int] = (64, 64),
        conv_channels: Sequence[int] = (32, 32),
        activation: str = "tanh",
        memory_size: int = 128,
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.memory_size = memory_size
        self.torso = Torso(
            observation_shape, kind=kind, hidden_sizes=hidden_sizes, conv_channels=conv_channels,
            activation=activation, dtype=dtype, rngs=rngs,
        )
        # The recurrent kernel's default initializer is flax's QR-based orthogonal (see `orthogonal`).
        self.cell = nnx.OptimizedLSTMCell(
            self.torso.output_size, memory_size, recurrent_kernel_init=orthogonal(1.0), dtype=dtype, rngs=rngs
        )
        self.policy_head = nnx.Linear(memory_size, num_actions, kernel_init=orthogonal(0.01), dtype=dtype, rngs=rngs)
        self.value_head = nnx.Linear(memory_size, 1, kernel_init=orthogonal(1.0), dtype=dtype, rngs=rngs)

    def initial_carry(self, batch_shape: Sequence[int]) -> tuple[jax.Array, jax.Array]:
        zeros = jnp.zeros(tuple(batch_shape) + (self.memory_size,), jnp.float32)
        return zeros, zeros

    def _heads(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        logits = self.policy_head(y).astype(jnp.float32)
        return logits, self.value_head(y)[..., 0].astype(jnp.float32)

    def _cell(self, carry, projected_input):
        """The LSTM step from the input's projection ``dense_i(x)`` (the gates of
        `nnx.OptimizedLSTMCell`, which this computes; split so a sequence projects its inputs once)."""
        cell = self.cell
        c, h = carry
        i, f, g, o = jnp.split(projected_input + cell.dense_h(h), 4, axis=-1)
        c = cell.gate_fn(f) * c + cell.gate_fn(i) * cell.activation_fn(g)
        h = cell.gate_fn(o) * cell.activation_fn(c)
        return (c.astype(jnp.float32), h.astype(jnp.float32)), h

    def __call__(self, carry, observation: jax.Array):
        """One step for a batch ``[B, *observation_shape]``: ``(carry, logits [B, A], value [B])``."""
        carry, y = self._cell(carry, self.cell.dense_i(self.torso(observation)))
        return (carry,) + self._heads(y)

    def unroll(self, carry, observations: jax.Array, resets: jax.Array):
        """``L`` steps from ``carry`` ``[B, M]``: observations ``[L, B, ...]``, ``resets`` bool[L, B]
        (zero the carry before step t: an episode starts there). Returns logits ``[L, B, A]`` and
        values ``[L, B]``.

        The torso, the LSTM's input projection and the heads run once over all ``L * B``
        observations; only the recurrent part of the cell is a loop.
        """
        projected = self.cell.dense_i(self.torso(observations))

        def step(carry, inputs):
            x, reset = inputs
            carry = jax.tree.map(lambda c: jnp.where(reset[:, None], 0.0, c), carry)
            return self._cell(carry, x)

        # Unrolling the loop (lax.scan's unroll=4 or 8) made the update 2-3x slower on CPU.
        _, outputs = jax.lax.scan(step, carry, (projected, resets))
        return self._heads(outputs)


def choose_action(logits: jax.Array, key: jax.Array, greedy: bool) -> tuple[jax.Array, jax.Array]:
    """An action drawn from (or, greedy, the argmax of) masked ``logits`` and its log-probability."""
    if greedy:
        action = jnp.argmax(logits, axis=-1)
    else:
        action = jax.random.categorical(key, logits, axis=-1)
    log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), action[..., None], axis=-1)[..., 0]
    return action.astype(jnp.int32), log_prob
