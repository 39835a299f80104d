"""Evaluation of single-agent policies: mean return and success rate with 95% intervals.

A policy is given as an ``act_fn(observation[B, ...], legal_action_mask[B, A], key) ->
action[B]``, or, for a policy with memory, as a `RecurrentActFn` whose carry the episodes keep.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from superlearner.core.env import Env

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


class RecurrentActFn(NamedTuple):
    """A policy with memory for `run_episodes` / `play_episodes`.

    ``initial_carry(batch) -> carry`` is the memory of a fresh episode for ``batch`` episodes;
    ``step(observation[B, ...], legal_action_mask[B, A], key, carry) -> (action[B], carry)``.
    """

    initial_carry: Callable[[int], Any]
    step: Callable[..., tuple[jax.Array, Any]]


def learner_act_fn(learner, params, greedy: bool):
    """A PPO learner's policy with ``params`` as an act_fn: a plain function for a feed-forward
    policy, a `RecurrentActFn` for a recurrent one. ``greedy`` takes the argmax, else samples."""
    if getattr(learner, "recurrent", False):

        def step(observation, mask, key, carry):
            carry, action, _, _ = learner.step(params, carry, observation, mask, key, greedy=greedy)
            return action, carry

        return RecurrentActFn(initial_carry=learner.initial_carry, step=step)

    def act(observation, mask, key):
        return learner.act(params, observation, mask, key, greedy=greedy)[0]

    return act


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

    ``act_fn(observation[B, ...], legal_action_mask[B, A], key) -> action[B]``, or a
    `RecurrentActFn`. Episodes run until every one has ended (or ``max_steps``); finished ones
    are absorbing.
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
    recurrent = isinstance(act_fn, RecurrentActFn)
    memory = act_fn.initial_carry(num_episodes) if recurrent else None

    def cond(carry):
        states, _, _, _, t = carry
        return (t < limit) & ~jnp.all(states.terminated | states.truncated)

    def body(carry):
        states, returns, memory, key, t = carry
        key, act_key, step_key = jax.random.split(key, 3)
        if recurrent:
            actions, memory = act_fn.step(states.observation, states.legal_action_mask, act_key, memory)
        else:
            actions = act_fn(states.observation, states.legal_action_mask, act_key)
        states = jax.vmap(env.step, in_axes=(0, 0, 0, params_axis))(
            states, actions, jax.random.split(step_key, num_episodes), params
        )
        return states, returns + states.rewards[:, 0], memory, key, t + 1

    _, returns, _, _, _ = jax.lax.while_loop(cond, body, (states, returns, memory, loop_key, jnp.int32(0)))
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
