"""The arena: batched games between two players of a two-player game, on device.

A *player* here is a batched policy ``act(key, states) -> actions[B]`` over a batch of
unbatched-shaped states (leading axis B). `from_anchor` lifts an anchor (one state at a time)
and `from_agent` a trained agent into that form. `play_games` seats player A in both seats for
equal numbers of games, optionally opens each game with random plies so games vary, and counts
A's wins, draws and losses.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from superlearner.core.env import Env, State

BatchedPlayer = Callable[[jax.Array, State], jax.Array]

# A player given its parameters: ``act(params, key, states) -> actions[B]`` (the CLI's players,
# `superlearner.run.agent.Agent.kind_of`).
KindFn = Callable[[Any, jax.Array, Any], jax.Array]


@dataclasses.dataclass(frozen=True)
class MatchResult:
    """Player A's results over ``games`` games (half in each seat)."""

    wins: int
    draws: int
    losses: int
    wins_first: int
    wins_second: int

    @property
    def games(self) -> int:
        return self.wins + self.draws + self.losses

    @property
    def score(self) -> float:
        return (self.wins + 0.5 * self.draws) / max(self.games, 1)


def from_anchor(anchor: Callable[[jax.Array, State], jax.Array]) -> BatchedPlayer:
    """An anchor (``act(key, state)`` for one state) as a batched player."""

    def act(key, states):
        num = states.current_player.shape[0]
        return jax.vmap(anchor)(jax.random.split(key, num), states)

    return act


def from_policy(policy_fn, params, greedy: bool = True) -> BatchedPlayer:
    """A network policy ``policy_fn(params, observation, mask) -> (logits, value)`` as a player."""

    def act(key, states):
        logits, _ = policy_fn(params, states.observation, states.legal_action_mask)
        if greedy:
            return jnp.argmax(logits, axis=-1).astype(jnp.int32)
        return jax.random.categorical(key, logits).astype(jnp.int32)

    return act


def from_league(policy_fn, snapshots, weights, choice_key: jax.Array, greedy: bool = False) -> BatchedPlayer:
    """The league's policy as a player: game ``g`` of the batch is played throughout by snapshot
    ``choice[g]``, drawn from ``weights`` (the league's ``meta_strategy``) with ``choice_key``.

    Args:
      policy_fn: ``policy_fn(params, observation, mask) -> (logits, value)``.
      snapshots: parameter pytree with leading axis C (the league's ``params``).
      weights: float32[C], the meta-strategy (0 on empty slots).
      choice_key: the key of the draw; the same for every move of a match, so each game keeps
        its snapshot (a mixed strategy, not a new draw at every decision).
      greedy: the chosen snapshot plays its argmax move instead of sampling.
    """
    log_weights = jnp.log(jnp.maximum(weights, 0.0))

    def act(key, states):
        num = states.current_player.shape[0]
        choice = jax.random.categorical(choice_key, log_weights, shape=(num,))

        def logits_of(i, observation, mask):
            return policy_fn(jax.tree.map(lambda x: x[i], snapshots), observation[None], mask[None])[0][0]

        logits = jax.vmap(logits_of)(choice, states.observation, states.legal_action_mask)
        if greedy:
            return jnp.argmax(logits, axis=-1).astype(jnp.int32)
        return jax.random.categorical(key, logits).astype(jnp.int32)

    return act


def random_player(key, states) -> jax.Array:
    logits = jnp.where(states.legal_action_mask, 0.0, -jnp.inf)
    return jax.random.categorical(key, logits).astype(jnp.int32)


def make_match_fn(
    env: Env,
    player_a: BatchedPlayer,
    player_b: BatchedPlayer,
    num_games: int,
    opening_moves: int = 0,
    max_moves: int = 1000,
    paired_seats: bool = False,
    first_moves: np.ndarray | None = None,
):
    """A pure function ``key -> (returns_a[G], seat_a[G])`` playing ``num_games`` games.

    Player A sits first in the first half of the games and second in the other half. The first
    ``opening_moves`` plies of every game are uniformly random legal moves. With
    ``paired_seats``, game ``i + G/2`` starts from the same reset key as game ``i`` (the same
    deal in a card game) with the seats swapped: common random numbers, which cancel the luck
    of the deal from the mean return (``num_games`` must be even). ``first_moves`` (int[G],
    -1 for none) forces the first ply of each game (see `all_first_moves`); the random opening
    plies, if any, follow it. Jit it at the call site.
    """
    forced = None if first_moves is None else jnp.asarray(first_moves, jnp.int32)
    seat_a = (jnp.arange(num_games) >= num_games // 2).astype(jnp.int32)

    def play(key):
        reset_key, loop_key = jax.random.split(key)
        if paired_seats:
            half = jax.random.split(reset_key, num_games // 2)
            reset_keys = jnp.concatenate([half, jax.random.clone(half)])  # reused on purpose
        else:
            reset_keys = jax.random.split(reset_key, num_games)
        states = jax.vmap(env.reset)(reset_keys)

        def cond(carry):
            states, _, _, moves = carry
            return (moves < max_moves) & ~jnp.all(states.terminated | states.truncated)

        def body(carry):
            states, returns, key, moves = carry
            key, key_a, key_b, key_open, key_step = jax.random.split(key, 5)
            action_a = player_a(key_a, states)
            action_b = player_b(key_b, states)
            action = jnp.where(states.current_player == seat_a, action_a, action_b)
            action = jnp.where(moves < opening_moves, random_player(key_open, states), action)
            if forced is not None:
                action = jnp.where((moves == 0) & (forced >= 0), forced, action)
            states = jax.vmap(env.step)(states, action, jax.random.split(key_step, num_games))
            reward_a = jnp.take_along_axis(states.rewards, seat_a[:, None], axis=1)[:, 0]
            return states, returns + reward_a, key, moves + 1

        init = (states, jnp.zeros((num_games,), jnp.float32), loop_key, jnp.int32(0))
        _, returns, _, _ = jax.lax.while_loop(cond, body, init)
        return returns, seat_a

    return play


OPENINGS = ("random", "all-first-moves")
"""How arena games open: ``random`` (``opening_moves`` uniformly random plies) or
``all-first-moves`` (every legal first move of the start position in turn, in both seats)."""


def all_first_moves(env: Env, num_games: int) -> np.ndarray:
    """int32[G]: a forced first move per game covering every legal first move equally often in
    both seats: ``G`` is ``num_games`` rounded up to a multiple of twice the number of legal
    first moves, the first half (A first) and the second (A second) repeat the same moves.

    The legal moves are read from ``env.reset`` of a fixed key; games whose start position is
    random (a deal) keep their own start, only their first move is forced.
    """
    legal = np.flatnonzero(np.asarray(env.reset(jax.random.key(0)).legal_action_mask)).astype(np.int32)
    per_seat = -(-max(num_games, 2) // 2)
    repeats = -(-per_seat // len(legal))
    half = np.tile(legal, repeats)
    return np.concatenate([half, half])


def summarize_returns(returns, seat_a) -> MatchResult:
    returns, seat_a = np.asarray(returns), np.asarray(seat_a)
    win, loss = returns > 0, returns < 0
    return MatchResult(
        wins=int(win.sum()),
        draws=int((~win & ~loss).sum()),
        losses=int(loss.sum()),
        wins_first=int((win & (seat_a == 0)).sum()),
        wins_second=int((win & (seat_a == 1)).sum()),
    )


def play_games(env: Env, player_a: BatchedPlayer, player_b: BatchedPlayer, key, num_games: int, opening_moves: int = 0) -> MatchResult:
    """Plays and summarises ``num_games`` games of A against B (compiled once per call)."""
    play = jax.jit(make_match_fn(env, player_a, player_b, num_games, opening_moves))
    return summarize_returns(*play(key))


# ----------------------------------------------------------------------------------------------
# Exact exploitability, where the env declares it: a network's policy over the env's information
# states, and the league's policy.


def info_state_policy(env: Env, policy_fn) -> Callable[[Any], jax.Array]:
    """A pure ``params -> float32[I, num_actions]``: the action probabilities of the network
    policy ``policy_fn(params, observation, mask) -> (logits, value)`` in each of the env's
    information states (``env.info_states()``), the table ``env.exploitability`` reads."""
    views = env.info_states()
    observations = jnp.asarray(views.observations)
    masks = jnp.asarray(views.legal_action_masks, bool)

    def probabilities(params):
        logits, _ = policy_fn(params, observations, masks)
        return jax.nn.softmax(logits, axis=-1)

    return probabilities


def league_weights(league) -> np.ndarray:
    """float[C]: the probability that the league's policy plays each slot's snapshot in a game
    (its ``meta_strategy`` on the filled slots), see `superlearner.selfplay.league`."""
    return np.asarray(league.meta_strategy, np.float64) * np.asarray(league.filled)


def league_exploitability(env: Env, snapshot_probabilities: np.ndarray, league) -> float:
    """The exact exploitability of the league's policy: one snapshot drawn per game from the
    league's ``meta_strategy``, exactly the mixture training plays.

    Args:
      env: an env that declares ``exploitability``.
      snapshot_probabilities: float[C, I, A], every slot's policy over the information states.
      league: one member's `LeagueState` (``filled`` and ``meta_strategy`` of shape [C]).
    """
    weights = league_weights(league)
    keep = weights > 0
    return float(env.exploitability(np.asarray(snapshot_probabilities)[keep], weights[keep]))


# ----------------------------------------------------------------------------------------------
# Strength against fixed anchors during training.


def greedy_score(env: Env, policy_fn, params, anchor: BatchedPlayer, games: int, opening_moves: int, key) -> jax.Array:
    """float32[]: the mean score (win 1, draw 1/2) of ``params`` playing greedily over ``games``
    games against ``anchor``, half in each seat. Traceable (vmap it over members)."""
    from superlearner.selfplay.opponents import outcome_score

    me = from_policy(policy_fn, params, greedy=True)
    returns, _ = make_match_fn(env, me, anchor, games, opening_moves)(key)
    return jnp.mean(outcome_score(returns))


def make_anchor_progress(env: Env, policy_fn, anchors, games: int, opening_moves: int = 0) -> Callable:
    """A pure ``(params[P], key) -> float32[P]``: each member's `greedy_score` averaged over
    ``anchors`` (specs, e.g. ``["random", "minimax:2"]``). It traces inside a train chunk: the
    meta-controller's fitness in self-play, where the training return (a score against the
    member's own league) says nothing about how members compare.
    """
    from superlearner.selfplay.anchors import make_anchor

    games = games + games % 2
    players = [from_anchor(make_anchor(env, spec)) for spec in anchors]

    def member(params, key):
        keys = jax.random.split(key, len(players))
        return jnp.mean(jnp.stack([
            greedy_score(env, policy_fn, params, anchor, games, opening_moves, anchor_key)
            for anchor, anchor_key in zip(players, keys)
        ]))

    def progress(params, key):
        size = jax.tree.leaves(params)[0].shape[0]
        return jax.vmap(member)(params, jax.random.split(key, size))

    return progress


class StrengthProbe:
    """Measures each population member against the configured anchors (compiled once).

    ``measure(state)`` returns ``{"vs_<spec>": [score per member], "lost_vs_<spec>": [share
    of games lost per member], ...}``; where the env declares ``exploitability``, also the exact
    exploitability of each member's policy (``exploitability``) and of its league's policy
    (``exploitability_league``: the snapshots mixed by the league's meta-strategy,
    `league_exploitability`).
    """

    def __init__(self, engine):
        from superlearner.selfplay.anchors import make_anchor

        self.engine = engine
        env, arena = engine.env, engine.config.arena
        games = arena.games + arena.games % 2
        first_moves = None
        if getattr(arena, "openings", "random") == "all-first-moves":
            first_moves = all_first_moves(env, games)
            games = len(first_moves)
        self._matches = {}
        for spec in arena.anchors:
            anchor = from_anchor(make_anchor(env, spec))

            def match(params, key, anchor=anchor):
                player = from_policy(engine.learner.policy, params, greedy=True)
                return make_match_fn(env, player, anchor, games, arena.opening_moves, first_moves=first_moves)(key)

            self._matches[spec] = jax.jit(match)
        self._tabulate = None
        if env.exploitability is not None:
            self._tabulate = jax.jit(jax.vmap(info_state_policy(env, engine.learner.policy)))

    def measure(self, state, key) -> dict:
        env = self.engine.env
        size = self.engine.config.train.population_size
        out: dict[str, list] = {}
        for spec, match in self._matches.items():
            scores, lost = [], []
            for member in range(size):
                params = jax.tree.map(lambda x: x[member], state.learner.params)
                key, match_key = jax.random.split(key)
                result = summarize_returns(*match(params, match_key))
                scores.append(result.score)
                lost.append(result.losses / max(result.games, 1))
            out[f"vs_{spec}"] = scores
            out[f"lost_vs_{spec}"] = lost
        if self._tabulate is not None:
            current = np.asarray(self._tabulate(state.learner.params))  # [P, I, A]
            out["exploitability"] = [float(env.exploitability(p)) for p in current]
            league_values = []
            for member in range(size):
                league = jax.tree.map(lambda x: x[member], state.league)
                league_values.append(league_exploitability(env, np.asarray(self._tabulate(league.params)), league))
            out["exploitability_league"] = league_values
        return out


def make_payoff_fn(env: Env, learner, num_games: int):
    """A ``payoff_fn(league, params, key) -> float32[C]`` for `superlearner.selfplay.league.maybe_add_snapshot`.

    The new snapshot ``params`` plays ``num_games`` games (even; half in each seat, paired so
    that the seat-swapped games share their reset key) against every slot's snapshot, both
    sampling from their policies; each entry is its mean return against that slot (0 for
    empty slots). Games against all C slots run as one batch (a `vmap` over slots). ``key`` is
    consumed. This is the payoff estimate of PSRO's empirical game (Lanctot et al. 2017).
    """
    def payoff_fn(league: LeagueState, params, key: jax.Array) -> jax.Array:
        def against(opponent_params, slot_key):
            new = from_policy(learner.policy, params, greedy=False)
            old = from_policy(learner.policy, opponent_params, greedy=False)
            returns, _ = make_match_fn(env, new, old, num_games, paired_seats=True)(slot_key)
            return returns.mean()

        row = jax.vmap(against)(league.params, jax.random.split(key, league.capacity))
        return jnp.where(league.filled, row, 0.0)

    return payoff_fn
