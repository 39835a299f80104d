"""Gumbel MuZero search over a policy-value network with the real game as the model.

`make_search(env, policy_fn)` builds the search AlphaZero plays and trains with; any learner whose
network gives masked policy logits and a value from the mover's view (PPO self-play's actor-critic
does) can act through it too. The search is mctx's ``gumbel_muzero_policy`` (Danihelka et al. 2022,
"Policy improvement by planning with Gumbel", https://openreview.net/forum?id=bERaNdoegnO).

Conventions:

* A value is from the view of the player to move, the sum of that player's rewards from the
  position to the end of the game. Values are backed up with discount -1 across a change of mover
  (zero-sum), +1 when the same player moves again, and 0 after the end of the game.
* Illegal actions are masked at the root through mctx's ``invalid_actions`` and at every interior
  node by the masked prior logits of ``policy_fn`` (`superlearner.learners.networks.ILLEGAL_LOGIT`);
  Gumbel MuZero's interior selection then never picks them.

Nothing here calls ``jax.jit``; ``num_simulations`` and ``max_num_considered_actions`` are static
Python ints, the rest may be traced.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import mctx

from superlearner.core.env import Env, State

Array = jax.Array

# ``policy_fn(params, observation[B, ...], legal_action_mask[B, A]) -> (masked logits [B, A],
# value [B])``, the value from the mover's view.
PolicyFn = Callable[[Any, Array, Array], tuple[Array, Array]]

# mctx's completed-Q defaults (the paper's c_scale and c_visit).
DEFAULT_VALUE_SCALE = 0.1
DEFAULT_MAXVISIT_INIT = 50.0


def searchable(env: Env) -> bool:
    """Whether ``env`` is a two-player zero-sum game of perfect information (what the search
    needs: the real rules as its model, alternating values). Read from the env's declarations
    ``num_players``, ``zero_sum`` and ``perfect_information``: a search through the true state
    of a game that hides information from a player would cheat."""
    return (
        env.num_players == 2
        and bool(getattr(env, "zero_sum", False))
        and bool(getattr(env, "perfect_information", True))
    )


def batched_env_params(env: Env, env_params: Any, batch: int) -> Any:
    """``env_params`` with a leading batch axis ``[batch]``; the env's default level when None."""
    if env_params is None:
        return jax.tree.map(lambda x: jnp.broadcast_to(x, (batch,) + jnp.shape(x)), env.default_params)
    return env_params


def make_search(env: Env, policy_fn: PolicyFn, *, max_num_considered_actions: int = 16,
                max_depth: int | None = None) -> Callable[..., mctx.PolicyOutput]:
    """The search of ``policy_fn`` over ``env``'s real rules (a two-player zero-sum game).

    Returns ``search(params, env_state, key, num_simulations, gumbel_scale=0.0, env_params=None,
    max_num_considered_actions=None, value_scale=0.1, maxvisit_init=50.0) -> mctx.PolicyOutput``
    for a batch of states (leading axis ``[B]``): ``action`` int32[B], ``action_weights``
    float32[B, A] (the improved policy) and ``search_tree`` (embeddings are env States).
    ``gumbel_scale`` 0 plays the best move without noise; ``key`` is consumed.
    """

    def recurrent_fn(model, key, action, embedding):
        """One move of the real env from every leaf; the reward and value are the mover's."""
        params, env_params = model
        batch = action.shape[0]
        mover = embedding.current_player
        next_state = jax.vmap(env.step)(embedding, action, jax.random.split(key, batch), env_params)
        reward = jnp.take_along_axis(next_state.rewards, mover[:, None], axis=1)[:, 0]
        done = next_state.terminated | next_state.truncated
        same_mover = next_state.current_player == mover
        discount = jnp.where(done, 0.0, jnp.where(same_mover, 1.0, -1.0))
        logits, value = policy_fn(params, next_state.observation, next_state.legal_action_mask)
        output = mctx.RecurrentFnOutput(
            reward=reward, discount=discount, prior_logits=logits, value=jnp.where(done, 0.0, value)
        )
        return output, next_state

    def search(
        params,
        env_state: State,
        key: Array,
        num_simulations: int,
        gumbel_scale: Array | float = 0.0,
        env_params=None,
        max_num_considered_actions: int | None = None,
        value_scale: Array | float = DEFAULT_VALUE_SCALE,
        maxvisit_init: Array | float = DEFAULT_MAXVISIT_INIT,
    ) -> mctx.PolicyOutput:
        batch = env_state.current_player.shape[0]
        env_params = batched_env_params(env, env_params, batch)
        logits, value = policy_fn(params, env_state.observation, env_state.legal_action_mask)
        root = mctx.RootFnOutput(prior_logits=logits, value=value, embedding=env_state)
        considered = default_considered if max_num_considered_actions is None else max_num_considered_actions
        return mctx.gumbel_muzero_policy(
            params=(params, env_params),
            rng_key=key,
            root=root,
            recurrent_fn=recurrent_fn,
            num_simulations=num_simulations,
            invalid_actions=~env_state.legal_action_mask,
            max_depth=max_depth,
            max_num_considered_actions=considered,
            gumbel_scale=gumbel_scale,
            qtransform=functools.partial(
                mctx.qtransform_completed_by_mix_value, value_scale=value_scale, maxvisit_init=maxvisit_init
            ),
        )

    default_considered = max_num_considered_actions
    return search
