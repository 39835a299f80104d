"""Tic-tac-toe on bitboards.

Action ``a`` in 0..8 marks cell ``a`` (row-major from the top left). Player 0 plays X and moves
first. The winner gets +1 and the loser -1; a full board without a line is a draw (0, 0).
Observation: float32[3, 3, 2], the mover's marks then the opponent's.

What the env declares: the game is solved. `solved_values` holds the game-theoretic value of every
position (a memoised negamax over the whole game tree, once, on the host), from which the env
declares `TicTacToe.solved_action_values` (the exact value of each move) and
`TicTacToe.perfect_player` (the ``perfect`` anchor). The minimax anchor needs no heuristic here: at
depth 9 it searches to the end of every line.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from superlearner.core.env import Env, State, dihedral_symmetries

# The eight winning lines as 9-bit masks over the row-major cells.
_LINE_MASKS = (
    0b000000111, 0b000111000, 0b111000000,  # rows
    0b001001001, 0b010010010, 0b100100100,  # columns
    0b100010001, 0b001010100,  # diagonals
)
_LINES = jnp.array(_LINE_MASKS, dtype=jnp.int32)
_CELLS = jnp.arange(9, dtype=jnp.int32)
_FULL = 0b111111111


@struct.dataclass
class TicTacToeState(State):
    """``boards[p]`` is player p's marks as a 9-bit mask."""

    boards: jax.Array


def has_line(board: jax.Array) -> jax.Array:
    """bool[]: whether the 9-bit mask ``board`` holds a complete line."""
    return jnp.any((board & _LINES) == _LINES)


# ---------------------------------------------------------------------------------------------
# The solved game. A position's key is base 3 over the row-major cells: cell i contributes
# ``3**i`` times 0 (empty), 1 (X, player 0) or 2 (O, player 1).

NUM_KEYS = 3**9
_POWERS = 3 ** np.arange(9)


@functools.lru_cache(maxsize=1)
def _solved_table() -> np.ndarray:
    values = np.zeros((NUM_KEYS,), np.int8)
    solved: set[int] = set()

    def won(board: int) -> bool:
        return any(board & line == line for line in _LINE_MASKS)

    def solve(boards: tuple[int, int], mover: int, key: int) -> int:
        if key in solved:
            return int(values[key])
        if won(boards[1 - mover]):
            value = -1  # the previous move won
        elif boards[0] | boards[1] == _FULL:
            value = 0
        else:
            value = -1
            for cell in range(9):
                bit = 1 << cell
                if not (boards[0] | boards[1]) & bit:
                    child = (boards[0] | bit, boards[1]) if mover == 0 else (boards[0], boards[1] | bit)
                    value = max(value, -solve(child, 1 - mover, key + (mover + 1) * int(_POWERS[cell])))
        solved.add(key)
        values[key] = value
        return value

    solve((0, 0), 0, 0)
    values.setflags(write=False)
    return values


def solved_values() -> jax.Array:
    """int8[3**9]: the game-theoretic value of every reachable position for the player to move
    (+1 win, 0 draw, -1 loss under perfect play by both), indexed by `TicTacToe.position_key`.

    Terminal positions hold the mover's result (-1 after the opponent completed a line, 0 for a
    full board); unreachable keys hold 0. Solved once on the host by a memoised negamax over the
    whole game tree (5478 positions).
    """
    return jnp.asarray(_solved_table())


class TicTacToe(Env):
    """Tic-tac-toe: two players mark a 3x3 grid; three in a row wins."""

    id = "tic_tac_toe"
    version = "1"
    description = "Tic-tac-toe, 2 players, action = cell 0..8 row-major"
    zero_sum = True

    def __init__(self) -> None:
        self.num_players = 2
        self.num_actions = 9
        self.observation_shape = (3, 3, 2)
        self.symmetries = dihedral_symmetries(3)

    def _reset(self, key, params) -> TicTacToeState:
        del key, params
        return TicTacToeState(
            **self._initial_fields(jnp.ones((9,), jnp.bool_)),
            boards=jnp.zeros((2,), jnp.int32),
        )

    def _step(self, state: TicTacToeState, action, key, params) -> TicTacToeState:
        del key, params
        mover = state.current_player
        boards = state.boards.at[mover].set(state.boards[mover] | (1 << action))
        won = has_line(boards[mover])
        occupied = boards[0] | boards[1]
        full = occupied == _FULL
        sign = jnp.where(jnp.arange(2) == mover, 1.0, -1.0)
        rewards = jnp.where(won, sign, 0.0).astype(jnp.float32)
        return state.replace(
            boards=boards,
            current_player=1 - mover,
            legal_action_mask=((occupied >> _CELLS) & 1) == 0,
            rewards=rewards,
            terminated=won | full,
        )

    def observe(self, state: TicTacToeState, player) -> jax.Array:
        own = (state.boards[player] >> _CELLS) & 1
        other = (state.boards[1 - player] >> _CELLS) & 1
        return jnp.stack([own, other], axis=-1).reshape(3, 3, 2).astype(jnp.float32)

    # ----------------------------------------------------------------------------------------
    # Declarations: the exact solution (see the module docstring).

    def position_key(self, state: TicTacToeState) -> jax.Array:
        """int32[]: the base-3 key of an unbatched ``state`` in `solved_values`."""
        cells = ((state.boards[0] >> _CELLS) & 1) + 2 * ((state.boards[1] >> _CELLS) & 1)
        return jnp.sum(cells * jnp.asarray(_POWERS, jnp.int32)).astype(jnp.int32)

    def solved_value(self, state: TicTacToeState) -> jax.Array:
        """int32[]: the solved value of ``state`` for the player to move (+1 / 0 / -1), for
        positions reached by legal play."""
        return jnp.asarray(_solved_table())[self.position_key(state)].astype(jnp.int32)

    def solved_action_values(self, state: TicTacToeState, key, params=None) -> jax.Array:
        """float32[9]: the solved value of each action for the mover; illegal actions get -2.
        ``key`` is consumed (split for the steps)."""
        mover = state.current_player
        step_keys = jax.random.split(key, self.num_actions)

        def action_value(action, step_key):
            child = self.step(state, action, step_key, params)
            after = self.solved_value(child).astype(jnp.float32)
            after = jnp.where(child.current_player == mover, after, -after)
            return jnp.where(child.terminated, child.rewards[mover], after)

        values = jax.vmap(action_value)(jnp.arange(self.num_actions, dtype=jnp.int32), step_keys)
        return jnp.where(state.legal_action_mask, values, -2.0)

    def perfect_player(self, params=None):
        """``act(key, state) -> int32[]``: a move of the best solved value, ties broken uniformly
        at random with ``key`` (so games against it vary)."""

        def act(key, state: TicTacToeState) -> jax.Array:
            step_key, tie_key = jax.random.split(key)
            values = self.solved_action_values(state, step_key, params)
            logits = jnp.where(values >= jnp.max(values), 0.0, -jnp.inf)
            return jax.random.categorical(tie_key, logits).astype(jnp.int32)

        return act

    def render_text(self, state: TicTacToeState) -> str:
        rows = []
        for r in range(3):
            cells = []
            for c in range(3):
                i = 3 * r + c
                if (int(state.boards[0]) >> i) & 1:
                    cells.append("X")
                elif (int(state.boards[1]) >> i) & 1:
                    cells.append("O")
                else:
                    cells.append(str(i))
            rows.append(" " + " | ".join(cells))
        return "\n---+---+---\n".join(rows)

    def render_svg(self, state: TicTacToeState) -> str:
        size = 60
        parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{3 * size}" height="{3 * size}" '
            f'viewBox="0 0 {3 * size} {3 * size}">',
            f'<rect width="{3 * size}" height="{3 * size}" fill="white"/>',
        ]
        for k in (1, 2):
            parts.append(f'<line x1="{k * size}" y1="0" x2="{k * size}" y2="{3 * size}" stroke="black" stroke-width="2"/>')
            parts.append(f'<line x1="0" y1="{k * size}" x2="{3 * size}" y2="{k * size}" stroke="black" stroke-width="2"/>')
        for i in range(9):
            x, y = (i % 3) * size, (i // 3) * size
            if (int(state.boards[0]) >> i) & 1:
                m = 12
                parts.append(
                    f'<path d="M{x + m} {y + m} L{x + size - m} {y + size - m} M{x + size - m} {y + m} '
                    f'L{x + m} {y + size - m}" stroke="#c0392b" stroke-width="5"/>'
                )
            elif (int(state.boards[1]) >> i) & 1:
                parts.append(
                    f'<circle cx="{x + size / 2}" cy="{y + size / 2}" r="{size / 2 - 12}" '
                    f'fill="none" stroke="#2471a3" stroke-width="5"/>'
                )
        parts.append("</svg>")
        return "".join(parts)
