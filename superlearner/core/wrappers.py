"""Auto-reset and episode statistics, written once for every env.

`step_auto_reset` steps an env and, where the episode ended, starts the next one on the level
the caller chooses (``reset_params``). It returns both the state to continue from and the
*final* state of the step, which holds the step's rewards, ``terminated``, ``truncated`` and the
last observation (needed to bootstrap a value at truncation). Everything is branch-free, so it
batches with ``vmap`` at the same cost.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from superlearner.core.env import Env, Params, PRNGKey, State, tree_select

Array = jax.Array


@struct.dataclass
class EpisodeStats:
    """Running and last-finished episode statistics for one env instance.

    Attributes:
      episode_return: float32[num_players], return of the episode in progress.
      episode_length: int32[], length of the episode in progress.
      last_return: float32[num_players], return of the last finished episode.
      last_length: int32[], length of the last finished episode.
      num_episodes: int32[], episodes finished so far.
    """

    episode_return: Array
    episode_length: Array
    last_return: Array
    last_length: Array
    num_episodes: Array

    @classmethod
    def zeros(cls, num_players: int) -> "EpisodeStats":
        return cls(
            episode_return=jnp.zeros((num_players,), jnp.float32),
            episode_length=jnp.int32(0),
            last_return=jnp.zeros((num_players,), jnp.float32),
            last_length=jnp.int32(0),
            num_episodes=jnp.int32(0),
        )


def update_episode_stats(stats: EpisodeStats, final: State) -> EpisodeStats:
    """Adds one step's outcome (the ``final`` state returned by `step_auto_reset`)."""
    done = final.terminated | final.truncated
    ret = stats.episode_return + final.rewards
    length = stats.episode_length + 1
    return EpisodeStats(
        episode_return=jnp.where(done, 0.0, ret),
        episode_length=jnp.where(done, 0, length),
        last_return=jnp.where(done, ret, stats.last_return),
        last_length=jnp.where(done, length, stats.last_length),
        num_episodes=stats.num_episodes + done.astype(jnp.int32),
    )


def step_auto_reset(
    env: Env,
    state: State,
    action: Array,
    key: PRNGKey,
    params: Params | None = None,
    reset_params: Params | None = None,
) -> tuple[State, State]:
    """Steps ``env``; where the episode ends, the returned state is a fresh episode.

    Args:
      env: the environment.
      state: an unbatched live state (vmap for batches).
      action: int32[], the current player's action.
      key: consumed; split into the step's key and the reset's key.
      params: the level being played.
      reset_params: the level of the next episode if this one ends (defaults to ``params``);
        a curriculum passes the level it chose here, so no episode starts on a random level.

    Returns:
      ``(next_state, final_state)``: the state to continue from, and the state the step produced
      (its rewards, terminated, truncated and observation describe this step).
    """
    step_key, reset_key = jax.random.split(key)
    final = env.step(state, action, step_key, params)
    fresh = env.reset(reset_key, params if reset_params is None else reset_params)
    done = final.terminated | final.truncated
    return tree_select(done, fresh, final), final
