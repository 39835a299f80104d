"""Kuhn poker: two players, three cards (J, Q, K), one betting round.

Each player antes 1 and is dealt one card (the deal, uniform over the 6 ordered deals, is the
chance event of ``reset``). Player 0 acts first. Action 0 is pass (check, or fold when facing a
bet) and action 1 is bet (or call when facing a bet); both are legal whenever the game is live.

The five terminal histories and player 0's payoff (player 1 gets the negation):

========  ==========================  =============================
history   what happened               player 0's reward
========  ==========================  =============================
``pp``    both check, showdown        +1 if player 0 holds the higher card, else -1
``pbp``   player 0 folds to a bet     -1
``pbb``   bet called, showdown        +2 / -2
``bp``    player 1 folds to a bet     +1
``bb``    bet called, showdown        +2 / -2
========  ==========================  =============================

Observation of player ``p``: float32[9]. Entries 0..2 are a one-hot of p's own card (J, Q, K);
entries ``3 + 2 * i`` and ``4 + 2 * i`` are a one-hot of the action taken at decision point
``i`` in 0..2 (pass, bet), all zeros while that point has not been reached. The opponent's card
never appears.

Information states. A player's information state is its own card and the public history. The
non-terminal histories are ``""``, ``"p"``, ``"b"`` and ``"pb"``, so every player has
``NUM_INFO_STATES = 12`` of them, indexed ``4 * card + history_id`` (see `info_state_index`
and the ``INFO_STATE_*`` tables). Player 0 acts at ``""`` and ``"pb"``, player 1 at ``"p"``
and ``"b"``. Reference: H. W. Kuhn, "A simplified two-person poker", 1950.

What the env declares: it is a game of imperfect information (``perfect_information = False``:
no search through the true state), and it is solved. `KuhnPoker.perfect_player` plays a Nash
equilibrium (`equilibrium_policy`, Kuhn's closed-form family); `KuhnPoker.info_states` and
`KuhnPoker.exploitability` give the exact exploitability of a policy over the 12 information
states, computed with a best response to each player's policy (`best_response_value`,
OpenSpiel's NashConv / 2 convention). A best-response *player* is not provided: exploitability
already measures the best response's value.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from superlearner.core.env import Env, InfoStates, State
from superlearner.errors import UserError

PASS = 0
BET = 1

CARD_NAMES = ("J", "Q", "K")
NUM_CARDS = 3

# The 6 ordered deals (player 0's card, player 1's card); reset draws one uniformly.
DEALS = np.array([(a, b) for a in range(NUM_CARDS) for b in range(NUM_CARDS) if a != b], np.int32)
NUM_DEALS = len(DEALS)

# Non-terminal public histories, in the order of their id.
INFO_STATE_HISTORIES = ("", "p", "b", "pb")
NUM_HISTORIES = len(INFO_STATE_HISTORIES)
NUM_INFO_STATES = NUM_CARDS * NUM_HISTORIES

# Per information-state index: the card, the history, and the player who acts there.
INFO_STATE_CARD = np.repeat(np.arange(NUM_CARDS, dtype=np.int32), NUM_HISTORIES)
INFO_STATE_HISTORY = tuple(h for _ in range(NUM_CARDS) for h in INFO_STATE_HISTORIES)
INFO_STATE_PLAYER = np.array([len(h) % 2 for h in INFO_STATE_HISTORY], np.int32)

_TERMINAL_HISTORIES = ("pp", "pbp", "pbb", "bp", "bb")
_NO_ACTION = -1
_MAX_ACTIONS = 3


@struct.dataclass
class KuhnPokerState(State):
    """``cards[p]`` is player p's card (0 = J, 1 = Q, 2 = K); ``history[i]`` is the action taken
    at decision point i (-1 while not reached), int32[3]."""

    cards: jax.Array
    history: jax.Array


def history_id(history: jax.Array) -> jax.Array:
    """int32[]: the id of a non-terminal ``history`` (int32[3]) in ``INFO_STATE_HISTORIES``, or
    -1 for a terminal history."""
    length = jnp.sum(history != _NO_ACTION)
    first, second = history[0], history[1]
    hid = jnp.select(
        [length == 0, (length == 1) & (first == PASS), (length == 1) & (first == BET),
         (length == 2) & (first == PASS) & (second == BET)],
        [0, 1, 2, 3],
        default=-1,
    )
    return hid.astype(jnp.int32)


def info_state_index(state: KuhnPokerState, player: jax.Array) -> jax.Array:
    """int32[]: the index in 0..11 of ``player``'s information state (own card and public
    history), ``4 * card + history_id``; -1 when the game is over.

    Indices are the same for both players; `INFO_STATE_PLAYER` says who acts at each. Works
    under jit and vmap.
    """
    hid = history_id(state.history)
    card = state.cards[player]
    return jnp.where(hid >= 0, NUM_HISTORIES * card + hid, -1).astype(jnp.int32)


def info_state_name(index: int) -> str:
    """A readable name of information state ``index``, e.g. ``"K:pb"`` (card, then history)."""
    return f"{CARD_NAMES[int(INFO_STATE_CARD[index])]}:{INFO_STATE_HISTORY[index]}"


def info_states_of(player: int) -> np.ndarray:
    """int32[6]: the information-state indices at which ``player`` acts."""
    return np.flatnonzero(INFO_STATE_PLAYER == player).astype(np.int32)


def history_text(history) -> str:
    """The history int32[3] written as letters, e.g. ``"pb"``."""
    return "".join("pb"[int(a)] for a in np.asarray(history) if a != _NO_ACTION)


class KuhnPoker(Env):
    """Kuhn poker: 3 cards, ante 1, one bet of 1; the higher card wins at showdown."""

    id = "kuhn_poker"
    version = "1"
    description = "Kuhn poker, 2 players, cards J/Q/K, action 0 = pass/fold, 1 = bet/call"
    zero_sum = True
    perfect_information = False  # the opponent's card is hidden
    num_info_states = NUM_INFO_STATES

    def __init__(self) -> None:
        self.num_players = 2
        self.num_actions = 2
        self.observation_shape = (NUM_CARDS + 2 * _MAX_ACTIONS,)

    def _reset(self, key, params) -> KuhnPokerState:
        del params
        deal = jax.random.randint(key, (), 0, NUM_DEALS)
        return self._deal_state(jnp.asarray(DEALS)[deal])

    def reset_to_deal(self, cards: jax.Array) -> KuhnPokerState:
        """The start state with the deal fixed: ``cards`` int32[2] is (player 0's, player 1's).

        For tree walks (exact values, exploitability) that enumerate `DEALS` themselves.
        """
        return self._finish(self._deal_state(jnp.asarray(cards, jnp.int32)))

    def _deal_state(self, cards: jax.Array) -> KuhnPokerState:
        return KuhnPokerState(
            **self._initial_fields(jnp.ones((2,), jnp.bool_)),
            cards=cards,
            history=jnp.full((_MAX_ACTIONS,), _NO_ACTION, jnp.int32),
        )

    def _step(self, state: KuhnPokerState, action, key, params) -> KuhnPokerState:
        del key, params
        mover = state.current_player
        num_taken = jnp.sum(state.history != _NO_ACTION)
        facing_bet = (num_taken > 0) & (state.history[jnp.maximum(num_taken - 1, 0)] == BET)
        history = state.history.at[num_taken].set(action)

        fold = facing_bet & (action == PASS)
        call = facing_bet & (action == BET)
        check_check = ~facing_bet & (action == PASS) & (num_taken == 1)
        showdown = call | check_check
        terminated = fold | showdown

        # Rewards in player 0's terms, then mirrored for player 1.
        p0_higher = state.cards[0] > state.cards[1]
        stake = jnp.where(call, 2.0, 1.0)
        showdown_p0 = jnp.where(p0_higher, stake, -stake)
        fold_p0 = jnp.where(mover == 0, -1.0, 1.0)
        p0 = jnp.where(showdown, showdown_p0, jnp.where(fold, fold_p0, 0.0))
        rewards = jnp.stack([p0, -p0]).astype(jnp.float32)
        return state.replace(
            history=history,
            current_player=1 - mover,
            legal_action_mask=jnp.ones((2,), jnp.bool_),
            rewards=rewards,
            terminated=terminated,
        )

    def observe(self, state: KuhnPokerState, player) -> jax.Array:
        own_card = jax.nn.one_hot(state.cards[player], NUM_CARDS, dtype=jnp.float32)
        # one_hot of -1 (a point not reached) is all zeros.
        actions = jax.nn.one_hot(state.history, 2, dtype=jnp.float32).reshape(-1)
        return jnp.concatenate([own_card, actions])

    def render_text(self, state: KuhnPokerState) -> str:
        history = history_text(state.history)
        shown = history if history else "(none)"
        cards = [CARD_NAMES[int(c)] for c in np.asarray(state.cards)]
        pot = 2 + history.count("b")
        if bool(state.terminated) or bool(state.truncated):
            rewards = np.asarray(state.rewards)
            folded = history.endswith("bp")
            if history not in _TERMINAL_HISTORIES:
                # The base ends the game when a move is illegal (out of range).
                outcome = "the game ended on an illegal move"
            elif folded:
                loser = (len(history) - 1) % 2
                outcome = f"player {loser} folds"
            else:
                outcome = f"showdown: player 0 has {cards[0]}, player 1 has {cards[1]}"
            return (
                f"history: {shown}  pot: {pot}\n{outcome}\n"
                f"result: player 0 {rewards[0]:+g}, player 1 {rewards[1]:+g}"
            )
        mover = int(state.current_player)
        facing = history.endswith("b")
        options = "pass (fold) or bet (call)" if facing else "pass (check) or bet"
        return (
            f"player {mover} to act, holding {cards[mover]}\n"
            f"history: {shown}  pot: {pot}\n"
            f"options: {options}"
        )

    def action_to_text(self, action: int) -> str:
        return "pb"[int(action)]

    def text_to_action(self, text: str) -> int:
        word = text.strip().lower()
        if word in ("p", "pass", "check", "fold", "0"):
            return PASS
        if word in ("b", "bet", "call", "1"):
            return BET
        raise ValueError(f"unknown move {text!r}; write p/pass/check/fold or b/bet/call")

    # ----------------------------------------------------------------------------------------
    # Declarations: the exact solution (see the module docstring).

    def perfect_player(self, params=None):
        """``act(key, state) -> int32[]``: samples from a Nash equilibrium (`equilibrium_policy`
        with alpha 1/6)."""
        del params
        return table_player(equilibrium_policy())

    def info_states(self) -> InfoStates:
        """The 12 information states (`info_state_index` order): the acting player's observation,
        both actions legal, and the player who acts."""
        if getattr(self, "_info_states", None) is None:
            observations = []
            for index in range(NUM_INFO_STATES):
                card = int(INFO_STATE_CARD[index])
                history = INFO_STATE_HISTORY[index]
                player = int(INFO_STATE_PLAYER[index])
                other = (card + 1) % NUM_CARDS
                cards = (card, other) if player == 0 else (other, card)
                state = self.reset_to_deal(jnp.asarray(cards, jnp.int32))
                for move in history:
                    state = self.step(state, jnp.int32(PASS if move == "p" else BET), jax.random.key(0))
                observations.append(np.asarray(self.observe(state, jnp.int32(player))))
            self._info_states = InfoStates(
                observations=np.stack(observations),
                legal_action_masks=np.ones((NUM_INFO_STATES, 2), bool),
                players=INFO_STATE_PLAYER.copy(),
            )
        return self._info_states

    def exploitability(self, policy, weights=None) -> float:
        """The exact exploitability (NashConv / 2) of a policy over the information states.

        Args:
          policy: float[12, 2], the action probabilities of the acting player in each
            information state (`info_states` order); or float[K, 12, 2], K policies mixed as a
            league plays them: one drawn per game with probability ``weights[k]``.
          weights: float[K], the mixture's weights (uniform when None); policies of weight 0 are
            left out.

        Returns:
          0 at a Nash equilibrium, 0.458333 for uniform play.
        """
        policies = np.asarray(policy, np.float64)
        if policies.ndim == 2:
            return table_exploitability(policy_table(policies))
        weights = np.ones(policies.shape[0]) if weights is None else np.asarray(weights, np.float64)
        keep = weights > 0
        return table_exploitability(policy_table(average_policy(policies[keep], weights[keep])))


# ---------------------------------------------------------------------------------------------
# The exact solution: Kuhn's equilibria, best responses and exploitability (host side). A policy
# *table* is float[2, 12, 2] ``[player, info_state, action]``; a policy over the information
# states is float[12, 2], the acting player's row of each (`policy_table` turns one into the other).


def equilibrium_policy(alpha: float = 1.0 / 6.0) -> np.ndarray:
    """float32[2, 12, 2]: a member of Kuhn's Nash equilibrium family, ``alpha`` in [0, 1/3].

    ``[player, info_state, action]`` with actions (pass, bet) and info states indexed as in
    `info_state_index`. Player 0 bets J with probability alpha, never bets Q, bets K with 3 alpha;
    after check-bet calls with Q with alpha + 1/3 and K always, folds J. Player 1 facing a bet
    calls with K, with Q 1/3 of the time, folds J; checked to, bets K, bets J 1/3 of the time,
    checks Q. Entries of the info states where a player does not act are uniform.
    Reference: H. W. Kuhn, "A simplified two-person poker", 1950.
    """
    if not 0.0 <= alpha <= 1.0 / 3.0 + 1e-12:
        raise UserError(f"kuhn equilibrium_policy: alpha must be in [0, 1/3], got {alpha}")
    bet_probability = {
        # (player, history): bet probability for J, Q, K
        (0, ""): (alpha, 0.0, 3.0 * alpha),
        (0, "pb"): (0.0, alpha + 1.0 / 3.0, 1.0),
        (1, "p"): (1.0 / 3.0, 0.0, 1.0),
        (1, "b"): (0.0, 1.0 / 3.0, 1.0),
    }
    table = np.full((2, NUM_INFO_STATES, 2), 0.5, np.float64)
    for index in range(NUM_INFO_STATES):
        card = int(INFO_STATE_CARD[index])
        history = INFO_STATE_HISTORY[index]
        player = int(INFO_STATE_PLAYER[index])
        bet = bet_probability[(player, history)][card]
        table[player, index] = (1.0 - bet, bet)
    return table.astype(np.float32)


def policy_table(probabilities: np.ndarray) -> np.ndarray:
    """float[2, 12, 2] (player, info state, action) from per-info-state probabilities [12, 2].

    Each info state belongs to one player; the other player's rows are filled uniformly (they
    are never read by the exploitability computation for that player).
    """
    table = np.full((2, NUM_INFO_STATES, 2), 0.5)
    for index in range(NUM_INFO_STATES):
        table[int(INFO_STATE_PLAYER[index]), index] = probabilities[index]
    return table


def average_policy(probabilities: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The average strategy of several policies (float[K, 12, 2]), weighted by each policy's own
    reach probability of every information state: what fictitious play converges with, and the
    policy of a league that draws policy k per game with probability ``weights[k]``.

    Player 0 reaches ``pb`` with the probability of having passed at the root with the same card;
    every other information state is reached with probability one by its own player.
    """
    probabilities = np.asarray(probabilities, np.float64)
    weights = np.ones(probabilities.shape[0]) if weights is None else np.asarray(weights, np.float64)
    reach = np.ones(probabilities.shape[:2])
    for index in range(NUM_INFO_STATES):
        if INFO_STATE_HISTORY[index] == "pb":
            root = index - INFO_STATE_HISTORIES.index("pb")  # same card, empty history
            reach[:, index] = probabilities[:, root, PASS]
    w = weights[:, None] * reach
    # Normalised by the mixed row itself, not by sum(w): when every policy almost never reaches
    # a state, sum(w) can underflow a fixed floor and the row would not sum to one.
    mixed = (w[..., None] * probabilities).sum(0)
    total = mixed.sum(-1, keepdims=True)
    return np.where(total > 0, mixed / np.where(total > 0, total, 1.0), 0.5)


@dataclasses.dataclass(frozen=True)
class _Node:
    """One history of one deal in the game tree (host side)."""

    player: int  # who acts; -1 at a terminal
    info_state: int  # the mover's info state index; -1 at a terminal
    depth: int
    children: tuple  # (child after action 0, child after action 1); empty at a terminal
    rewards: tuple  # each player's payoff at a terminal


@functools.lru_cache(maxsize=1)
def _tree() -> tuple[_Node, ...]:
    """The root of each of the 6 deals, built by walking the env's own rules."""
    env = KuhnPoker()
    step = jax.jit(env.step)
    info = jax.jit(info_state_index)
    # The only chance event is the deal, fixed here; the steps' keys are unused but each step
    # still gets its own.
    keys = iter(jax.random.split(jax.random.key(0), 256))

    def walk(state, depth: int) -> _Node:
        if bool(state.terminated):
            return _Node(-1, -1, depth, (), tuple(float(r) for r in np.asarray(state.rewards)))
        player = int(state.current_player)
        children = tuple(
            walk(step(state, jnp.int32(a), next(keys)), depth + 1) for a in range(env.num_actions)
        )
        return _Node(player, int(info(state, player)), depth, children, ())

    return tuple(walk(env.reset_to_deal(jnp.asarray(deal)), 0) for deal in DEALS)


def check_policy_table(table) -> np.ndarray:
    """``table`` as float64[2, 12, 2]; raises UserError unless the rows of the information states
    where a player acts are probabilities."""
    policy = np.asarray(table, np.float64)
    expected = (2, NUM_INFO_STATES, 2)
    if policy.shape != expected:
        raise UserError(f"kuhn policy table has shape {policy.shape}, expected {expected} [player, info state, action]")
    acting = np.stack([INFO_STATE_PLAYER == p for p in range(2)])
    rows = policy[acting]
    if not np.all(np.isfinite(rows)) or np.any(rows < 0) or not np.allclose(rows.sum(-1), 1.0, atol=1e-4):
        raise UserError(
            "kuhn policy table rows of the info states where a player acts must be probabilities "
            "(non-negative, summing to 1)"
        )
    return policy


def best_response_value(table, player: int) -> float:
    """The expected payoff of ``player``'s best response to the other player's policy.

    Exact: enumerates the 6 deals and every history. ``player``'s actions are chosen per
    information state, deepest first, to maximise the payoff weighted by the chance and
    opponent reach probabilities of the histories in it. ``table``: float[2, 12, 2].
    """
    policy = check_policy_table(table)
    roots = _tree()
    chance = 1.0 / len(roots)

    # Every history where `player` acts, with its weight (chance times opponent reach).
    members: dict[int, list[tuple[_Node, float]]] = {}

    def collect(node: _Node, reach: float) -> None:
        if node.player < 0:
            return
        for action, child in enumerate(node.children):
            if node.player == player:
                collect(child, reach)
            else:
                collect(child, reach * policy[node.player, node.info_state, action])
        if node.player == player:
            members.setdefault(node.info_state, []).append((node, reach))

    for root in roots:
        collect(root, chance)

    choice: dict[int, int] = {}

    def value(node: _Node) -> float:
        if node.player < 0:
            return node.rewards[player]
        if node.player == player:
            return value(node.children[choice[node.info_state]])
        probs = policy[node.player, node.info_state]
        return sum(p * value(child) for p, child in zip(probs, node.children))

    # Deeper info states first, so a history's continuation is already decided.
    for info_state in sorted(members, key=lambda i: -members[i][0][0].depth):
        totals = [
            sum(weight * value(node.children[action]) for node, weight in members[info_state])
            for action in range(2)
        ]
        choice[info_state] = int(np.argmax(totals))
    return float(sum(chance * value(root) for root in roots))


def table_exploitability(table) -> float:
    """The exploitability of a policy table (float[2, 12, 2]): ``(BR_0 + BR_1) / 2``.

    ``BR_p`` is the value of player p's best response against the other player's part of the
    table. The game is zero-sum, so the sum of the two best responses is OpenSpiel's NashConv;
    the uniform policy scores 0.458333 and every equilibrium 0.
    """
    return 0.5 * (best_response_value(table, 0) + best_response_value(table, 1))


def table_player(table):
    """``act(key, state) -> int32[]``: samples from a policy table (float[2, 12, 2])."""
    table = jnp.asarray(check_policy_table(table), jnp.float32)

    def act(key, state: KuhnPokerState) -> jax.Array:
        player = state.current_player
        index = jnp.maximum(info_state_index(state, player), 0)
        logits = jnp.log(jnp.maximum(table[player, index], 0.0))
        logits = jnp.where(state.legal_action_mask, logits, -jnp.inf)
        return jax.random.categorical(key, logits).astype(jnp.int32)

    return act
