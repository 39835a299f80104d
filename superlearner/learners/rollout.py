"""Collecting experience: N envs stepped T times by the learner's policy, with auto-reset."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from superlearner.core.env import Env
from superlearner.learners.ppo import PPO, Rollout
from superlearner.core.wrappers import EpisodeStats, step_auto_reset, update_episode_stats


def collect_single_agent(
    env: Env,
    learner: PPO,
    params,
    env_state,
    episode_stats: EpisodeStats,
    env_params,
    key: jax.Array,
    num_steps: int,
    bootstrap_truncation: bool = True,
    reset_params=None,
    carry=None,
    with_finished: bool = False,
):
    """Runs ``num_steps`` steps of N envs (leading axis of ``env_state``) under the policy.

    Args:
      env: a single-agent env.
      learner: the learner whose ``act`` and ``value`` are used.
      params: network parameters.
      env_state: State with leading axis N.
      episode_stats: EpisodeStats with leading axis N.
      env_params: the level of each env, leading axis N; also used for the next episode.
      key: consumed.
      num_steps: T (static).
      bootstrap_truncation: where an episode is truncated, bootstrap from the value of its last
        observation instead of treating the cut as a terminal state.
      reset_params: None, or levels with leading axes ``[T, N]``: where env n's episode ends at
        step t, its next episode plays ``reset_params[t, n]`` (a teacher's choice) instead of
        ``env_params[n]``.
      carry: recurrent learners only (``learner.recurrent``): the policy's carry per env
        (leaves ``[N, M]``), zero where an episode starts with this rollout's first step.

    Returns:
      ``(env_state, episode_stats, rollout)`` with rollout leading axes ``[T, N]``; with
      ``reset_params``, ``(env_state, episode_stats, rollout, env_params, finished)`` where
      ``env_params`` is each env's level after the last step and ``finished`` holds, per step,
      ``done`` (bool[T, N]) and the finished episode's ``episode_return`` (float[T, N]). A
      recurrent learner's carry after the last step (zero where an episode ended) comes last.
      ``with_finished`` returns ``env_params`` and ``finished`` without ``reset_params`` too.
    """
    if learner.recurrent != (carry is not None):
        raise ValueError("collect_single_agent: pass carry (the policy's) exactly when the learner is recurrent")
    num_envs = env_state.step_count.shape[0]

    teacher_levels = reset_params is not None
    with_finished = with_finished or teacher_levels
    # ``next_level`` is None without a teacher: the next episode then replays ``level``.
    step = jax.vmap(lambda s, a, k, p, q: step_auto_reset(env, s, a, k, p, q))

    def body(loop, inputs):
        env_state, stats, level, memory = loop
        step_key, next_level = inputs
        act_key, env_key = jax.random.split(step_key)
        recurrent_out = {}
        if memory is None:
            action, log_prob, value = learner.act(params, env_state.observation, env_state.legal_action_mask, act_key)
        else:
            memory_out, action, log_prob, value = learner.step(
                params, memory, env_state.observation, env_state.legal_action_mask, act_key
            )
            recurrent_out = dict(carry=memory, carry_out=memory_out)
            memory = memory_out
        next_state, final = step(env_state, action, jax.random.split(env_key, num_envs), level, next_level)
        stats = jax.vmap(update_episode_stats)(stats, final)
        out = dict(
            observation=env_state.observation,
            legal_action_mask=env_state.legal_action_mask,
            action=action,
            log_prob=log_prob,
            value=value,
            reward=final.rewards[:, 0],
            terminated=final.terminated,
            truncated=final.truncated,
            final_observation=final.observation,
            **recurrent_out,
        )
        ended = final.terminated | final.truncated
        if memory is not None:  # the next episode starts with an empty memory
            memory = jax.tree.map(lambda m: jnp.where(ended[:, None], 0.0, m), memory)
        if with_finished:
            out["episode_return"] = stats.last_return[:, 0]
        if teacher_levels:
            level = jax.tree.map(lambda new, old: jnp.where(_bcast(ended, new), new, old), next_level, level)
        return (next_state, stats, level, memory), out

    (env_state, episode_stats, env_params, memory), out = jax.lax.scan(
        body, (env_state, episode_stats, env_params, carry), (jax.random.split(key, num_steps), reset_params)
    )
    done = out["terminated"] | out["truncated"]
    if memory is None:
        last_value = learner.value(params, env_state.observation)
    else:
        last_value = learner.step_value(params, memory, env_state.observation)
    v_tp1 = next_values(out["value"], last_value)
    if bootstrap_truncation:
        if memory is None:
            final_value = learner.value(params, out["final_observation"])
        else:  # the final observation continues the ended episode's memory; one batched step
            flat = lambda x: x.reshape((-1,) + x.shape[2:])  # noqa: E731
            final_value = learner.step_value(
                params, jax.tree.map(flat, out["carry_out"]), flat(out["final_observation"])
            ).reshape(done.shape)
        v_tp1 = jnp.where(out["truncated"], final_value, v_tp1)
    v_tp1 = jnp.where(out["terminated"] | (done & ~jnp.bool_(bootstrap_truncation)), 0.0, v_tp1)
    rollout = assemble_rollout(out, v_tp1, done)
    results = (env_state, episode_stats, rollout)
    if with_finished:
        results += (env_params, dict(done=done, episode_return=out["episode_return"]))
    if memory is not None:
        results += (memory,)
    return results


def _bcast(mask: jax.Array, like: jax.Array) -> jax.Array:
    """``mask`` [N] reshaped to broadcast against ``like`` [N, ...]."""
    return mask.reshape(mask.shape + (1,) * (jnp.ndim(like) - mask.ndim))


def next_values(value: jax.Array, last_value: jax.Array) -> jax.Array:
    """float[T, N]: the value of the state after each step (``value`` shifted, ``last_value`` at the end)."""
    return jnp.concatenate([value[1:], last_value[None]], axis=0)


def assemble_rollout(out: dict, v_tp1: jax.Array, done: jax.Array) -> Rollout:
    """A `Rollout` from a scan's stacked outputs ``[T, N]``; every step is a learner decision."""
    return Rollout(
        observation=out["observation"],
        legal_action_mask=out["legal_action_mask"],
        action=out["action"],
        log_prob=out["log_prob"],
        value=out["value"],
        reward=out["reward"],
        v_tp1=v_tp1,
        continue_=(~done).astype(jnp.float32),
        carry=out.get("carry"),
    )
