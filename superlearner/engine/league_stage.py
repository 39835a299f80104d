"""The league stage: a member's frozen snapshots, their payoffs, and when a new one joins.

`make_league_stage(config, env, learner, definition)` picks ``none`` or ``snapshots`` from
`LEAGUE_STAGES` (`superlearner.learners.base.uses_league` resolves ``league.kind: default`` by
the learner). The learner's collection draws each game's opponent from `MemberState.league` and
records the results; this stage creates the league and, after each update, adds the learner's
parameters as a snapshot when due (filling the payoff matrix by games when configured).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from superlearner.config import ExperimentConfig
from superlearner.core.env import Env
from superlearner.learners.base import Learner, LearnerDef, MemberState, uses_league


class LeagueStage(NamedTuple):
    """A league's part of a run.

    Attributes:
      init: ``member -> member`` with its league, seeded with the member's parameters.
      step: ``(member, iteration, key) -> (member, metrics)`` after the update: a snapshot when
        due, and the league's metrics.
    """

    init: Callable
    step: Callable


def initial_league_hparams(config: ExperimentConfig, size: int | None = None):
    """`LeagueHparams` of the config's starting values, with a leading population axis when
    ``size`` is given (default: ``train.population_size``)."""
    from superlearner.selfplay.league import LeagueHparams

    lc = config.league
    size = config.train.population_size if size is None else size
    values = dict(
        weight_self=lc.weight_self, weight_uniform=lc.weight_uniform, weight_pfsp_hard=lc.weight_pfsp_hard,
        weight_pfsp_even=lc.weight_pfsp_even, weight_meta=lc.weight_meta, payoff_decay=lc.payoff_decay,
        beat_margin=lc.beat_margin,
    )
    return LeagueHparams(**{k: jnp.full((size,), v, jnp.float32) for k, v in values.items()})


def _no_league(config: ExperimentConfig, env: Env, learner: Learner) -> LeagueStage:
    return LeagueStage(init=lambda member: member, step=lambda member, iteration, key: (member, {}))


def _snapshot_league(config: ExperimentConfig, env: Env, learner: Learner) -> LeagueStage:
    from superlearner.selfplay.league import init_league, league_score, maybe_add_snapshot, meta_entropy
    from superlearner.selfplay.arena import make_payoff_fn

    lg = config.league
    hparams_one = jax.tree.map(lambda x: x[0], initial_league_hparams(config, 1))
    payoff_fn = make_payoff_fn(env, learner, lg.payoff_games + lg.payoff_games % 2) if lg.payoff_games > 0 else None

    def init(member: MemberState) -> MemberState:
        return member.replace(league=init_league(member.learner.params, lg.capacity, hparams_one))

    def step(member: MemberState, iteration, key):
        league = maybe_add_snapshot(
            member.league, member.learner.params, iteration + 1, lg.snapshot_every, lg.snapshot_rule,
            payoff_fn=payoff_fn, key=key, meta_solver=lg.meta_solver, solver_iterations=lg.solver_iterations,
        )
        metrics = {
            "league_size": jnp.minimum(league.num_added, league.capacity).astype(jnp.float32),
            "league_score": league_score(league),
            "league_meta_entropy": meta_entropy(league),
        }
        return member.replace(league=league), metrics

    return LeagueStage(init=init, step=step)


LEAGUE_STAGES: dict[str, Callable[[ExperimentConfig, Env, Learner], LeagueStage]] = {
    "none": _no_league,
    "snapshots": _snapshot_league,
}
"""The league stage of every resolved ``league.kind``."""


def make_league_stage(config: ExperimentConfig, env: Env, learner: Learner, definition: LearnerDef) -> LeagueStage:
    """The league stage of this run (``snapshots`` when its games are played against a league)."""
    kind = "snapshots" if uses_league(config, env, definition) else "none"
    return LEAGUE_STAGES[kind](config, env, learner)
