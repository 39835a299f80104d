"""Building a run: the config's learner, curriculum, league and meta-controller, one iteration.

`make_engine(config)` resolves every ``kind`` of the config through its registry
(`superlearner.learners.base.learner_def`, `CURRICULUM_STAGES`, `LEAGUE_STAGES`, `RATING_STAGES`,
`CONTROLLERS`)
and returns the run's pure ``init(seed)`` and ``train_chunk``. One iteration of one member reads
top to bottom, whatever the learner::

    member, context, sampled = curriculum.levels(member, ...)      # which levels to play
    member, batch, outcome  = learner.collect(member, key, context)  # experience (vs the league)
    learner_state, metrics  = learner.update(member.learner, batch, member.hparams, key)
    member, ...             = curriculum.observe(member, outcome, sampled)
    member, ...             = league.step(member, iteration, key)     # snapshots

then, across the population, the rating stage measures the members when a round is due
(`superlearner.engine.rating_stage`) and the meta stage runs
(`superlearner.engine.meta_stage.meta_step`), reading that rating where ``meta.progress: rating``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from superlearner.config import ExperimentConfig
from superlearner.engine.chunk import make_train_chunk, map_population
from superlearner.engine.curriculum_stage import CurriculumStage, initial_curriculum_hparams, make_curriculum_stage
from superlearner.engine.league_stage import LeagueStage, make_league_stage
from superlearner.engine.meta_stage import (
    MetaInput,
    controller_def,
    init_meta,
    make_meta_controller,
    meta_step,
    spread_hparams,
)
from superlearner.engine.rating_stage import RatingStage, make_rating_stage
from superlearner.engine.state import TrainState
from superlearner.core.env import Env
from superlearner.errors import ConfigError
from superlearner.learners.base import Learner, LearnerDef, MemberState, is_self_play, learner_def
from superlearner.core.registry import make
from superlearner.schema import population_values

# The metric that says whether an iteration's update was applied (1) or skipped (0).
LEARNER_UPDATED = "learner_updated"


class Engine(NamedTuple):
    """The compiled-program pieces of a run (see `make_engine`)."""

    config: ExperimentConfig
    env: Env
    learner: Learner
    init: Callable[[int], TrainState]
    train_chunk: Callable[[TrainState], tuple[TrainState, dict]]
    num_iterations: int
    env_steps_per_iteration: int
    definition: LearnerDef | None = None


def initial_hparams(config: ExperimentConfig, definition: LearnerDef | None = None):
    """The learner's hyperparameters with a leading population axis, from the config's starting values."""
    definition = learner_def(config.learner.kind) if definition is None else definition
    return population_values(
        config.section(definition.section), definition.hparams, config.train.population_size, definition.hparams_type
    )


def check_run(config: ExperimentConfig, env: Env, definition: LearnerDef) -> None:
    """One-line `ConfigError`s for combinations that cannot work, before anything compiles."""
    if env.num_players != 1 and not is_self_play(env):
        raise ConfigError(
            f"env {env.id!r} has {env.num_players} players and is not two-player zero-sum; "
            "the engine trains one-player tasks and two-player zero-sum games"
        )
    if definition.validate is not None:
        definition.validate(config, env, "config")
    if config.meta.progress == "anchors" and not is_self_play(env):
        raise ConfigError(
            f"meta.progress=anchors plays games against arena.anchors, which needs a two-player game; "
            f"env {env.id!r} has one player: use meta.progress=return"
        )


def make_engine(config: ExperimentConfig, env: Env | None = None) -> Engine:
    """Builds the env, the learner, the stages and the pure init / train-chunk functions of
    ``config``. Nothing is compiled here: the caller jits ``train_chunk`` (the trainer does)."""
    definition = learner_def(config.learner.kind)
    if env is None:
        env = make(config.env.id, **config.env.options)
    check_run(config, env, definition)
    learner = definition.make(config, env)
    curriculum = make_curriculum_stage(config, env, learner)
    league = make_league_stage(config, env, learner, definition)
    rating = make_rating_stage(config, env, learner)
    controller = make_meta_controller(config, env, learner)
    anchor_progress = None
    if config.meta.progress == "anchors":
        from superlearner.selfplay.arena import make_anchor_progress

        anchor_progress = make_anchor_progress(
            env, learner.policy, config.arena.anchors, config.meta.progress_games, config.arena.opening_moves
        )
    init = _make_init(config, env, learner, definition, curriculum, league, rating, controller)
    meta = controller_def(config)
    member_iteration = _make_member_iteration(learner, curriculum, league, with_batch=bool(meta and meta.progress_is_batch))
    population_iteration = map_population(member_iteration, config.train.population_size, num_shared=1)

    def iteration(state: TrainState) -> tuple[TrainState, dict]:
        members, metrics, batch = population_iteration(state.members(), state.iteration)
        members, rating_metrics = rating.step(members, state.iteration + 1)
        metrics.update(rating_metrics)
        new_state = state.with_members(members).replace(iteration=state.iteration + 1)
        if controller is not None:
            meta_input = MetaInput(metrics["episode_return"], learner_before=state.learner, batch=batch)
            new_state, meta_metrics = meta_step(controller, new_state, meta_input, config, anchor_progress, learner)
            metrics.update(meta_metrics)
        return new_state, metrics

    init_traced, train_chunk = make_train_chunk(init, iteration, config.iterations)
    return Engine(
        config=config, env=env, learner=learner, init=init_traced, train_chunk=train_chunk,
        num_iterations=config.iterations, env_steps_per_iteration=config.learner.num_envs * config.learner.num_steps,
        definition=definition,
    )


def _make_init(config, env, learner: Learner, definition: LearnerDef, curriculum: CurriculumStage,
               league: LeagueStage, rating: RatingStage, controller) -> Callable:
    size, num_envs = config.train.population_size, config.learner.num_envs

    def init(seed) -> TrainState:
        """The TrainState of a fresh run; ``seed`` is an int or a traced int32[] (see
        `initial_state`, which compiles this once for every seed)."""
        key = jax.random.key(seed)
        init_key, env_key, run_key = jax.random.split(key, 3)
        members = MemberState(
            learner=jax.vmap(learner.init)(jax.random.split(init_key, size)),
            hparams=initial_hparams(config, definition),
            env_state={}, episode_stats={}, policy_carry={}, league={}, curriculum={},
            env_params=jax.tree.map(lambda x: jnp.broadcast_to(x, (size, num_envs) + jnp.shape(x)), env.default_params),
            rng=jax.random.key_data(jax.random.split(run_key, size)),
        )
        members = jax.vmap(curriculum.init)(members, jax.random.split(jax.random.fold_in(key, 3), size))
        members = jax.vmap(league.init)(members)
        members = jax.vmap(rating.init)(members)
        if config.meta.init_low:
            hparams, curriculum_hparams = spread_hparams(
                config, members.hparams, jax.random.fold_in(key, 2), members.curriculum.get("hparams")
            )
            members = members.replace(hparams=hparams)
            if curriculum_hparams is not None:
                members = members.replace(curriculum=dict(members.curriculum, hparams=curriculum_hparams))
        members = jax.vmap(learner.start)(members, jax.random.split(env_key, size))
        meta = {}
        if controller is not None:
            meta = init_meta(config, jax.random.fold_in(key, 1), controller, members.hparams)
        state = TrainState(learner=members.learner, hparams=members.hparams, env_state={}, env_params={},
                           episode_stats={}, rng=members.rng, iteration=jnp.int32(0), meta=meta)
        return state.with_members(members)

    return init


def _make_member_iteration(learner: Learner, curriculum: CurriculumStage, league: LeagueStage, with_batch: bool):
    def member_iteration(member: MemberState, iteration) -> tuple[MemberState, dict, Any]:
        key = jax.random.wrap_key_data(member.rng)
        key, collect_key, update_key, level_key, reset_key, league_key = jax.random.split(key, 6)
        member, context, sampled = curriculum.levels(member, level_key, reset_key)
        member, batch, outcome = learner.collect(member, collect_key, context)
        if curriculum.gates_update:
            # Robust PLR and ACCEL train on some steps only: the update runs in a branch, so the
            # steps that only evaluate levels cost a collection (a vmapped population computes
            # both branches). The update's metrics of a skipped step are NaN: nothing was computed.
            learner_state, metrics = jax.lax.cond(
                sampled.train,
                lambda: learner.update(member.learner, batch, member.hparams, update_key),
                lambda: _skipped_update(learner, member.learner, batch, member.hparams, update_key),
            )
            metrics[LEARNER_UPDATED] = sampled.train.astype(jnp.float32)
        else:
            learner_state, metrics = learner.update(member.learner, batch, member.hparams, update_key)
        member, curriculum_metrics = curriculum.observe(member, outcome, sampled)
        member = member.replace(learner=learner_state)
        member, league_metrics = league.step(member, iteration, league_key)
        metrics.update(curriculum_metrics)
        metrics.update(learner.summarize(member, outcome))
        metrics.update(league_metrics)
        member = member.replace(rng=jax.random.key_data(key))
        return member, metrics, batch if with_batch else None

    return member_iteration


def _skipped_update(learner: Learner, learner_state, batch, hparams, key):
    """The skip branch of a conditional update: the state unchanged, the update's metrics NaN
    (floating) or zero, with the shapes the update would give."""
    shapes = jax.eval_shape(lambda: learner.update(learner_state, batch, hparams, key)[1])
    blank = lambda s: jnp.full(s.shape, jnp.nan if jnp.issubdtype(s.dtype, jnp.floating) else 0, s.dtype)  # noqa: E731
    return learner_state, jax.tree.map(blank, shapes)
