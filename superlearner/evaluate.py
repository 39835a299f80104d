"""Evaluation of single-agent policies: mean return and success rate with 95% intervals."""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from superlearner.env import Env

DEFAULT_MAX_STEPS = 10_000


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Returns of ``episodes`` independent episodes and their summary."""

    episodes: int
    mean_return: float
    return_low: float
    return_high: float
    success_rate: float | None
    success_low: float | None
    success_high: float | None
    returns: tuple[float, ...]

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["returns"] = list(self.returns)
        return out


def mean_confidence_interval(values: np.ndarray, z: float = 1.96) -> tuple[float, float, float]:
    """Mean and a normal-approximation 95% interval (``z`` standard errors)."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if values.size < 2:
        return mean, mean, mean
    half = z * float(values.std(ddof=1)) / math.sqrt(values.size)
    return mean, mean - half, mean + half


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float, float]:
    """A proportion and its Wilson score interval (well-behaved at 0 and 1)."""
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return p, max(0.0, centre - half), min(1.0, centre + half)


def run_episodes(
    env: Env,
    act_fn: Callable[[jax.Array, jax.Array, jax.Array], jax.Array],
    key: jax.Array,
    num_episodes: int,
    env_params=None,
    max_steps: int | None = None,
    params_batched: bool = False,
) -> np.ndarray:
    """Plays ``num_episodes`` episodes in parallel; returns float[num_episodes] returns of player 0.

    ``act_fn(observation[B, ...], legal_action_mask[B, A], key) -> action[B]``. Episodes run
    until every one has ended (or ``max_steps``); finished ones are absorbing.
    ``env_params`` is one level for all episodes, or (``params_batched``) one per episode.
    Compiles one program per call; inside a trace (or to reuse one program) call `play_episodes`.
    """
    play = jax.jit(lambda key: play_episodes(env, act_fn, key, num_episodes, env_params, max_steps, params_batched))
    return np.asarray(play(key))


def play_episodes(
    env: Env,
    act_fn: Callable[[jax.Array, jax.Array, jax.Array], jax.Array],
    key: jax.Array,
    num_episodes: int,
    env_params=None,
    max_steps: int | None = None,
    params_batched: bool = False,
) -> jax.Array:
    """The pure function behind `run_episodes`: float[num_episodes] returns of player 0."""
    limit = max_steps or env.max_episode_steps or DEFAULT_MAX_STEPS
    params = env.default_params if env_params is None else env_params
    params_axis = 0 if params_batched else None
    reset_key, loop_key = jax.random.split(key)
    states = jax.vmap(env.reset, in_axes=(0, params_axis))(jax.random.split(reset_key, num_episodes), params)
    returns = jnp.zeros((num_episodes,), jnp.float32)

    def cond(carry):
        states, _, _, t = carry
        return (t < limit) & ~jnp.all(states.terminated | states.truncated)

    def body(carry):
        states, returns, key, t = carry
        key, act_key, step_key = jax.random.split(key, 3)
        actions = act_fn(states.observation, states.legal_action_mask, act_key)
        states = jax.vmap(env.step, in_axes=(0, 0, 0, params_axis))(
            states, actions, jax.random.split(step_key, num_episodes), params
        )
        return states, returns + states.rewards[:, 0], key, t + 1

    _, returns, _, _ = jax.lax.while_loop(cond, body, (states, returns, loop_key, jnp.int32(0)))
    return returns


def summarize(env: Env, returns: np.ndarray) -> EvalResult:
    mean, low, high = mean_confidence_interval(returns)
    success = (None, None, None)
    if env.reward_threshold is not None:
        success = wilson_interval(int(np.sum(returns >= env.reward_threshold)), returns.size)
    return EvalResult(
        episodes=int(returns.size),
        mean_return=mean,
        return_low=low,
        return_high=high,
        success_rate=success[0],
        success_low=success[1],
        success_high=success[2],
        returns=tuple(float(r) for r in returns),
    )
