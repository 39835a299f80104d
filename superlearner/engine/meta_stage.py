"""The meta stage: a controller that changes the population's hyperparameters while it trains.

`make_meta_controller(config, env, learner)` picks the controller by ``meta.kind`` from
`CONTROLLERS`. Its search space is the learner's declared hyperparameters
(`superlearner.learners.base.LearnerDef.hparams`) plus the curriculum's knobs, so PBT and the
bandit adapt any learner; the meta-gradient needs the learner's `MetaGradient` capability.

Each iteration, after every member's update, `meta_step` hands the controller a typed
`MetaInput`: the members' progress (recent training return, or their score against fixed anchors
measured when a step is due) and, for the meta-gradient, the collected rollout with the learner
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
      adapts_curriculum: the controller explores the curriculum's knobs with the learner's.
      progress_is_batch: the controller's progress is the collected experience (the
        meta-gradient), not a fitness; its ``init`` also takes the starting hyperparameters.
    """

    make: Callable
    metrics: Callable
    copies_members: bool = False
    adapts_curriculum: bool = False
    progress_is_batch: bool = False


CONTROLLERS: dict[str, ControllerDef | None] = {
    "none": None,
    "pbt": ControllerDef(_pbt, _pbt_metrics, copies_members=True, adapts_curriculum=True),
    "bandit": ControllerDef(_bandit, _bandit_metrics),
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


def _progress(meta_input: MetaInput, returns, state, step_key, learner: Learner | None, anchor_progress):
    """The controller's progress signal: anchors when configured, the rollout for the
    meta-gradient, else the recent mean return."""
    from superlearner.meta.controllers import recent_mean

    if anchor_progress is not None:
        params, measure_key = state.learner.params, jax.random.fold_in(step_key, 1)
        return lambda: anchor_progress(params, measure_key)
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
    from superlearner.meta.controllers import PopulationState, gather_members, joint_hparams, push_returns, split_joint_hparams

    if not isinstance(meta_input, MetaInput):
        meta_input = MetaInput(episode_return=meta_input)
    meta = state.meta
    key, step_key = jax.random.split(jax.random.wrap_key_data(meta["rng"]))
    returns = push_returns(meta["returns"], meta_input.episode_return)
    # PBT explores and copies the curriculum's knobs with the learner's (`curriculum_<field>`).
    definition = controller_def(config)
    joint = definition.adapts_curriculum and "hparams" in state.curriculum
    hparams = joint_hparams(state.hparams, state.curriculum["hparams"]) if joint else state.hparams
    population = PopulationState(learner=state.learner, hparams=hparams, rng=state.rng)
    progress = _progress(meta_input, returns, state, step_key, learner, anchor_progress)
    ctrl, population, events = controller.update(meta["controller"], population, progress, step_key)
    new_meta = {"controller": ctrl, "returns": returns, "rng": jax.random.key_data(key)}
    if not definition.copies_members:
        state = state.replace(learner=population.learner, hparams=population.hparams, meta=new_meta)
        return state, definition.metrics(config, ctrl, events)
    # A copied member continues its parent's games, levels, league, curriculum and statistics too: they are part of
    # what made the parent better, and the copy's own would no longer match its parameters.
    members = gather_members(state.members(), events.parent)
    hparams = population.hparams
    curriculum = members.curriculum
    if joint:  # the explored values, not only the parent's copied ones
        hparams, curriculum_hparams = split_joint_hparams(hparams, state.hparams, state.curriculum["hparams"])
        curriculum = dict(curriculum, hparams=curriculum_hparams)
    members = members.replace(learner=population.learner, hparams=hparams, rng=population.rng, curriculum=curriculum)
    new_meta["returns"] = gather_members(returns, events.parent)
    state = state.with_members(members).replace(meta=new_meta)
    return state, definition.metrics(config, ctrl, events)
