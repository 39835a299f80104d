"""The bandit and meta-gradient controllers of ``meta.kind: bandit | metagrad``, built from a config.

The engine (`superlearner.engine`) asks this module for the controller and for the metrics its
events log; population based training is built by the engine itself.

* ``bandit``: a sliding-window UCB bandit per member (`superlearner.meta.controllers.make_sw_ucb`) over the
  arms of ``meta.arms``: ``{field: [value per arm]}``. A field is a hyperparameter the learner declares (e.g.
  ``gamma: [0.9, 0.99, 0.999]``), a knob of the run's curriculum (``curriculum_replay_prob``) or league
  (``league_weight_self``), or ``update_rule`` with rule names (``[ppo_clip, dpo,
  learned]``), which needs ``learner.update_rule: switch``: every rule is then in the compiled
  program and the arm's rule index is written into the member's update-rule meta parameters
  (`superlearner.learners.update_rules.switch`), so switching never recompiles.
* ``metagrad``: online meta-gradients on the hparams of ``meta.adapt``
  (`superlearner.meta.metagrad.make_metagrad`).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from superlearner.config import ExperimentConfig
from superlearner.errors import ConfigError
from superlearner.learners.base import learner_def

UPDATE_RULE_ARM = "update_rule"


def learner_specs(config: ExperimentConfig):
    """The search space of the run's learner plus the curriculum's knobs."""
    from superlearner.meta.controllers import CURRICULUM_HPARAM_SPECS
    from superlearner.schema import hparam_specs

    return hparam_specs(learner_def(config.learner.kind).hparams) + CURRICULUM_HPARAM_SPECS


def meta_specs(config: ExperimentConfig):
    """The specs of ``meta.adapt`` and ``meta.init_low`` in the learner's search space, with the
    configured starting ranges as bounds."""
    from superlearner.meta.controllers import select_specs

    names = list(dict.fromkeys(list(config.meta.adapt) + list(config.meta.init_low)))
    bounds = {name: (config.meta.init_low[name], config.meta.init_high[name]) for name in config.meta.init_low}
    return select_specs(names, learner_specs(config), **bounds)


def bandit_arm_table(config: ExperimentConfig, source: str = "config") -> tuple[dict, list[str]]:
    """``({field: float32[K]}, arm names)`` of ``meta.arms``; `ConfigError` on a bad table."""
    from superlearner.learners.update_rules import SWITCH_RULES

    arms = config.meta.arms
    if not arms:
        raise ConfigError(
            f"{source}: meta.kind=bandit needs meta.arms, e.g. {{update_rule: [ppo_clip, dpo, learned]}} "
            "or {gamma: [0.9, 0.99, 0.999]}"
        )
    fields = [h.name for h in learner_def(config.learner.kind, source).hparams] + knob_names(config)
    table, sizes = {}, {}
    for name, values in arms.items():
        if not isinstance(values, (list, tuple)) or not values:
            raise ConfigError(f"{source}: meta.arms.{name} must be a non-empty list, one value per arm, got {values!r}")
        if name == UPDATE_RULE_ARM:
            if config.learner.update_rule != "switch":
                raise ConfigError(
                    f"{source}: meta.arms.update_rule switches rules while training, which needs "
                    f"learner.update_rule=switch (every rule in one program), got {config.learner.update_rule!r}"
                )
            unknown = [v for v in values if v not in SWITCH_RULES]
            if unknown:
                raise ConfigError(f"{source}: meta.arms.update_rule: unknown rules {unknown}; accepted: {', '.join(SWITCH_RULES)}")
            table[name] = np.asarray([SWITCH_RULES.index(v) for v in values], np.float32)
        elif name in fields:
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                raise ConfigError(f"{source}: meta.arms.{name} must list numbers, got {values!r}")
            table[name] = np.asarray(values, np.float32)
        else:
            raise ConfigError(
                f"{source}: meta.arms: {name!r} is neither a hyperparameter, a knob of the run's curriculum or league, "
                "nor update_rule; "
                f"accepted: {UPDATE_RULE_ARM}, {', '.join(fields)}"
            )
        sizes[name] = len(values)
    if len(set(sizes.values())) != 1:
        raise ConfigError(f"{source}: every meta.arms list needs the same number of arms, got {sizes}")
    num_arms = next(iter(sizes.values()))
    if UPDATE_RULE_ARM in arms:
        names = [str(v) for v in arms[UPDATE_RULE_ARM]]
    else:
        names = [f"arm{k}" for k in range(num_arms)]
    return table, names


def knob_names(config: ExperimentConfig) -> list[str]:
    """The curriculum's and the league's knobs a bandit arm may set in this run
    (``curriculum_<field>`` with a curriculum, ``league_<field>`` with a league)."""
    import dataclasses

    from superlearner.curriculum.levels import CurriculumHparams
    from superlearner.meta.controllers import CURRICULUM_PREFIX, LEAGUE_PREFIX
    from superlearner.selfplay.league import LeagueHparams

    names = []
    if config.curriculum.kind != "none":
        names += [CURRICULUM_PREFIX + f.name for f in dataclasses.fields(CurriculumHparams)]
    kind = config.league.kind
    if kind == "snapshots" or (kind == "default" and learner_def(config.learner.kind).self_play_league):
        names += [LEAGUE_PREFIX + f.name for f in dataclasses.fields(LeagueHparams)]
    return names


def make_bandit(config: ExperimentConfig):
    """The bandit of ``meta.kind: bandit``: hparam arms into hparams, the rule arm into the
    learner's update-rule index."""
    from superlearner.meta.controllers import _replace_fields, make_sw_ucb

    table, _ = bandit_arm_table(config)
    hparam_table = {k: v for k, v in table.items() if k != UPDATE_RULE_ARM}

    def apply_fn(population, arm):
        hparams = population.hparams
        if hparam_table:
            hparams = _replace_fields(hparams, {k: jnp.asarray(v)[arm] for k, v in hparam_table.items()})
        learner = population.learner
        if UPDATE_RULE_ARM in table:
            index = jnp.asarray(table[UPDATE_RULE_ARM]).astype(jnp.int32)[arm]
            learner = learner.replace(meta_params=dict(learner.meta_params, index=index))
        return population.replace(hparams=hparams, learner=learner)

    m = config.meta
    return make_sw_ucb(table, window=m.bandit_window, pull_interval=m.interval, exploration=m.bandit_exploration,
                       apply_fn=apply_fn)


def make_configured_metagrad(config: ExperimentConfig, env, learner):
    """The meta-gradient controller of ``meta.kind: metagrad`` for ``env`` and ``learner`` (the
    learner's `superlearner.learners.base.MetaGradient` capability: its loss and policy)."""
    from superlearner.meta.controllers import select_specs
    from superlearner.meta.metagrad import make_metagrad

    if env.num_players != 1:
        raise ConfigError(f"meta.kind=metagrad adapts single-agent learners; {env.id!r} has {env.num_players} players")
    if config.learner.num_envs < 2:
        raise ConfigError(
            f"meta.kind=metagrad holds out part of each rollout's envs for its objective: "
            f"learner.num_envs must be >= 2, got {config.learner.num_envs}"
        )
    m = config.meta
    return make_metagrad(
        learner, env.observation_shape, select_specs(list(m.adapt), learner_specs(config)),
        meta_learning_rate=m.meta_learning_rate, outer_gamma=m.outer_gamma, outer_gae_lambda=m.outer_gae_lambda,
        outer_vf_coef=m.outer_vf_coef, critic_hidden_sizes=config.learner.hidden_sizes,
        critic_learning_rate=m.critic_learning_rate, interval=m.interval,
    )


def check_meta_config(config: ExperimentConfig, source: str = "config") -> None:
    """One-line errors for the bandit's and the meta-gradient's settings."""
    if config.meta.kind == "bandit":
        bandit_arm_table(config, source)
    if config.meta.kind == "metagrad" and not config.meta.adapt:
        raise ConfigError(f"{source}: meta.kind=metagrad needs meta.adapt, e.g. [gamma, gae_lambda, ent_coef]")
