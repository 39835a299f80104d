"""Fixed anchor players: the yardsticks agents are rated against.

An anchor is a pure function ``act(key, state) -> int32[]`` that picks a move for ONE unbatched
env state; callers batch it with ``jax.vmap`` over games and may ``jax.jit`` it (nothing here
jits itself). Anchors are made by `make_anchor` from a short spec string:

==================  ===========================================================================
spec                player
==================  ===========================================================================
``random``          uniform over the legal actions (every env)
``minimax:D``       depth-``D`` negamax through the env's own ``step``, leaves scored by the
                    env's ``heuristic`` (two-player zero-sum perfect-information games)
``minimax:D:W``     the same, searching at most ``W`` children per node (see `minimax_action_values`)
``perfect``         exact game-theoretic play, where the env declares a ``perfect_player``
==================  ===========================================================================

Ties between equally good moves are broken uniformly at random with the key, so games vary.

What the anchors use is declared by each env (`superlearner.core.env.Env`): ``heuristic``,
``move_priority`` and ``minimax_width`` for the search, ``perfect_player`` for exact play, and
``solved_action_values`` for `lines_against_perfect`, which counts every line of perfect play.
`register_heuristic` overrides an env's heuristic by id, from outside its file; without either,
the search scores non-terminal leaves as 0 (it still sees wins and losses within its horizon).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from superlearner.core.env import Env, PRNGKey, State
from superlearner.errors import UserError
from superlearner.selfplay.search import searchable

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
# The search's settings: the env's declarations, overridable by id.


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
    """Every non-terminal leaf is worth 0 (what `Env.heuristic` does unless an env declares one)."""
    del env, state
    return jnp.float32(0.0)


def _declared_heuristic(env: Env, state: State) -> Array:
    return env.heuristic(state)


def _declared_move_priority(env: Env, state: State) -> Array:
    return env.move_priority(state)


# Heuristics set by `register_heuristic`, keyed by env id: they override the env's declarations.
_OVERRIDES: dict[str, SearchSettings] = {}


def register_heuristic(
    env_id: str,
    fn: HeuristicFn,
    *,
    width: int | None = None,
    move_priority: PriorityFn | None = None,
    overwrite: bool = True,
) -> None:
    """Overrides the leaf heuristic (and optionally the default width and move ordering) that the
    minimax anchor reads from the env ``env_id`` (``Env.heuristic``, ``Env.minimax_width``,
    ``Env.move_priority``); a width or ordering left None stays the env's own.

    For an env whose file one cannot change: an env declares its own heuristic by defining
    ``heuristic(self, state)`` (docs/adding_an_environment.md). ``fn(env, state) -> float32[]``
    scores a live state from the view of the player to move (``state.current_player``;
    ``state.observation`` is that player's view, already computed); the search negates it for
    the other player, as in a zero-sum game. Values are clipped to +-`HEURISTIC_BOUND`, well
    below a decided win.
    """
    if not callable(fn):
        raise UserError(f"register_heuristic: fn for {env_id!r} must be callable, got {fn!r}")
    if width is not None and (not isinstance(width, int) or width < 1):
        raise UserError(f"register_heuristic: width for {env_id!r} must be a positive int, got {width!r}")
    if not overwrite and env_id in _OVERRIDES:
        raise UserError(f"register_heuristic: {env_id!r} already has a heuristic (pass overwrite=True)")
    _OVERRIDES[env_id] = SearchSettings(fn, width, move_priority)


def search_settings(env: Env) -> SearchSettings:
    """The minimax anchor's settings for ``env``: its declarations (``heuristic``,
    ``minimax_width``, ``move_priority``), under any `register_heuristic` override of its id."""
    declared = SearchSettings(_declared_heuristic, env.minimax_width, _declared_move_priority)
    override = _OVERRIDES.get(env.id)
    if override is None:
        return declared
    return SearchSettings(
        override.heuristic,
        override.width if override.width is not None else declared.width,
        override.move_priority if override.move_priority is not None else declared.move_priority,
    )


# ---------------------------------------------------------------------------------------------
# The factory.


def anchor_specs(env: Env) -> tuple[str, ...]:
    """The anchor specs ``env`` accepts, in the form `make_anchor` documents."""
    specs = ["random"]
    if searchable(env):
        specs += ["minimax:DEPTH", "minimax:DEPTH:WIDTH"]
    if env.perfect_player is not None:
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
        if env.perfect_player is None:
            raise UserError(
                f"{env.id}: no perfect player (the env declares no perfect_player); "
                f"accepted anchors for {env.id}: {accepted}"
            )
        return env.perfect_player(params)
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

    ``width`` and ``heuristic`` default to the env's `search_settings`. See
    `minimax_action_values` for the search itself.
    """
    settings = search_settings(env)
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
    leaf at the horizon is worth the env's heuristic; an inner node is worth the best of
    its children's values, negated when the player to move changes; heuristic values (from the
    view of the leaf's player to move) are negated the same way. Illegal actions (and actions
    cut by the width) get a large negative value, below any loss.

    ``width`` (default: the env's ``minimax_width``, else all actions) narrows the search to at
    most ``width`` children per node: the legal actions first, ordered by the env's
    ``move_priority`` (by default, by action index). The values are exact negamax values when no
    searched node has more than ``width`` legal actions; otherwise moves beyond the width are
    not considered (forward pruning). ``key`` is consumed (split for the env's steps).

    Shapes: ``state`` is one unbatched state; vmap over games at the call site.
    """
    settings = search_settings(env)
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
# Exact evaluation against a solved game.


def lines_against_perfect(env: Env, choose: Callable[[State], int]) -> dict:
    """Every game a deterministic player can play against perfect play, counted exactly.

    For a small deterministic game whose env declares ``solved_action_values``. The player
    (``choose(state) -> action`` for one unbatched state, e.g. a greedy policy) sits in each
    seat, from the start position and after each forced first move; the perfect side branches
    over *all* its optimal moves (the moves of the solved value), so the count covers every line
    the ``perfect`` anchor can play, not a sample of them. Host side, one ``choose`` call per
    position of the player.

    Returns:
      ``{"first": {...}, "second": {...}}`` keyed by seat, each mapping ``"empty"`` (the start
      position) and every first move (as a string) to ``{"lines": games, "losses": lost games,
      "draws", "wins"}``.

    Raises:
      UserError: the env declares no ``solved_action_values``.
    """
    if env.solved_action_values is None:
        raise UserError(f"{env.id}: no solved action values (the env declares no solved_action_values)")
    step = jax.jit(env.step)
    action_values = jax.jit(env.solved_action_values)
    key = jax.random.key(0)
    start = env.reset(key)

    def walk(state, seat: int, counts: dict) -> None:
        if bool(state.terminated | state.truncated):
            result = float(np.asarray(state.rewards)[seat])
            counts["wins" if result > 0 else "losses" if result < 0 else "draws"] += 1
            counts["lines"] += 1
            return
        if int(state.current_player) == seat:
            walk(step(state, jnp.int32(choose(state)), key), seat, counts)
            return
        values = np.asarray(action_values(state, key))
        legal = np.asarray(state.legal_action_mask)
        for action in np.flatnonzero(legal & (values >= values[legal].max())):
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
