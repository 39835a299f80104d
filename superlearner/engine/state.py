"""The run's state: `TrainState`, every population member's `MemberState` plus the run-level parts."""

from __future__ import annotations

from typing import Any

import jax
from flax import struct

from superlearner.learners.base import MemberState


@struct.dataclass
class TrainState:
    """Everything a run needs to continue; saving it is saving the run.

    The per-member fields are those of `MemberState`, each with a leading axis ``[P]`` (and
    ``[P, N]`` for the env fields): `members` views them as one `MemberState`, `with_members`
    puts one back.

    Attributes:
      learner: the learner's state per member.
      hparams: the learner's traced hyperparameters per member (what a meta-learner changes).
      env_state: the envs or games in progress, per member and env.
      env_params: the level each env plays, per member and env.
      episode_stats: the learner's episode statistics per member.
      rng: uint32 key data per member (typed keys are wrapped inside the chunk).
      iteration: int32[], iterations completed.
      league: self-play league state (empty when unused).
      curriculum: level-sampler buffer or teacher (empty when unused).
      meta: meta-controller state (empty when unused).
      policy_carry: a recurrent policy's carry per member and env (empty for feed-forward ones).
      rating: the online rating per member (`superlearner.selfplay.online_rating`; empty when unused).
    """

    learner: Any
    hparams: Any
    env_state: Any
    env_params: Any
    episode_stats: Any
    rng: jax.Array
    iteration: jax.Array
    league: Any = struct.field(default_factory=dict)
    curriculum: Any = struct.field(default_factory=dict)
    meta: Any = struct.field(default_factory=dict)
    policy_carry: Any = struct.field(default_factory=dict)
    rating: Any = struct.field(default_factory=dict)

    def members(self) -> MemberState:
        """The population's `MemberState` (leading axis ``[P]``)."""
        return MemberState(
            learner=self.learner, hparams=self.hparams, env_state=self.env_state, env_params=self.env_params,
            episode_stats=self.episode_stats, policy_carry=self.policy_carry, league=self.league,
            curriculum=self.curriculum, rng=self.rng, rating=self.rating,
        )

    def with_members(self, members: MemberState) -> "TrainState":
        """This state with the per-member fields of ``members``."""
        return self.replace(
            learner=members.learner, hparams=members.hparams, env_state=members.env_state,
            env_params=members.env_params, episode_stats=members.episode_stats, policy_carry=members.policy_carry,
            league=members.league, curriculum=members.curriculum, rng=members.rng, rating=members.rating,
        )
