"""The rating stage: the run's measured progress, one online rating per member.

`make_rating_stage(config, env, learner)` picks the stage by ``rating.kind`` from `RATING_STAGES`:

* ``none``: no rating.
* ``bradley_terry``: every ``rating.every_iterations`` iterations (the first right after the first
  iteration) each member plays a rating round inside the train chunk
  (`superlearner.selfplay.online_rating`): greedy games of its raw policy against the anchors and
  against its previous round, folded into a Bradley-Terry fit on the Elo scale.

The rating lives in `MemberState.rating`, so it is checkpointed with the run, copied with a
member that population based training copies, and read by the meta-controllers
(``meta.progress: rating``), the trainer's choice of the best checkpoint and `load_agent`'s choice
of member. The stage runs across the population after the members' iterations, in a branch taken
only when a round is due (a vmapped population would otherwise play the games every iteration).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax

from superlearner.config import ExperimentConfig
from superlearner.core.env import Env
from superlearner.engine.chunk import map_population
from superlearner.errors import ConfigError
from superlearner.learners.base import Learner, MemberState, is_self_play


class RatingStage(NamedTuple):
    """A rating's part of a run.

    Attributes:
      init: ``member -> member`` with its rating state (before any round).
      step: ``(members, iteration) -> (members, metrics)`` across the population (leading axis
        ``[P]``), after the iteration numbered ``iteration`` (1 for the first): a round when due.
        Metrics ``[P]``, every iteration, of the latest round: ``rating``, ``rating_stderr``
        and its scores (`superlearner.selfplay.online_rating.OnlineRating`).
      anchors: the anchors the rating plays, the first one the scale's zero.
    """

    init: Callable
    step: Callable
    anchors: tuple = ()


def _no_rating(config: ExperimentConfig, env: Env, learner: Learner) -> RatingStage:
    return RatingStage(init=lambda member: member, step=lambda members, iteration: (members, {}))


def _bradley_terry(config: ExperimentConfig, env: Env, learner: Learner) -> RatingStage:
    from superlearner.selfplay.online_rating import make_online_rating

    rc = config.rating
    if not is_self_play(env):
        raise ConfigError(f"rating.kind={rc.kind} rates players of a two-player zero-sum game; {env.id!r} is not one "
                          "(accepted: none)")
    anchors = tuple(rc.anchors or config.arena.anchors)
    rating = make_online_rating(env, learner.policy, anchors, rc.games, rc.opening_moves, rc.history, rc.prior_sd)
    size = config.train.population_size

    def init(member: MemberState) -> MemberState:
        return member.replace(rating=rating.init(member.learner.params))

    def one_round(member: MemberState) -> MemberState:
        key = jax.random.fold_in(jax.random.wrap_key_data(member.rng), 0x5A7E)  # a stream of its own
        return member.replace(rating=rating.measure(member.rating, member.learner.params, key))

    measured = map_population(one_round, size)

    def step(members: MemberState, iteration):
        due = (iteration - 1) % rc.every_iterations == 0
        members = jax.lax.cond(due, measured, lambda m: m, members)
        return members, jax.vmap(rating.metrics)(members.rating)

    return RatingStage(init=init, step=step, anchors=anchors)


RATING_STAGES: dict[str, Callable[[ExperimentConfig, Env, Learner], RatingStage]] = {
    "none": _no_rating,
    "bradley_terry": _bradley_terry,
}
"""The rating stage of every ``rating.kind``."""


def make_rating_stage(config: ExperimentConfig, env: Env, learner: Learner) -> RatingStage:
    """The stage of ``config.rating.kind`` (a one-line `ConfigError` where it cannot work)."""
    return RATING_STAGES[config.rating.kind](config, env, learner)
