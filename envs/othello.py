"""Othello (Reversi) on 8x8 bitboards held as two uint32 halves.

Action ``a`` in 0..63 places a disc on square ``a`` (row-major from the top left: a1 = 0, h1 = 7,
a8 = 56); action 64 passes. A move must flip at least one line of the opponent's discs, bounded
by the mover's own disc. Passing is legal only when no move is, and is then the only legal action.
Player 0 plays black and moves first from the standard start (d4 and e5 white, d5 and e4 black).
The game ends when neither player can move: at once when the board is full or a colour has no
discs left, otherwise after two passes in a row. The player with more discs gets +1, the other -1;
equal counts are a draw (0, 0).
Observation: float32[8, 8, 2], the mover's discs then the opponent's.

Representation. JAX runs without 64-bit integers, so a board is a pair ``(lo, hi)`` of uint32
words: squares 0..31 (rows 1-4) in ``lo`` and 32..63 (rows 5-8) in ``hi``. Moves and flips are
found for all eight directions with shifts (the "dumb7fill" of chess and Othello programs),
branch-free. The state keeps the mover's discs and the opponent's discs and swaps them after
every action, so the mover's view needs no select.

What the env declares: the 8 symmetries of the square board, for the minimax anchor a leaf
heuristic (`Othello.heuristic`: positional weights and mobility), a move ordering
(`Othello.move_priority`: the positional weight of each square) and a default width of
``minimax_width = 12`` children per node, and a level space of start positions for curricula.

Levels. The env's ``params`` is a `PositionLevel` (a position and the side to move) that ``reset``
starts from, the standard start by default; ``env.level_space`` is connect four's
`PositionLevelSpace`: fresh levels are a few random legal plies from the standard start, mutations
a few more, never a position whose player to move has only the pass.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from superlearner.core.env import Env, State, dihedral_symmetries
from superlearner.envs.connect_four import PositionLevel, PositionLevelSpace
from superlearner.errors import UserError

_PASS = 64
_FILES = "abcdefgh"

Board = tuple  # (lo, hi): two uint32[] words

_ALL = 0xFFFFFFFF
_NOT_A = 0xFEFEFEFE  # every square except file a (column 0)
_NOT_H = 0x7F7F7F7F  # every square except file h (column 7)

# The eight directions, in two groups of four lanes: those that move towards square 63 (a left
# shift of the 64-bit board) and those that move towards square 0. Each lane has its shift in
# squares and the squares a step may land on: a step towards higher columns never lands on
# file a, towards lower columns never on file h, so the mask removes steps that would wrap
# around the board's edge. A group runs as one vector op over its lanes.
_TOWARDS_63 = (  # east, south, south-east, south-west
    np.array([1, 8, 9, 7], np.uint32),
    np.array([_NOT_A, _ALL, _NOT_A, _NOT_H], np.uint32),
)
_TOWARDS_0 = (  # west, north, north-east, north-west
    np.array([1, 8, 7, 9], np.uint32),
    np.array([_NOT_H, _ALL, _NOT_A, _NOT_H], np.uint32),
)


@struct.dataclass
class OthelloState(State):
    """Attributes:
    boards: uint32[2, 2], ``boards[0]`` the discs of the player to move, ``boards[1]`` the other
      player's; each row is ``(lo, hi)``, bit ``a % 32`` of word ``a // 32`` is square ``a``.
    passed: bool[], the last action was a pass.
    """

    boards: jax.Array
    passed: jax.Array


def _shift(board: Board, amount: np.ndarray, towards_63: bool) -> Board:
    """The 64-bit board moved by ``amount`` squares (1..9, one per lane) in one direction.

    The carry between the words crosses from square 31 to 32 (or back); for the one-column
    shifts that is a wrap from file h to file a, which the lane's mask removes.
    """
    lo, hi = board
    if towards_63:
        return lo << amount, (hi << amount) | (lo >> (32 - amount))
    return (lo >> amount) | (hi << (32 - amount)), hi >> amount


def _lanes(board: Board) -> Board:
    return board[0][..., None], board[1][..., None]


def _masked(board: Board, mask) -> Board:
    return board[0] & mask, board[1] & mask


def _union(board: Board) -> Board:
    """The union over the lane (last) axis, as a reduction.

    A reduction is where XLA ends a fusion, so the shift chains behind it run once; as a chain
    of ors they would be fused into, and recomputed by, every consumer, e.g. once per square of
    the legal-action mask.
    """
    return jnp.bitwise_or.reduce(board[0], axis=-1), jnp.bitwise_or.reduce(board[1], axis=-1)


def _run(start: Board, run_squares: Board, amount: np.ndarray, towards_63: bool) -> Board:
    """Per lane, the squares of ``run_squares`` in an unbroken line from a square of ``start``
    (excluded), up to six long: the "dumb7fill" of chess and Othello programs."""
    step = _shift(start, amount, towards_63)
    run = (step[0] & run_squares[0], step[1] & run_squares[1])
    for _ in range(5):
        step = _shift(run, amount, towards_63)
        run = (run[0] | (step[0] & run_squares[0]), run[1] | (step[1] & run_squares[1]))
    return run


def legal_moves(mine: Board, theirs: Board) -> Board:
    """The squares where the owner of ``mine`` may play: empty, and beyond a line of ``theirs``
    that starts next to one of ``mine``. Both boards are ``(lo, hi)`` uint32 words."""
    empty = (~(mine[0] | theirs[0]), ~(mine[1] | theirs[1]))
    moves = []
    for towards_63, (amount, mask) in ((True, _TOWARDS_63), (False, _TOWARDS_0)):
        run = _run(_lanes(mine), _masked(_lanes(theirs), mask), amount, towards_63)
        step = _shift(run, amount, towards_63)
        landing = (step[0] & empty[0][..., None], step[1] & empty[1][..., None])
        moves.append(_union(_masked(landing, mask)))
    return moves[0][0] | moves[1][0], moves[0][1] | moves[1][1]


def flipped_discs(move: Board, mine: Board, theirs: Board) -> Board:
    """The discs of ``theirs`` that playing ``move`` (a board with one square set, or none)
    flips: in each direction, a run of ``theirs`` from the move that ends at one of ``mine``."""
    flips = []
    for towards_63, (amount, mask) in ((True, _TOWARDS_63), (False, _TOWARDS_0)):
        run = _run(_lanes(move), _masked(_lanes(theirs), mask), amount, towards_63)
        step = _shift(run, amount, towards_63)
        end = _masked((step[0] & mine[0][..., None], step[1] & mine[1][..., None]), mask)
        bounded = (end[0] | end[1]) != 0
        zero = np.uint32(0)
        flips.append(_union((jnp.where(bounded, run[0], zero), jnp.where(bounded, run[1], zero))))
    return flips[0][0] | flips[1][0], flips[0][1] | flips[1][1]


def _or(a: Board, b: Board) -> Board:
    return a[0] | b[0], a[1] | b[1]


def _square_board(action: jax.Array) -> Board:
    """The one-square board of ``action`` (int32[]); the pass (64) gives an empty board."""
    bit = (action & 31).astype(jnp.uint32)
    one = jnp.uint32(1) << bit
    zero = np.uint32(0)
    return jnp.where(action < 32, one, zero), jnp.where((action >= 32) & (action < 64), one, zero)


def _count(board: Board) -> jax.Array:
    count = jax.lax.population_count(board[0]) + jax.lax.population_count(board[1])
    return count.astype(jnp.int32)


_SQUARES = np.arange(64).reshape(8, 8)
_WORD_OF = (_SQUARES >= 32)
_BIT_OF = (_SQUARES % 32).astype(np.uint32)


def _unpack(boards: jax.Array) -> jax.Array:
    """uint32[..., 8, 8] bits (0 or 1) of boards given as uint32[..., 2] words."""
    lo = boards[..., 0][..., None, None]
    hi = boards[..., 1][..., None, None]
    return (jnp.where(_WORD_OF, hi, lo) >> _BIT_OF) & np.uint32(1)


def _words(squares) -> list[int]:
    """The ``(lo, hi)`` words of a board with the given squares set."""
    value = sum(1 << int(a) for a in squares)
    return [value & 0xFFFFFFFF, value >> 32]


def _initial_boards() -> np.ndarray:
    black = _words([28, 35])  # e4, d5
    white = _words([27, 36])  # d4, e5
    return np.array([black, white], np.uint32)


# The classic positional table of the heuristic (corners good, X- and C-squares next to empty
# corners bad), and the weight of each legal move more than the opponent has.
POSITION_WEIGHTS = np.array(
    [
        [100, -20, 10, 5, 5, 10, -20, 100],
        [-20, -50, -2, -2, -2, -2, -50, -20],
        [10, -2, -1, -1, -1, -1, -2, 10],
        [5, -2, -1, -1, -1, -1, -2, 5],
        [5, -2, -1, -1, -1, -1, -2, 5],
        [10, -2, -1, -1, -1, -1, -2, 10],
        [-20, -50, -2, -2, -2, -2, -50, -20],
        [100, -20, 10, 5, 5, 10, -20, 100],
    ],
    np.float32,
)
MOBILITY_WEIGHT = 5.0
_CORNERS = np.array([[0, 0], [0, 7], [7, 0], [7, 7]])


def _corner_neighbours() -> np.ndarray:
    """float32[4, 8, 8]: for each corner, 1 on its X-square and its two C-squares."""
    masks = np.zeros((4, 8, 8), np.float32)
    for i, (r, c) in enumerate(_CORNERS):
        dr, dc = (1 if r == 0 else -1), (1 if c == 0 else -1)
        for rr, cc in ((r + dr, c), (r, c + dc), (r + dr, c + dc)):
            masks[i, rr, cc] = 1.0
    return masks


_CORNER_NEIGHBOURS = _corner_neighbours()

# Figures of levels: a green board without holes, black and white discs, as `render_svg`.
_LEVEL_COLOURS = ((0.18, 0.55, 0.34), (0.18, 0.55, 0.34), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


class Othello(Env):
    """Othello: outflank the opponent's discs to flip them; most discs wins."""

    id = "othello"
    version = "1"
    description = "Othello (Reversi) 8x8, 2 players, action = square 0..63 row-major or 64 = pass"
    zero_sum = True
    # Othello has 65 actions but about 8 to 15 legal moves in most positions (rarely more than
    # 20): searching the 12 best-placed squares per node keeps depth 3 at 12**3 leaves, not 65**3.
    minimax_width = 12

    def __init__(self, level_plies: int = 8) -> None:
        """Static option ``level_plies``: the most random plies of a fresh curriculum level
        (`PositionLevelSpace.max_plies`)."""
        self.num_players = 2
        self.num_actions = 65
        self.observation_shape = (8, 8, 2)
        # The rules are the same under the 8 rotations and reflections of the board.
        self.symmetries = dihedral_symmetries(8, self.num_actions)
        self.level_space = PositionLevelSpace(self, max_plies=level_plies, colours=_LEVEL_COLOURS)

    @property
    def default_params(self) -> PositionLevel:
        """The standard start: d4 and e5 white, d5 and e4 black, black (player 0) to move."""
        return PositionLevel(boards=jnp.asarray(_initial_boards()), current_player=jnp.int32(0))

    # ----------------------------------------------------------------------------------------
    # Rules.

    def _reset(self, key, params: PositionLevel) -> OthelloState:
        del key  # the level fixes the whole start state
        boards = jnp.asarray(params.boards, jnp.uint32)
        moves = legal_moves((boards[0, 0], boards[0, 1]), (boards[1, 0], boards[1, 1]))
        return OthelloState(
            **self._initial_fields(self._mask(moves), jnp.asarray(params.current_player, jnp.int32)),
            boards=boards,
            passed=jnp.bool_(False),
        )

    def _step(self, state: OthelloState, action, key, params) -> OthelloState:
        del key, params
        mine = (state.boards[0, 0], state.boards[0, 1])
        theirs = (state.boards[1, 0], state.boards[1, 1])
        move = _square_board(action)
        flips = flipped_discs(move, mine, theirs)
        mine = _or(_or(mine, move), flips)
        theirs = (theirs[0] & ~flips[0], theirs[1] & ~flips[1])

        # From here on the opponent is to move.
        moves = legal_moves(theirs, mine)
        is_pass = action == _PASS
        full = (~(mine[0] | theirs[0]) | ~(mine[1] | theirs[1])) == 0
        wiped = ((theirs[0] | theirs[1]) == 0) | ((mine[0] | mine[1]) == 0)
        terminated = full | wiped | (is_pass & state.passed)

        mover = state.current_player
        margin = _count(mine) - _count(theirs)
        sign = jnp.where(jnp.arange(2) == mover, 1.0, -1.0) * jnp.sign(margin).astype(jnp.float32)
        rewards = jnp.where(terminated, sign, 0.0).astype(jnp.float32)
        return state.replace(
            boards=jnp.array([[theirs[0], theirs[1]], [mine[0], mine[1]]], jnp.uint32),
            passed=is_pass,
            current_player=1 - mover,
            legal_action_mask=self._mask(moves),
            rewards=rewards,
            terminated=terminated,
        )

    @staticmethod
    def _mask(moves: Board) -> jax.Array:
        """bool[65]: the moves as squares, then the pass, legal exactly when no move is."""
        squares = _unpack(jnp.stack(moves)).reshape(64) != 0
        no_move = (moves[0] | moves[1]) == 0
        return jnp.concatenate([squares, no_move[None]])

    def observe(self, state: OthelloState, player) -> jax.Array:
        is_mover = player == state.current_player
        own = jnp.where(is_mover, state.boards[0], state.boards[1])
        other = jnp.where(is_mover, state.boards[1], state.boards[0])
        return jnp.stack([_unpack(own), _unpack(other)], axis=-1).astype(jnp.float32)

    # ----------------------------------------------------------------------------------------
    # Declarations: positions as levels (`PositionLevelSpace`).

    def can_move(self, state: OthelloState) -> jax.Array:
        """bool[]: the game goes on and the player to move has a move other than the pass."""
        return ~(state.terminated | state.truncated) & jnp.any(state.legal_action_mask[:_PASS])

    def is_valid_position(self, level: PositionLevel) -> jax.Array:
        """bool[]: ``level`` could come from legal play and is not over: no square taken twice,
        the four centre squares taken (no disc ever leaves the board), and a move other than the
        pass for the player to move. (Such a position may still be one no legal game reaches;
        the level space only makes reachable ones.)"""
        boards = jnp.asarray(level.boards, jnp.uint32)
        mine, theirs = (boards[0, 0], boards[0, 1]), (boards[1, 0], boards[1, 1])
        centre = _words([27, 28, 35, 36])
        taken = _or(mine, theirs)
        disjoint = ((mine[0] & theirs[0]) | (mine[1] & theirs[1])) == 0
        centre_taken = ((taken[0] & centre[0]) == centre[0]) & ((taken[1] & centre[1]) == centre[1])
        moves = legal_moves(mine, theirs)
        player = jnp.asarray(level.current_player, jnp.int32)
        return disjoint & centre_taken & ((moves[0] | moves[1]) != 0) & ((player == 0) | (player == 1))

    def level_from_discs(self, discs, current_player: int) -> PositionLevel:
        """The level of a board drawn as int[8, 8] (-1 empty, 0 black, 1 white; index 0 the top
        row) with ``current_player`` to move; host side, unchecked (see `is_valid_position`)."""
        squares = np.asarray(discs).reshape(64)
        own = _words(np.flatnonzero(squares == current_player))
        other = _words(np.flatnonzero(squares == 1 - current_player))
        return PositionLevel(boards=jnp.asarray(np.array([own, other], np.uint32)), current_player=jnp.int32(current_player))

    # ----------------------------------------------------------------------------------------
    # Declarations: the minimax anchor's leaf heuristic and move ordering.

    def heuristic(self, state: OthelloState) -> jax.Array:
        """float32[]: positional weights of the mover's discs minus the opponent's, plus
        `MOBILITY_WEIGHT` times the difference in the number of legal moves.

        The weights are `POSITION_WEIGHTS`, except that the three squares next to a taken corner
        weigh 0. The discs come from ``state.observation`` (the mover's, then the opponent's); the
        mover's moves from ``legal_action_mask``; the opponent's from the bitboard move generator
        (`legal_moves` on ``state.boards``), far cheaper than from the observation planes.
        """
        obs = state.observation
        # The X- and C-squares are bad only while their corner is empty: once it is taken, they
        # count as neutral (else taking a corner that flips its X-square would look like no gain).
        occupied = obs[..., 0] + obs[..., 1]
        corner_taken = occupied[_CORNERS[:, 0], _CORNERS[:, 1]]  # [4]
        neutral = jnp.tensordot(corner_taken, _CORNER_NEIGHBOURS, axes=1)  # [8, 8], 0 or 1
        weights = POSITION_WEIGHTS * (1.0 - jnp.minimum(neutral, 1.0))
        position = jnp.sum(weights * (obs[..., 0] - obs[..., 1]))
        own_moves = jnp.sum(state.legal_action_mask[:64])
        mine = (state.boards[0, 0], state.boards[0, 1])
        theirs = (state.boards[1, 0], state.boards[1, 1])
        lo, hi = legal_moves(theirs, mine)
        their_moves = jax.lax.population_count(lo) + jax.lax.population_count(hi)
        mobility = own_moves.astype(jnp.float32) - their_moves.astype(jnp.float32)
        return (position + MOBILITY_WEIGHT * mobility).astype(jnp.float32)

    def move_priority(self, state: OthelloState) -> jax.Array:
        """float32[65]: the positional weight of each move's square (the pass last)."""
        del state
        return jnp.asarray(np.concatenate([POSITION_WEIGHTS.reshape(-1), np.full((1,), -1000.0, np.float32)]))

    # ----------------------------------------------------------------------------------------
    # Host-side helpers.

    def position(self, discs, current_player: int = 0, passed: bool = False) -> OthelloState:
        """A live state with the given discs, for analysis, puzzles and tests.

        Args:
          discs: int[8, 8], -1 empty, 0 black (player 0), 1 white (player 1); index 0 is
            row 1, the top row.
          current_player: the player to move.
          passed: whether the last action was a pass (a pass now would end the game).
        """
        discs = np.asarray(discs)
        if discs.shape != (8, 8) or not np.isin(discs, (-1, 0, 1)).all():
            raise UserError("othello: discs must be int[8, 8] with values -1 (empty), 0 or 1")
        if current_player not in (0, 1):
            raise UserError(f"othello: current_player must be 0 or 1, got {current_player!r}")
        squares = discs.reshape(64)
        own = _words(np.flatnonzero(squares == current_player))
        other = _words(np.flatnonzero(squares == 1 - current_player))
        boards = jnp.asarray(np.array([own, other], np.uint32))
        moves = legal_moves((boards[0, 0], boards[0, 1]), (boards[1, 0], boards[1, 1]))
        fields = self._initial_fields(self._mask(moves), current_player)
        state = OthelloState(**fields, boards=boards, passed=jnp.bool_(passed))
        return self._finish(state)

    def discs(self, state: OthelloState) -> np.ndarray:
        """int[8, 8] of one unbatched state: -1 empty, 0 black (player 0), 1 white (player 1)."""
        mover = int(state.current_player)
        planes = np.asarray(_unpack(jnp.asarray(state.boards)))
        grid = -np.ones((8, 8), np.int64)
        grid[planes[0] == 1] = mover
        grid[planes[1] == 1] = 1 - mover
        return grid

    def render_text(self, state: OthelloState) -> str:
        grid = self.discs(state)
        live = not bool(state.terminated | state.truncated)
        legal = np.asarray(state.legal_action_mask[:64]).reshape(8, 8) & live
        symbols = {-1: ".", 0: "X", 1: "O"}
        lines = ["  " + " ".join(_FILES)]
        for r in range(8):
            cells = ["*" if legal[r, c] else symbols[int(grid[r, c])] for c in range(8)]
            lines.append(f"{r + 1} " + " ".join(cells))
        black, white = int((grid == 0).sum()), int((grid == 1).sum())
        if live:
            to_move = "X (black)" if int(state.current_player) == 0 else "O (white)"
            lines.append(f"X {black}  O {white}  {to_move} to move, * = legal")
        else:
            lines.append(f"X {black}  O {white}  game over")
        return "\n".join(lines)

    def render_svg(self, state: OthelloState) -> str:
        grid = self.discs(state)
        cell, margin = 50, 20
        size = 8 * cell + margin
        parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
            f'viewBox="0 0 {size} {size}">',
            f'<rect width="{size}" height="{size}" fill="white"/>',
            f'<rect x="{margin}" y="{margin}" width="{8 * cell}" height="{8 * cell}" '
            f'fill="#2e8b57"/>',
        ]
        for k in range(9):
            at = margin + k * cell
            parts.append(f'<line x1="{at}" y1="{margin}" x2="{at}" y2="{size}" stroke="black"/>')
            parts.append(f'<line x1="{margin}" y1="{at}" x2="{size}" y2="{at}" stroke="black"/>')
        for k in range(8):
            centre = margin + k * cell + cell / 2
            parts.append(
                f'<text x="{centre}" y="{margin - 5}" font-size="12" text-anchor="middle" '
                f'font-family="sans-serif">{_FILES[k]}</text>'
            )
            parts.append(
                f'<text x="{margin / 2}" y="{centre + 4}" font-size="12" text-anchor="middle" '
                f'font-family="sans-serif">{k + 1}</text>'
            )
        for r in range(8):
            for c in range(8):
                owner = int(grid[r, c])
                if owner < 0:
                    continue
                fill = "black" if owner == 0 else "white"
                x, y = margin + c * cell + cell / 2, margin + r * cell + cell / 2
                parts.append(
                    f'<circle cx="{x}" cy="{y}" '
                    f'r="{cell / 2 - 5}" fill="{fill}" stroke="black"/>'
                )
        parts.append("</svg>")
        return "".join(parts)

    # ----------------------------------------------------------------------------------------
    # Moves as people write them.

    def action_to_text(self, action: int) -> str:
        action = int(action)
        if action == _PASS:
            return "pass"
        if not 0 <= action < _PASS:
            raise ValueError(f"othello action must be in 0..64, got {action}")
        return f"{_FILES[action % 8]}{action // 8 + 1}"

    def text_to_action(self, text: str) -> int:
        """Parses ``"d3"`` (file a-h, row 1-8 from the top), ``"pass"``, or a number 0..64."""
        word = text.strip().lower()
        if word == "pass":
            return _PASS
        if word.isdigit():
            return super().text_to_action(word)
        if len(word) == 2 and word[0] in _FILES and word[1] in "12345678":
            return (int(word[1]) - 1) * 8 + _FILES.index(word[0])
        raise ValueError(f"othello move must be a square a1..h8, 'pass' or 0..64, got {text!r}")
