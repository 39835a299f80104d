"""Loading a trained agent for evaluation and play: one call from a run directory or checkpoint."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from superlearner.run.checkpoint import CHECKPOINT_DIR, Checkpointer, locate
from superlearner.config import ExperimentConfig, config_from_dict
from superlearner.engine import Engine, TrainState, make_engine
from superlearner.core.env import Env, State


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
      num_simulations: search simulations per move of `act` and `kind_of` (0: the raw policy, no
        search). AlphaZero runs search by default; a PPO agent of a two-player zero-sum game of
        perfect information may search with its policy and value the same way (Gumbel MuZero,
        `superlearner.selfplay.search`); other agents act without search (always 0).
      search_hparams: learners with a search of their own (alphazero): the member's
        hyperparameters (the search's completed-Q settings); None otherwise (mctx's defaults).
    """

    config: ExperimentConfig
    env: Env
    engine: Engine
    params: Any
    member: int
    step: int
    greedy: bool = True
    num_simulations: int = 0
    search_hparams: Any = None

    def __post_init__(self):
        learner = self.engine.learner
        self._policy = jax.jit(learner.policy)
        self._searches = {}
        self.recurrent = bool(getattr(learner, "recurrent", False))
        if self.recurrent:
            self._step = jax.jit(
                lambda params, carry, observation, mask, key, greedy: learner.step(params, carry, observation, mask, key, greedy=greedy),
                static_argnums=5,
            )
            self._carry = None  # `act`'s memory of the episode in progress

        def act_batch(params, observation, mask, key, greedy):
            return learner.act(params, observation, mask, key, greedy=greedy)[0]

        self._act = jax.jit(act_batch, static_argnums=4)

    def kind_of(self, greedy: bool | None = None):
        """The agent as a batched player ``act(params, key, states) -> int32[B]`` (a
        `superlearner.selfplay.arena.KindFn`): search with ``num_simulations`` simulations for an
        alphazero run (greedy: no Gumbel noise), else its network's policy. ``params`` are
        network parameters (this agent's, or another checkpoint's of the same run)."""
        greedy = self.greedy if greedy is None else greedy
        learner = self.engine.learner
        if self.num_simulations > 0:
            num_simulations, hparams = self.num_simulations, self.search_hparams
            if learner.search is not None:  # the learner's own search, with its settings

                def search_act(params, key, states):
                    return learner.search(params, states, key, num_simulations, greedy, hparams=hparams)

            else:
                from superlearner.selfplay.search import make_search

                search = make_search(self.env, learner.policy)

                def search_act(params, key, states):
                    return search(params, states, key, num_simulations, 0.0 if greedy else 1.0).action.astype(jnp.int32)

            return search_act
        from superlearner.selfplay.arena import from_policy

        def policy_act(params, key, states):
            return from_policy(learner.policy, params, greedy)(key, states)

        return policy_act

    def episode_act_fn(self, greedy: bool | None = None):
        """The agent's policy for `superlearner.core.evaluate.run_episodes`: a plain act_fn, or a
        `RecurrentActFn` when the policy has memory."""
        from superlearner.core.evaluate import learner_act_fn

        greedy = self.greedy if greedy is None else greedy
        if self.recurrent:
            return learner_act_fn(self.engine.learner, self.params, greedy)
        return lambda observation, mask, key: self.act_batch(observation, mask, key, greedy)

    def act(self, key: jax.Array, state: State, greedy: bool | None = None) -> jax.Array:
        """int32[]: the action for one unbatched env ``state`` (its current player's view);
        chosen by search when ``num_simulations > 0``. A recurrent policy remembers the calls
        since the episode's first state (``step_count`` 0), so give the states of one episode
        in order."""
        greedy = self.greedy if greedy is None else greedy
        if self.recurrent:
            if self._carry is None or int(state.step_count) == 0:
                self._carry = self.engine.learner.initial_carry(1)
            self._carry, action, _, _ = self._step(
                self.params, self._carry, state.observation[None], state.legal_action_mask[None], key, greedy
            )
            return action[0]
        if self.num_simulations > 0:
            which = (self.num_simulations, greedy)
            if which not in self._searches:
                self._searches[which] = jax.jit(self.kind_of(greedy))
            return self._searches[which](self.params, key, jax.tree.map(lambda x: x[None], state))[0]
        action = self._act(self.params, state.observation[None], state.legal_action_mask[None], key, greedy)
        return action[0]

    def act_batch(self, observation, legal_action_mask, key, greedy: bool | None = None) -> jax.Array:
        """int32[B]: actions for a batch of observations ``[B, ...]`` and masks ``[B, A]``
        (feed-forward policies; a recurrent one acts through `episode_act_fn` or `act`)."""
        greedy = self.greedy if greedy is None else greedy
        self._memoryless("act_batch")
        return self._act(self.params, observation, legal_action_mask, key, greedy)

    def policy(self, state: State) -> np.ndarray:
        """float[A]: action probabilities for one unbatched state (feed-forward policies)."""
        self._memoryless("policy")
        logits, _ = self._policy(self.params, state.observation[None], state.legal_action_mask[None])
        return np.asarray(jax.nn.softmax(logits[0]))

    def _memoryless(self, what: str) -> None:
        if self.recurrent:
            from superlearner.errors import UserError

            raise UserError(
                f"Agent.{what}: this agent's policy has memory (learner.memory={self.config.learner.memory}); "
                "use Agent.act for one episode's states in order, or Agent.episode_act_fn for batches of episodes"
            )


def load_train_state(path: str | Path) -> tuple[Engine, TrainState, dict]:
    """The engine, restored TrainState and metadata of a run directory or checkpoint folder.

    The checkpoint is verified as it is read (`Checkpointer.restore`). From a run directory, a
    damaged best (or latest) checkpoint is passed over, with a one-line warning, for the newest
    intact one; a checkpoint folder given by name is read as it is or refused
    (`superlearner.errors.DamagedCheckpointError`).
    """
    from superlearner.errors import DamagedCheckpointError

    run_dir, step = locate(path)
    named = not (Path(path).resolve() / CHECKPOINT_DIR).is_dir()
    checkpointer = Checkpointer(run_dir, read_only=True)

    def engine_of(metadata: dict, at: int) -> Engine:
        return make_engine(config_from_dict(metadata["config"], source=f"{run_dir} checkpoint {at}"))

    try:
        steps = [step] if named else checkpointer.candidates(step)
        engine, unreadable = None, []
        for candidate in steps:  # the template comes from the first checkpoint whose metadata reads
            try:
                engine = engine_of(checkpointer.read_metadata(candidate), candidate)
                break
            except DamagedCheckpointError as error:
                if named:
                    raise
                unreadable.append(str(error))
        if engine is None:
            raise DamagedCheckpointError(f"{run_dir}: no intact checkpoint ({'; '.join(unreadable)})")
        template = jax.eval_shape(lambda: engine.init(engine.config.train.seed))
        if named:
            state, metadata = checkpointer.restore(template, step)
        else:
            state, metadata, used = checkpointer.restore_intact(template, steps)
            if config_from_dict(metadata["config"]) != engine.config:  # e.g. a budget extended later
                engine = engine_of(metadata, used)
    finally:
        checkpointer.close()
    return engine, state, metadata


def load_agent(path: str | Path, *, member: int | None = None, greedy: bool = True,
               num_simulations: int | None = None) -> Agent:
    """Loads the agent of a run directory (its best checkpoint, else the latest) or of one
    checkpoint folder. ``member`` picks a population member (default: the one rated highest by
    the run's online rating, ``rating.kind``; without one, the highest recent training return, or
    in self-play the best score against its league; member 0 of an alphazero run).

    ``num_simulations``: alphazero runs act by search with this many simulations per move
    (default: the run's ``alphazero.eval_simulations``; 0: the raw policy). A feed-forward PPO
    agent of a two-player zero-sum game of perfect information acts from its raw policy by
    default and searches with its policy and value when given a positive count; other agents
    accept only None or 0.
    """
    from superlearner.errors import UserError

    if num_simulations is not None and (isinstance(num_simulations, bool) or not isinstance(num_simulations, int) or num_simulations < 0):
        raise UserError(f"simulations {num_simulations!r}: must be an integer, 0 (the raw policy) or more")
    engine, state, metadata = load_train_state(path)
    size = engine.config.train.population_size
    own_search = engine.learner.search is not None
    if not own_search and num_simulations:
        from superlearner.selfplay.search import searchable

        if not searchable(engine.env) or engine.config.learner.memory != "none":
            raise UserError(
                f"simulations {num_simulations}: {path} is a learner.kind={engine.config.learner.kind} run on "
                f"{engine.env.id}, which acts without search (search needs a feed-forward policy in a two-player "
                "zero-sum game of perfect information); give 0 (or leave it out)"
            )
    if member is None:
        if jax.tree.leaves(state.rating):  # the online rating: the member rated highest
            recent = np.asarray(state.rating.rating)
        elif hasattr(state.episode_stats, "last_return"):
            recent = np.asarray(state.episode_stats.last_return[..., 0]).mean(axis=-1)
        elif jax.tree.leaves(state.league):  # self-play: the member that scores best against its league
            from superlearner.selfplay.league import league_score

            recent = np.asarray(jax.vmap(league_score)(state.league))
        else:
            recent = np.zeros((size,))  # no training return or league to rank members by: member 0
        member = int(np.argmax(recent))
    if not 0 <= member < size:
        raise UserError(f"member {member} does not exist; the run has population_size={size}")
    params = jax.tree.map(lambda x: jnp.asarray(x[member]), state.learner.params)
    search = {}
    if own_search:
        section = engine.config.section(engine.definition.section)
        default = getattr(section, "eval_simulations", 0)
        simulations = default if num_simulations is None else num_simulations
        search = dict(
            num_simulations=simulations,
            search_hparams=jax.tree.map(lambda x: jnp.asarray(x[member]), state.hparams),
        )
    elif num_simulations:
        search = dict(num_simulations=num_simulations)
    return Agent(
        config=engine.config, env=engine.env, engine=engine, params=params, member=member,
        step=int(metadata.get("iteration", 0)), greedy=greedy, **search,
    )

