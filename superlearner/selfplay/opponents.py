"""Opponents drawn from a league: each game's opponent network, its moves, and game outcomes.

A game with a learner seat and an opponent is a `Match`; `opponent_policy` gives every game's
opponent's masked logits (the league's snapshots, or the learner itself for `SELF`) for any
learner whose ``policy(params, observation, mask) -> (logits, value)`` is given. PPO's self-play
collection (`superlearner.learners.ppo_selfplay`) and AlphaZero's league games
(`superlearner.learners.alphazero_learner`) both draw their opponents' moves here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from superlearner.core.env import State
from superlearner.selfplay.league import SELF, LeagueState


@struct.dataclass
class Match:
    """A game with the learner's seat and opponent. Leading axis N when batched.

    Attributes:
      game: the env State.
      seat: int32, the learner's player index.
      opponent: int32, the league slot of the opponent, or `SELF`.
      learner_return: float32, the learner's reward so far in this game.
      length: int32, moves so far (both players).
      pair: int32[2], with opponent groups the (previous, current) opponents of the game's
        group (the game's ``opponent`` is one of them); without groups ``opponent`` twice.
    """

    game: State
    seat: jax.Array
    opponent: jax.Array
    learner_return: jax.Array
    length: jax.Array
    pair: jax.Array


def outcome_score(learner_return: jax.Array) -> jax.Array:
    """1 for a win, 1/2 for a draw, 0 for a loss (by the sign of the learner's return)."""
    return 0.5 * (jnp.sign(learner_return) + 1.0)


def group_pairs(matches: Match, groups: int) -> tuple[jax.Array, int]:
    """int32[G, 2]: each group's (previous, current) opponents, and the games per group."""
    size = matches.seat.shape[0] // groups
    return matches.pair[::size], size


def opponent_bank(league: LeagueState, params):
    """The opponents' parameters: the league's snapshots plus, in the last slot, the learner."""
    return jax.tree.map(lambda snaps, p: jnp.concatenate([snaps, p[None]], axis=0), league.params, params)


# Up to this many opponents (the league's slots and the learner), `opponent_policy` without groups
# runs every opponent's network on every game and keeps each game's own; beyond it, it gathers each game's
# parameters instead. The gather copies a whole network per game, which XLA's CPU backend does far
# slower than the extra arithmetic: on a 2-core CPU, connect_four_selfplay's train chunk (256x256
# MLP, 128 games, 17 opponents) ran 1.3-1.5x faster this way in `scripts/benchmark.py selfplay`.
DENSE_OPPONENTS_MAX = 32


def opponent_policy(learner, league: LeagueState, params, matches: Match, groups: int = 0, one_by_one: bool = False,
                    with_self: bool = True):
    """``logits(matches) -> float[N, A]``: each game's opponent's masked logits, for as long as
    the learner's ``params``, the league and (with ``groups``) the groups' pairs stay as they
    are in ``matches`` (one rollout). `SELF` is the learner's ``params``.

    ``one_by_one``: without groups, the opponents' networks run one after another (a loop over
    the bank) instead of side by side (a `vmap` over it). A vmapped convolution with different
    weights per network is a grouped convolution, which XLA's CPU backend runs far slower than
    the same convolutions one at a time: connect four's residual network in a league of 8 cost
    AlphaZero's iteration +185% vmapped. Dense layers batch well, so MLPs keep the vmap.

    ``with_self=False``: the caller never uses the logits of games against `SELF` (its own moves
    come from elsewhere, e.g. a search), so without groups the learner's network is left out of
    the bank and those games get a snapshot's logits.
    """
    bank = opponent_bank(league, params) if with_self or groups else league.params
    capacity = league.capacity
    if groups:
        pairs, size = group_pairs(matches, groups)
        # The groups' networks are taken out of the bank once, not at every reply.
        nets = jax.tree.map(lambda x: x[jnp.where(pairs == SELF, capacity, pairs)], bank)  # [G, 2, ...]

        def grouped(matches: Match) -> jax.Array:
            def split(x):
                return x.reshape((groups, size) + x.shape[1:])

            def of_group(pair_nets, observation, mask):
                return jax.vmap(lambda p: learner.policy(p, observation, mask)[0])(pair_nets)  # [2, size, A]

            both = jax.vmap(of_group)(nets, split(matches.game.observation), split(matches.game.legal_action_mask))
            current = split(matches.opponent == matches.pair[:, 1])
            logits = jnp.where(current[..., None], both[:, 1], both[:, 0])
            return logits.reshape((-1,) + logits.shape[2:])

        return grouped

    def per_game(matches: Match) -> jax.Array:
        index = jnp.where(matches.opponent == SELF, capacity if with_self else 0, matches.opponent)
        observation, mask = matches.game.observation, matches.game.legal_action_mask
        if capacity + 1 <= DENSE_OPPONENTS_MAX:
            run_one = lambda p: learner.policy(p, observation, mask)[0]  # noqa: E731
            every = jax.lax.map(run_one, bank) if one_by_one else jax.vmap(run_one)(bank)  # [C + 1, N, A]
            return jnp.take_along_axis(every, index[None, :, None], axis=0)[0]

        def policy_of(i, observation, mask):
            return learner.policy(jax.tree.map(lambda x: x[i], bank), observation, mask)[0]

        return jax.vmap(policy_of)(index, observation, mask)

    return per_game


def sample_moves(key: jax.Array, logits: jax.Array, temperature: float) -> jax.Array:
    """int32[N]: a move per row of masked ``logits``, drawn at ``temperature`` (0: the argmax)."""
    if temperature == 0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    return jax.random.categorical(key, logits / temperature).astype(jnp.int32)
