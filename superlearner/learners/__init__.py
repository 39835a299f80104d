"""Learners: a learning algorithm behind one interface (`superlearner.learners.base`).

Built in: ``ppo`` (`superlearner.learners.ppo`, feed-forward and LSTM policies, single-agent and
self-play) and ``alphazero`` (`superlearner.learners.alphazero`, Gumbel AlphaZero). A learner of
your own is a `LearnerDef` passed to `register_learner` (or named by an installed package's
``superlearner.learners`` entry point); docs/adding_a_learner.md walks through one.
"""

from superlearner.learners.base import (
    CollectContext,
    Learner,
    LearnerDef,
    MemberState,
    MetaGradient,
    Outcome,
    learner_def,
    learner_kinds,
    register_learner,
)
from superlearner.schema import Hparam, hparam_fields, hparams_type

__all__ = [
    "CollectContext", "Hparam", "Learner", "LearnerDef", "MemberState", "MetaGradient", "Outcome", "hparam_fields",
    "hparams_type", "learner_def", "learner_kinds", "register_learner",
]
