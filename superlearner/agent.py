"""Loading a trained agent for evaluation and play: one call from a run directory or checkpoint."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from superlearner.checkpoint import Checkpointer, locate
from superlearner.config import ExperimentConfig, config_from_dict
from superlearner.engine import Engine, TrainState, make_engine
from superlearner.env import Env, State


@dataclasses.dataclass
class Agent:
    """A trained policy bound to its env.

    Attributes:
      config: the run's resolved config.
      env: the env it was trained on.
      params: network parameters of the chosen population member.
      member: which population member was loaded.
      step: the iteration of the checkpoint.
      greedy: act greedily (argmax) by default; ``act(..., greedy=False)`` samples.
    """

    config: ExperimentConfig
    env: Env
    engine: Engine
    params: Any
    member: int
    step: int
    greedy: bool = True

    def __post_init__(self):
        learner = self.engine.learner

        def act_batch(params, observation, mask, key, greedy):
            return learner.act(params, observation, mask, key, greedy=greedy)[0]

        self._act = jax.jit(act_batch, static_argnums=4)
        self._policy = jax.jit(learner.policy)

    def act(self, key: jax.Array, state: State, greedy: bool | None = None) -> jax.Array:
        """int32[]: the action for one unbatched env ``state`` (its current player's view)."""
        greedy = self.greedy if greedy is None else greedy
        action = self._act(self.params, state.observation[None], state.legal_action_mask[None], key, greedy)
        return action[0]

    def act_batch(self, observation, legal_action_mask, key, greedy: bool | None = None) -> jax.Array:
        """int32[B]: actions for a batch of observations ``[B, ...]`` and masks ``[B, A]``."""
        greedy = self.greedy if greedy is None else greedy
        return self._act(self.params, observation, legal_action_mask, key, greedy)

    def policy(self, state: State) -> np.ndarray:
        """float[A]: action probabilities for one unbatched state."""
        logits, _ = self._policy(self.params, state.observation[None], state.legal_action_mask[None])
        return np.asarray(jax.nn.softmax(logits[0]))


def load_train_state(path: str | Path) -> tuple[Engine, TrainState, dict]:
    """The engine, restored TrainState and metadata of a run directory or checkpoint folder."""
    run_dir, step = locate(path)
    checkpointer = Checkpointer(run_dir, read_only=True)
    try:
        metadata = checkpointer.read_metadata(step)
        config = config_from_dict(metadata["config"], source=f"{run_dir} checkpoint {step}")
        engine = make_engine(config)
        template = jax.eval_shape(lambda: engine.init(config.train.seed))
        state, metadata = checkpointer.restore(template, step)
    finally:
        checkpointer.close()
    return engine, state, metadata


def load_agent(path: str | Path, *, member: int | None = None, greedy: bool = True) -> Agent:
    """Loads the agent of a run directory (its best checkpoint, else the latest) or of one
    checkpoint folder. ``member`` picks a population member (default: the one with the highest
    recent training return, or in self-play the best score against its league)."""
    engine, state, metadata = load_train_state(path)
    size = engine.config.train.population_size
    if member is None:
        if hasattr(state.episode_stats, "last_return"):
            recent = np.asarray(state.episode_stats.last_return[..., 0]).mean(axis=-1)
        else:  # self-play: the member that scores best against its league
            from superlearner.league import league_score

            recent = np.asarray(jax.vmap(league_score)(state.league))
        member = int(np.argmax(recent))
    if not 0 <= member < size:
        from superlearner.errors import UserError

        raise UserError(f"member {member} does not exist; the run has population_size={size}")
    params = jax.tree.map(lambda x: jnp.asarray(x[member]), state.learner.params)
    return Agent(
        config=engine.config, env=engine.env, engine=engine, params=params, member=member,
        step=int(metadata.get("iteration", 0)), greedy=greedy,
    )
