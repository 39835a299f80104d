"""Fixed anchor players: the yardsticks agents are rated against.

An anchor is a pure function ``act(key, state) -> int32[]`` that picks a move for ONE unbatched
env state; callers batch it with ``jax.vmap`` over games and may ``jax.jit`` it (nothing here
jits itself). Anchors are made by `make_anchor` from a short spec string:

==================  ===========================================================================
spec                player
==================  ===========================================================================
``random``          uniform over the legal actions (every env)
``minimax:D``       depth-``D`` negamax through the env's own ``step``, leaves scored by the
                    env's registered heuristic (two-player zero-sum perfect-information games)
``minimax:D:W``     the same, searching at most ``W`` children per node (see `minimax_action_values`)
``perfect``         exact game-theoretic play where the game is small enough: tic_tac_toe
                    (a solved value table) and kuhn_poker (a Nash equilibrium policy)
==================  ===========================================================================

Ties between equally good moves are broken uniformly at random with the key, so games vary.

Exact evaluation helpers for the small games:

* `tic_tac_toe_values` / `tic_tac_toe_value`: the solved value of every tic-tac-toe position.
* `kuhn_exploitability`: the exact exploitability of a Kuhn poker policy table, computed with a
  best response to each player's policy (OpenSpiel's NashConv / 2 convention), and
  `kuhn_equilibrium_policy`, Kuhn's closed-form equilibrium family. A best-response *player*
  is not provided as an anchor: exploitability already measures the best response's value.

New envs add a leaf heuristic for the search with `register_heuristic`; without one the search
scores non-terminal leaves as 0 (it still sees wins and losses within its horizon).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from superlearner.env import Env, PRNGKey, State
from superlearner.errors import UserError
from superlearner.search import searchable

Array = jax.Array
ActFn = Callable[[PRNGKey, State], Array]
"""``act(key, state) -> int32[]``: an anchor's move for one unbatched state."""
HeuristicFn = Callable[[Env, State], Array]
"""``heuristic(env, state) -> float32[]``: how good a live ``state`` is for the player to move."""
PriorityFn = Callable[[Env, State], Array]
"""``priority(env, state) -> float32[num_actions]``: move ordering when the search is narrowed."""

# A decided win is worth WIN_SCORE plus the remaining depth (quicker wins score higher, slower
# losses score less badly); heuristics are clipped well inside it so they never look like a win.
WIN_SCORE = 100_000.0
HEURISTIC_BOUND = 0.25 * WIN_SCORE
# Value given to actions that were not searched (illegal, or cut by the width).
_EXCLUDED = -4.0 * WIN_SCORE
# Values closer than this are ties (heuristics are sums of small integers, so exact ties are
# common; float32 rounding of equal sums in different orders stays far below it).
_TIE_TOLERANCE = 1e-3
# The search is full width: this many leaves per game is where it stops being an anchor one can
# afford to run over a batch of games.
MAX_LEAVES = 1 << 24


# ---------------------------------------------------------------------------------------------
# Heuristics registry.


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """What the minimax anchor uses for one env.

    Attributes:
      heuristic: scores non-terminal leaves from the view of their player to move (`HeuristicFn`).
      width: the default number of children searched per node; None searches every action.
      move_priority: orders the actions when fewer than all are searched (`PriorityFn`); None
        keeps the action order.
    """

    heuristic: HeuristicFn
    width: int | None = None
    move_priority: PriorityFn | None = None


def zero_heuristic(env: Env, state: State) -> Array:
    """The fallback heuristic: every non-terminal leaf is worth 0."""
    del env, state
    return jnp.float32(0.0)


_SEARCH_SETTINGS: dict[str, SearchSettings] = {}


def register_heuristic(
    env_id: str,
    fn: HeuristicFn,
    *,
    width: int | None = None,
    move_priority: PriorityFn | None = None,
    overwrite: bool = True,
) -> None:
    """Sets the leaf heuristic (and optionally the default width and move ordering) of the
    minimax anchor for ``env_id``.

    ``fn(env, state) -> float32[]`` scores a live state from the view of the player to move
    (``state.current_player``; ``state.observation`` is that player's view, already computed);
    the search negates it for the other player, as in a zero-sum game. Values are clipped to
    +-`HEURISTIC_BOUND`, well below a decided win.
    """
    if not callable(fn):
        raise UserError(f"register_heuristic: fn for {env_id!r} must be callable, got {fn!r}")
    if width is not None and (not isinstance(width, int) or width < 1):
        raise UserError(f"register_heuristic: width for {env_id!r} must be a positive int, got {width!r}")
    if not overwrite and env_id in _SEARCH_SETTINGS:
        raise UserError(f"register_heuristic: {env_id!r} already has a heuristic (pass overwrite=True)")
    _SEARCH_SETTINGS[env_id] = SearchSettings(fn, width, move_priority)


def search_settings(env_id: str) -> SearchSettings:
    """The registered search settings of ``env_id`` (the zero heuristic when none)."""
    return _SEARCH_SETTINGS.get(env_id, SearchSettings(zero_heuristic))


# ---------------------------------------------------------------------------------------------
# The factory.


def anchor_specs(env: Env) -> tuple[str, ...]:
    """The anchor specs ``env`` accepts, in the form `make_anchor` documents."""
    specs = ["random"]
    if searchable(env):
        specs += ["minimax:DEPTH", "minimax:DEPTH:WIDTH"]
    if env.id in _PERFECT:
        specs.append("perfect")
    return tuple(specs)


def make_anchor(env: Env, spec: str, params: Any = None) -> ActFn:
    """Builds the anchor player named by ``spec`` for ``env`` (see the module docstring).

    Args:
      env: the environment the anchor plays.
      spec: ``"random"``, ``"minimax:DEPTH"``, ``"minimax:DEPTH:WIDTH"`` or ``"perfect"``.
      params: the level the search steps with (``env.default_params`` when None).

    Returns:
      ``act(key, state) -> int32[]`` for one unbatched state; ``key`` is consumed.

    Raises:
      UserError: an unknown spec, a bad depth or width, or a spec this env does not support;
        the message lists the accepted specs for the env.
    """
    accepted = ", ".join(anchor_specs(env))
    if not isinstance(spec, str):
        raise UserError(f"{env.id}: anchor spec must be a string, got {spec!r}; accepted: {accepted}")
    name, _, rest = spec.strip().partition(":")
    if name == "random" and not rest:
        return random_act
    if name == "minimax":
        if not searchable(env):
            raise UserError(
                f"{env.id}: minimax needs a two-player zero-sum game of perfect information; "
                f"accepted anchors for {env.id}: {accepted}"
            )
        depth, width = _parse_minimax(env, spec, rest, accepted)
        return make_minimax_anchor(env, depth, width=width, params=params)
    if name == "perfect" and not rest:
        if env.id not in _PERFECT:
            raise UserError(
                f"{env.id}: no perfect player (exact play exists for {', '.join(sorted(_PERFECT))}); "
                f"accepted anchors for {env.id}: {accepted}"
            )
        return _PERFECT[env.id](env, params)
    raise UserError(f"{env.id}: unknown anchor spec {spec!r}; accepted: {accepted}")


def _parse_minimax(env: Env, spec: str, rest: str, accepted: str) -> tuple[int, int | None]:
    parts = rest.split(":") if rest else []
    if not 1 <= len(parts) <= 2 or not all(p.strip().isdigit() for p in parts):
        raise UserError(
            f"{env.id}: bad anchor spec {spec!r}: expected minimax:DEPTH or minimax:DEPTH:WIDTH with "
            f"positive integers; accepted: {accepted}"
        )
    depth = int(parts[0])
    width = int(parts[1]) if len(parts) == 2 else None
    if depth < 1 or (width is not None and width < 1):
        raise UserError(f"{env.id}: bad anchor spec {spec!r}: depth and width must be >= 1; accepted: {accepted}")
    return depth, width


# ---------------------------------------------------------------------------------------------
# random


def random_act(key: PRNGKey, state: State) -> Array:
    """int32[]: a uniformly random legal action of one unbatched ``state``; ``key`` is consumed."""
    logits = jnp.where(state.legal_action_mask, 0.0, -jnp.inf)
    return jax.random.categorical(key, logits).astype(jnp.int32)


def _uniform_among(key: PRNGKey, candidates: Array) -> Array:
    """int32[]: a uniformly random index where ``candidates`` (bool[A], not all false) is true."""
    logits = jnp.where(candidates, 0.0, -jnp.inf)
    return jax.random.categorical(key, logits).astype(jnp.int32)


# ---------------------------------------------------------------------------------------------
# minimax


def make_minimax_anchor(
    env: Env,
    depth: int,
    *,
    width: int | None = None,
    heuristic: HeuristicFn | None = None,
    params: Any = None,
) -> ActFn:
    """A depth-``depth`` negamax player: picks uniformly among the moves of best searched value.

    ``width`` and ``heuristic`` default to the env's registered `SearchSettings`. See
    `minimax_action_values` for the search itself.
    """
    settings = search_settings(env.id)
    width = settings.width if width is None else width
    heuristic = settings.heuristic if heuristic is None else heuristic
    branching = min(width or env.num_actions, env.num_actions)
    if branching**depth > MAX_LEAVES:
        raise UserError(
            f"{env.id}: minimax depth {depth} at width {branching} expands {branching}^{depth} leaves per "
            f"move, more than {MAX_LEAVES}; use a smaller depth or width (minimax:DEPTH:WIDTH)"
        )

    def act(key: PRNGKey, state: State) -> Array:
        search_key, tie_key = jax.random.split(key)
        values = minimax_action_values(
            env, state, search_key, depth, width=width, heuristic=heuristic, params=params
        )
        best = jnp.max(values)
        return _uniform_among(tie_key, values >= best - _TIE_TOLERANCE)

    return act


def minimax_action_values(
    env: Env,
    state: State,
    key: PRNGKey,
    depth: int,
    *,
    width: int | None = None,
    heuristic: HeuristicFn | None = None,
    params: Any = None,
) -> Array:
    """float32[num_actions]: the depth-limited negamax value of each action from the mover's view.

    The search is full-width and batched: every node expands its ``K`` children (``K`` the
    width) with one ``vmap`` of ``env.step`` (the env's real rules), and the recursion is
    unrolled at trace time, so one call is one program of ``K**depth`` env steps at the leaves.
    (Alpha-beta pruning would give the same values, but its data-dependent cut-offs do not
    batch; for the depths anchors use, the full-width batch is faster on vector hardware.
    Flattening each ply into one batch instead of nesting ``vmap``s ran several times slower
    on CPU.)

    Values: a child that ends the game is worth its reward to the mover times
    ``WIN_SCORE + remaining depth``, so quicker wins and slower losses are preferred; a live
    leaf at the horizon is worth the registered heuristic; an inner node is worth the best of
    its children's values, negated when the player to move changes; heuristic values (from the
    view of the leaf's player to move) are negated the same way. Illegal actions (and actions
    cut by the width) get a large negative value, below any loss.

    ``width`` (default: the env's registered width, else all actions) narrows the search to at
    most ``width`` children per node: the legal actions first, ordered by the registered
    ``move_priority`` (else by action index). The values are exact negamax values when no
    searched node has more than ``width`` legal actions; otherwise moves beyond the width are
    not considered (forward pruning). ``key`` is consumed (split for the env's steps).

    Shapes: ``state`` is one unbatched state; vmap over games at the call site.
    """
    settings = search_settings(env.id)
    width = settings.width if width is None else width
    heuristic = settings.heuristic if heuristic is None else heuristic
    branching = min(width or env.num_actions, env.num_actions)
    move_priority = settings.move_priority
    if params is None:
        params = env.default_params

    def searched_actions(node: State) -> Array:
        """int32[K]: the actions searched from one node."""
        if branching >= env.num_actions:
            return jnp.arange(env.num_actions, dtype=jnp.int32)
        priority = (
            move_priority(env, node).astype(jnp.float32)
            if move_priority is not None
            else jnp.zeros((env.num_actions,), jnp.float32)
        )
        # Legal actions first (by priority, then index); top_k keeps the first of equals.
        order = jnp.where(node.legal_action_mask, priority, -jnp.inf)
        return jax.lax.top_k(order, branching)[1].astype(jnp.int32)

    def children_values(node: State, remaining: int, step_keys: tuple[PRNGKey, ...]) -> tuple[Array, Array]:
        """(actions int32[K], values float32[K]): the searched children of ``node`` and their
        values from the view of ``node``'s mover.

        ``step_keys[i]`` has shape ``[K] * (i + 1)``: the keys of the steps ``i`` plies below.
        """
        actions = searched_actions(node)
        mover = node.current_player

        def child_value(action: Array, keys: tuple[PRNGKey, ...]) -> Array:
            child = env.step(node, action, keys[0], params)
            done = child.terminated | child.truncated
            decided = child.rewards[mover] * (WIN_SCORE + remaining)
            if remaining == 1:
                value = jnp.clip(jnp.asarray(heuristic(env, child), jnp.float32), -HEURISTIC_BOUND, HEURISTIC_BOUND)
            else:
                _, grandchildren = children_values(child, remaining - 1, keys[1:])
                value = jnp.max(grandchildren)
            # `value` is from the view of the child's player to move.
            value = jnp.where(child.current_player == mover, value, -value)
            return jnp.where(done, decided, value)

        values = jax.vmap(child_value)(actions, step_keys)
        return actions, jnp.where(node.legal_action_mask[actions], values, _EXCLUDED)

    # The keys of the whole tree are split here, one batched split per ply, rather than inside
    # every node.
    ply_keys = jax.random.split(key, depth)
    step_keys = tuple(
        jax.random.split(ply_keys[i], branching ** (i + 1)).reshape((branching,) * (i + 1))
        for i in range(depth)
    )
    actions, values = children_values(state, depth, step_keys)
    full = jnp.full((env.num_actions,), _EXCLUDED, jnp.float32)
    return full.at[actions].set(values)


# ---------------------------------------------------------------------------------------------
# Heuristics of the built-in games.


def _window_sums(plane: Array) -> Array:
    """float32[num_windows]: the sum of ``plane`` (float32[rows, columns]) over every line of four.

    Sums of four shifted slices per direction: elementwise work that fuses, unlike a gather.
    """
    r, c = plane.shape
    horizontal = sum(plane[:, k : c - 3 + k] for k in range(4))
    vertical = sum(plane[k : r - 3 + k, :] for k in range(4))
    diagonal = sum(plane[k : r - 3 + k, k : c - 3 + k] for k in range(4))
    anti = sum(plane[k : r - 3 + k, 3 - k : c - k] for k in range(4))
    return jnp.concatenate([x.reshape(-1) for x in (horizontal, vertical, diagonal, anti)])


# Weights of the connect-four heuristic, in "points": an open three is worth more than an open
# two; the centre column takes part in the most lines.
C4_OPEN_TWO = 2.0
C4_OPEN_THREE = 5.0
C4_CENTRE = 3.0


def connect_four_heuristic(env: Env, state: State) -> Array:
    """float32[]: open twos and threes and centre-column discs, the mover's minus the opponent's.

    A window (four cells in a line) is open for a side when the other side has no disc in it;
    it scores `C4_OPEN_TWO` with two of the side's discs and `C4_OPEN_THREE` with three. Each
    disc in the centre column (both middle columns when the width is even) scores `C4_CENTRE`.
    Reads only ``state.observation`` (the mover's discs, then the opponent's), so any board
    size works.
    """
    del env
    obs = state.observation
    columns = obs.shape[1]
    own = _window_sums(obs[..., 0])
    other = _window_sums(obs[..., 1])

    def open_lines(mine: Array, theirs: Array) -> Array:
        value = jnp.where(mine == 2, C4_OPEN_TWO, 0.0) + jnp.where(mine == 3, C4_OPEN_THREE, 0.0)
        return jnp.where(theirs == 0, value, 0.0)

    centre = np.zeros((columns,), np.float32)
    centre[(columns - 1) // 2] = 1.0
    centre[columns // 2] = 1.0
    centre_discs = (obs[..., 0] - obs[..., 1]) @ centre
    # One reduction over windows and rows together (small reductions dominate the cost on CPU).
    per_window = open_lines(own, other) - open_lines(other, own)
    return jnp.sum(jnp.concatenate([per_window, C4_CENTRE * centre_discs])).astype(jnp.float32)


# The classic positional table (corners good, X- and C-squares next to empty corners bad).
OTHELLO_WEIGHTS = np.array(
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
OTHELLO_MOBILITY = 5.0
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


def othello_heuristic(env: Env, state: State) -> Array:
    """float32[]: positional weights of the mover's discs minus the opponent's, plus
    `OTHELLO_MOBILITY` times the difference in the number of legal moves.

    The weights are `OTHELLO_WEIGHTS`, except that the three squares next to a taken corner
    weigh 0.

    The discs come from ``state.observation`` (the mover's, then the opponent's); the mover's
    moves from ``legal_action_mask``; the opponent's from the othello module's own bitboard move
    generator (``legal_moves`` on ``state.boards``), far cheaper than generating them from the
    observation planes.
    """
    from superlearner.envs import othello

    del env
    obs = state.observation
    # The X- and C-squares are bad only while their corner is empty: once it is taken, they
    # count as neutral (else taking a corner that flips its X-square would look like no gain).
    occupied = obs[..., 0] + obs[..., 1]
    corner_taken = occupied[_CORNERS[:, 0], _CORNERS[:, 1]]  # [4]
    neutral = jnp.tensordot(corner_taken, _CORNER_NEIGHBOURS, axes=1)  # [8, 8], 0 or 1
    weights = OTHELLO_WEIGHTS * (1.0 - jnp.minimum(neutral, 1.0))
    position = jnp.sum(weights * (obs[..., 0] - obs[..., 1]))
    own_moves = jnp.sum(state.legal_action_mask[:64])
    mine = (state.boards[0, 0], state.boards[0, 1])
    theirs = (state.boards[1, 0], state.boards[1, 1])
    lo, hi = othello.legal_moves(theirs, mine)
    their_moves = jax.lax.population_count(lo) + jax.lax.population_count(hi)
    mobility = own_moves.astype(jnp.float32) - their_moves.astype(jnp.float32)
    return (position + OTHELLO_MOBILITY * mobility).astype(jnp.float32)


def othello_move_priority(env: Env, state: State) -> Array:
    """float32[num_actions]: the positional weight of each move's square (pass last)."""
    del state
    weights = OTHELLO_WEIGHTS.reshape(-1)
    extra = np.full((env.num_actions - weights.size,), -1000.0, np.float32)
    return jnp.asarray(np.concatenate([weights, extra]))


register_heuristic("connect_four", connect_four_heuristic)
# Othello has 65 actions but about 8 to 15 legal moves in most positions (rarely more than 20):
# searching the 12 best-placed squares per node keeps depth 3 at 12**3 leaves instead of 65**3.
register_heuristic("othello", othello_heuristic, width=12, move_priority=othello_move_priority)
register_heuristic("tic_tac_toe", zero_heuristic)


# ---------------------------------------------------------------------------------------------
# tic-tac-toe, solved.

_TTT_LINES = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6))
TTT_NUM_KEYS = 3**9
_TTT_POWERS = 3 ** np.arange(9)


@functools.lru_cache(maxsize=1)
def _tic_tac_toe_table() -> np.ndarray:
    values = np.zeros((TTT_NUM_KEYS,), np.int8)
    solved: dict[int, int] = {}

    def has_line(cells, mark):
        return any(all(cells[i] == mark for i in line) for line in _TTT_LINES)

    def solve(cells: list[int]) -> int:
        key = int(np.dot(cells, _TTT_POWERS))
        if key in solved:
            return solved[key]
        x_count, o_count = cells.count(1), cells.count(2)
        mover_mark = 1 if x_count == o_count else 2
        last_mark = 3 - mover_mark
        if has_line(cells, last_mark):
            value = -1  # the previous move won
        elif 0 not in cells:
            value = 0
        else:
            value = -1
            for i in range(9):
                if cells[i] == 0:
                    cells[i] = mover_mark
                    value = max(value, -solve(cells))
                    cells[i] = 0
        solved[key] = value
        values[key] = value
        return value

    solve([0] * 9)
    values.setflags(write=False)
    return values


def tic_tac_toe_values() -> Array:
    """int8[3**9]: the game-theoretic value of every reachable tic-tac-toe position for the
    player to move (+1 win, 0 draw, -1 loss under perfect play by both).

    Indexed by `tic_tac_toe_key`: cell i (row-major) contributes ``3**i`` times 0 (empty),
    1 (X, player 0) or 2 (O, player 1). Terminal positions hold the mover's result (-1 after the
    opponent completed a line, 0 for a full board); unreachable keys hold 0. Solved once on the
    host by a memoised negamax over the whole game tree (5478 positions).
    """
    return jnp.asarray(_tic_tac_toe_table())


def tic_tac_toe_key(env: Env, state: State) -> Array:
    """int32[]: the base-3 key of an unbatched tic-tac-toe ``state`` (see `tic_tac_toe_values`)."""
    planes = env.observe(state, jnp.int32(0)).reshape(9, 2).astype(jnp.int32)  # X then O
    cells = planes[:, 0] + 2 * planes[:, 1]
    return jnp.sum(cells * jnp.asarray(_TTT_POWERS, jnp.int32)).astype(jnp.int32)


def tic_tac_toe_value(env: Env, state: State, table: Array | None = None) -> Array:
    """int32[]: the solved value of ``state`` for the player to move (+1 / 0 / -1).

    For positions reached by legal play; ``table`` defaults to `tic_tac_toe_values()`.
    """
    table = tic_tac_toe_values() if table is None else table
    return table[tic_tac_toe_key(env, state)].astype(jnp.int32)


def tic_tac_toe_action_values(env: Env, state: State, key: PRNGKey, table: Array | None = None) -> Array:
    """float32[9]: the solved value of each action for the mover; illegal actions get -2."""
    table = tic_tac_toe_values() if table is None else table
    mover = state.current_player
    step_keys = jax.random.split(key, env.num_actions)

    def action_value(action: Array, step_key: PRNGKey) -> Array:
        child = env.step(state, action, step_key)
        after = tic_tac_toe_value(env, child, table).astype(jnp.float32)
        after = jnp.where(child.current_player == mover, after, -after)
        return jnp.where(child.terminated, child.rewards[mover], after)

    values = jax.vmap(action_value)(jnp.arange(env.num_actions, dtype=jnp.int32), step_keys)
    return jnp.where(state.legal_action_mask, values, -2.0)


def tic_tac_toe_lines_against_perfect(env: Env, choose: Callable[[State], int]) -> dict:
    """Every game a deterministic player can play against perfect play, counted exactly.

    The player (``choose(state) -> action`` for one unbatched state, e.g. a greedy policy) sits
    in each seat, from the empty board and after each forced first move; the perfect side
    branches over *all* its optimal moves (the moves of the solved value), so the count covers
    every line the ``perfect`` anchor can play, not a sample of them. Host side, one ``choose``
    call per position of the player.

    Returns:
      ``{"first": {...}, "second": {...}}`` keyed by seat, each mapping ``"empty"`` and every
      first move (as a string) to ``{"lines": games, "losses": lost games, "draws", "wins"}``.
    """
    table = tic_tac_toe_values()
    step = jax.jit(env.step)
    action_values = jax.jit(lambda state, key: tic_tac_toe_action_values(env, state, key, table))
    key = jax.random.key(0)
    start = env.reset(key)

    def walk(state, seat: int, counts: dict) -> None:
        if bool(state.terminated):
            result = float(np.asarray(state.rewards)[seat])
            counts["wins" if result > 0 else "losses" if result < 0 else "draws"] += 1
            counts["lines"] += 1
            return
        if int(state.current_player) == seat:
            walk(step(state, jnp.int32(choose(state)), key), seat, counts)
            return
        values = np.asarray(action_values(state, key))
        for action in np.flatnonzero(values >= values.max()):
            walk(step(state, jnp.int32(action), key), seat, counts)

    out: dict = {}
    for seat, name in ((0, "first"), (1, "second")):
        out[name] = {}
        openings = [("empty", None)] + [(str(int(a)), int(a)) for a in np.flatnonzero(np.asarray(start.legal_action_mask))]
        for label, move in openings:
            counts = {"lines": 0, "losses": 0, "draws": 0, "wins": 0}
            walk(start if move is None else step(start, jnp.int32(move), key), seat, counts)
            out[name][label] = counts
    return out


def _make_tic_tac_toe_perfect(env: Env, params: Any) -> ActFn:
    del params
    table = tic_tac_toe_values()

    def act(key: PRNGKey, state: State) -> Array:
        step_key, tie_key = jax.random.split(key)
        values = tic_tac_toe_action_values(env, state, step_key, table)
        return _uniform_among(tie_key, values >= jnp.max(values))

    return act


# ---------------------------------------------------------------------------------------------
# Kuhn poker: equilibrium policies and exact exploitability.


def _kuhn_module():
    from superlearner.envs import kuhn_poker

    return kuhn_poker


def kuhn_equilibrium_policy(alpha: float = 1.0 / 6.0) -> np.ndarray:
    """float32[2, 12, 2]: a member of Kuhn's Nash equilibrium family, ``alpha`` in [0, 1/3].

    ``[player, info_state, action]`` with actions (pass, bet) and info states indexed as in
    ``kuhn_poker.info_state_index``. Player 0 bets J with probability alpha, never bets Q, bets
    K with 3 alpha; after check-bet calls with Q with alpha + 1/3 and K always, folds J. Player 1
    facing a bet calls with K, with Q 1/3 of the time, folds J; checked to, bets K, bets J 1/3
    of the time, checks Q. Entries of the info states where a player does not act are uniform.
    Reference: H. W. Kuhn, "A simplified two-person poker", 1950.
    """
    if not 0.0 <= alpha <= 1.0 / 3.0 + 1e-12:
        raise UserError(f"kuhn_equilibrium_policy: alpha must be in [0, 1/3], got {alpha}")
    kp = _kuhn_module()
    bet_probability = {
        # (player, history): bet probability for J, Q, K
        (0, ""): (alpha, 0.0, 3.0 * alpha),
        (0, "pb"): (0.0, alpha + 1.0 / 3.0, 1.0),
        (1, "p"): (1.0 / 3.0, 0.0, 1.0),
        (1, "b"): (0.0, 1.0 / 3.0, 1.0),
    }
    table = np.full((2, kp.NUM_INFO_STATES, 2), 0.5, np.float64)
    for index in range(kp.NUM_INFO_STATES):
        card = int(kp.INFO_STATE_CARD[index])
        history = kp.INFO_STATE_HISTORY[index]
        player = int(kp.INFO_STATE_PLAYER[index])
        bet = bet_probability[(player, history)][card]
        table[player, index] = (1.0 - bet, bet)
    return table.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class _KuhnNode:
    """One history of one deal in the Kuhn game tree (host side)."""

    player: int  # who acts; -1 at a terminal
    info_state: int  # the mover's info state index; -1 at a terminal
    depth: int
    children: tuple  # (child after action 0, child after action 1); empty at a terminal
    rewards: tuple  # each player's payoff at a terminal


@functools.lru_cache(maxsize=1)
def _kuhn_tree() -> tuple[_KuhnNode, ...]:
    """The root of each of the 6 deals, built by walking the env's own rules."""
    kp = _kuhn_module()
    env = kp.KuhnPoker()
    step = jax.jit(env.step)
    info = jax.jit(kp.info_state_index)
    # Kuhn poker's only chance event is the deal, fixed here; the steps' keys are unused but
    # each step still gets its own.
    keys = iter(jax.random.split(jax.random.key(0), 256))

    def walk(state, depth: int) -> _KuhnNode:
        if bool(state.terminated):
            return _KuhnNode(-1, -1, depth, (), tuple(float(r) for r in np.asarray(state.rewards)))
        player = int(state.current_player)
        children = tuple(
            walk(step(state, jnp.int32(a), next(keys)), depth + 1) for a in range(env.num_actions)
        )
        return _KuhnNode(player, int(info(state, player)), depth, children, ())

    return tuple(walk(env.reset_to_deal(jnp.asarray(deal)), 0) for deal in kp.DEALS)


def _check_kuhn_policy(policy_table) -> np.ndarray:
    kp = _kuhn_module()
    policy = np.asarray(policy_table, np.float64)
    expected = (2, kp.NUM_INFO_STATES, 2)
    if policy.shape != expected:
        raise UserError(f"kuhn policy table has shape {policy.shape}, expected {expected} [player, info state, action]")
    acting = np.stack([kp.INFO_STATE_PLAYER == p for p in range(2)])
    rows = policy[acting]
    if not np.all(np.isfinite(rows)) or np.any(rows < 0) or not np.allclose(rows.sum(-1), 1.0, atol=1e-4):
        raise UserError(
            "kuhn policy table rows of the info states where a player acts must be probabilities "
            "(non-negative, summing to 1)"
        )
    return policy


def kuhn_best_response_value(policy_table, player: int) -> float:
    """The expected payoff of ``player``'s best response to the other player's policy.

    Exact: enumerates the 6 deals and every history. ``player``'s actions are chosen per
    information state, deepest first, to maximise the payoff weighted by the chance and
    opponent reach probabilities of the histories in it. ``policy_table``: float[2, 12, 2].
    """
    policy = _check_kuhn_policy(policy_table)
    roots = _kuhn_tree()
    chance = 1.0 / len(roots)

    # Every history where `player` acts, with its weight (chance times opponent reach).
    members: dict[int, list[tuple[_KuhnNode, float]]] = {}

    def collect(node: _KuhnNode, reach: float) -> None:
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

    def value(node: _KuhnNode) -> float:
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


def kuhn_exploitability(policy_table) -> float:
    """The exploitability of a Kuhn poker policy: ``(BR_0 + BR_1) / 2`` (NashConv / 2).

    ``BR_p`` is the value of player p's best response against the other player's part of
    ``policy_table`` (float[2, 12, 2], action probabilities per player and info state, indexed by
    ``kuhn_poker.info_state_index``). The game is zero-sum, so the sum of the two best responses
    is OpenSpiel's NashConv; the uniform policy scores 0.458333 and every equilibrium 0.
    """
    return 0.5 * (kuhn_best_response_value(policy_table, 0) + kuhn_best_response_value(policy_table, 1))


def make_policy_table_anchor(env: Env, policy_table) -> ActFn:
    """An anchor that samples from a Kuhn poker policy table (float[2, 12, 2])."""
    kp = _kuhn_module()
    table = jnp.asarray(_check_kuhn_policy(policy_table), jnp.float32)

    def act(key: PRNGKey, state: State) -> Array:
        player = state.current_player
        index = jnp.maximum(kp.info_state_index(state, player), 0)
        logits = jnp.log(jnp.maximum(table[player, index], 0.0))
        logits = jnp.where(state.legal_action_mask, logits, -jnp.inf)
        return jax.random.categorical(key, logits).astype(jnp.int32)

    return act


def _make_kuhn_perfect(env: Env, params: Any) -> ActFn:
    del params
    return make_policy_table_anchor(env, kuhn_equilibrium_policy())


_PERFECT: dict[str, Callable[[Env, Any], ActFn]] = {
    "tic_tac_toe": _make_tic_tac_toe_perfect,
    "kuhn_poker": _make_kuhn_perfect,
}
