"""The arena: batched games between two players of a two-player game, on device.

A *player* here is a batched policy ``act(key, states) -> actions[B]`` over a batch of
unbatched-shaped states (leading axis B). `from_anchor` lifts an anchor (one state at a time)
and `from_agent` a trained agent into that form. `play_games` seats player A in both seats for
equal numbers of games, optionally opens each game with random plies so games vary, and counts
A's wins, draws and losses.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from superlearner.env import Env, State

BatchedPlayer = Callable[[jax.Array, State], jax.Array]


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
# Kuhn poker: a network's policy as an exact table, and the league's average policy.


def kuhn_observations(env: Env) -> np.ndarray:
    """float32[12, 9]: the observation of the acting player in each information state."""
    from superlearner.envs import kuhn_poker as kuhn

    observations = []
    for index in range(kuhn.NUM_INFO_STATES):
        card = int(kuhn.INFO_STATE_CARD[index])
        history = kuhn.INFO_STATE_HISTORY[index]
        player = int(kuhn.INFO_STATE_PLAYER[index])
        other = (card + 1) % kuhn.NUM_CARDS
        cards = (card, other) if player == 0 else (other, card)
        state = env.reset_to_deal(jnp.asarray(cards, jnp.int32))
        for move in history:
            state = env.step(state, jnp.int32(kuhn.PASS if move == "p" else kuhn.BET), jax.random.key(0))
        observations.append(np.asarray(env.observe(state, jnp.int32(player))))
    return np.stack(observations)


def kuhn_policy_table(probabilities: np.ndarray) -> np.ndarray:
    """float[2, 12, 2] (player, info state, action) from per-info-state probabilities [12, 2].

    Each info state belongs to one player; the other player's rows are filled uniformly (they
    are never read by the exploitability computation for that player).
    """
    from superlearner.envs import kuhn_poker as kuhn

    table = np.full((2, kuhn.NUM_INFO_STATES, 2), 0.5)
    for index in range(kuhn.NUM_INFO_STATES):
        table[int(kuhn.INFO_STATE_PLAYER[index]), index] = probabilities[index]
    return table


def kuhn_average_policy(probabilities: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The average strategy of several policies (float[K, 12, 2]), weighted by each policy's own
    reach probability of every information state: what fictitious play converges with.

    Player 0 reaches ``pb`` with the probability of having passed at the root with the same card;
    every other information state is reached with probability one by its own player.
    """
    from superlearner.envs import kuhn_poker as kuhn

    probabilities = np.asarray(probabilities, np.float64)
    weights = np.ones(probabilities.shape[0]) if weights is None else np.asarray(weights, np.float64)
    reach = np.ones(probabilities.shape[:2])
    for index in range(kuhn.NUM_INFO_STATES):
        if kuhn.INFO_STATE_HISTORY[index] == "pb":
            root = index - kuhn.INFO_STATE_HISTORIES.index("pb")  # same card, empty history
            reach[:, index] = probabilities[:, root, kuhn.PASS]
    w = weights[:, None] * reach
    # Normalised by the mixed row itself, not by sum(w): when every policy almost never reaches
    # a state, sum(w) can underflow a fixed floor and the row would not sum to one.
    mixed = (w[..., None] * probabilities).sum(0)
    total = mixed.sum(-1, keepdims=True)
    return np.where(total > 0, mixed / np.where(total > 0, total, 1.0), 0.5)


def kuhn_league_policy(snapshot_probabilities: np.ndarray, league) -> np.ndarray:
    """float[12, 2]: the league's policy (one snapshot drawn per game from the league's
    ``meta_strategy``, see `superlearner.league`) as the equivalent per-info-state policy.

    Args:
      snapshot_probabilities: float[C, 12, 2], every slot's action probabilities.
      league: one member's `LeagueState` (``filled`` and ``meta_strategy`` of shape [C]).
    """
    weights = np.asarray(league.meta_strategy, np.float64) * np.asarray(league.filled)
    keep = weights > 0
    return kuhn_average_policy(np.asarray(snapshot_probabilities)[keep], weights[keep])


# ----------------------------------------------------------------------------------------------
# Strength against fixed anchors during training.


def greedy_score(env: Env, policy_fn, params, anchor: BatchedPlayer, games: int, opening_moves: int, key) -> jax.Array:
    """float32[]: the mean score (win 1, draw 1/2) of ``params`` playing greedily over ``games``
    games against ``anchor``, half in each seat. Traceable (vmap it over members)."""
    from superlearner.selfplay import outcome_score

    me = from_policy(policy_fn, params, greedy=True)
    returns, _ = make_match_fn(env, me, anchor, games, opening_moves)(key)
    return jnp.mean(outcome_score(returns))


def make_anchor_progress(env: Env, policy_fn, anchors, games: int, opening_moves: int = 0) -> Callable:
    """A pure ``(params[P], key) -> float32[P]``: each member's `greedy_score` averaged over
    ``anchors`` (specs, e.g. ``["random", "minimax:2"]``). It traces inside a train chunk: the
    meta-controller's fitness in self-play, where the training return (a score against the
    member's own league) says nothing about how members compare.
    """
    from superlearner.anchors import make_anchor

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
    of games lost per member], ...}``; for kuhn_poker also
    the exact exploitability of each member's policy and of its league's policy (the snapshots
    mixed by the league's meta-strategy, `kuhn_league_policy`).
    """

    def __init__(self, engine):
        from superlearner.anchors import make_anchor

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
        self._kuhn = None
        if env.id == "kuhn_poker":
            observations = jnp.asarray(kuhn_observations(env))

            def probabilities(params):
                logits, _ = engine.learner.policy(params, observations, jnp.ones((observations.shape[0], 2), bool))
                return jax.nn.softmax(logits, axis=-1)

            self._kuhn = jax.jit(jax.vmap(probabilities))

    def measure(self, state, key) -> dict:
        from superlearner.anchors import kuhn_exploitability

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
        if self._kuhn is not None:
            current = np.asarray(self._kuhn(state.learner.params))  # [P, 12, 2]
            out["exploitability"] = [float(kuhn_exploitability(kuhn_policy_table(p))) for p in current]
            league_values = []
            for member in range(size):
                league = jax.tree.map(lambda x: x[member], state.league)
                average = kuhn_league_policy(np.asarray(self._kuhn(league.params)), league)
                league_values.append(float(kuhn_exploitability(kuhn_policy_table(average))))
            out["exploitability_league"] = league_values
        return out
