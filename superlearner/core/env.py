"""The environment contract: `State`, `Env`, and the bookkeeping every env shares.

An environment is a set of pure functions over pytrees:

* ``reset(key, params) -> State``
* ``step(state, action, key, params) -> State``
* ``observe(state, player) -> observation``

Static facts (``id``, ``version``, ``num_players``, ``num_actions``, ``observation_shape``) live on
the `Env` object; ``params`` is the level or task, a pytree of fixed-shape arrays that can be
sampled, mutated and vmapped without recompiling. Shape settings are constructor options.

Concrete envs implement ``_reset``, ``_step`` and ``observe``. The bookkeeping is written here,
once, for all of them:

* stepping a finished state is absorbing: the state is returned unchanged with zero rewards;
* an illegal action ends the episode and the mover loses: the mover receives -1 and the other
  players share +1 (a single-agent mover receives -1);
* ``step_count`` is kept and ``truncated`` is set when ``max_episode_steps`` is reached;
* ``observation`` is refreshed for the player to move, so ``_step`` need not compute it;
* a finished state's ``legal_action_mask`` is all true, so a masked policy stays well defined.
"""

from __future__ import annotations

import abc
from typing import Any, Callable, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from superlearner.errors import UserError

Array = jax.Array
PRNGKey = jax.Array
Params = Any


@struct.dataclass
class State:
    """Fields every environment state has; envs subclass it and add private fields.

    Attributes:
      current_player: int32[], the player to move (0 moves first).
      legal_action_mask: bool[num_actions], the actions the current player may take.
      rewards: float32[num_players], each player's own reward for the last step.
      terminated: bool[], the episode ended by the rules.
      truncated: bool[], the episode was cut by a step limit.
      observation: the current player's view, ``observation_shape``.
      step_count: int32[], steps taken since reset.
    """

    current_player: Array
    legal_action_mask: Array
    rewards: Array
    terminated: Array
    truncated: Array
    observation: Array
    step_count: Array


@struct.dataclass
class NoParams:
    """The params of an env that has no per-level settings."""


class Symmetries(NamedTuple):
    """The symmetries of a board game: re-labellings of the board's cells that change neither the
    rules nor the value of a position (connect four's mirror, the eight of a square board).

    Index 0 is the identity. Transformation ``s`` maps a position to the one whose cell ``j`` holds
    what cell ``cells[s, j]`` held, and an array over actions (a legal-action mask, a policy) to
    the one whose entry ``j`` is entry ``actions[s, j]`` of the original. Cells are numbered
    row-major over the first two axes of the observation ``[H, W, ...]``.

    Attributes:
      cells: int32[S, H * W] (NumPy), a permutation per symmetry.
      actions: int32[S, A] (NumPy), the same permutation on actions (moves that name a cell move
        with it; others, such as a pass, stay).
    """

    cells: np.ndarray
    actions: np.ndarray

    @property
    def size(self) -> int:
        return int(self.cells.shape[0])


def dihedral_symmetries(size: int, num_actions: int | None = None) -> Symmetries:
    """The 8 symmetries of a ``size`` x ``size`` board (rotations and reflections). Actions
    ``0..size*size-1`` name cells row-major; any further actions (a pass) are left in place."""
    num_actions = size * size if num_actions is None else num_actions
    grid = np.arange(size * size).reshape(size, size)
    views = [grid, np.rot90(grid, 1), np.rot90(grid, 2), np.rot90(grid, 3)]
    views += [np.fliplr(view) for view in views]
    cells = np.stack([view.reshape(-1) for view in views]).astype(np.int32)
    extra = np.arange(size * size, num_actions)
    actions = np.stack([np.concatenate([row, extra]) for row in cells]).astype(np.int32)
    return Symmetries(cells=cells, actions=actions)


def apply_symmetry(symmetries: Symmetries, index: Array, observation: Array, *action_arrays: Array) -> tuple:
    """A batch of positions under one symmetry each.

    Args:
      symmetries: the env's `Symmetries` (S of them).
      index: int32[B], the symmetry of each position (0 leaves it as it is); may be traced.
      observation: ``[B, H, W, ...]``.
      *action_arrays: arrays ``[B, A]`` over actions (masks, policies).

    Returns:
      ``(observation, *action_arrays)`` transformed, same shapes and dtypes.
    """
    cells = jnp.asarray(symmetries.cells)[index]  # [B, H*W]
    batch, height, width = observation.shape[:3]
    flat = observation.reshape((batch, height * width) + observation.shape[3:])
    gather = cells.reshape(cells.shape + (1,) * (flat.ndim - 2))
    moved = jnp.take_along_axis(flat, gather, axis=1).reshape(observation.shape)
    actions = jnp.asarray(symmetries.actions)[index]  # [B, A]
    return (moved,) + tuple(jnp.take_along_axis(values, actions, axis=1) for values in action_arrays)


class InfoStates(NamedTuple):
    """The information states of a small game of imperfect information: what `Env.exploitability`
    reads a policy on. A network's policy is tabulated by evaluating it on ``observations`` with
    ``legal_action_masks``; row ``i`` of a policy table belongs to information state ``i``.

    Attributes:
      observations: ``[I, *observation_shape]`` (NumPy), the acting player's observation in each
        information state (every live state's observation is one of them).
      legal_action_masks: bool[I, num_actions] (NumPy), the actions legal there.
      players: int32[I] (NumPy), the player who acts there.
    """

    observations: np.ndarray
    legal_action_masks: np.ndarray
    players: np.ndarray


def tree_select(pred: Array, on_true: Any, on_false: Any) -> Any:
    """Elementwise ``pred ? on_true : on_false`` over two pytrees of the same structure.

    ``pred`` is a scalar boolean; this is branch-free, so it costs the same under ``vmap``.
    """
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


class Env(abc.ABC):
    """Base class of all environments. See the module docstring for the contract."""

    id: ClassVar[str] = ""
    version: ClassVar[str] = "0"
    description: ClassVar[str] = ""
    num_players: int = 1
    num_actions: int = 1
    observation_shape: tuple[int, ...] = ()
    observation_dtype: Any = jnp.float32
    max_episode_steps: int | None = None
    # An episode whose return reaches this counts as a success in evaluation (gymnasium's
    # reward_threshold); None means success is not defined for the env.
    reward_threshold: float | None = None
    # Two-player games whose rewards always sum to zero (the league and the search rely on it).
    zero_sum: ClassVar[bool] = False
    # Board symmetries (`Symmetries`) a learner may use to augment its data; None when the game
    # has none or does not declare them.
    symmetries: Symmetries | None = None
    # The level space a curriculum samples and mutates levels in (``sample``, ``mutate``,
    # ``level_hash``, ``is_valid``; see `superlearner.curriculum.levels`); None when the env's
    # levels are not meant to be generated.
    level_space: Any = None

    # ----------------------------------------------------------------------------------------
    # What the env declares to the rest of the system (docs/adding_an_environment.md, "What
    # your env declares"). The defaults make an env that declares nothing a game of perfect
    # information without a heuristic or an exact solver.

    # False when a player's view hides part of the state (a card): the search and the minimax
    # anchor look through the true state, so they refuse such a game.
    perfect_information: ClassVar[bool] = True
    # How many children the minimax anchor searches per node by default (the first by
    # `move_priority`); None searches every action.
    minimax_width: ClassVar[int | None] = None

    def heuristic(self, state: State) -> Array:
        """float32[]: how good the live, unbatched ``state`` is for its player to move (whose view
        ``state.observation`` is): the value of the minimax anchor's leaves at its horizon.

        Pure and jittable; the search clips it far inside a decided win and negates it for the
        other player. The default scores every position 0, so the search sees only the wins and
        losses within its horizon.
        """
        del state
        return jnp.float32(0.0)

    def move_priority(self, state: State) -> Array:
        """float32[num_actions]: the order in which a narrowed minimax search (``minimax_width``)
        tries the legal actions of ``state``, highest first. The default keeps the action order."""
        del state
        return jnp.zeros((self.num_actions,), jnp.float32)

    # Exact solvers, where the game is small enough to solve; None where the env has none, else
    # a method of the env:
    #
    # * ``perfect_player(params=None) -> act(key, state) -> int32[]``: exact game-theoretic play
    #   for one unbatched state (the ``perfect`` anchor); ``key`` breaks ties between equally
    #   good moves or samples a mixed equilibrium.
    # * ``solved_action_values(state, key, params=None) -> float32[num_actions]``: the exact
    #   value of each action for the mover under perfect play by both, illegal actions below
    #   every legal one (a small deterministic game: the evaluation then counts every line of
    #   perfect play).
    # * ``info_states() -> InfoStates`` with ``exploitability(policy, weights=None) -> float``:
    #   the exact exploitability (NashConv / 2) of a policy table float[I, num_actions] over the
    #   information states, or of the mixture of tables float[K, I, num_actions] that draws table
    #   k with probability ``weights[k]`` at the start of each game (a league).
    perfect_player: Callable[..., Callable[[PRNGKey, State], Array]] | None = None
    solved_action_values: Callable[..., Array] | None = None
    info_states: Callable[[], InfoStates] | None = None
    exploitability: Callable[..., float] | None = None

    # ----------------------------------------------------------------------------------------
    # Public, pure API.

    @property
    def default_params(self) -> Params:
        """The level used when ``params`` is None."""
        return NoParams()

    def reset(self, key: PRNGKey, params: Params | None = None) -> State:
        """Starts an episode. ``key`` is consumed (chance events of the start, e.g. a deal)."""
        params = self._resolve_params(params)
        state = self._reset(key, params)
        return self._finish(state)

    def step(self, state: State, action: Array, key: PRNGKey, params: Params | None = None) -> State:
        """Applies ``action`` (int32[]) for ``state.current_player``. ``key`` is consumed."""
        params = self._resolve_params(params)
        action = jnp.asarray(action, jnp.int32)
        done = state.terminated | state.truncated
        in_range = (action >= 0) & (action < self.num_actions)
        safe_action = jnp.clip(action, 0, self.num_actions - 1)
        is_legal = in_range & state.legal_action_mask[safe_action]
        # The env's own rules only ever see a legal action; an illegal one is handled below.
        fallback = jnp.argmax(state.legal_action_mask).astype(jnp.int32)
        rule_action = jnp.where(is_legal, safe_action, fallback)
        cleared = state.replace(rewards=jnp.zeros_like(state.rewards))
        moved = self._step(cleared, rule_action, key, params)
        moved = moved.replace(step_count=state.step_count + 1)
        # The losing state keeps the position before the illegal move: no move was made.
        lost = cleared.replace(
            step_count=state.step_count + 1,
            rewards=self._illegal_action_rewards(state.current_player),
            terminated=jnp.bool_(True),
        )
        moved = tree_select(is_legal, moved, lost)
        if self.max_episode_steps is not None:
            moved = moved.replace(
                truncated=~moved.terminated & (moved.step_count >= self.max_episode_steps)
            )
        moved = self._finish(moved)
        return tree_select(done, cleared, moved)

    @abc.abstractmethod
    def observe(self, state: State, player: Array) -> Array:
        """``player``'s view of ``state`` (``observation_shape``), for any player."""

    # ----------------------------------------------------------------------------------------
    # What a concrete env implements.

    @abc.abstractmethod
    def _reset(self, key: PRNGKey, params: Params) -> State:
        """The start state; ``observation`` may be left as zeros."""

    @abc.abstractmethod
    def _step(self, state: State, action: Array, key: PRNGKey, params: Params) -> State:
        """The rules for a legal ``action``; sets rewards, terminated, the next player and mask."""

    # ----------------------------------------------------------------------------------------
    # Rendering (host side).

    def render_text(self, state: State) -> str:
        """A human-readable picture of one unbatched state."""
        raise NotImplementedError(f"{self.id} has no text rendering")

    def render_svg(self, state: State) -> str:
        """An SVG picture of one unbatched state."""
        raise NotImplementedError(f"{self.id} has no SVG rendering")

    def action_to_text(self, action: int) -> str:
        """How a move is written for people (the CLI's play command parses the same form)."""
        return str(int(action))

    def text_to_action(self, text: str) -> int:
        """Parses a move written by a person; raises ValueError when it names no action."""
        value = int(text.strip())
        if not 0 <= value < self.num_actions:
            raise ValueError(f"action must be in 0..{self.num_actions - 1}, got {value}")
        return value

    # ----------------------------------------------------------------------------------------
    # Shared machinery.

    def _finish(self, state: State) -> State:
        done = state.terminated | state.truncated
        mask = state.legal_action_mask | done
        state = state.replace(legal_action_mask=mask)
        return state.replace(observation=self.observe(state, state.current_player))

    def _illegal_action_rewards(self, mover: Array) -> Array:
        if self.num_players == 1:
            return -jnp.ones((1,), jnp.float32)
        players = jnp.arange(self.num_players)
        others = 1.0 / (self.num_players - 1)
        return jnp.where(players == mover, -1.0, others).astype(jnp.float32)

    def _initial_fields(self, legal_action_mask: Array, current_player: Array | int = 0) -> dict:
        """The common State fields of a fresh episode, for ``_reset`` implementations."""
        return dict(
            current_player=jnp.int32(current_player),
            legal_action_mask=legal_action_mask,
            rewards=jnp.zeros((self.num_players,), jnp.float32),
            terminated=jnp.bool_(False),
            truncated=jnp.bool_(False),
            observation=jnp.zeros(self.observation_shape, self.observation_dtype),
            step_count=jnp.int32(0),
        )

    def _resolve_params(self, params: Params | None) -> Params:
        if params is None:
            return self.default_params
        check_params(self, params)
        return params

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, version={self.version!r})"


def check_params(env: Env, params: Params) -> None:
    """Raises UserError when ``params`` does not have the structure and shapes of the default.

    Works on concrete arrays and on tracers (shapes are static), so it costs nothing under jit.
    A batch axis in front of every leaf is not accepted here: vmap over params instead.
    """
    expected = env.default_params
    exp_leaves, exp_def = jax.tree.flatten(expected)
    got_leaves, got_def = jax.tree.flatten(params)
    if exp_def != got_def:
        raise UserError(
            f"{env.id}: params have structure {got_def}, expected {exp_def} "
            f"(start from env.default_params and .replace fields)"
        )
    names = _leaf_names(expected)
    for name, want, got in zip(names, exp_leaves, got_leaves):
        if jnp.shape(want) != jnp.shape(got):
            raise UserError(
                f"{env.id}: params.{name} has shape {tuple(jnp.shape(got))}, "
                f"expected {tuple(jnp.shape(want))} (shape settings are options of make())"
            )


def _leaf_names(tree: Any) -> list[str]:
    paths, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [jax.tree_util.keystr(path).lstrip(".") for path, _ in paths]


def check_option(env_id: str, name: str, value: Any, kind: type, low=None, high=None) -> Any:
    """Validates one static option of ``make``; returns it. Raises a one-line UserError."""
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        if not (kind is float and isinstance(value, int) and not isinstance(value, bool)):
            raise UserError(
                f"{env_id}: option {name}={value!r} has type {type(value).__name__}, "
                f"expected {kind.__name__}"
            )
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"{low if low is not None else '-inf'}..{high if high is not None else 'inf'}"
        raise UserError(f"{env_id}: option {name}={value!r} is out of range, accepted {bounds}")
    return value
