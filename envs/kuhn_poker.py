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
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from superlearner.env import Env, State

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
