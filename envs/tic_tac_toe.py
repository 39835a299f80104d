"""Tic-tac-toe on bitboards.

Action ``a`` in 0..8 marks cell ``a`` (row-major from the top left). Player 0 plays X and moves
first. The winner gets +1 and the loser -1; a full board without a line is a draw (0, 0).
Observation: float32[3, 3, 2], the mover's marks then the opponent's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from superlearner.env import Env, State, dihedral_symmetries

# The eight winning lines as 9-bit masks over the row-major cells.
_LINES = jnp.array(
    [
        0b000000111, 0b000111000, 0b111000000,  # rows
        0b001001001, 0b010010010, 0b100100100,  # columns
        0b100010001, 0b001010100,  # diagonals
    ],
    dtype=jnp.int32,
)
_CELLS = jnp.arange(9, dtype=jnp.int32)
_FULL = 0b111111111


@struct.dataclass
class TicTacToeState(State):
    """``boards[p]`` is player p's marks as a 9-bit mask."""

    boards: jax.Array


def has_line(board: jax.Array) -> jax.Array:
    """bool[]: whether the 9-bit mask ``board`` holds a complete line."""
    return jnp.any((board & _LINES) == _LINES)


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
