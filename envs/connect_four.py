"""Connect four on multi-word bitboards.

Action ``c`` in 0..columns-1 drops a disc into column ``c`` (from the left); it lands on the lowest
empty cell. Four of a player's discs in a row, horizontally, vertically or on either diagonal, win.
Player 0 moves first. The winner gets +1 and the loser -1; a full board without a line is a draw.
Observation: float32[rows, columns, 2], the mover's discs then the opponent's, row 0 at the top.

Representation. Cells are numbered column-major from the bottom left: cell (column c, height h)
is bit ``c * (rows + 1) + h``. Each column has one extra, always empty bit above its top cell, so
shifting a board by 1 (up), ``rows + 1`` (right) or ``rows + 1 +- 1`` (diagonals) never carries a
line from one column into the next. JAX runs without 64-bit integers, so a board of
``columns * (rows + 1)`` bits is held as a tuple of uint32 words, least significant first; shifts
carry bits between neighbouring words. The state stores the mover's discs and the opponent's
discs and swaps them after every move, so the mover's view needs no select.

What the env declares: a heuristic for the minimax anchor's leaves (`ConnectFour.heuristic`: open
twos and threes and centre-column discs) and the mirror of the columns as its symmetry.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from superlearner.core.env import Env, State, Symmetries, check_option

_WORD_BITS = 32
_MIN_SIZE, _MAX_SIZE = 4, 12

Words = tuple  # a board: a tuple of uint32[] words, least significant first


@struct.dataclass
class ConnectFourState(State):
    """``boards[0]`` holds the discs of the player to move, ``boards[1]`` the other player's.

    Attributes:
      boards: uint32[2, num_words], bit ``c * (rows + 1) + h`` is the cell of column c at height h
        (h = 0 is the bottom row).
    """

    boards: jax.Array


def _shift_down(words: Words, shift) -> Words:
    """The multi-word board shifted towards bit 0 by ``shift`` (1..31) bits, or by an array of
    shifts that broadcasts against the words."""
    out = []
    for i, word in enumerate(words):
        value = word >> shift
        if i + 1 < len(words):
            value = value | (words[i + 1] << (_WORD_BITS - shift))
        out.append(value)
    return tuple(out)


def _shift_up(words: Words, shift: int) -> Words:
    """The multi-word board shifted away from bit 0 by ``shift`` (1..31) bits."""
    out = []
    for i, word in enumerate(words):
        value = word << shift
        if i > 0:
            value = value | (words[i - 1] >> (_WORD_BITS - shift))
        out.append(value)
    return tuple(out)


def _words_of(mask: int, num_words: int) -> np.ndarray:
    """A Python integer bit mask as uint32[num_words], least significant word first."""
    return np.array([(mask >> (_WORD_BITS * i)) & 0xFFFFFFFF for i in range(num_words)], np.uint32)


def _unpack(words: jax.Array, positions: np.ndarray) -> jax.Array:
    """The bits of ``words`` (uint32[..., num_words]) at static ``positions`` (any shape).

    Returns uint32 of shape ``words.shape[:-1] + positions.shape``, 0 or 1. Built from
    elementwise ops with constant shifts (no gather), so it fuses under vmap.
    """
    lead = words.shape[:-1]
    expand = (Ellipsis,) + (None,) * positions.ndim
    word_index = positions // _WORD_BITS
    bits = None
    for w in range(words.shape[-1]):
        in_word = word_index == w
        if not in_word.any():
            continue
        shift = np.where(in_word, positions % _WORD_BITS, 0).astype(np.uint32)
        keep = in_word.astype(np.uint32)
        part = (words[..., w][expand] >> shift) & keep
        bits = part if bits is None else bits | part
    return jnp.broadcast_to(bits, lead + positions.shape)


# Weights of the heuristic, in "points": an open three is worth more than an open two; the centre
# column takes part in the most lines.
OPEN_TWO = 2.0
OPEN_THREE = 5.0
CENTRE = 3.0


def _window_sums(plane: jax.Array) -> jax.Array:
    """float32[num_windows]: the sum of ``plane`` (float32[rows, columns]) over every line of four.

    Sums of four shifted slices per direction: elementwise work that fuses, unlike a gather.
    """
    r, c = plane.shape
    horizontal = sum(plane[:, k : c - 3 + k] for k in range(4))
    vertical = sum(plane[k : r - 3 + k, :] for k in range(4))
    diagonal = sum(plane[k : r - 3 + k, k : c - 3 + k] for k in range(4))
    anti = sum(plane[k : r - 3 + k, 3 - k : c - k] for k in range(4))
    return jnp.concatenate([x.reshape(-1) for x in (horizontal, vertical, diagonal, anti)])


class ConnectFour(Env):
    """Connect four: drop discs into columns; four in a row wins."""

    id = "connect_four"
    version = "1"
    description = "Connect four, 2 players, action = column from the left (default 6x7)"
    zero_sum = True

    def __init__(self, rows: int = 6, columns: int = 7) -> None:
        self.rows = check_option(self.id, "rows", rows, int, _MIN_SIZE, _MAX_SIZE)
        self.columns = check_option(self.id, "columns", columns, int, _MIN_SIZE, _MAX_SIZE)
        self.num_players = 2
        self.num_actions = self.columns
        self.observation_shape = (self.rows, self.columns, 2)

        height = self.rows + 1  # bits per column, the top one always empty
        self._num_words = math.ceil(self.columns * height / _WORD_BITS)
        column_bits = (1 << height) - 1
        bottom = sum(1 << (c * height) for c in range(self.columns))
        # Constants stay NumPy arrays: they become literals of whatever program uses them.
        self._bottom = _words_of(bottom, self._num_words)
        self._column_masks = np.stack(
            [_words_of(column_bits << (c * height), self._num_words) for c in range(self.columns)]
        )
        self._full = _words_of(bottom * ((1 << self.rows) - 1), self._num_words)
        # Shifts that move a cell one step along: up, right, up-right, down-right.
        self._line_shifts = np.array([1, height, height + 1, height - 1], np.uint32)
        self._top_cells = np.arange(self.columns) * height + self.rows - 1
        # Observation row 0 is the top row.
        r = np.arange(self.rows)[:, None]
        c = np.arange(self.columns)[None, :]
        self._cell_positions = c * height + (self.rows - 1 - r)
        # The mirror image (columns reversed) of a position is worth the same.
        grid = np.arange(self.rows * self.columns).reshape(self.rows, self.columns)
        self.symmetries = Symmetries(
            cells=np.stack([grid.reshape(-1), grid[:, ::-1].reshape(-1)]).astype(np.int32),
            actions=np.stack([np.arange(self.columns), np.arange(self.columns)[::-1]]).astype(np.int32),
        )

    # ----------------------------------------------------------------------------------------
    # Rules.

    def _reset(self, key, params) -> ConnectFourState:
        del key, params
        return ConnectFourState(
            **self._initial_fields(jnp.ones((self.columns,), jnp.bool_)),
            boards=jnp.zeros((2, self._num_words), jnp.uint32),
        )

    def _step(self, state: ConnectFourState, action, key, params) -> ConnectFourState:
        del key, params
        num_words = self._num_words
        mine = tuple(state.boards[0, w] for w in range(num_words))
        theirs = tuple(state.boards[1, w] for w in range(num_words))
        occupied = tuple(a | b for a, b in zip(mine, theirs))
        # The lowest empty cell of every column: empty, and on the bottom or above a disc.
        # Columns fill from the bottom, so this is one cell per column that is not full.
        above = _shift_up(occupied, 1)
        landing = tuple((u | b) & ~o for u, b, o in zip(above, self._bottom, occupied))
        column = self._select_column(action)
        placed = tuple(m | (l & k) for m, l, k in zip(mine, landing, column))

        won = self._has_four(placed)
        occupied = tuple(a | b for a, b in zip(placed, theirs))
        full = jnp.all(jnp.stack([o == f for o, f in zip(occupied, self._full)]))

        mover = state.current_player
        sign = jnp.where(jnp.arange(2) == mover, 1.0, -1.0)
        rewards = jnp.where(won, sign, 0.0).astype(jnp.float32)
        occupied_array = jnp.stack(occupied)
        top_taken = _unpack(occupied_array, self._top_cells)
        return state.replace(
            boards=jnp.stack([jnp.stack(theirs), jnp.stack(placed)]),
            current_player=1 - mover,
            legal_action_mask=top_taken == 0,
            rewards=rewards,
            terminated=won | full,
        )

    def _select_column(self, action: jax.Array) -> Words:
        """The cells of column ``action`` (int32[]) as words; a select per column, no gather."""
        words = []
        for w in range(self._num_words):
            value = jnp.uint32(0)
            for c in range(self.columns):
                mask = self._column_masks[c, w]
                if mask:
                    value = value | jnp.where(action == c, mask, np.uint32(0))
            words.append(value)
        return tuple(words)

    def _has_four(self, board: Words) -> jax.Array:
        """bool[]: whether ``board`` holds four in a row in any of the four directions.

        The directions are lanes of one vector op, and the answer is one reduction over lanes
        and words: XLA ends a fusion at a reduction, so every consumer of the answer (the
        rewards, ``terminated``) reads it instead of recomputing the shift chain.
        """
        lanes = tuple(word[..., None] for word in board)
        pairs = tuple(a & b for a, b in zip(lanes, _shift_down(lanes, self._line_shifts)))
        fours = tuple(a & b for a, b in zip(pairs, _shift_down(pairs, 2 * self._line_shifts)))
        return jnp.any(jnp.stack(fours, axis=-1) != 0)

    def observe(self, state: ConnectFourState, player) -> jax.Array:
        is_mover = player == state.current_player
        own = jnp.where(is_mover, state.boards[0], state.boards[1])
        other = jnp.where(is_mover, state.boards[1], state.boards[0])
        planes = _unpack(jnp.stack([own, other]), self._cell_positions)
        return jnp.moveaxis(planes, 0, -1).astype(jnp.float32)

    # ----------------------------------------------------------------------------------------
    # Declarations: the minimax anchor's leaf heuristic.

    def heuristic(self, state: ConnectFourState) -> jax.Array:
        """float32[]: open twos and threes and centre-column discs, the mover's minus the opponent's.

        A window (four cells in a line) is open for a side when the other side has no disc in it;
        it scores `OPEN_TWO` with two of the side's discs and `OPEN_THREE` with three. Each disc in
        the centre column (both middle columns when the width is even) scores `CENTRE`. Reads only
        ``state.observation`` (the mover's discs, then the opponent's), so any board size works.
        """
        obs = state.observation
        columns = obs.shape[1]
        own = _window_sums(obs[..., 0])
        other = _window_sums(obs[..., 1])

        def open_lines(mine: jax.Array, theirs: jax.Array) -> jax.Array:
            value = jnp.where(mine == 2, OPEN_TWO, 0.0) + jnp.where(mine == 3, OPEN_THREE, 0.0)
            return jnp.where(theirs == 0, value, 0.0)

        centre = np.zeros((columns,), np.float32)
        centre[(columns - 1) // 2] = 1.0
        centre[columns // 2] = 1.0
        centre_discs = (obs[..., 0] - obs[..., 1]) @ centre
        # One reduction over windows and rows together (small reductions dominate the cost on CPU).
        per_window = open_lines(own, other) - open_lines(other, own)
        return jnp.sum(jnp.concatenate([per_window, CENTRE * centre_discs])).astype(jnp.float32)

    # ----------------------------------------------------------------------------------------
    # Host-side helpers.

    def discs(self, state: ConnectFourState) -> np.ndarray:
        """int[rows, columns] of one unbatched state: -1 empty, else the owner; row 0 on top."""
        mover = int(state.current_player)
        planes = np.asarray(_unpack(jnp.asarray(state.boards), self._cell_positions))
        grid = -np.ones((self.rows, self.columns), np.int64)
        grid[planes[0] == 1] = mover
        grid[planes[1] == 1] = 1 - mover
        return grid

    def render_text(self, state: ConnectFourState) -> str:
        grid = self.discs(state)
        width = len(str(self.columns - 1)) + 1
        symbols = {-1: ".", 0: "X", 1: "O"}
        lines = ["".join(symbols[int(v)].rjust(width) for v in row) for row in grid]
        lines.append("".join(str(c).rjust(width) for c in range(self.columns)))
        return "\n".join(lines)

    def render_svg(self, state: ConnectFourState) -> str:
        grid = self.discs(state)
        cell = 50
        width, height = self.columns * cell, self.rows * cell + 20
        colours = {-1: "white", 0: "#c0392b", 1: "#f1c40f"}
        parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}">',
            f'<rect width="{width}" height="{self.rows * cell}" fill="#1f4e9c"/>',
        ]
        for r in range(self.rows):
            for c in range(self.columns):
                x, y = c * cell + cell / 2, r * cell + cell / 2
                parts.append(
                    f'<circle cx="{x}" cy="{y}" r="{cell / 2 - 5}" '
                    f'fill="{colours[int(grid[r, c])]}" stroke="#15396f" stroke-width="2"/>'
                )
        for c in range(self.columns):
            parts.append(
                f'<text x="{c * cell + cell / 2}" y="{self.rows * cell + 15}" font-size="12" '
                f'text-anchor="middle" font-family="sans-serif">{c}</text>'
            )
        parts.append("</svg>")
        return "".join(parts)
