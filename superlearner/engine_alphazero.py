"""The training engine of ``learner.kind: alphazero`` runs (Gumbel AlphaZero, self-play with search).

`make_alphazero_engine` returns the same `Engine` as `superlearner.engine.make_engine` does
for PPO, so the trainer, checkpoints, the arena probe and `load_agent` treat both alike:

* ``TrainState.learner`` is the `AlphaZeroState` of every population member (leading axis
  ``[P]``): network, optimizer, replay buffer and the self-play games in progress, so a
  checkpoint holds the replay buffer and resume is exact.
* ``TrainState.hparams`` is the `AlphaZeroHparams` of every member (``[P]`` float32 each):
  optimiser and search numbers, traced, so changing them never recompiles.
* The train chunk is a `lax.scan` of AlphaZero iterations (self-play ``learner.num_steps``
  searched moves in ``learner.num_envs`` games, store them, ``alphazero.num_updates`` SGD
  steps). The env, league and curriculum fields of the TrainState stay empty: the games live in
  the learner state and self-play is against the current network itself.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from superlearner.config import ExperimentConfig
from superlearner.engine import Engine, TrainState, make_train_chunk, map_population
from superlearner.env import Env
from superlearner.errors import ConfigError
from superlearner.learners.alphazero import (
    DEFAULT_HPARAMS,
    AlphaZeroHparams,
    AlphaZeroSettings,
    check_searchable,
    make_alphazero,
)

# AlphaZeroConfig fields that are traced hyperparameters (the rest are static settings).
HPARAM_FIELDS = tuple(DEFAULT_HPARAMS)


def validate_alphazero(config: ExperimentConfig, source: str = "config") -> None:
    """Checks an alphazero config's cross-field rules; raises a one-line ConfigError."""
    az, size = config.alphazero, config.train.population_size
    if az.min_replay_size > az.replay_capacity:
        raise ConfigError(
            f"{source}: alphazero.min_replay_size={az.min_replay_size} exceeds alphazero.replay_capacity="
            f"{az.replay_capacity}; accepted 1..{az.replay_capacity}"
        )
    for name in HPARAM_FIELDS:
        value = getattr(az, name)
        if isinstance(value, tuple) and len(value) != size:
            raise ConfigError(
                f"{source}: alphazero.{name} has {len(value)} values but train.population_size={size}; "
                f"give one number or {size}"
            )
    if config.meta.kind != "none" or config.meta.init_low:
        raise ConfigError(
            f"{source}: meta.kind={config.meta.kind} adapts PPO's hyperparameters; learner.kind=alphazero "
            "trains without a meta-learner for now (accepted: meta.kind=none, no meta.init_low)"
        )
    if config.curriculum.kind != "none":
        raise ConfigError(
            f"{source}: curriculum.kind={config.curriculum.kind} is for single-agent envs; "
            "learner.kind=alphazero trains two-player games (accepted: curriculum.kind=none)"
        )


def settings_from_config(config: ExperimentConfig) -> AlphaZeroSettings:
    """The learner's static settings: the alphazero section plus learner.num_envs / num_steps."""
    az = config.alphazero
    static = {f.name for f in dataclasses.fields(AlphaZeroSettings)}
    values = {name: getattr(az, name) for name in static if hasattr(az, name)}
    values["max_depth"] = az.max_depth or None
    values["decay_updates"] = config.iterations * az.num_updates if az.lr_schedule == "cosine" else 0
    return AlphaZeroSettings(num_envs=config.learner.num_envs, unroll_length=config.learner.num_steps, **values)


def initial_alphazero_hparams(config: ExperimentConfig) -> AlphaZeroHparams:
    """`AlphaZeroHparams` with a leading population axis, from the alphazero section's values."""
    size = config.train.population_size
    values = {}
    for name in HPARAM_FIELDS:
        value = getattr(config.alphazero, name)
        values[name] = jnp.asarray(value if isinstance(value, tuple) else (value,) * size, jnp.float32)
    return AlphaZeroHparams(**values)


def make_alphazero_engine(config: ExperimentConfig, env: Env | None = None) -> Engine:
    """The `Engine` of an alphazero run: ``init(seed) -> TrainState`` and the train chunk.

    Nothing is compiled here; the trainer jits ``train_chunk``. Raises a one-line UserError for
    an env that is not a two-player zero-sum game of perfect information.
    """
    from superlearner.registry import make

    validate_alphazero(config)
    if env is None:
        env = make(config.env.id, **config.env.options)
    check_searchable(env)
    learner = make_alphazero(env, settings_from_config(config))
    size, num_iterations = config.train.population_size, config.iterations

    def init(seed) -> TrainState:
        """The TrainState of a fresh run; ``seed`` is an int or a traced int32[]."""
        init_key, run_key = jax.random.split(jax.random.key(seed))
        return TrainState(
            learner=jax.vmap(learner.init)(jax.random.split(init_key, size)),
            hparams=initial_alphazero_hparams(config),
            env_state={},
            env_params={},
            episode_stats={},
            rng=jax.random.key_data(jax.random.split(run_key, size)),
            iteration=jnp.int32(0),
        )

    def member_iteration(learner_state, hparams, rng):
        key, iteration_key = jax.random.split(jax.random.wrap_key_data(rng))
        learner_state, metrics = learner.iteration(learner_state, hparams, iteration_key)
        return learner_state, jax.random.key_data(key), metrics

    population_iteration = map_population(member_iteration, size)

    def iteration(state: TrainState) -> tuple[TrainState, dict]:
        learner_state, rng, metrics = population_iteration(state.learner, state.hparams, state.rng)
        return state.replace(learner=learner_state, rng=rng, iteration=state.iteration + 1), metrics

    init, train_chunk = make_train_chunk(init, iteration, num_iterations)

    return Engine(
        config=config,
        env=env,
        learner=learner,
        init=init,
        train_chunk=train_chunk,
        num_iterations=num_iterations,
        env_steps_per_iteration=config.learner.num_envs * config.learner.num_steps,
    )

