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
twos and threes and centre-column discs), the mirror of the columns as its symmetry, and a level
space of start positions for curricula.

Levels. The env's ``params`` is a `PositionLevel`: a position and the side to move, which ``reset``
starts from; the default is the standard start (an empty board, player 0 to move). The level
space (`PositionLevelSpace`, ``env.level_space``) draws fresh levels as a few random legal plies
from the standard start and mutates a level by a few more, so every level it makes is reachable
by legal play and unfinished. `PositionLevelSpace` is written for any two-player board game whose
state keeps ``boards`` and ``current_player`` (othello uses it too).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from superlearner.core.env import Env, State, Symmetries, check_option, tree_select
from superlearner.core.hashing import fmix32
from superlearner.errors import UserError

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


@struct.dataclass
class PositionLevel:
    """A start position of a two-player board game: the env's ``params``, which ``reset`` starts from.

    Attributes:
      boards: uint32[2, num_words], the discs of the player to move, then the other player's, in
        the game's own bitboard layout (its state's ``boards``).
      current_player: int32[], the player to move.
    """

    boards: jax.Array
    current_player: jax.Array


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

    def __init__(self, rows: int = 6, columns: int = 7, level_plies: int = 8) -> None:
        """Static options: the board's ``rows`` and ``columns`` (4..12), and ``level_plies``, the
        most random plies of a fresh curriculum level (`PositionLevelSpace.max_plies`)."""
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
        self.level_space = PositionLevelSpace(self, max_plies=level_plies)

    @property
    def default_params(self) -> PositionLevel:
        """The standard start: an empty board, player 0 to move."""
        return PositionLevel(boards=jnp.zeros((2, self._num_words), jnp.uint32), current_player=jnp.int32(0))

    # ----------------------------------------------------------------------------------------
    # Rules.

    def _reset(self, key, params: PositionLevel) -> ConnectFourState:
        del key  # the level fixes the whole start state
        boards = jnp.asarray(params.boards, jnp.uint32)
        top_taken = _unpack(boards[0] | boards[1], self._top_cells)
        return ConnectFourState(
            **self._initial_fields(top_taken == 0, jnp.asarray(params.current_player, jnp.int32)),
            boards=boards,
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
    # Declarations: positions as levels (`PositionLevelSpace`).

    def can_move(self, state: ConnectFourState) -> jax.Array:
        """bool[]: the game goes on (the player to move then always has a column)."""
        return ~(state.terminated | state.truncated)

    def is_valid_position(self, level: PositionLevel) -> jax.Array:
        """bool[]: ``level`` is a position of legal play that is not over: discs only on cells,
        no cell taken twice, every disc on the bottom row or on another disc, player 0 to move
        with as many discs as player 1 or player 1 to move with one fewer, no four in a row, and
        an empty cell left. (Such a position may still be one no order of legal moves reaches;
        the level space only makes reachable ones.)"""
        words = range(self._num_words)
        mine = tuple(jnp.asarray(level.boards[0, w], jnp.uint32) for w in words)
        theirs = tuple(jnp.asarray(level.boards[1, w], jnp.uint32) for w in words)
        occupied = tuple(a | b for a, b in zip(mine, theirs))
        grounds = _shift_up(occupied, 1)
        checks = [((a & b) == 0) & ((o & ~f) == 0) & ((o & ~g & ~b0) == 0)
                  for a, b, o, f, g, b0 in zip(mine, theirs, occupied, self._full, grounds, self._bottom)]
        count = lambda board: sum(jax.lax.population_count(w).astype(jnp.int32) for w in board)  # noqa: E731
        player = jnp.asarray(level.current_player, jnp.int32)
        balanced = jnp.where(player == 0, count(mine) == count(theirs), count(theirs) == count(mine) + 1)
        full = jnp.all(jnp.stack([o == f for o, f in zip(occupied, self._full)]))
        return (jnp.all(jnp.stack(checks)) & ((player == 0) | (player == 1)) & balanced & ~full
                & ~self._has_four(mine) & ~self._has_four(theirs))

    def level_from_discs(self, discs, current_player: int) -> PositionLevel:
        """The level of a board drawn as int[rows, columns] (-1 empty, else the owner; row 0 on
        top) with ``current_player`` to move; host side, unchecked (see `is_valid_position`)."""
        discs = np.asarray(discs)
        height = self.rows + 1
        bits = [0, 0]
        for r, c in zip(*np.nonzero(discs >= 0)):
            side = 0 if int(discs[r, c]) == int(current_player) else 1
            bits[side] |= 1 << (int(c) * height + self.rows - 1 - int(r))
        boards = np.stack([_words_of(b, self._num_words) for b in bits])
        return PositionLevel(boards=jnp.asarray(boards), current_player=jnp.int32(current_player))

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


# Board blue, empty holes white, player 0's discs red and player 1's yellow, as `render_svg`.
_LEVEL_COLOURS = ((0.12, 0.31, 0.61), (1.0, 1.0, 1.0), (0.75, 0.22, 0.17), (0.95, 0.77, 0.06))


# ------------------------------------------------------------------------------------------------
# The level space of start positions, shared by the board games whose state keeps ``boards``
# and ``current_player``.

_SYMBOLS = {-1: ".", 0: "X", 1: "O"}
_TO_MOVE = re.compile(r"^([XO])\s+to\s+move$")
_SVG_SIZE = re.compile(r'<svg\b[^>]*?\bwidth="([\d.]+)"[^>]*?\bheight="([\d.]+)"')


@dataclasses.dataclass(frozen=True, eq=False)
class PositionLevelSpace:
    """The start positions of a two-player board game, for curricula: sample, mutate, check,
    hash, and the text, JSON, SVG and image forms of a level (a `PositionLevel`).

    A fresh level is 1..``max_plies`` uniformly random legal plies from the standard start; a
    mutation plays ``num_edits`` more from a level. A ply that would end the game, or leave the
    player to move without a move, is not played (the position stays as it was), so every level
    made here is reachable by legal play from the standard start and not over. Array methods are
    pure and jittable and take one level (vmap at the call site).

    Text form: one row per board row, top first, ``X`` for player 0's discs, ``O`` for player 1's
    and ``.`` for an empty cell (spaces between cells are ignored), then a line ``X to move`` or
    ``O to move``.

    Attributes:
      env: the game. ``env.reset(key, level)`` starts from a level and its states keep ``boards``
        and ``current_player``; it declares ``default_params`` (the standard start),
        ``can_move(state) -> bool[]`` (the game goes on and the player to move has a move other
        than a pass), ``is_valid_position(level) -> bool[]``, and, host side,
        ``level_from_discs(discs, current_player)`` and ``discs(state)``.
      max_plies: the most random plies of a fresh level (1..64).
      colours: RGB in 0..1 of the board, an empty cell, player 0's discs and player 1's discs
        (`level_to_image`).
    """

    env: Any
    max_plies: int = 8
    colours: tuple = _LEVEL_COLOURS

    def __post_init__(self) -> None:
        check_option(self.env.id, "level_plies", self.max_plies, int, 1, 64)

    # -- shapes ---------------------------------------------------------------------------------

    def standard_level(self) -> PositionLevel:
        """The standard start (the env's default level)."""
        return self.env.default_params

    def check_level(self, level: PositionLevel) -> None:
        """Raises UserError when ``level`` is not one unbatched level of this game."""
        if not isinstance(level, PositionLevel):
            raise UserError(f"{self.env.id}: expected a PositionLevel, got {type(level).__name__}")
        standard = self.standard_level()
        for name in ("boards", "current_player"):
            got, want = tuple(jnp.shape(getattr(level, name))), tuple(jnp.shape(getattr(standard, name)))
            if got != want:
                raise UserError(
                    f"{self.env.id}: level.{name} has shape {got}, expected {want} (vmap over batches of levels)"
                )

    def level_of(self, state) -> PositionLevel:
        """The level of a live, unbatched state: its position and the player to move."""
        return PositionLevel(boards=state.boards, current_player=state.current_player)

    # -- sampling and mutation ------------------------------------------------------------------

    def _ply(self, key: jax.Array, state) -> tuple[Any, jax.Array]:
        """One uniformly random legal ply from ``state``, and its action; where the ply would end
        the game or leave the next player without a move, ``state`` itself and -1.

        The env's own rules (``_step``) play it: the action is legal and the game goes on, so the
        shared bookkeeping of ``step`` (illegal actions, finished games, the observation) has
        nothing to do, and leaving it out keeps the program small."""
        move_key, step_key = jax.random.split(key)
        logits = jnp.where(state.legal_action_mask, 0.0, -jnp.inf)
        action = jax.random.categorical(move_key, logits).astype(jnp.int32)
        moved = self.env._step(state, action, step_key, self.standard_level())
        keep = self.env.can_move(moved)
        return tree_select(keep, moved, state), jnp.where(keep, action, -1)

    def play_line(self, key: jax.Array, level: PositionLevel, num_plies, length: int):
        """Up to ``num_plies`` random legal plies from ``level`` (see the class docstring).

        Args:
          key: consumed.
          level: one level.
          num_plies: int or int32[] (may be traced), at most ``length``.
          length: static bound of the plies.

        Returns:
          ``(level, actions)``: the level reached, and int32[length] the action of each ply in
          order, -1 where no ply was played (past ``num_plies``, or a ply that would end the game).
        """
        self.check_level(level)
        reset_key, line_key = jax.random.split(key)
        ply_keys = jax.random.split(line_key, length)

        def body(i, carry):
            state, actions = carry
            moved, action = self._ply(ply_keys[i], state)
            play = i < num_plies
            return tree_select(play, moved, state), actions.at[i].set(jnp.where(play, action, -1))

        init = (self.env._reset(reset_key, level), jnp.full((length,), -1, jnp.int32))
        state, actions = jax.lax.fori_loop(0, length, body, init)
        return self.level_of(state), actions

    def sample_line(self, key: jax.Array) -> tuple[PositionLevel, jax.Array]:
        """A fresh level and the actions that reach it from the standard start (int32[max_plies],
        -1 where no ply was played). ``key`` is consumed."""
        count_key, line_key = jax.random.split(key)
        count = jax.random.randint(count_key, (), 1, self.max_plies + 1, dtype=jnp.int32)
        return self.play_line(line_key, self.standard_level(), count, self.max_plies)

    def sample(self, key: jax.Array) -> PositionLevel:
        """A fresh level: 1..max_plies random legal plies from the standard start. Consumes key."""
        return self.sample_line(key)[0]

    def mutate(self, key: jax.Array, level: PositionLevel, num_edits) -> PositionLevel:
        """``level`` moved on by ``num_edits`` random legal plies (an int, or a traced int32[]
        capped at ``max_plies``); a ply that would end the game is skipped, so the parent stays
        where every ply would. Equals ``play_line(key, level, num_edits, num_edits)[0]`` for an
        int. Consumes key."""
        length = num_edits if isinstance(num_edits, int) else self.max_plies
        return self.play_line(key, level, num_edits, length)[0]

    # -- measures -------------------------------------------------------------------------------

    def is_valid(self, level: PositionLevel, require_solvable: bool = False) -> jax.Array:
        """bool[]: ``level`` is a legal position of the game that is not over (the env's
        ``is_valid_position``). ``require_solvable`` adds nothing: every game from a position ends."""
        del require_solvable
        self.check_level(level)
        return self.env.is_valid_position(level)

    def level_hash(self, level: PositionLevel) -> jax.Array:
        """uint32[]: a hash of the position and the player to move, for de-duplication."""
        self.check_level(level)
        words = jnp.concatenate([
            jnp.asarray(level.boards, jnp.uint32).reshape(-1),
            jnp.asarray(level.current_player).astype(jnp.uint32).reshape(1),
        ])
        positions = jnp.arange(words.shape[0], dtype=jnp.uint32)
        mixed = fmix32(words ^ fmix32(positions * jnp.uint32(0x9E3779B9) + jnp.uint32(0x7F4A7C15)))
        return fmix32(jnp.sum(mixed, dtype=jnp.uint32) ^ jnp.uint32(words.shape[0]))

    # -- text, JSON, SVG, image (host side) -----------------------------------------------------

    def discs(self, level: PositionLevel) -> np.ndarray:
        """int[rows, columns] of one level: -1 empty, else the owner; row 0 on top."""
        self.check_level(level)
        return self.env.discs(self.env.reset(jax.random.key(0), level))

    def level_to_text(self, level: PositionLevel) -> str:
        """The text form of one level (see the class docstring)."""
        rows = ["".join(_SYMBOLS[int(v)] for v in row) for row in self.discs(level)]
        return "\n".join(rows + [f"{_SYMBOLS[int(level.current_player)]} to move"])

    def level_from_text(self, text: str) -> PositionLevel:
        """Parses the text form; raises UserError for a malformed text or a position that is not
        a legal, unfinished one (`is_valid`)."""
        lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
        height, width = self.env.observation_shape[:2]
        to_move = _TO_MOVE.match(lines[-1]) if lines else None
        rows = [line.replace(" ", "") for line in lines[:-1]]
        if to_move is None or len(rows) != height or any(len(r) != width or set(r) - set("XO.") for r in rows):
            raise UserError(
                f"{self.env.id}: a level text is {height} rows of {width} cells ('X' player 0, 'O' player 1, "
                "'.' empty), then a line 'X to move' or 'O to move'"
            )
        discs = np.array([[{".": -1, "X": 0, "O": 1}[c] for c in row] for row in rows])
        level = self.env.level_from_discs(discs, 0 if to_move.group(1) == "X" else 1)
        if not bool(self.is_valid(level)):
            raise UserError(
                f"{self.env.id}: the level text is not a position of legal play that is still going on "
                f"with {to_move.group(1)} to move"
            )
        return level

    def level_to_json(self, level: PositionLevel) -> str:
        """The JSON form of one level: its text rows and the player to move."""
        *rows, to_move = self.level_to_text(level).split("\n")
        return json.dumps({"env": self.env.id, "rows": rows, "to_move": to_move.split()[0]})

    def level_from_json(self, data: str) -> PositionLevel:
        """Parses `level_to_json`'s form."""
        try:
            obj = json.loads(data)
        except json.JSONDecodeError as err:
            raise UserError(f"{self.env.id}: the level JSON does not parse ({err.msg} at char {err.pos})") from None
        rows, to_move = (obj.get("rows"), obj.get("to_move")) if isinstance(obj, dict) else (None, None)
        if not isinstance(rows, list) or not all(isinstance(r, str) for r in rows) or to_move not in ("X", "O"):
            raise UserError(f"{self.env.id}: the level JSON must hold \"rows\" (strings) and \"to_move\" ('X' or 'O')")
        return self.level_from_text("\n".join(rows + [f"{to_move} to move"]))

    def level_to_svg(self, level: PositionLevel) -> str:
        """An SVG picture of one level: the board (`render_svg` of its start state) with the
        player to move written under it."""
        board = self.env.render_svg(self.env.reset(jax.random.key(0), level))
        size = _SVG_SIZE.search(board)
        width, height = float(size.group(1)), float(size.group(2))
        total = height + 22
        to_move = f"{_SYMBOLS[int(level.current_player)]} (player {int(level.current_player)}) to move"
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:g}" height="{total:g}" '
            f'viewBox="0 0 {width:g} {total:g}"><rect width="{width:g}" height="{total:g}" fill="white"/>'
            f'{board}<text x="6" y="{height + 16:g}" font-family="sans-serif" font-size="13">{to_move}</text></svg>'
        )

    def level_to_image(self, level: PositionLevel, cell: int = 9) -> np.ndarray:
        """float[rows * cell, columns * cell, 3]: the board as an RGB picture, each disc a circle
        in its cell (`colours`), for figures."""
        board, empty, *players = (np.asarray(c, np.float64) for c in self.colours)
        grid = self.discs(level)
        yy, xx = np.mgrid[0:cell, 0:cell]
        centre = (cell - 1) / 2
        disc = (yy - centre) ** 2 + (xx - centre) ** 2 <= (0.42 * cell) ** 2
        image = np.tile(board, (grid.shape[0] * cell, grid.shape[1] * cell, 1))
        for (r, c), owner in np.ndenumerate(grid):
            patch = image[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell]
            patch[disc] = empty if owner < 0 else players[int(owner)]
        return image
