"""Gumbel AlphaZero: self-play with search, a replay buffer, and a residual policy-value network.

Self-play runs Gumbel MuZero search (Danihelka et al. 2022, "Policy improvement by planning with
Gumbel", https://openreview.net/forum?id=bERaNdoegnO) with the real environment as the model, as
AlphaZero does (Silver et al. 2018). The policy is trained towards the search's improved policy
(mctx's ``action_weights``) and the value towards the game's outcome.

Reads top to bottom: settings and types, the network, the replay buffer, value targets, the
factory (init, search, self-play, loss, update, iteration).

Conventions:

* A value is always from the view of the player to move in that position, the sum of that
  player's rewards from the position to the end of the game. The search backs values up with
  discount -1 across a change of mover (zero-sum) and +1 when the same player moves again, and
  with discount 0 after the end of the game.
* Illegal actions are masked at the root through mctx's ``invalid_actions`` and at every interior
  node by pushing their prior logits to ``networks.ILLEGAL_LOGIT`` (the search itself is
  `superlearner.selfplay.search.make_search`); Gumbel MuZero's interior selection then never picks them
  (their improved-policy probability is 0 while some legal action always has a positive score).
* Replay positions of a game still in progress are *pending*: they are stored but never sampled,
  and get their value target when the game ends, possibly iterations later. Positions of a game
  cut by truncation have no outcome and are never sampled (no bootstrap).

Everything here is a pure function of arrays; nothing calls ``jax.jit``. `AlphaZeroState` holds
all a run must save (network, optimizer, replay buffer, games in progress); keys come in as
arguments and are never stored.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import mctx
import optax
from flax import nnx, struct

from superlearner.selfplay.arena import random_player
from superlearner.core.env import Env, State, apply_symmetry, check_option
from superlearner.errors import UserError
from superlearner.schema import Hparam, field, hparams_type
from superlearner.learners.networks import Conv, masked_logits
from superlearner.selfplay.search import batched_env_params, make_search, searchable
from superlearner.core.wrappers import step_auto_reset

Array = jax.Array

# ----------------------------------------------------------------------------------------------
# Settings and types.


@dataclasses.dataclass(frozen=True)
class AlphaZeroSettings:
    """Static settings. Every one of them fixes a shape or a loop length, so changing one
    recompiles; the numbers a meta-learner may change are in `AlphaZeroHparams`."""

    num_envs: int = field(256, "self-play games played in parallel (batch of the search)", low=1)
    unroll_length: int = field(64, "moves played in every game per iteration", low=1)
    num_simulations: int = field(32, "search simulations per self-play move", low=1)
    max_num_considered_actions: int = field(16, "root actions Gumbel sequential halving considers", low=1)
    max_depth: int | None = field(None, "deepest simulation in moves (None: num_simulations)", low=1)
    replay_capacity: int = field(65536, "positions the replay ring holds (oldest overwritten)", low=1)
    batch_size: int = field(512, "positions per SGD minibatch", low=1)
    num_updates: int = field(16, "SGD steps per iteration, each on a fresh sample of the buffer", low=0)
    min_replay_size: int = field(1024, "sampleable positions needed before SGD steps are applied", low=1)
    channels: int = field(32, "width of the residual tower (conv channels, or MLP units)", low=1)
    num_blocks: int = field(3, "residual blocks in the tower", low=0)
    symmetry_augmentation: bool = field(True, "train each sampled position in a random one of the env's symmetries")
    decay_updates: int = field(0, "SGD steps over which the step size decays to zero on a cosine (0: constant)", low=0)
    lr_timescale: int = field(0, "SGD steps of an inverse-square-root decay that needs no end point: the step size is learning_rate / sqrt(1 + t / lr_timescale), half its start after 3 timescales (0: none)", low=0)
    opening_moves: int = field(0, "each of a self-play game's first N moves is, with probability 1/2, a uniformly random legal move", low=0)

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.name == "max_depth":
                continue
            if f.name == "symmetry_augmentation":
                check_option("alphazero", f.name, value, bool)
                continue
            check_option("alphazero", f.name, value, int, f.metadata.get("low"), f.metadata.get("high"))
        if self.min_replay_size > self.replay_capacity:
            raise UserError(
                f"alphazero: option min_replay_size={self.min_replay_size} exceeds "
                f"replay_capacity={self.replay_capacity}; accepted 1..{self.replay_capacity}"
            )


ALPHAZERO_HPARAMS: tuple[Hparam, ...] = (
    Hparam("learning_rate", 1e-3, "Adam step size", 0.0, 1.0, search=(1e-5, 1e-1, "log")),
    Hparam("weight_decay", 1e-4, "decoupled weight decay (AdamW style), multiplied by the learning rate",
           0.0, 1.0, search=(1e-6, 1e-2, "log")),
    Hparam("value_loss_weight", 1.0, "weight of the value loss against the policy cross-entropy", 0.0, 100.0,
           search=(0.1, 10.0, "log")),
    Hparam("max_grad_norm", 1.0, "global gradient-norm clip", 0.0, 1e6, search=(0.1, 10.0, "log")),
    Hparam("gumbel_scale", 1.0, "scale of self-play's root Gumbel noise (0: play the search's best move; 1: the "
           "paper's exploration)", 0.0, 10.0, search=(0.0, 2.0, "affine")),
    Hparam("search_value_weight", 0.0, "value target mix (1 - w) * outcome + w * root search value (0: outcomes "
           "only)", 0.0, 1.0, search=(0.0, 1.0, "affine")),
    Hparam("value_scale", 0.1, "mctx completed-Q scale c_scale (weight of Q against the prior)", 0.0, 100.0,
           search=(0.01, 1.0, "log")),
    Hparam("maxvisit_init", 50.0, "mctx completed-Q offset c_visit", 0.0, 1e6, search=(1.0, 500.0, "log")),
)
"""AlphaZero's traced hyperparameters, declared once: `AlphaZeroHparams`, the traced fields of the
config's ``alphazero`` section and the meta-controllers' search space come from this tuple."""

AlphaZeroHparams = hparams_type(
    "AlphaZeroHparams", ALPHAZERO_HPARAMS,
    "Adaptable hyperparameters, float32 scalars (a leading population axis in a TrainState); all "
    "enter the program traced, so changing them never recompiles.",
)

DEFAULT_HPARAMS = {h.name: h.default for h in ALPHAZERO_HPARAMS}


@struct.dataclass
class Positions:
    """Replay entries, leading axis ``[C]`` in the buffer (or ``[M]`` for a batch to insert).

    Attributes:
      observation: the mover's view, ``[..., *observation_shape]``.
      legal_action_mask: bool[..., A].
      policy_target: float32[..., A], the search's improved policy (mctx ``action_weights``).
      value_target: float32[...], the outcome for the mover (meaningful where ``valid``).
      search_value: float32[...], the root value of the search, mover's view.
      player: int32[...], the mover.
      slot: int32[...], the self-play game slot (0..num_envs-1) the position came from.
      return_before: float32[...], the mover's return in the game before this position (the
        outcome minus it is the return from the position on).
      pending: bool[...], the game is still in progress: no value target yet.
      valid: bool[...], the entry may be sampled (written, game ended by the rules).
    """

    observation: Array
    legal_action_mask: Array
    policy_target: Array
    value_target: Array
    search_value: Array
    player: Array
    slot: Array
    return_before: Array
    pending: Array
    valid: Array


@struct.dataclass
class ReplayBuffer:
    """A ring of `Positions` of fixed capacity C.

    Attributes:
      positions: `Positions` with leading axis ``[C]``.
      insert_index: int32[], where the next position is written.
      size: int32[], positions written so far, at most C.
    """

    positions: Positions
    insert_index: Array
    size: Array


@struct.dataclass
class SelfPlayGames:
    """The games in progress, leading axis ``[N]`` (N = num_envs).

    Attributes:
      env_state: the env State of every game.
      episode_return: float32[N, num_players], each player's return so far in the game.
      episode_length: int32[N], moves so far in the game.
    """

    env_state: Any
    episode_return: Array
    episode_length: Array


@struct.dataclass
class AlphaZeroState:
    """Everything one learner must checkpoint; all arrays.

    Attributes:
      params: network parameters (an ``nnx.State``).
      opt_state: optimizer state.
      buffer: the replay `ReplayBuffer`.
      games: the self-play `SelfPlayGames` in progress.
      num_updates: int32[], SGD steps applied so far.
    """

    params: Any
    opt_state: Any
    buffer: ReplayBuffer
    games: SelfPlayGames
    num_updates: Array


class AlphaZero(NamedTuple):
    """The AlphaZero learner's pure functions (see `make_alphazero`)."""

    init: Callable[..., AlphaZeroState]
    iteration: Callable[..., tuple[AlphaZeroState, dict]]
    # The parts of an iteration, for the learner interface (`superlearner.learners.alphazero_learner`):
    # ``self_play(params, games, hparams, key, env_params, opponents=None, reset_params=None) ->
    # (games, trajectory, firsts, opponents_carry, env_params)``; ``store(state, trajectory, firsts) -> state``; ``train(state,
    # hparams, key) -> (state, metrics, sampleable count)``; ``play_metrics(state, trajectory,
    # count) -> metrics``.
    self_play: Callable
    store: Callable
    train: Callable
    play_metrics: Callable
    policy: Callable[[Any, Array, Array], tuple[Array, Array]]
    search: Callable[..., mctx.PolicyOutput]
    act: Callable[..., Array]
    act_raw: Callable[..., Array]
    augment: Callable[[Positions, Array], Positions]
    loss: Callable[..., tuple[Array, dict]]
    graphdef: Any
    settings: AlphaZeroSettings
    env: Env


# ----------------------------------------------------------------------------------------------
# The network.


class ResidualBlock(nnx.Module):
    """A pre-activation residual block: ``x + f(relu(norm(f(relu(norm(x))))))``.

    ``f`` is a 3x3 convolution (boards) or a dense layer (vectors). Layer norm over the feature
    axis instead of batch norm: there are no batch statistics to carry or freeze in the search,
    and it behaves the same for a batch of one. The second layer starts at zero, so every block
    starts as the identity and a deep tower trains from the start.
    """

    def __init__(self, channels: int, *, conv: bool, rngs: nnx.Rngs):
        if conv:
            make = lambda **kw: Conv(channels, channels, 3, rngs=rngs, **kw)  # noqa: E731
        else:
            make = lambda **kw: nnx.Linear(channels, channels, rngs=rngs, **kw)  # noqa: E731
        self.norm1 = nnx.LayerNorm(channels, rngs=rngs)
        self.layer1 = make()
        self.norm2 = nnx.LayerNorm(channels, rngs=rngs)
        self.layer2 = make(kernel_init=nnx.initializers.zeros)

    def __call__(self, x: Array) -> Array:
        y = self.layer1(jax.nn.relu(self.norm1(x)))
        y = self.layer2(jax.nn.relu(self.norm2(y)))
        return x + y


class PolicyValueNet(nnx.Module):
    """Policy logits ``[..., A]`` and a value in (-1, 1) ``[...]`` for observations
    ``[..., *observation_shape]``.

    Boards and grids (``[H, W, C]``) go through a 3x3 conv stem and a residual conv tower; the
    policy head is a 1x1 conv to 2 planes and a dense layer, the value head a 1x1 conv to 1 plane,
    a dense hidden layer and tanh (the AlphaGo Zero heads). Other observations are flattened and
    go through a residual MLP tower of the same width. Both output layers start at zero: a uniform
    prior and a zero value, so an untrained search is guided by the game's own rewards only.
    """

    def __init__(self, observation_shape: Sequence[int], num_actions: int, channels: int, num_blocks: int, *, rngs: nnx.Rngs):
        self.observation_shape = tuple(observation_shape)
        self.conv = len(self.observation_shape) == 3
        zeros = nnx.initializers.zeros
        if self.conv:
            height, width, planes = self.observation_shape
            self.stem = Conv(planes, channels, 3, rngs=rngs)
            # 1x1 convolutions are dense layers over the channel axis.
            self.policy_conv = nnx.Linear(channels, 2, rngs=rngs)
            self.value_conv = nnx.Linear(channels, 1, rngs=rngs)
            policy_features, value_features = 2 * height * width, height * width
        else:
            self.stem = nnx.Linear(int(math.prod(self.observation_shape)), channels, rngs=rngs)
            policy_features = value_features = channels
        self.blocks = nnx.List([ResidualBlock(channels, conv=self.conv, rngs=rngs) for _ in range(num_blocks)])
        self.final_norm = nnx.LayerNorm(channels, rngs=rngs)
        self.policy_out = nnx.Linear(policy_features, num_actions, kernel_init=zeros, rngs=rngs)
        self.value_hidden = nnx.Linear(value_features, channels, rngs=rngs)
        self.value_out = nnx.Linear(channels, 1, kernel_init=zeros, rngs=rngs)

    def __call__(self, observation: Array) -> tuple[Array, Array]:
        batch_shape = observation.shape[: observation.ndim - len(self.observation_shape)]
        x = observation.astype(jnp.float32).reshape((-1,) + self.observation_shape)
        if not self.conv:
            x = x.reshape((x.shape[0], -1))
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        x = jax.nn.relu(self.final_norm(x))
        if self.conv:
            p = jax.nn.relu(self.policy_conv(x)).reshape((x.shape[0], -1))
            v = jax.nn.relu(self.value_conv(x)).reshape((x.shape[0], -1))
        else:
            p = v = x
        logits = self.policy_out(p)
        value = jnp.tanh(self.value_out(jax.nn.relu(self.value_hidden(v))))[:, 0]
        return logits.reshape(batch_shape + logits.shape[-1:]), value.reshape(batch_shape)


# ----------------------------------------------------------------------------------------------
# The replay buffer.


def replay_init(example: Positions, capacity: int) -> ReplayBuffer:
    """An empty buffer of ``capacity`` entries shaped like one unbatched ``example``."""
    positions = jax.tree.map(lambda x: jnp.zeros((capacity,) + jnp.shape(x), jnp.asarray(x).dtype), example)
    return ReplayBuffer(positions=positions, insert_index=jnp.int32(0), size=jnp.int32(0))


def replay_insert(buffer: ReplayBuffer, batch: Positions) -> ReplayBuffer:
    """Writes ``batch`` (leading axis ``[M]``, oldest first) at the ring's insert index.

    The oldest entries are overwritten once the ring is full. When M exceeds the capacity C,
    only the newest C entries of the batch are written (they land where a one-by-one insert would
    have left them), so no index is written twice in one scatter.
    """
    capacity = jax.tree.leaves(buffer.positions)[0].shape[0]
    num_new = jax.tree.leaves(batch)[0].shape[0]
    skipped = max(num_new - capacity, 0)
    kept = jax.tree.map(lambda x: x[skipped:], batch)
    index = (buffer.insert_index + skipped + jnp.arange(num_new - skipped)) % capacity
    positions = jax.tree.map(lambda buf, new: buf.at[index].set(new), buffer.positions, kept)
    return ReplayBuffer(
        positions=positions,
        insert_index=((buffer.insert_index + num_new) % capacity).astype(jnp.int32),
        size=jnp.minimum(buffer.size + num_new, capacity).astype(jnp.int32),
    )


def replay_resolve(buffer: ReplayBuffer, finished: Array, final_return: Array, truncated: Array) -> ReplayBuffer:
    """Gives pending entries of games that have now ended their value targets.

    A pending entry of slot g always belongs to the game in progress in slot g, so the first game
    each slot finished since the entry was written is the entry's game.

    Args:
      buffer: the replay buffer.
      finished: bool[N], slot g's game in progress ended.
      final_return: float32[N, num_players], that game's return of each player.
      truncated: bool[N], it ended by truncation: its entries get no target and are never sampled.
    """
    p = buffer.positions
    ended = finished[p.slot]
    resolved = p.pending & ended
    outcome = final_return[p.slot, p.player] - p.return_before
    positions = p.replace(
        value_target=jnp.where(resolved, outcome, p.value_target),
        pending=p.pending & ~ended,
        valid=p.valid | (resolved & ~truncated[p.slot]),
    )
    return buffer.replace(positions=positions)


def replay_sample(buffer: ReplayBuffer, key: Array, shape: tuple[int, ...]) -> tuple[Positions, Array]:
    """Samples valid entries uniformly with replacement; returns ``(positions[shape], count)``.

    ``count`` (int32[]) is the number of valid entries; with none, the sample is meaningless and
    the caller must not use it. ``key`` is consumed.
    """
    valid = buffer.positions.valid
    count = valid.sum().astype(jnp.int32)
    weights = jnp.where(count > 0, valid.astype(jnp.float32), 1.0)
    capacity = valid.shape[0]
    index = jax.random.choice(key, capacity, shape=shape, replace=True, p=weights)
    return jax.tree.map(lambda x: x[index], buffer.positions), count


# ----------------------------------------------------------------------------------------------
# Value targets.


def value_targets(rewards_t: Array, player_t: Array, done_t: Array, truncated_t: Array) -> tuple[Array, Array, Array]:
    """The outcome of every move of one slot's trajectory, from the mover's view.

    The trajectory may hold the end of a game begun earlier, whole games, and the start of a game
    not yet over (auto-reset: after a step with ``done`` a fresh game starts).

    Args:
      rewards_t: float32[T, num_players], every player's reward for step t.
      player_t: int32[T], the mover of step t.
      done_t: bool[T], the game ended at step t (terminated or truncated).
      truncated_t: bool[T], it ended by truncation.

    Returns:
      ``(target_t, known_t, terminated_t)``: float32[T] the mover's return from step t to the end
      of its game, bool[T] whether that end lies in the trajectory, bool[T] whether the game ended
      by the rules (not truncation). The target is meaningful where ``known_t``.
    """

    def backward(carry, step):
        return_to_go, known, terminated = carry
        rewards, done, truncated = step
        return_to_go = jnp.where(done, rewards, rewards + return_to_go)
        known = known | done
        terminated = jnp.where(done, ~truncated, terminated)
        return (return_to_go, known, terminated), (return_to_go, known, terminated)

    init = (jnp.zeros_like(rewards_t[0]), jnp.bool_(False), jnp.bool_(False))
    _, (return_to_go, known, terminated) = jax.lax.scan(
        backward, init, (rewards_t, done_t, truncated_t), reverse=True
    )
    target = jnp.take_along_axis(return_to_go, player_t[:, None], axis=1)[:, 0]
    return target, known, terminated


# ----------------------------------------------------------------------------------------------
# The factory.


def new_games(env: Env, key: Array, env_params, num: int) -> SelfPlayGames:
    """``num`` fresh games on the levels ``env_params`` (leading axis ``[num]``); ``key`` is
    consumed."""
    env_state = jax.vmap(env.reset)(jax.random.split(key, num), env_params)
    return SelfPlayGames(
        env_state=env_state,
        episode_return=jnp.zeros((num, env.num_players), jnp.float32),
        episode_length=jnp.zeros((num,), jnp.int32),
    )


def _example_position(env: Env) -> Positions:
    """One zero replay entry of ``env`` (the buffer's layout)."""
    return Positions(
        observation=jnp.zeros(env.observation_shape, env.observation_dtype),
        legal_action_mask=jnp.zeros((env.num_actions,), jnp.bool_),
        policy_target=jnp.zeros((env.num_actions,), jnp.float32),
        value_target=jnp.float32(0),
        search_value=jnp.float32(0),
        player=jnp.int32(0),
        slot=jnp.int32(0),
        return_before=jnp.float32(0),
        pending=jnp.bool_(False),
        valid=jnp.bool_(False),
    )


def check_searchable(env: Env) -> None:
    """Raises UserError unless the search may plan with ``env``'s rules: a two-player zero-sum
    game of perfect information, or a one-player env of perfect information."""
    one_player = env.num_players == 1 and bool(getattr(env, "perfect_information", True))
    if not (one_player or searchable(env)):
        raise UserError(
            f"alphazero: env {env.id!r} is neither a one-player env nor a two-player zero-sum game of perfect "
            "information (the search plans with the env's real rules)"
        )


def make_alphazero(env: Env, settings: AlphaZeroSettings = AlphaZeroSettings()) -> AlphaZero:
    """Builds Gumbel AlphaZero for ``env`` (a two-player zero-sum perfect-information game).

    Returns an `AlphaZero` of pure functions; none of them jits itself. Shapes below: N is
    ``settings.num_envs``, A is ``env.num_actions``, B is any batch of states.
    """
    check_searchable(env)
    if not isinstance(settings, AlphaZeroSettings):
        raise UserError(f"alphazero: settings must be AlphaZeroSettings, got {type(settings).__name__}")
    s = settings
    num_envs, num_actions, num_players = s.num_envs, env.num_actions, env.num_players

    def build_model(key):
        return PolicyValueNet(env.observation_shape, num_actions, s.channels, s.num_blocks, rngs=nnx.Rngs(params=key))

    graphdef, _ = nnx.split(nnx.eval_shape(lambda: build_model(jax.random.key(0))))

    def optimizer(hparams: AlphaZeroHparams) -> optax.GradientTransformation:
        # Built inside the trace from traced values: the state's structure does not depend on them.
        return optax.chain(
            optax.clip_by_global_norm(hparams.max_grad_norm),
            optax.scale_by_adam(),
            optax.add_decayed_weights(hparams.weight_decay),
            optax.scale_by_learning_rate(hparams.learning_rate),
        )

    # --- network --------------------------------------------------------------------------------

    def policy(params, observation: Array, legal_action_mask: Array) -> tuple[Array, Array]:
        """Masked logits ``[..., A]`` and values ``[...]`` (mover's view) of observations
        ``[..., *observation_shape]`` with masks bool[..., A]."""
        logits, value = nnx.merge(graphdef, params)(observation)
        return masked_logits(logits, legal_action_mask), value

    # --- init -----------------------------------------------------------------------------------

    def init(key: Array, env_params=None) -> AlphaZeroState:
        """The starting state. ``key`` is consumed (network init and the games' resets).

        ``env_params``: the level of every game, leading axis ``[N]``; None plays the default.
        """
        model_key, reset_key = jax.random.split(key)
        _, params = nnx.split(build_model(model_key))
        opt_state = optimizer(AlphaZeroHparams.from_values()).init(params)
        return AlphaZeroState(
            params=params,
            opt_state=opt_state,
            buffer=replay_init(_example_position(env), s.replay_capacity),
            games=new_games(env, reset_key, batched_env_params(env, env_params, num_envs), num_envs),
            num_updates=jnp.int32(0),
        )

    # --- search ---------------------------------------------------------------------------------

    # ``search(params, env_state, key, num_simulations, gumbel_scale=0.0, env_params=None,
    # max_num_considered_actions=None, value_scale, maxvisit_init) -> mctx.PolicyOutput``: Gumbel
    # MuZero search of this network from a batch of states, with the settings' considered actions
    # and depth (see `superlearner.selfplay.search.make_search`).
    search = make_search(env, policy, max_num_considered_actions=s.max_num_considered_actions, max_depth=s.max_depth)

    def act(params, env_state: State, key: Array, num_simulations: int, greedy: bool = True, env_params=None,
            hparams: AlphaZeroHparams | None = None) -> Array:
        """Actions int32[B] chosen by search for states ``[B]``.

        ``greedy`` plays the search's best move (no Gumbel noise); otherwise the move is drawn as
        in self-play (Gumbel scale 1). ``num_simulations`` and ``greedy`` are static. ``hparams``
        (traced; default `DEFAULT_HPARAMS`) gives the completed-Q settings of the search.
        ``key`` is consumed.
        """
        q = dict(value_scale=hparams.value_scale, maxvisit_init=hparams.maxvisit_init) if hparams is not None else {}
        output = search(params, env_state, key, num_simulations, 0.0 if greedy else 1.0, env_params, **q)
        return output.action.astype(jnp.int32)

    def act_raw(params, env_state: State, key: Array, greedy: bool = True) -> Array:
        """Actions int32[B] of the network's policy alone (no search), for comparison."""
        logits, _ = policy(params, env_state.observation, env_state.legal_action_mask)
        if greedy:
            return jnp.argmax(logits, axis=-1).astype(jnp.int32)
        return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)

    # --- self-play ------------------------------------------------------------------------------

    self_play = _make_self_play(env, search, s)

    trajectory_positions, store, play_metrics = _make_store(env, s)

    # --- loss and update ------------------------------------------------------------------------

    loss, augment, train = _make_train(env, policy, optimizer, s)

    # --- one iteration --------------------------------------------------------------------------

    def iteration(state: AlphaZeroState, hparams: AlphaZeroHparams, key: Array, env_params=None):
        """Self-play ``unroll_length`` moves in all N games, store them, then train.

        Args:
          state: the learner's `AlphaZeroState`.
          hparams: `AlphaZeroHparams` (traced scalars).
          key: consumed.
          env_params: the level of every game, leading axis ``[N]``; None plays the default.
            It is the level of both the games in progress and those started by auto-reset.

        Returns:
          ``(state, metrics)``; metrics is a dict of float32 scalars (losses, grad norm, games
          finished, mean length and first player's return of the games finished in this
          iteration, 0 when none did, buffer fill, the step size used, ...). ``sgd_applied`` is 0 in
          iterations where the buffer did not yet hold ``min_replay_size`` sampleable positions;
          the losses of such iterations describe steps that were not applied.
        """
        play_key, train_key = jax.random.split(key)
        env_params = batched_env_params(env, env_params, num_envs)
        games, trajectory, firsts, _, _ = self_play(state.params, state.games, hparams, play_key, env_params)
        state = store(state.replace(games=games), trajectory, firsts)
        state, metrics, count = train(state, hparams, train_key)
        metrics.update(play_metrics(state, trajectory, count))
        return state, metrics

    return AlphaZero(
        init=init,
        iteration=iteration,
        self_play=self_play,
        store=store,
        train=train,
        play_metrics=play_metrics,
        policy=policy,
        search=search,
        act=act,
        act_raw=act_raw,
        augment=augment,
        loss=loss,
        graphdef=graphdef,
        settings=settings,
        env=env,
    )


class Opponents(NamedTuple):
    """Hooks that seat other players than the learner in self-play games (a league's snapshots).

    Attributes:
      carry: the hooks' state (a pytree), carried through the moves of an iteration.
      act: ``(carry, state[N], key) -> (action int32[N], learner_turn bool[N])``: the opponent's
        move in every game and where the mover is the learner instead (its searched move is then
        played, and only its positions are trained on).
      end: ``(carry, done bool[N], episode_return float32[N, num_players], key) -> carry``: the
        games that ended at this move, with every player's return; the hooks record results and
        seat the next games' players.
    """

    carry: Any
    act: Callable
    end: Callable


def _make_self_play(env: Env, search: Callable, s: AlphaZeroSettings) -> Callable:
    """``self_play(params, games, hparams, key, env_params, opponents=None, reset_params=None)``:
    ``unroll_length`` searched moves in every game; returns the games, the trajectory ``[T, N]``,
    per slot the first game that ended (to resolve pending entries), the opponents' carry (None
    without) and the level of every game in progress at the end (``[N]``).

    ``env_params`` (``[N]``) are the levels of the games in progress, searched with their own
    level; a game that ends at step t restarts on ``reset_params[t]`` (levels ``[T, N]``, a
    curriculum's choice) or, when None, on its own level again."""
    num_envs, num_players = s.num_envs, env.num_players
    slots = jnp.arange(num_envs)

    def move(params, hparams, opponents, carry, inputs):
        step_key, reset_levels = inputs
        games, first_done, first_return, first_truncated, hooks, env_params = carry
        search_key, env_key = jax.random.split(step_key)
        state = games.env_state
        output = search(
            params, state, search_key, s.num_simulations, hparams.gumbel_scale, env_params,
            value_scale=hparams.value_scale, maxvisit_init=hparams.maxvisit_init,
        )
        action = output.action
        if s.opening_moves > 0:
            # Random openings widen the positions self-play visits (evaluation starts from varied
            # openings too). The position is still searched and trained on: its policy target is
            # the search's, whichever move was played.
            uniform_key, coin_key = jax.random.split(jax.random.fold_in(step_key, 1))
            uniform = random_player(uniform_key, state)
            coin = jax.random.bernoulli(coin_key, 0.5, (num_envs,))
            action = jnp.where(coin & (games.episode_length < s.opening_moves), uniform, action)
        learner_turn = jnp.ones((num_envs,), jnp.bool_)
        if opponents is not None:
            opponent_action, learner_turn = opponents.act(hooks, state, jax.random.fold_in(step_key, 2))
            action = jnp.where(learner_turn, action, opponent_action)
        mover = state.current_player
        next_state, final = jax.vmap(lambda st, a, k, p, r: step_auto_reset(env, st, a, k, p, r))(
            state, action, jax.random.split(env_key, num_envs), env_params,
            env_params if reset_levels is None else reset_levels,
        )
        done = final.terminated | final.truncated
        if reset_levels is not None:  # a restarted game plays its new level from now on
            env_params = jax.tree.map(
                lambda new, old: jnp.where(done.reshape((-1,) + (1,) * (old.ndim - 1)), new, old).astype(old.dtype),
                reset_levels, env_params,
            )
        episode_return = games.episode_return + final.rewards
        episode_length = games.episode_length + 1
        if opponents is not None:
            hooks = opponents.end(hooks, done, episode_return, jax.random.fold_in(step_key, 3))
        new_first = done & ~first_done
        root = output.search_tree.ROOT_INDEX
        step = dict(
            observation=state.observation,
            legal_action_mask=state.legal_action_mask,
            policy_target=output.action_weights,
            search_value=output.search_tree.node_values[:, root],
            network_value=output.search_tree.raw_values[:, root],
            player=mover,
            learner_move=learner_turn,
            return_before=games.episode_return[slots, mover],
            rewards=final.rewards,
            done=done,
            truncated=final.truncated,
            final_length=jnp.where(done, episode_length, 0),
            first_player_return=jnp.where(done, episode_return[:, 0], 0.0),
            final_return=jnp.where(done[:, None], episode_return, 0.0),
        )
        games = SelfPlayGames(
            env_state=next_state,
            episode_return=jnp.where(done[:, None], 0.0, episode_return),
            episode_length=jnp.where(done, 0, episode_length),
        )
        carry = (
            games,
            first_done | done,
            jnp.where(new_first[:, None], episode_return, first_return),
            jnp.where(new_first, final.truncated, first_truncated),
            hooks,
            env_params,
        )
        return carry, step

    def self_play(params, games: SelfPlayGames, hparams: AlphaZeroHparams, key: Array, env_params,
                  opponents: Opponents | None = None, reset_params=None):
        init_carry = (
            games,
            jnp.zeros((num_envs,), jnp.bool_),
            jnp.zeros((num_envs, num_players), jnp.float32),
            jnp.zeros((num_envs,), jnp.bool_),
            None if opponents is None else opponents.carry,
            env_params,
        )
        body = functools.partial(move, params, hparams, opponents)
        (games, first_done, first_return, first_truncated, hooks, env_params), trajectory = jax.lax.scan(
            body, init_carry, (jax.random.split(key, s.unroll_length), reset_params)
        )
        return games, trajectory, (first_done, first_return, first_truncated), hooks, env_params

    return self_play


def _make_train(env: Env, policy: Callable, optimizer: Callable, s: AlphaZeroSettings) -> tuple[Callable, Callable, Callable]:
    """``(loss, augment, train)`` of the learner: the policy-value loss, the symmetry augmentation
    and ``num_updates`` SGD steps on minibatches sampled from the replay buffer."""

    def loss(params, batch: Positions, hparams: AlphaZeroHparams) -> tuple[Array, dict]:
        """Policy cross-entropy to the improved policy plus weighted value squared error.

        ``batch`` has leading axis ``[M]``. Returns the scalar loss and float32 metrics.
        """
        logits, value = policy(params, batch.observation, batch.legal_action_mask)
        log_probs = jnp.where(batch.legal_action_mask, jax.nn.log_softmax(logits), 0.0)
        target_policy = batch.policy_target
        cross_entropy = -(target_policy * log_probs).sum(-1)
        target_entropy = -(target_policy * jnp.log(jnp.where(target_policy > 0, target_policy, 1.0))).sum(-1)
        w = hparams.search_value_weight
        value_target = (1.0 - w) * batch.value_target + w * batch.search_value
        value_loss = jnp.mean((value - value_target) ** 2)
        policy_loss = jnp.mean(cross_entropy)
        total = policy_loss + hparams.value_loss_weight * value_loss
        metrics = dict(
            loss_total=total,
            loss_policy=policy_loss,
            loss_value=value_loss,
            policy_kl=jnp.mean(cross_entropy - target_entropy),
            value_target_mean=jnp.mean(value_target),
        )
        return total, metrics

    symmetries = env.symmetries if s.symmetry_augmentation else None

    def augment(batches: Positions, key: Array) -> Positions:
        """Every position of ``batches`` (any leading axes) in a uniformly drawn symmetry of the
        env, the identity included: the same rules and value, so a free copy of the data
        (AlphaGo Zero's augmentation). Unchanged when augmentation is off or the env declares no
        symmetries. ``key`` is consumed."""
        if symmetries is None or symmetries.size == 1:
            return batches
        flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), batches)
        index = jax.random.randint(key, flat.player.shape, 0, symmetries.size)
        observation, mask, policy = apply_symmetry(
            symmetries, index, flat.observation, flat.legal_action_mask, flat.policy_target
        )
        flat = flat.replace(observation=observation, legal_action_mask=mask, policy_target=policy)
        return jax.tree.map(lambda x, like: x.reshape(like.shape), flat, batches)

    def train(state: AlphaZeroState, hparams: AlphaZeroHparams, key: Array):
        """``num_updates`` SGD steps on minibatches sampled from the buffer (each position in a
        random symmetry when augmenting); applied only once the buffer holds
        ``min_replay_size`` sampleable positions."""
        sample_key, symmetry_key = jax.random.split(key)
        batches, count = replay_sample(state.buffer, sample_key, (s.num_updates, s.batch_size))
        batches = augment(batches, symmetry_key)
        ready = count >= s.min_replay_size
        if s.decay_updates > 0:
            # Cosine decay (Loshchilov & Hutter 2017) of the traced step size over the run's SGD
            # steps, stepped once per iteration.
            factor = optax.cosine_decay_schedule(1.0, s.decay_updates)(state.num_updates)
            hparams = hparams.replace(learning_rate=hparams.learning_rate * factor)
        if s.lr_timescale > 0:
            # The decay of a run whose length is set by wall time: it does not need the run's end.
            factor = jax.lax.rsqrt(1.0 + state.num_updates.astype(jnp.float32) / s.lr_timescale)
            hparams = hparams.replace(learning_rate=hparams.learning_rate * factor)
        tx = optimizer(hparams)

        def sgd_step(carry, batch):
            params, opt_state = carry
            grads, metrics = jax.grad(loss, has_aux=True)(params, batch, hparams)
            metrics["grad_norm"] = optax.tree.norm(grads)
            updates, new_opt_state = tx.update(grads, opt_state, params)
            new_params = optax.apply_updates(params, updates)
            keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ready, a, b), new, old)  # noqa: E731
            return (keep(new_params, params), keep(new_opt_state, opt_state)), metrics

        (params, opt_state), metrics = jax.lax.scan(sgd_step, (state.params, state.opt_state), batches)
        # Before the buffer is ready the losses are those of the unapplied steps (finite, so a
        # non-finite guard on losses stays meaningful); ``sgd_applied`` says which case it is.
        metrics = {name: jnp.mean(value) for name, value in metrics.items()}
        metrics["sgd_applied"] = ready.astype(jnp.float32)
        metrics["learning_rate"] = hparams.learning_rate
        num_applied = jnp.where(ready, s.num_updates, 0).astype(jnp.int32)
        new_state = state.replace(params=params, opt_state=opt_state, num_updates=state.num_updates + num_applied)
        return new_state, metrics, count

    return loss, augment, train


def _make_store(env: Env, s: AlphaZeroSettings) -> tuple[Callable, Callable, Callable]:
    """``(trajectory_positions, store, play_metrics)``: a self-play trajectory as replay entries,
    its insertion into the buffer, and the self-play metrics of an iteration."""
    num_envs = s.num_envs

    def trajectory_positions(trajectory: dict) -> Positions:
        """The trajectory ``[T, N]`` as replay entries ``[T * N]``, time-major (oldest first)."""
        target, known, terminated = jax.vmap(value_targets, in_axes=1, out_axes=1)(
            trajectory["rewards"], trajectory["player"], trajectory["done"], trajectory["truncated"]
        )
        positions = Positions(
            observation=trajectory["observation"].astype(env.observation_dtype),
            legal_action_mask=trajectory["legal_action_mask"],
            policy_target=trajectory["policy_target"],
            value_target=jnp.where(known, target, 0.0),
            search_value=trajectory["search_value"],
            player=trajectory["player"].astype(jnp.int32),
            slot=jnp.broadcast_to(jnp.arange(num_envs, dtype=jnp.int32), known.shape),
            return_before=trajectory["return_before"],
            # An opponent's move is never trained on: neither pending nor valid, so never resolved.
            pending=~known & trajectory["learner_move"],
            valid=known & terminated & trajectory["learner_move"],
        )
        return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), positions)

    def store(state: AlphaZeroState, trajectory: dict, firsts: tuple) -> AlphaZeroState:
        """Resolves the pending entries of games that ended (``firsts`` as `self_play` returns
        them) and writes the trajectory's positions into the replay buffer."""
        buffer = replay_resolve(state.buffer, *firsts)
        return state.replace(buffer=replay_insert(buffer, trajectory_positions(trajectory)))

    def play_metrics(state: AlphaZeroState, trajectory: dict, count: Array) -> dict:
        num_games = trajectory["done"].sum()
        num_finished = jnp.maximum(num_games, 1)
        f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
        return dict(
            games_finished=f32(num_games),
            game_length=f32(trajectory["final_length"].sum() / num_finished),
            first_player_return=f32(trajectory["first_player_return"].sum() / num_finished),
            search_value=f32(jnp.mean(trajectory["search_value"])),
            buffer_fill=f32(state.buffer.size / s.replay_capacity),
            buffer_sampleable=f32(count),
            buffer_pending=f32(state.buffer.positions.pending.sum()),
            num_updates=f32(state.num_updates),
        )

    return trajectory_positions, store, play_metrics
