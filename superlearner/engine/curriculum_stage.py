"""The curriculum stage: which levels a member's envs play, and what the levels' outcomes teach.

`make_curriculum_stage(config, env, learner)` picks the stage by ``curriculum.kind`` from
`CURRICULUM_STAGES`:

* ``none``: every env plays the env's default level.
* ``dr``, ``plr``, ``accel``, ``sfl``: a level sampler (`superlearner.curriculum.levels`) picks each
  iteration's levels from its buffer or fresh draws; every env restarts on its level (the
  learner's ``start``) and the levels are scored from the collection's `Outcome`. Robust PLR and
  ACCEL train only on some steps (``gates_update``). In a two-player game the levels are start
  positions and no game is cut: a game slot's next game starts, when its game ends, from a level
  drawn for it or from the standard start (`superlearner.curriculum.positions`), and the
  finished game scores the level it started from.
* ``lp``: a learning-progress teacher over one field of the env's params draws the level of
  every episode that starts during a collection.

A stage is ``init(member, key) -> member`` (at the start of a run), ``levels(member, level_key,
reset_key) -> (member, context, sampled)`` (before the collection) and ``observe(member, outcome,
sampled) -> (member, metrics)`` (after it); all run per member inside the compiled chunk.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from superlearner.config import ExperimentConfig
from superlearner.core.env import Env
from superlearner.errors import ConfigError
from superlearner.learners.base import CollectContext, Learner, MemberState, Outcome



class CurriculumStage(NamedTuple):
    """A curriculum's part of an iteration (see the module docstring).

    Attributes:
      init: ``(member, key) -> member``: the curriculum's state and the first levels.
      levels: ``(member, level_key, reset_key) -> (member, CollectContext, sampled)``.
      observe: ``(member, outcome, sampled) -> (member, metrics)``.
      gates_update: iterations whose ``sampled.train`` is false skip the learner's update.
      sampler: the level sampler (`superlearner.curriculum.levels.LevelSampler`), or None.
      teacher: the learning-progress `Teacher`, or None.
    """

    init: Callable
    levels: Callable
    observe: Callable
    gates_update: bool = False
    sampler: object = None
    teacher: object = None


def _no_curriculum(config: ExperimentConfig, env: Env, learner: Learner) -> CurriculumStage:
    return CurriculumStage(
        init=lambda member, key: member,
        levels=lambda member, level_key, reset_key: (member, CollectContext(), None),
        observe=lambda member, outcome, sampled: (member, {}),
    )


def _sampler_stage(config: ExperimentConfig, env: Env, learner: Learner) -> CurriculumStage:
    sampler = make_sampler(config, env)

    def init(member: MemberState, key) -> MemberState:
        example = jax.tree.map(lambda x: x[0], member.env_params)
        curriculum = {"buffer": sampler.init(example), "hparams": curriculum_hparams(config)}
        return member.replace(curriculum=curriculum)

    def levels(member: MemberState, level_key, reset_key):
        # Every env restarts on the level the sampler picks and stays on it (an episode that ends
        # mid-collection restarts on the same level).
        buffer, sampled = sampler.next_levels(member.curriculum["buffer"], level_key, member.curriculum["hparams"])
        member = member.replace(env_params=sampled.levels, curriculum=dict(member.curriculum, buffer=buffer))
        return learner.start(member, reset_key), CollectContext(), sampled

    def observe(member: MemberState, outcome: Outcome, sampled):
        buffer, metrics = score_levels(sampler, member.curriculum["buffer"], sampled, outcome, config.curriculum)
        return member.replace(curriculum=dict(member.curriculum, buffer=buffer)), metrics

    return CurriculumStage(init=init, levels=levels, observe=observe, gates_update=sampler.kind in SKIPPING_SAMPLERS,
                           sampler=sampler)


def _teacher_stage(config: ExperimentConfig, env: Env, learner: Learner) -> CurriculumStage:
    teacher = make_teacher(config, env)
    num_envs, num_steps = config.learner.num_envs, config.learner.num_steps

    def init(member: MemberState, key) -> MemberState:
        # Every env's first episode plays a level the (still uniform) teacher draws.
        teacher_state = teacher.init()
        one = curriculum_hparams(config)
        bins, env_params = teacher.draw(key, teacher_state, one, num_envs)
        return member.replace(env_params=env_params, curriculum={"teacher": teacher_state, "bins": bins, "hparams": one})

    def levels(member: MemberState, level_key, reset_key):
        # Where an episode ends, the next one plays a level the teacher draws now; its outcome
        # then updates that level's bin.
        next_bins, next_levels = teacher.draw(level_key, member.curriculum["teacher"], member.curriculum["hparams"],
                                              num_steps * num_envs)
        next_bins = next_bins.reshape(num_steps, num_envs)
        next_levels = jax.tree.map(lambda x: x.reshape((num_steps, num_envs) + x.shape[1:]), next_levels)
        return member, CollectContext(reset_params=next_levels), next_bins

    def observe(member: MemberState, outcome: Outcome, next_bins):
        finished = dict(done=outcome.done, episode_return=outcome.episode_return)
        curriculum, metrics = teacher.observe(member.curriculum, next_bins, finished)
        return member.replace(curriculum=curriculum), metrics

    return CurriculumStage(init=init, levels=levels, observe=observe, teacher=teacher)


def _game_stage(config: ExperimentConfig, env: Env, learner: Learner) -> CurriculumStage:
    """Two-player games: start positions drawn game by game (`superlearner.curriculum.positions`)."""
    from superlearner.curriculum import positions

    cc = config.curriculum
    if not learner.game_starts:
        raise ConfigError(
            f"curriculum.kind={cc.kind} on the two-player game {env.id!r} starts each game from a level when the "
            f"last one ends, which learner.kind={learner.kind} does not do (its collection declares no game_starts); "
            "accepted: a learner that does, e.g. alphazero, or curriculum.kind none"
        )
    if cc.score == "maxmc":
        raise ConfigError(
            f"curriculum.score=maxmc needs a best return per level, which a two-player game does not have; "
            "accepted: pvl (the search's value error) or learnability"
        )
    sampler = make_sampler(config, env)
    space = env.level_space
    num_envs, num_steps = config.learner.num_envs, config.learner.num_steps
    score = "learnability" if sampler.kind == "sfl" or cc.score == "learnability" else "value_error"

    def draw(curriculum, buffer, key, shape):
        return positions.draw_starts(sampler, space, buffer, curriculum["hparams"], curriculum["standard_start_rate"],
                                     key, shape, cc.num_edits)

    def init(member: MemberState, key) -> MemberState:
        curriculum = {"buffer": sampler.init(space.standard_level()), "hparams": curriculum_hparams(config),
                      "standard_start_rate": jnp.float32(cc.standard_start_rate)}
        first = jax.tree.map(lambda x: x[0], draw(curriculum, None, key, (1, num_envs)))  # nothing to replay yet
        curriculum["games"] = positions.new_games(first.sources)
        return member.replace(env_params=first.levels, curriculum=curriculum)

    def levels(member: MemberState, level_key, reset_key):
        # Games in progress go on; where one ends at step t, the next starts from draws.levels[t].
        del reset_key
        draws = draw(member.curriculum, member.curriculum["buffer"], level_key, (num_steps, num_envs))
        return member, CollectContext(reset_params=draws.levels), (draws, member.env_params)

    def observe(member: MemberState, outcome: Outcome, sampled):
        draws, started = sampled
        curriculum = member.curriculum
        games, env_params, finished = positions.follow_games(curriculum["games"], started, draws, outcome)
        buffer = positions.mark_replays(curriculum["buffer"], draws, outcome.done)
        buffer, metrics = positions.record_games(sampler, buffer, finished, score, cc.sfl_prior, cc.sfl_memory)
        return member.replace(env_params=env_params, curriculum=dict(curriculum, buffer=buffer, games=games)), metrics

    return CurriculumStage(init=init, levels=levels, observe=observe, sampler=sampler)


def _level_stage(config: ExperimentConfig, env: Env, learner: Learner) -> CurriculumStage:
    """A level sampler's stage: iteration by iteration, or game by game in a two-player game."""
    if env.num_players == 2:
        return _game_stage(config, env, learner)
    return _sampler_stage(config, env, learner)


CURRICULUM_STAGES: dict[str, Callable[[ExperimentConfig, Env, Learner], CurriculumStage]] = {
    "none": _no_curriculum,
    "dr": _level_stage,
    "plr": _level_stage,
    "accel": _level_stage,
    "sfl": _level_stage,
    "lp": _teacher_stage,
}
"""The curriculum stage of every ``curriculum.kind``."""

# Samplers whose steps do not all train (robust PLR's and ACCEL's evaluation-only steps).
SKIPPING_SAMPLERS = ("plr", "accel")


def make_curriculum_stage(config: ExperimentConfig, env: Env, learner: Learner) -> CurriculumStage:
    """The stage of ``config.curriculum.kind`` (a one-line `ConfigError` where it cannot work)."""
    return CURRICULUM_STAGES[config.curriculum.kind](config, env, learner)

def make_sampler(config: ExperimentConfig, env: Env):
    """The configured level sampler, or None."""
    cc = config.curriculum
    if cc.kind in ("none", "lp"):
        return None
    from superlearner.curriculum.levels import make_level_sampler

    space = getattr(env, "level_space", None)
    if space is None:
        raise ConfigError(f"curriculum.kind={cc.kind}: env {env.id!r} has no level space (accepted: none)")
    if env.num_players > 2:
        raise ConfigError(f"curriculum.kind={cc.kind}: curricula train one-player envs and two-player games; "
                          f"{env.id!r} has {env.num_players} players")
    valid_fn = None
    # A game's start positions are legal by construction (played from the standard start).
    if cc.require_solvable and hasattr(space, "is_valid") and env.num_players == 1:
        valid_fn = lambda level: space.is_valid(level, require_solvable=True)  # noqa: E731
    return make_level_sampler(
        cc.kind, space, cc.capacity, config.learner.num_envs, prioritization=cc.prioritization,
        num_edits=cc.num_edits, min_fill_ratio=cc.min_fill_ratio, valid_fn=valid_fn,
    )


def curriculum_hparams(config: ExperimentConfig):
    """The curriculum's adaptable starting values for one member."""
    from superlearner.curriculum.levels import CurriculumHparams

    cc = config.curriculum
    values = dict(replay_prob=cc.replay_prob, temperature=cc.temperature, staleness_coef=cc.staleness_coef,
                  fresh_ratio=cc.fresh_ratio, lp_epsilon=cc.lp_epsilon, lp_temperature=cc.lp_temperature)
    return CurriculumHparams.from_values(**values)


def initial_curriculum_hparams(config: ExperimentConfig):
    """`curriculum_hparams` with a leading population axis."""
    one = curriculum_hparams(config)
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (config.train.population_size,) + x.shape), one)


class Teacher(NamedTuple):
    """A learning-progress teacher bound to one field of an env's params (see `make_teacher`).

    ``init() -> TeacherState``; ``draw(key, teacher_state, hparams, num) -> (bins int32[num],
    levels [num])`` draws bins
    from the teacher and a level uniformly inside each; ``observe(curriculum, bins[T, N],
    finished) -> (curriculum, metrics)`` folds the outcomes of the episodes that ended in a
    rollout into the bins they played (``finished`` as returned by `collect_single_agent`).
    """

    init: Callable
    draw: Callable
    observe: Callable


def make_teacher(config: ExperimentConfig, env: Env) -> Teacher | None:
    """The learning-progress teacher of ``curriculum.kind: lp``, or None for other kinds.

    An episode's outcome is success: its return reaching the env's ``reward_threshold``. The
    teacher favours the bins whose success rate is changing fastest (`make_lp_teacher`).
    """
    cc = config.curriculum
    if cc.kind != "lp":
        return None
    from superlearner.curriculum.levels import bins_to_params, make_lp_teacher

    if env.num_players != 1:
        raise ConfigError(f"curriculum.kind=lp: the teacher trains single-agent envs; {env.id!r} has {env.num_players} players")
    if env.reward_threshold is None:
        raise ConfigError(f"curriculum.kind=lp: env {env.id!r} defines no reward_threshold, so an episode has no success to track")
    if not cc.lp_low < cc.lp_high:
        raise ConfigError(f"curriculum.lp_low={cc.lp_low} must be below curriculum.lp_high={cc.lp_high}")
    base = env.default_params
    bins_to_params(jnp.zeros((1,), jnp.int32), base, cc.lp_field, cc.lp_low, cc.lp_high, cc.lp_bins)  # names the field
    lp = make_lp_teacher(cc.lp_bins)
    threshold = float(env.reward_threshold)

    def draw(key, teacher_state, hparams, num):
        bin_key, value_key = jax.random.split(key)
        bins = lp.sample(bin_key, teacher_state, hparams, num)
        return bins, bins_to_params(bins, base, cc.lp_field, cc.lp_low, cc.lp_high, cc.lp_bins, value_key)

    def observe(curriculum, next_bins, finished):
        def track(playing, step):
            done_t, next_t = step
            return jnp.where(done_t, next_t, playing), playing

        bins, played = jax.lax.scan(track, curriculum["bins"], (finished["done"], next_bins))
        success = (finished["episode_return"] >= threshold).astype(jnp.float32)
        done = finished["done"].reshape(-1)
        teacher_state = lp.update(curriculum["teacher"], played.reshape(-1), success.reshape(-1), curriculum["hparams"], mask=done)
        probabilities = lp.probabilities(teacher_state, curriculum["hparams"])
        num_done = jnp.maximum(done.sum(), 1)
        metrics = {
            "curriculum_success_rate": jnp.where(done, success.reshape(-1), 0.0).sum() / num_done,
            "curriculum_bin_mean": (probabilities * jnp.arange(cc.lp_bins)).sum(),
            "curriculum_entropy": -(probabilities * jnp.log(probabilities)).sum(),
        }
        return dict(curriculum, teacher=teacher_state, bins=bins), metrics

    return Teacher(init=lp.init, draw=draw, observe=observe)


def score_levels(sampler, buffer, batch, outcome: Outcome, curriculum_config):
    """Scores each env's level from the collection's `Outcome` ``[T, N]`` and folds the scores
    into the buffer. The value error is the learner's own (PPO: its GAE advantages), so the
    score costs no second pass over the rollout."""
    from superlearner.curriculum.levels import (
        combined_max_returns, episode_success_rate, learnability, max_episode_return, max_mc,
        positive_value_loss, smoothed_success_rate,
    )

    done = outcome.done.astype(jnp.float32)
    success = (outcome.reward > 0) & outcome.done
    measured, count = jax.vmap(episode_success_rate, in_axes=1)(success, done)
    rate = measured
    best = combined_max_returns(buffer, batch.indices, jax.vmap(max_episode_return, in_axes=1)(outcome.reward, done))
    if sampler.kind == "sfl" or curriculum_config.score == "learnability":
        rate = smoothed_success_rate(measured, count, buffer.success_rates, batch.indices,
                                     curriculum_config.sfl_prior, curriculum_config.sfl_memory)
        scores = learnability(rate)
    elif curriculum_config.score == "maxmc":
        scores = jax.vmap(max_mc, in_axes=(1, 1, 0))(outcome.value, done, best)
    else:
        scores = jax.vmap(positive_value_loss, in_axes=1)(outcome.value_error, done)
    buffer = sampler.update(buffer, batch, scores, max_returns=best, success_rates=rate)
    finite = jnp.isfinite(scores)
    metrics = {
        "curriculum_mode": batch.mode.astype(jnp.float32),
        "curriculum_train": batch.train.astype(jnp.float32),
        "curriculum_buffer_size": buffer.size.astype(jnp.float32),
        "curriculum_score": jnp.where(finite, scores, 0.0).sum() / jnp.maximum(finite.sum(), 1),
        "curriculum_solve_rate": jnp.nanmean(measured),
    }
    return buffer, metrics
