"""The meta stage: a controller that changes the population's hyperparameters while it trains.

`make_meta_controller(config, env, learner)` picks the controller by ``meta.kind`` from
`CONTROLLERS`. Its search space is the learner's declared hyperparameters
(`superlearner.learners.base.LearnerDef.hparams`) plus the curriculum's knobs, so PBT and the
bandit adapt any learner; the meta-gradient needs the learner's `MetaGradient` capability.

Each iteration, after every member's update, `meta_step` hands the controller a typed
`MetaInput`: the members' progress (recent training return, their score against fixed anchors
measured when a step is due, or their online rating, `superlearner.engine.rating_stage`) and, for the meta-gradient, the collected rollout with the learner
state that collected it.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from superlearner.config import ExperimentConfig
from superlearner.core.env import Env
from superlearner.errors import ConfigError
from superlearner.learners.base import Learner


class MetaInput(NamedTuple):
    """What a meta step measures, per member (leading axis ``[P]``).

    Attributes:
      episode_return: float32[P], this iteration's mean training return.
      learner_before: the learner states that collected this iteration's experience (metagrad).
      batch: this iteration's collected batches (metagrad), or None.
    """

    episode_return: jax.Array
    learner_before: Any = None
    batch: Any = None


def _pbt(config: ExperimentConfig, env: Env | None, learner: Learner | None):
    from superlearner.engine.meta_config import meta_specs
    from superlearner.meta.controllers import make_pbt

    m = config.meta
    return make_pbt(
        meta_specs(config), truncation_fraction=m.truncation_fraction, ready_iterations=m.ready_iterations,
        interval=m.interval, perturb_factor=m.perturb_factor, resample_probability=m.resample_probability,
    )


def _bandit(config: ExperimentConfig, env: Env | None, learner: Learner | None):
    from superlearner.engine.meta_config import make_bandit

    return make_bandit(config)


def _metagrad(config: ExperimentConfig, env: Env | None, learner: Learner | None):
    from superlearner.engine.meta_config import make_configured_metagrad

    if learner is not None and learner.metagrad is None:
        raise ConfigError(
            f"meta.kind=metagrad differentiates through the learner's update; learner.kind={config.learner.kind} "
            f"{'with learner.memory=' + config.learner.memory + ' ' if learner.recurrent else ''}has no differentiable "
            "update (accepted: meta.kind pbt, bandit or none)"
        )
    return make_configured_metagrad(config, env, learner.metagrad if learner is not None else None)


def _bandit_metrics(config, ctrl_state, events) -> dict:
    from superlearner.engine.meta_config import bandit_arm_table

    _, names = bandit_arm_table(config)
    metrics = {"meta_arm": events.arm.astype(jnp.float32), "meta_reward": events.reward}
    for k, name in enumerate(names):
        metrics[f"meta_arm_count_{name}"] = ctrl_state.arm_counts[:, k].astype(jnp.float32)
    return metrics


def _metagrad_metrics(config, ctrl_state, events) -> dict:
    metrics = {"meta_outer_loss": events.outer_loss, "meta_critic_loss": events.critic_loss}
    for i, name in enumerate(config.meta.adapt):
        metrics[f"meta_grad_{name}"] = events.meta_grad[:, i]
    return metrics


def _pbt_metrics(config, ctrl_state, events) -> dict:
    return {"meta_parent": events.parent.astype(jnp.float32), "meta_exploited": events.did_exploit.astype(jnp.float32)}


class ControllerDef(NamedTuple):
    """How a ``meta.kind`` plugs into the engine.

    Attributes:
      make: ``(config, env, learner) -> MetaController``.
      metrics: ``(config, ctrl_state, events) -> {name: float32[P]}`` of a step.
      copies_members: a step may replace members by copies of others (``events.parent``): their
        envs, levels, league and statistics are copied along.
      adapts_knobs: the controller sees the curriculum's and the league's knobs beside the
        learner's hyperparameters (`knob_groups`), as ``curriculum_<field>`` and ``league_<field>``.
      progress_is_batch: the controller's progress is the collected experience (the
        meta-gradient), not a fitness; its ``init`` also takes the starting hyperparameters.
    """

    make: Callable
    metrics: Callable
    copies_members: bool = False
    adapts_knobs: bool = False
    progress_is_batch: bool = False


CONTROLLERS: dict[str, ControllerDef | None] = {
    "none": None,
    "pbt": ControllerDef(_pbt, _pbt_metrics, copies_members=True, adapts_knobs=True),
    "bandit": ControllerDef(_bandit, _bandit_metrics, adapts_knobs=True),
    "metagrad": ControllerDef(_metagrad, _metagrad_metrics, progress_is_batch=True),
}
"""How every ``meta.kind`` plugs into the engine (None: no meta-controller)."""


def controller_def(config: ExperimentConfig) -> ControllerDef | None:
    """The `ControllerDef` of ``config.meta.kind``."""
    return CONTROLLERS[config.meta.kind]


def make_meta_controller(config: ExperimentConfig, env: Env | None = None, learner: Learner | None = None):
    """The configured meta-controller, or None (metagrad needs the run's ``env`` and ``learner``)."""
    definition = controller_def(config)
    return None if definition is None else definition.make(config, env, learner)


def spread_hparams(config: ExperimentConfig, hparams: Any, key: jax.Array, curriculum_hparams=None):
    """Hyperparameters named in ``meta.init_low`` drawn per member in their ranges (uniform in
    the spec's unconstrained space: log-uniform for rates). The same draw with or without a
    controller, so a population with and one without adaptation start alike.

    Returns ``(hparams, curriculum_hparams)``; names ``curriculum_<field>`` draw that field of
    ``curriculum_hparams`` (None when the run has no curriculum, and then returned as None).
    """
    from superlearner.engine.meta_config import learner_specs
    from superlearner.meta.controllers import joint_hparams, sample_hparams, select_specs, split_joint_hparams

    names = list(config.meta.init_low)
    specs = select_specs(names, learner_specs(config),
                         **{n: (config.meta.init_low[n], config.meta.init_high[n]) for n in names})
    size = config.train.population_size
    if curriculum_hparams is None:
        return sample_hparams(key, specs, size, hparams), None
    joint = sample_hparams(key, specs, size, joint_hparams(hparams, curriculum_hparams))
    return split_joint_hparams(joint, hparams, curriculum_hparams)


def init_meta(config: ExperimentConfig, key: jax.Array, controller=None, hparams: Any = None) -> dict:
    """The meta-controller's state, kept in ``TrainState.meta`` (metagrad starts from ``hparams``)."""
    from superlearner.meta.controllers import init_return_history

    ctrl_key, run_key = jax.random.split(key)
    controller = make_meta_controller(config) if controller is None else controller
    if controller_def(config).progress_is_batch:
        ctrl = controller.init(config.train.population_size, ctrl_key, hparams)
    else:
        ctrl = controller.init(config.train.population_size, ctrl_key)
    return {
        "controller": ctrl,
        "returns": init_return_history(config.train.population_size, config.meta.progress_window),
        "rng": jax.random.key_data(run_key),
    }


def _progress(meta_input: MetaInput, returns, state, step_key, learner: Learner | None, anchor_progress,
              progress_is_rating: bool = False):
    """The controller's progress signal: anchors or the online rating when configured, the
    rollout for the meta-gradient, else the recent mean return."""
    from superlearner.meta.controllers import recent_mean

    if anchor_progress is not None:
        params, measure_key = state.learner.params, jax.random.fold_in(step_key, 1)
        return lambda: anchor_progress(params, measure_key)
    if progress_is_rating:
        return state.rating.rating
    if meta_input.batch is not None:
        from superlearner.meta.metagrad import MetaGradBatch

        # The meta-gradient differentiates through an update from the parameters that collected
        # the rollout: the state before this iteration's update.
        rollout = jax.vmap(learner.metagrad.rollout)(meta_input.batch)
        return MetaGradBatch(learner=meta_input.learner_before, rollout=rollout)
    return recent_mean(returns)


def meta_step(
    controller, state, meta_input: MetaInput | jax.Array, config: ExperimentConfig,
    anchor_progress: Callable | None = None, learner: Learner | None = None,
):
    """One meta-controller call across the population (outside the per-member vmap).

    ``meta_input`` is a `MetaInput` (or just the members' episode returns). With
    ``anchor_progress`` (`superlearner.selfplay.arena.make_anchor_progress`) the controller's fitness is
    the members' score against the fixed anchors, measured only when a step is due.
    """
    from superlearner.meta.controllers import PopulationState, gather_members, joint_knobs, push_returns, split_knobs

    if not isinstance(meta_input, MetaInput):
        meta_input = MetaInput(episode_return=meta_input)
    meta = state.meta
    key, step_key = jax.random.split(jax.random.wrap_key_data(meta["rng"]))
    returns = push_returns(meta["returns"], meta_input.episode_return)
    # PBT and the bandit change the curriculum's and the league's knobs with the learner's
    # (`curriculum_<field>`, `league_<field>`).
    definition = controller_def(config)
    groups = knob_groups(state) if definition.adapts_knobs else {}
    hparams = joint_knobs(state.hparams, groups) if groups else state.hparams
    population = PopulationState(learner=state.learner, hparams=hparams, rng=state.rng)
    progress = _progress(meta_input, returns, state, step_key, learner, anchor_progress, config.meta.progress == "rating")
    ctrl, population, events = controller.update(meta["controller"], population, progress, step_key)
    new_meta = {"controller": ctrl, "returns": returns, "rng": jax.random.key_data(key)}
    hparams, knobs = split_knobs(population.hparams, state.hparams, groups) if groups else (population.hparams, {})
    # A copied member continues its parent's games, levels, league, curriculum and statistics too: they are part of
    # what made the parent better, and the copy's own would no longer match its parameters.
    members = gather_members(state.members(), events.parent) if definition.copies_members else state.members()
    members = with_knobs(members, knobs).replace(learner=population.learner, hparams=hparams, rng=population.rng)
    if definition.copies_members:
        new_meta["returns"] = gather_members(returns, events.parent)
    state = state.with_members(members).replace(meta=new_meta)
    return state, definition.metrics(config, ctrl, events)


def knob_groups(state) -> dict:
    """The members' adaptable knobs besides the learner's hyperparameters, by name prefix: the
    curriculum's (`CurriculumHparams`) and the league's (`LeagueHparams`), where the run has them."""
    from superlearner.meta.controllers import CURRICULUM_PREFIX, LEAGUE_PREFIX

    groups = {}
    if isinstance(state.curriculum, dict) and "hparams" in state.curriculum:
        groups[CURRICULUM_PREFIX] = state.curriculum["hparams"]
    if jax.tree.leaves(state.league):
        groups[LEAGUE_PREFIX] = state.league.hparams
    return groups


def with_knobs(members, knobs: dict):
    """``members`` with the knob groups of ``knobs`` (as `knob_groups` names them) written back."""
    from superlearner.meta.controllers import CURRICULUM_PREFIX, LEAGUE_PREFIX

    if CURRICULUM_PREFIX in knobs:
        members = members.replace(curriculum=dict(members.curriculum, hparams=knobs[CURRICULUM_PREFIX]))
    if LEAGUE_PREFIX in knobs:
        members = members.replace(league=members.league.replace(hparams=knobs[LEAGUE_PREFIX]))
    return members
