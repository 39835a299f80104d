"""The learner interface: what the engine, the league, the curricula and the meta-learners need
of a learning algorithm, and nothing more.

A learner is a `Learner`: a NamedTuple of pure functions made by a factory, in the optax style.
None of them jits itself; none keeps hidden state. One engine iteration of one population member
is, whatever the learner::

    member, batch, outcome = learner.collect(member, key, context)   # experience
    learner_state, metrics = learner.update(member.learner, batch, member.hparams, key)

`MemberState` is the member's slice of the run's state. ``collect`` reads the learner's state,
its hyperparameters, the envs in progress, their levels and, in a two-player game, the league's
opponents (`MemberState.league`), and returns the member with its envs advanced (and the league's
results recorded), the learner's own ``batch`` (whatever its ``update`` consumes) and a generic
`Outcome` ``[T, N]`` that the curriculum scores levels from and the logs summarise. The engine
never looks inside ``batch``.

Hyperparameters are declared once, as a tuple of `superlearner.schema.Hparam`: the learner's
traced hyperparameter pytree, its config section and the meta-controllers' search space all come
from it (`LearnerDef.hparams`).

Optional capabilities are fields that are None when a learner lacks them:

* ``search``: acting by tree search (Gumbel MuZero) from an env state.
* ``metagrad``: what the online meta-gradient needs, a `MetaGradient` (a differentiable update).
* ``initial_carry``: the carry of a recurrent policy.

A learner is registered with `register_learner`; `superlearner train` then trains it by its
``learner.kind`` with every pillar that fits it (`docs/adding_a_learner.md`).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from typing import Any, Callable, NamedTuple

import jax
from flax import struct

from superlearner.errors import ConfigError, UserError
from superlearner.schema import Hparam

Array = jax.Array


@struct.dataclass
class MemberState:
    """One population member's part of the run's state (the `TrainState` holds it with a
    leading axis ``[P]`` on every leaf). Fields a run does not use are empty dicts.

    Attributes:
      learner: the learner's state; it has a ``params`` field, the parameters that act (the
        league snapshots them, the arena and `load_agent` play them).
      hparams: the learner's traced hyperparameters (`LearnerDef.hparams_type`).
      env_state: the envs (or games) in progress, leading axis ``[N]``, as the learner keeps them.
      env_params: the level every env plays, leading axis ``[N]``.
      episode_stats: the learner's running episode statistics.
      policy_carry: a recurrent policy's carry per env (empty for feed-forward policies).
      league: the self-play league (`superlearner.selfplay.league.LeagueState`), empty when unused.
      curriculum: the curriculum's buffer or teacher and its hyperparameters, empty when unused.
      rng: uint32 key data of the member's random stream.
      rating: the member's online rating (`superlearner.selfplay.online_rating.RatingState`), the
        run's measured progress; empty when unused.
    """

    learner: Any
    hparams: Any
    env_state: Any
    env_params: Any
    episode_stats: Any
    policy_carry: Any
    league: Any
    curriculum: Any
    rng: Array
    rating: Any = struct.field(default_factory=dict)


@struct.dataclass
class Outcome:
    """What the envs did during one collection, leading axes ``[T, N]`` (steps, envs), from the
    learner's side. Every learner fills every field; the curriculum scores levels from them.

    Attributes:
      reward: float32, the learner's reward of the step.
      done: bool, an episode (game) ended at this step.
      value: float32, the learner's value estimate of the step's state.
      value_error: float32, the learner's own estimate of how wrong that value is (PPO: the GAE
        advantage; search learners: the search's root value minus the network's value).
      episode_return: float32, the learner's return of the episode that ended at this step (0
        where none did).
    """

    reward: Array
    done: Array
    value: Array
    value_error: Array
    episode_return: Array


class CollectContext(NamedTuple):
    """What the engine's stages hand a collection besides the member's state.

    Attributes:
      reset_params: None, or levels with leading axes ``[T, N]``: where env n's episode ends at
        step t, the next one plays ``reset_params[t, n]`` (a teacher's draw), not the env's level.
    """

    reset_params: Any = None


class MetaGradient(NamedTuple):
    """The capability the online meta-gradient (`superlearner.meta.metagrad`) needs: a differentiable
    actor-critic update whose loss batch comes from a rollout by GAE.

    Attributes:
      loss: ``(params, meta_params, batch: dict, hparams) -> (loss, metrics)`` on one flat
        minibatch (the keys of `superlearner.learners.ppo.rollout_batch`), differentiable in the
        parameters and the traced hyperparameters.
      policy: ``(params, observation, mask) -> (logits, value)``.
      rollout: ``batch -> Rollout``: the rollout inside a collected batch, which the meta-step
        splits into an inner and a held-out part.
    """

    loss: Callable
    policy: Callable
    rollout: Callable


class Learner(NamedTuple):
    """A learning algorithm's pure functions (see the module docstring).

    Attributes:
      kind: the registered name (``learner.kind``).
      init: ``key -> learner_state``; the state has a ``params`` field.
      start: ``(member, key) -> member``: the member's first envs (or games), statistics and
        carry, given its learner state, hyperparameters, levels and league.
      collect: ``(member, key, context) -> (member, batch, outcome)``.
      update: ``(learner_state, batch, hparams, key) -> (learner_state, metrics)``; metrics are
        float32 scalars.
      summarize: ``(member, outcome) -> metrics``: float32 scalars of the collection for the logs
        (``episode_return`` among them: the meta-controllers' default progress signal).
      policy: ``(params, observation[B, ...], legal_action_mask[B, A]) -> (logits[B, A],
        value[B])``: the raw policy, masked, the value from the mover's view.
      act: ``(params, observation, mask, key, greedy=False) -> (action, log_prob, value)``: an
        action of the raw policy (sampled, or its argmax).
      value: ``(params, observation) -> value``.
      search: ``(params, env_state[B], key, num_simulations, greedy=True, env_params=None,
        hparams=None) -> int32[B]`` actions by the learner's own tree search (with the member's
        traced ``hparams`` where its settings are among them), or None.
      metagrad: a `MetaGradient`, or None.
      recurrent: the policy has memory; ``initial_carry(batch)`` then gives its zero carry and
        ``step(params, carry, observation, mask, key, greedy) -> (carry, action, log_prob,
        value)`` acts with it, ``step_value(params, carry, observation) -> value``.
      algorithm: the underlying algorithm's own functions (e.g. `PPO`, `AlphaZero`), for code
        that is specific to it (benchmarks, tests).
      game_starts: in a two-player game, ``collect`` starts each new game, when the last one in
        its slot ends, from ``context.reset_params`` and keeps each game's level in the member's
        ``env_params``: a curriculum can then choose every game's start position
        (`superlearner.engine.curriculum_stage`) without cutting games.
    """

    kind: str
    init: Callable
    start: Callable
    collect: Callable
    update: Callable
    summarize: Callable
    policy: Callable
    act: Callable
    value: Callable
    search: Callable | None = None
    metagrad: MetaGradient | None = None
    recurrent: bool = False
    initial_carry: Callable | None = None
    step: Callable | None = None
    step_value: Callable | None = None
    algorithm: Any = None
    game_starts: bool = False


# ----------------------------------------------------------------------------------------------
# The registry.


@dataclasses.dataclass(frozen=True)
class LearnerDef:
    """A registered learner: how a run's config becomes a `Learner`.

    Attributes:
      kind: the ``learner.kind`` that selects it.
      hparams: its traced hyperparameters, declared once.
      hparams_type: the pytree class of those values (`superlearner.schema.hparams_type`).
      section: the config section holding its hyperparameters' starting values (and any static
        settings of its own), e.g. ``hparams`` for PPO, ``alphazero`` for AlphaZero.
      section_type: the frozen dataclass of that section (its fields: the static settings, then
        `superlearner.schema.hparam_fields` of ``hparams``).
      make: ``(config, env) -> Learner``.
      validate: ``(config, env, source) -> None``: raises a one-line `ConfigError` for a config
        the learner cannot train (called before anything compiles); None accepts every config.
      self_play_league: a two-player zero-sum run without ``league.kind`` set trains against a
        league of snapshots (True) or against its current self only (False).
      update_rules: its policy objective is the `superlearner.learners.update_rules.UpdateRule`
        that ``learner.update_rule`` names, so a discovered rule (`superlearner.run.discovery`)
        and the bandit's rule arms apply to it.
      description: one line for ``superlearner learners``.
    """

    kind: str
    hparams: tuple[Hparam, ...]
    hparams_type: type
    section: str
    section_type: type
    make: Callable
    validate: Callable | None = None
    self_play_league: bool = False
    update_rules: bool = False
    description: str = ""


# Installed packages add learners under this entry-point group: ``kind = "module:LEARNER_DEF"``
# (see docs/adding_a_learner.md).
ENTRY_POINT_GROUP = "superlearner.learners"

# Built-in learners, imported on first use ({kind: "module:attribute"} of their `LearnerDef`).
_BUILTIN = {
    "ppo": "superlearner.learners.ppo_learner:PPO_LEARNER",
    "alphazero": "superlearner.learners.alphazero_learner:ALPHAZERO_LEARNER",
}
_registered: dict[str, LearnerDef] = {}


def register_learner(definition: LearnerDef, *, overwrite: bool = False) -> None:
    """Makes ``definition.kind`` a ``learner.kind`` that configs, presets and the CLI accept."""
    if not isinstance(definition, LearnerDef):
        raise UserError(f"register_learner: expected a LearnerDef, got {type(definition).__name__}")
    if not overwrite and definition.kind in learner_kinds():
        raise UserError(f"register_learner: learner.kind {definition.kind!r} exists already (pass overwrite=True)")
    _registered[definition.kind] = definition


def learner_kinds() -> list[str]:
    """Every accepted ``learner.kind``: built in, registered, or installed by a package."""
    return sorted(set(_BUILTIN) | set(_registered) | set(_entry_points()))


def _entry_points() -> dict:
    import importlib.metadata

    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _installed(kind: str) -> LearnerDef:
    """The `LearnerDef` an installed package declares for ``kind`` (loaded once, then registered)."""
    definition = _entry_points()[kind].load()
    if not isinstance(definition, LearnerDef) or definition.kind != kind:
        raise ConfigError(
            f"entry point {kind!r} of group {ENTRY_POINT_GROUP} must name a LearnerDef with kind={kind!r}, "
            f"got {definition!r}"
        )
    _registered[kind] = definition
    return definition


def learner_def(kind: str, source: str = "config") -> LearnerDef:
    """The `LearnerDef` of ``kind``; a one-line `ConfigError` naming the accepted kinds otherwise."""
    if kind in _registered:
        return _registered[kind]
    if kind in _BUILTIN:
        module, attribute = _BUILTIN[kind].split(":")
        return getattr(importlib.import_module(module), attribute)
    if kind in _entry_points():
        return _installed(kind)
    close = difflib.get_close_matches(str(kind), learner_kinds(), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"{source}: learner.kind={kind!r} is not a registered learner{hint} Accepted: {', '.join(learner_kinds())}")


def is_self_play(env) -> bool:
    """Whether ``env`` is trained by self-play: a two-player zero-sum game."""
    return env.num_players == 2 and bool(getattr(env, "zero_sum", False))


def uses_league(config, env, definition: LearnerDef) -> bool:
    """Whether a run plays its games against a league of snapshots: a self-play env and
    ``league.kind`` snapshots, or ``league.kind`` default and a learner that defaults to one."""
    if not is_self_play(env):
        return False
    kind = config.league.kind
    return kind == "snapshots" or (kind == "default" and definition.self_play_league)


def learner_sections() -> dict[str, type]:
    """``{section name: section dataclass}`` of the learners outside the package, registered or
    installed (the built-in sections are fields of `superlearner.config.ExperimentConfig`)."""
    for kind in _entry_points():
        if kind not in _registered and kind not in _BUILTIN:
            _installed(kind)
    return {d.section: d.section_type for d in _registered.values()}
