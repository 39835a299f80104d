"""superlearner: self-play, autonomous curricula and meta-learning in one jit-compiled program.

The public surface is small; everything heavy is imported on first use.
"""

from superlearner.core.env import Env, NoParams, State, check_params
from superlearner.errors import CheckpointError, ConfigError, UnknownEnvError, UserError
from superlearner.core.registry import list_envs, make, register
from superlearner.core.wrappers import EpisodeStats, step_auto_reset, update_episode_stats

from superlearner.version import __version__

__all__ = [
    "CheckpointError",
    "ConfigError",
    "Env",
    "EpisodeStats",
    "NoParams",
    "State",
    "UnknownEnvError",
    "UserError",
    "check_env",
    "check_params",
    "list_envs",
    "load_agent",
    "make",
    "register",
    "register_learner",
    "step_auto_reset",
    "to_gymnasium",
    "update_episode_stats",
]


def to_gymnasium(env_or_id, **options):
    """A `gymnasium.Env` view of a superlearner env (see `superlearner.core.gym.GymnasiumEnv`)."""
    from superlearner.core.gym import to_gymnasium as _to_gymnasium

    return _to_gymnasium(env_or_id, **options)


def check_env(env, **options):
    """Checks ``env`` against the env contract and its own declarations; raises `ConformanceError`
    naming the broken rule (see `superlearner.core.testing.check_env`)."""
    from superlearner.core.testing import check_env as _check_env

    return _check_env(env, **options)


def register_learner(definition, **options):
    """Makes a learner's ``learner.kind`` known to configs, presets and the CLI (see
    `superlearner.learners.base.register_learner` and docs/adding_a_learner.md)."""
    from superlearner.learners.base import register_learner as _register_learner

    return _register_learner(definition, **options)


def load_agent(path, **options):
    """Loads a trained agent from a run directory or checkpoint (see `superlearner.run.agent`)."""
    from superlearner.run.agent import load_agent as _load_agent

    return _load_agent(path, **options)


def _register_builtin_with_gymnasium() -> None:
    from superlearner.core import gym as _gym

    _gym.register_all()


_register_builtin_with_gymnasium()
