"""The training engine: one `TrainState`, one compiled train chunk.

A train chunk is a `lax.scan` over K iterations; each iteration runs, for every population
member at once (a `vmap` over the leading axis P), a rollout and a learner update. The host loop
(`superlearner.trainer`) only logs, checkpoints and evaluates between chunks.

Iterations past the configured end are skipped inside the chunk (a `lax.cond` on the global
iteration counter), so the last chunk reuses the same compiled program.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from superlearner.config import ExperimentConfig
from superlearner.env import Env
from superlearner.learners.ppo import PPO, LearnerState, PPOHparams, make_ppo
from superlearner.registry import make
from superlearner.rollout import collect_single_agent
from superlearner.wrappers import EpisodeStats


@struct.dataclass
class TrainState:
    """Everything a run needs to continue; saving it is saving the run.

    Leading axes: ``[P]`` for per-member fields, ``[P, N]`` for env fields.

    Attributes:
      learner: LearnerState per member.
      hparams: PPOHparams per member (what a meta-learner changes).
      env_state: env State per member and env.
      env_params: the level each env plays, per member and env.
      episode_stats: EpisodeStats per member and env.
      rng: uint32 key data per member (typed keys are wrapped inside the chunk).
      iteration: int32[], iterations completed.
      league: self-play league state (empty when unused).
      curriculum: level-sampler buffer (empty when unused).
      meta: meta-controller state (empty when unused).
      policy_carry: a recurrent policy's carry per member and env, zero where an episode
        starts (empty for feed-forward policies).
    """

    learner: LearnerState
    hparams: PPOHparams
    env_state: Any
    env_params: Any
    episode_stats: EpisodeStats
    rng: jax.Array
    iteration: jax.Array
    league: Any = struct.field(default_factory=dict)
    curriculum: Any = struct.field(default_factory=dict)
    meta: Any = struct.field(default_factory=dict)
    policy_carry: Any = struct.field(default_factory=dict)


class Engine(NamedTuple):
    """The compiled-program pieces of a run (see `make_engine`)."""

    config: ExperimentConfig
    env: Env
    learner: PPO
    init: Callable[[int], TrainState]
    train_chunk: Callable[[TrainState], tuple[TrainState, dict]]
    num_iterations: int
    env_steps_per_iteration: int


def make_learner(config: ExperimentConfig, env: Env) -> PPO:
    lc = config.learner
    return make_ppo(
        env.observation_shape,
        env.num_actions,
        num_epochs=lc.num_epochs,
        num_minibatches=lc.num_minibatches,
        network=lc.network,
        hidden_sizes=lc.hidden_sizes,
        conv_channels=lc.conv_channels,
        activation=lc.activation,
        anneal_lr=lc.anneal_lr,
        total_updates=config.iterations,
        update_rule=lc.update_rule,
        update_rule_file=lc.update_rule_file,
        normalize_advantages=lc.normalize_advantages,
        clip_value_loss=lc.clip_value_loss,
        compute_dtype=lc.compute_dtype,
        memory=lc.memory,
        memory_size=lc.memory_size,
        sequence_length=lc.sequence_length,
    )


def initial_hparams(config: ExperimentConfig) -> PPOHparams:
    """PPOHparams with a leading population axis, from the config's starting values."""
    size = config.train.population_size
    values = {}
    for f in dataclasses.fields(config.hparams):
        value = getattr(config.hparams, f.name)
        values[f.name] = jnp.asarray(value if isinstance(value, tuple) else (value,) * size, jnp.float32)
    return PPOHparams(**values)


def initial_league_hparams(config: ExperimentConfig):
    from superlearner.league import LeagueHparams

    lc = config.league
    size = config.train.population_size
    values = dict(
        weight_self=lc.weight_self, weight_uniform=lc.weight_uniform, weight_pfsp_hard=lc.weight_pfsp_hard,
        weight_pfsp_even=lc.weight_pfsp_even, weight_meta=lc.weight_meta, payoff_decay=lc.payoff_decay,
        beat_margin=lc.beat_margin,
    )
    return LeagueHparams(**{k: jnp.full((size,), v, jnp.float32) for k, v in values.items()})


def is_self_play(env: Env) -> bool:
    return env.num_players == 2 and bool(getattr(env, "zero_sum", False))


def make_engine(config: ExperimentConfig, env: Env | None = None) -> Engine:
    """Builds the env, the learner and the pure init / train-chunk functions of ``config``.

    Single-agent envs train on their own returns; two-player zero-sum games train by self-play
    against a league. Nothing is compiled here: the caller jits ``train_chunk`` (the trainer does).
    """
    if config.learner.kind == "alphazero":  # Gumbel AlphaZero: its own state and chunk, same Engine
        from superlearner.engine_alphazero import make_alphazero_engine

        return make_alphazero_engine(config, env)
    if env is None:
        env = make(config.env.id, **config.env.options)
    self_play = is_self_play(env)
    if env.num_players != 1 and not self_play:
        from superlearner.errors import ConfigError

        raise ConfigError(
            f"env {env.id!r} has {env.num_players} players and is not two-player zero-sum; "
            "the engine trains one-player tasks and two-player zero-sum games"
        )
    if config.learner.memory != "none" and self_play:
        from superlearner.errors import ConfigError

        raise ConfigError(
            f"learner.memory={config.learner.memory}: recurrent policies train one-player envs; {env.id!r} is a "
            "two-player game (use memory=none)"
        )
    learner = make_learner(config, env)
    sampler = make_sampler(config, env)
    teacher = make_teacher(config, env)
    lc, tc = config.learner, config.train
    num_envs, num_steps, size = lc.num_envs, lc.num_steps, tc.population_size
    num_iterations = config.iterations
    curriculum_hparams_one = curriculum_hparams(config)

    def init(seed) -> TrainState:
        """The TrainState of a fresh run; ``seed`` is an int or a traced int32[] (see
        `initial_state`, which compiles this once for every seed)."""
        key = jax.random.key(seed)
        init_key, env_key, run_key = jax.random.split(key, 3)
        learner_state = jax.vmap(learner.init)(jax.random.split(init_key, size))
        env_params = jax.tree.map(
            lambda x: jnp.broadcast_to(x, (size, num_envs) + jnp.shape(x)), env.default_params
        )
        env_keys = jax.random.split(env_key, size)
        if teacher is not None:
            # Every env's first episode plays a level the (still uniform) teacher draws.
            teacher_state = jax.vmap(lambda _: teacher.init())(jnp.arange(size))
            bins, env_params = jax.vmap(lambda k, t: teacher.draw(k, t, curriculum_hparams_one, num_envs))(
                jax.random.split(jax.random.fold_in(key, 3), size), teacher_state
            )
        if self_play:
            from superlearner.league import init_league
            from superlearner.selfplay import new_matches, to_learner_decision

            league = jax.vmap(lambda p, h: init_league(p, config.league.capacity, h))(
                learner_state.params, initial_league_hparams(config)
            )

            def start(league, key, env_params, params):
                match_key, reply_key = jax.random.split(key)
                groups = config.league.opponent_groups
                matches = new_matches(env, league, match_key, num_envs, env_params, config.league.opening_moves, groups)
                return to_learner_decision(
                    env, league, matches, reply_key, learner, params, groups, config.league.opponent_temperature
                )

            env_state = jax.vmap(start)(league, env_keys, env_params, learner_state.params)
            stats = _zero_selfplay_stats(size)
        else:
            league = {}
            resets = jax.vmap(lambda k: jax.random.split(k, num_envs))(env_keys)
            env_state = jax.vmap(jax.vmap(env.reset))(resets, env_params)
            stats = jax.tree.map(
                lambda x: jnp.broadcast_to(x, (size, num_envs) + x.shape), EpisodeStats.zeros(env.num_players)
            )
        curriculum = {}
        if teacher is not None:
            curriculum = {"teacher": teacher_state, "bins": bins, "hparams": initial_curriculum_hparams(config)}
        if sampler is not None:
            example = jax.tree.map(lambda x: x[0, 0], env_params)
            curriculum = {
                "buffer": jax.vmap(lambda _: sampler.init(example))(jnp.arange(size)),
                "hparams": initial_curriculum_hparams(config),
            }
        policy_carry = {}
        if learner.recurrent:
            policy_carry = jax.tree.map(lambda x: jnp.broadcast_to(x, (size,) + x.shape), learner.initial_carry(num_envs))
        hparams = initial_hparams(config)
        meta = {}
        if config.meta.init_low:
            hparams, curriculum_hparams = spread_hparams(
                config, hparams, jax.random.fold_in(key, 2), curriculum.get("hparams")
            )
            if curriculum_hparams is not None:
                curriculum = dict(curriculum, hparams=curriculum_hparams)
        if config.meta.kind != "none":
            meta = init_meta(config, jax.random.fold_in(key, 1), make_meta_controller(config, env, learner), hparams)
        return TrainState(
            learner=learner_state,
            hparams=hparams,
            meta=meta,
            env_state=env_state,
            env_params=env_params,
            episode_stats=stats,
            rng=jax.random.key_data(jax.random.split(run_key, size)),
            iteration=jnp.int32(0),
            league=league,
            curriculum=curriculum,
            policy_carry=policy_carry,
        )

    def single_agent_iteration(learner_state, hparams, env_state, env_params, stats, policy_carry, league, curriculum, rng, iteration):
        key = jax.random.wrap_key_data(rng)
        key, rollout_key, update_key, level_key, reset_key = jax.random.split(key, 5)
        if sampler is not None:
            # The curriculum picks this iteration's levels; every env restarts on its level and
            # stays on it (episodes that end mid-rollout restart on the same level).
            buffer, batch = sampler.next_levels(curriculum["buffer"], level_key, curriculum["hparams"])
            env_params = batch.levels
            env_state = jax.vmap(env.reset)(jax.random.split(reset_key, num_envs), env_params)
            if learner.recurrent:
                policy_carry = learner.initial_carry(num_envs)
        recurrent = dict(carry=policy_carry) if learner.recurrent else {}
        if teacher is not None:
            # Where an episode ends, the next one plays a level the teacher draws now; its
            # outcome then updates that level's bin.
            next_bins, next_levels = teacher.draw(level_key, curriculum["teacher"], curriculum["hparams"], num_steps * num_envs)
            next_bins = next_bins.reshape(num_steps, num_envs)
            next_levels = jax.tree.map(lambda x: x.reshape((num_steps, num_envs) + x.shape[1:]), next_levels)
            env_state, stats, rollout, env_params, finished, *policy_carry = collect_single_agent(
                env, learner, learner_state.params, env_state, stats, env_params, rollout_key,
                num_steps, lc.bootstrap_truncation, reset_params=next_levels, **recurrent,
            )
            curriculum, teacher_metrics = teacher.observe(curriculum, next_bins, finished)
        else:
            env_state, stats, rollout, *policy_carry = collect_single_agent(
                env, learner, learner_state.params, env_state, stats, env_params, rollout_key,
                num_steps, lc.bootstrap_truncation, **recurrent,
            )
        policy_carry = policy_carry[0] if learner.recurrent else {}
        if sampler is not None and sampler.kind in SKIPPING_SAMPLERS:
            # Robust PLR and ACCEL train on some steps only: the update runs in a branch, so the
            # steps that only evaluate levels cost a rollout (a vmapped population computes both
            # branches). The update's metrics of a skipped step are NaN: nothing was computed.
            learner_state, metrics = jax.lax.cond(
                batch.train,
                lambda: learner.update(learner_state, rollout, hparams, update_key),
                lambda: _skipped_update(learner, learner_state, rollout, hparams, update_key),
            )
            metrics[LEARNER_UPDATED] = batch.train.astype(jnp.float32)
        else:
            learner_state, metrics = learner.update(learner_state, rollout, hparams, update_key)
        if config.meta.kind == "metagrad":
            metrics[META_ROLLOUT] = rollout  # for the meta-gradient step; `iteration` takes it out
        if teacher is not None:
            metrics.update(teacher_metrics)
        if sampler is not None:
            buffer, curriculum_metrics = score_levels(sampler, buffer, batch, rollout, hparams, config.curriculum)
            curriculum = dict(curriculum, buffer=buffer)
            metrics.update(curriculum_metrics)
        finished = stats.num_episodes > 0
        num_finished = jnp.maximum(finished.sum(), 1)
        metrics["episode_return"] = jnp.where(finished, stats.last_return[:, 0], 0.0).sum() / num_finished
        metrics["episode_length"] = jnp.where(finished, stats.last_length, 0).sum() / num_finished
        metrics["episodes"] = stats.num_episodes.sum().astype(jnp.float32)
        return learner_state, env_state, env_params, stats, policy_carry, league, curriculum, jax.random.key_data(key), metrics

    def self_play_iteration(learner_state, hparams, matches, env_params, stats, policy_carry, league, curriculum, rng, iteration):
        from superlearner.league import league_score, maybe_add_snapshot, meta_entropy
        from superlearner.selfplay import collect_self_play, make_payoff_fn

        key = jax.random.wrap_key_data(rng)
        key, rollout_key, update_key, payoff_key = jax.random.split(key, 4)
        matches, league, rollout, stats = collect_self_play(
            env, learner, learner_state.params, league, matches, env_params, rollout_key, num_steps,
            config.league.opening_moves, config.league.opponent_groups, config.league.opponent_temperature,
        )
        learner_state, metrics = learner.update(learner_state, rollout, hparams, update_key)
        lg = config.league
        payoff_fn = None
        if lg.payoff_games > 0:
            payoff_fn = make_payoff_fn(env, learner, lg.payoff_games + lg.payoff_games % 2)
        league = maybe_add_snapshot(
            league, learner_state.params, iteration + 1, lg.snapshot_every, lg.snapshot_rule,
            payoff_fn=payoff_fn, key=payoff_key, meta_solver=lg.meta_solver, solver_iterations=lg.solver_iterations,
        )
        metrics["episode_return"] = 2.0 * stats.score - 1.0
        metrics["score"] = stats.score
        metrics["score_vs_self"] = stats.score_vs_self
        metrics["score_vs_league"] = stats.score_vs_league
        metrics["games"] = stats.games
        metrics["episode_length"] = stats.length
        metrics["league_size"] = jnp.minimum(league.num_added, league.capacity).astype(jnp.float32)
        metrics["league_score"] = league_score(league)
        metrics["league_meta_entropy"] = meta_entropy(league)
        return learner_state, matches, env_params, stats, policy_carry, league, curriculum, jax.random.key_data(key), metrics

    member_iteration = self_play_iteration if self_play else single_agent_iteration

    population_iteration = map_population(member_iteration, size, num_shared=1)

    controller = make_meta_controller(config, env, learner)
    anchor_progress = None
    if config.meta.progress == "anchors":
        if not self_play:
            from superlearner.errors import ConfigError

            raise ConfigError(
                f"meta.progress=anchors plays games against arena.anchors, which needs a two-player game; "
                f"env {env.id!r} has one player: use meta.progress=return"
            )
        from superlearner.arena import make_anchor_progress

        anchor_progress = make_anchor_progress(
            env, learner.policy, config.arena.anchors, config.meta.progress_games, config.arena.opening_moves
        )

    def iteration(state: TrainState) -> tuple[TrainState, dict]:
        learner_state, env_state, env_params, stats, policy_carry, league, curriculum, rng, metrics = population_iteration(
            state.learner, state.hparams, state.env_state, state.env_params, state.episode_stats, state.policy_carry,
            state.league, state.curriculum, state.rng, state.iteration,
        )
        new_state = state.replace(
            learner=learner_state, env_state=env_state, env_params=env_params, episode_stats=stats, policy_carry=policy_carry,
            league=league, curriculum=curriculum, rng=rng, iteration=state.iteration + 1,
        )
        rollout = metrics.pop(META_ROLLOUT, None)
        if controller is not None:
            batch = None
            if rollout is not None:
                from superlearner.metagrad import MetaGradBatch

                # The meta-gradient differentiates through an update from the parameters that
                # collected the rollout: the state before this iteration's update.
                batch = MetaGradBatch(learner=state.learner, rollout=rollout)
            new_state, meta_metrics = meta_step(
                controller, new_state, metrics["episode_return"], batch, config, anchor_progress
            )
            metrics.update(meta_metrics)
        return new_state, metrics

    init_traced, train_chunk = make_train_chunk(init, iteration, num_iterations)

    return Engine(
        config=config,
        env=env,
        learner=learner,
        init=init_traced,
        train_chunk=train_chunk,
        num_iterations=num_iterations,
        env_steps_per_iteration=num_envs * num_steps,
    )


def map_population(member_fn: Callable, size: int, num_shared: int = 0) -> Callable:
    """``member_fn`` over a population of ``size``: every argument but the last ``num_shared``
    has a leading member axis, and so does every output.

    Members map to the mesh's `pop` axis: a sharding constraint inside a member's code
    (`superlearner.distributed.split_over_data`) then keeps the population split. A single
    member runs unbatched: a batch axis of one still turns every matmul and convolution into a
    batched one, which XLA's CPU backend runs markedly slower.
    """
    if size > 1:
        def mapped(*args):
            in_axes = (0,) * (len(args) - num_shared) + (None,) * num_shared
            return jax.vmap(member_fn, in_axes=in_axes, spmd_axis_name="pop")(*args)

        return mapped

    def unbatched(*args):
        cut = len(args) - num_shared
        members = jax.tree.map(lambda x: x[0], args[:cut])
        return jax.tree.map(lambda x: x[None], member_fn(*members, *args[cut:]))

    return unbatched


# Samplers whose steps do not all train (robust PLR's and ACCEL's evaluation-only steps), and the
# metric that says whether an iteration's update was applied (1) or skipped (0).
SKIPPING_SAMPLERS = ("plr", "accel")
LEARNER_UPDATED = "learner_updated"


def _skipped_update(learner, learner_state, rollout, hparams, key):
    """The skip branch of a conditional update: the state unchanged, the update's metrics NaN
    (floating) or zero, with the shapes the update would give."""
    shapes = jax.eval_shape(lambda: learner.update(learner_state, rollout, hparams, key)[1])
    blank = lambda s: jnp.full(s.shape, jnp.nan if jnp.issubdtype(s.dtype, jnp.floating) else 0, s.dtype)  # noqa: E731
    return learner_state, jax.tree.map(blank, shapes)


def make_train_chunk(init: Callable, iteration: Callable, num_iterations: int) -> tuple[Callable, Callable]:
    """``(init, train_chunk)`` of an engine from its ``init(seed)`` and one ``iteration(state)
    -> (state, metrics)``; every learner's engine builds its chunk here.

    Both come back jitted, so each is traced once: the metric shapes read here come from traces
    that the train chunk's and `initial_state`'s own traces then reuse from JAX's cache.
    """
    init_traced, iteration_traced = jax.jit(init), jax.jit(iteration)
    metric_shapes = jax.eval_shape(lambda s: iteration_traced(s)[1], jax.eval_shape(init_traced, jnp.int32(0)))

    def train_chunk(state: TrainState, num_chunk_iterations: int) -> tuple[TrainState, dict]:
        """Runs ``num_chunk_iterations`` (static) iterations, fewer where the run ends first;
        returns metrics ``[K, P]`` and a ``valid`` flag ``[K]`` (false, with NaN metrics, for
        iterations past the end of the run).

        A loop over a traced count rather than a scan with a per-iteration branch: the last,
        partial chunk of a run reuses the same program, and the iterations carry no branch.
        """
        count = jnp.clip(num_iterations - state.iteration, 0, num_chunk_iterations)
        buffers = jax.tree.map(lambda s: jnp.full((num_chunk_iterations,) + s.shape, jnp.nan, s.dtype), metric_shapes)

        def body(index, carry):
            state, buffers = carry
            state, metrics = iteration_traced(state)
            buffers = jax.tree.map(lambda b, m: jax.lax.dynamic_update_index_in_dim(b, m, index, 0), buffers, metrics)
            return state, buffers

        state, metrics = jax.lax.fori_loop(0, count, body, (state, buffers))
        metrics["valid"] = jnp.arange(num_chunk_iterations) < count
        metrics["iteration"] = state.iteration - count + jnp.minimum(jnp.arange(num_chunk_iterations) + 1, count)
        return state, metrics

    return init_traced, train_chunk


# XLA's backend optimisation level for the init program. It runs once per run, so the default
# level's code-generation time is wasted; level 0 halves init's compile time on CPU.
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def initial_state(engine: Engine, seed: int, out_shardings: Any = None) -> TrainState:
    """The TrainState of a fresh run of ``engine`` for ``seed``, built by one compiled program.

    The seed is traced, so every seed reuses one program (and the persistent compilation cache
    entry); ``out_shardings`` places the state on a device mesh (None: the default device).
    Host-side only (it compiles a program of its own); inside a trace call ``engine.init``.
    """
    init = _compiled_init(engine.init, out_shardings)
    return init(jnp.int32(seed))


def lower_init(engine: Engine, out_shardings: Any = None):
    """``engine.init`` lowered for a traced int32 seed (compile it with ``.compile()``; call the
    result with ``jnp.int32(seed)``), as `initial_state` compiles it."""
    return _compiled_init(engine.init, out_shardings).lower(jax.ShapeDtypeStruct((), jnp.int32))


def compile_concurrently(*lowered) -> list:
    """Compiles lowered programs at the same time: the first on this thread, the others each on a
    thread of its own; returns them compiled, in order.

    XLA compiles one program on one thread, so a run's init and train chunk compiled together on
    a machine with two or more cores take as long as the chunk alone. An error in any of them is
    raised here, after all have finished.
    """
    import threading

    results: list = [None] * len(lowered)
    errors: list = []

    def compile_one(index):
        try:
            results[index] = lowered[index].compile()
        except BaseException as error:  # re-raised on the caller's thread below
            errors.append(error)

    threads = [threading.Thread(target=compile_one, args=(index,), daemon=True) for index in range(1, len(lowered))]
    for thread in threads:
        thread.start()
    compile_one(0)
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def _compiled_init(init_fn: Callable, out_shardings: Any):
    options = dict(compiler_options=INIT_COMPILER_OPTIONS)
    if out_shardings is not None:
        options["out_shardings"] = out_shardings
    return jax.jit(init_fn, **options)


def make_sampler(config: ExperimentConfig, env: Env):
    """The configured level sampler, or None."""
    cc = config.curriculum
    if cc.kind in ("none", "lp"):
        return None
    from superlearner.curriculum import make_level_sampler
    from superlearner.errors import ConfigError

    space = getattr(env, "level_space", None)
    if space is None:
        raise ConfigError(f"curriculum.kind={cc.kind}: env {env.id!r} has no level space (accepted: none)")
    if env.num_players != 1:
        raise ConfigError(f"curriculum.kind={cc.kind}: curricula train single-agent envs; {env.id!r} has {env.num_players} players")
    valid_fn = None
    if cc.require_solvable and hasattr(space, "is_valid"):
        valid_fn = lambda level: space.is_valid(level, require_solvable=True)  # noqa: E731
    return make_level_sampler(
        cc.kind, space, cc.capacity, config.learner.num_envs, prioritization=cc.prioritization,
        num_edits=cc.num_edits, min_fill_ratio=cc.min_fill_ratio, valid_fn=valid_fn,
    )


def curriculum_hparams(config: ExperimentConfig):
    """The curriculum's adaptable starting values for one member."""
    from superlearner.curriculum import CurriculumHparams

    cc = config.curriculum
    values = dict(replay_prob=cc.replay_prob, temperature=cc.temperature, staleness_coef=cc.staleness_coef,
                  fresh_ratio=cc.fresh_ratio, lp_epsilon=cc.lp_epsilon, lp_temperature=cc.lp_temperature)
    return CurriculumHparams.from_values(**values)


def initial_curriculum_hparams(config: ExperimentConfig):
    """`curriculum_hparams` with a leading population axis."""
    one = curriculum_hparams(config)
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (config.train.population_size,) + x.shape), one)


class Teacher(NamedTuple):
    """A learning-progress teacher bound to one field of an env's params (see `make_teacher`).

    ``init() -> TeacherState``; ``draw(key, teacher_state, hparams, num) -> (bins int32[num],
    levels [num])`` draws bins
    from the teacher and a level uniformly inside each; ``observe(curriculum, bins[T, N],
    finished) -> (curriculum, metrics)`` folds the outcomes of the episodes that ended in a
    rollout into the bins they played (``finished`` as returned by `collect_single_agent`).
    """

    init: Callable
    draw: Callable
    observe: Callable


def make_teacher(config: ExperimentConfig, env: Env) -> Teacher | None:
    """The learning-progress teacher of ``curriculum.kind: lp``, or None for other kinds.

    An episode's outcome is success: its return reaching the env's ``reward_threshold``. The
    teacher favours the bins whose success rate is changing fastest (`make_lp_teacher`).
    """
    cc = config.curriculum
    if cc.kind != "lp":
        return None
    from superlearner.curriculum import bins_to_params, make_lp_teacher
    from superlearner.errors import ConfigError

    if env.num_players != 1:
        raise ConfigError(f"curriculum.kind=lp: the teacher trains single-agent envs; {env.id!r} has {env.num_players} players")
    if env.reward_threshold is None:
        raise ConfigError(f"curriculum.kind=lp: env {env.id!r} defines no reward_threshold, so an episode has no success to track")
    if not cc.lp_low < cc.lp_high:
        raise ConfigError(f"curriculum.lp_low={cc.lp_low} must be below curriculum.lp_high={cc.lp_high}")
    base = env.default_params
    bins_to_params(jnp.zeros((1,), jnp.int32), base, cc.lp_field, cc.lp_low, cc.lp_high, cc.lp_bins)  # names the field
    lp = make_lp_teacher(cc.lp_bins)
    threshold = float(env.reward_threshold)

    def draw(key, teacher_state, hparams, num):
        bin_key, value_key = jax.random.split(key)
        bins = lp.sample(bin_key, teacher_state, hparams, num)
        return bins, bins_to_params(bins, base, cc.lp_field, cc.lp_low, cc.lp_high, cc.lp_bins, value_key)

    def observe(curriculum, next_bins, finished):
        def track(playing, step):
            done_t, next_t = step
            return jnp.where(done_t, next_t, playing), playing

        bins, played = jax.lax.scan(track, curriculum["bins"], (finished["done"], next_bins))
        success = (finished["episode_return"] >= threshold).astype(jnp.float32)
        done = finished["done"].reshape(-1)
        teacher_state = lp.update(curriculum["teacher"], played.reshape(-1), success.reshape(-1), curriculum["hparams"], mask=done)
        probabilities = lp.probabilities(teacher_state, curriculum["hparams"])
        num_done = jnp.maximum(done.sum(), 1)
        metrics = {
            "curriculum_success_rate": jnp.where(done, success.reshape(-1), 0.0).sum() / num_done,
            "curriculum_bin_mean": (probabilities * jnp.arange(cc.lp_bins)).sum(),
            "curriculum_entropy": -(probabilities * jnp.log(probabilities)).sum(),
        }
        return dict(curriculum, teacher=teacher_state, bins=bins), metrics

    return Teacher(init=lp.init, draw=draw, observe=observe)


def score_levels(sampler, buffer, batch, rollout, hparams: PPOHparams, curriculum_config):
    """Scores each env's level from its rollout and folds the scores into the buffer."""
    from superlearner.curriculum import (
        combined_max_returns, episode_success_rate, learnability, max_episode_return, max_mc,
        positive_value_loss, smoothed_success_rate,
    )
    from superlearner.learners.ppo import rollout_batch

    advantage = rollout_batch(rollout, hparams.gamma, hparams.gae_lambda)["advantage"]
    done = 1.0 - rollout.continue_
    success = (rollout.reward > 0) & (done > 0)
    measured, count = jax.vmap(episode_success_rate, in_axes=1)(success, done)
    rate = measured
    best = combined_max_returns(buffer, batch.indices, jax.vmap(max_episode_return, in_axes=1)(rollout.reward, done))
    if sampler.kind == "sfl" or curriculum_config.score == "learnability":
        rate = smoothed_success_rate(measured, count, buffer.success_rates, batch.indices,
                                     curriculum_config.sfl_prior, curriculum_config.sfl_memory)
        scores = learnability(rate)
    elif curriculum_config.score == "maxmc":
        scores = jax.vmap(max_mc, in_axes=(1, 1, 0))(rollout.value, done, best)
    else:
        scores = jax.vmap(positive_value_loss, in_axes=1)(advantage, done)
    buffer = sampler.update(buffer, batch, scores, max_returns=best, success_rates=rate)
    finite = jnp.isfinite(scores)
    metrics = {
        "curriculum_mode": batch.mode.astype(jnp.float32),
        "curriculum_train": batch.train.astype(jnp.float32),
        "curriculum_buffer_size": buffer.size.astype(jnp.float32),
        "curriculum_score": jnp.where(finite, scores, 0.0).sum() / jnp.maximum(finite.sum(), 1),
        "curriculum_solve_rate": jnp.nanmean(measured),
    }
    return buffer, metrics



META_ROLLOUT = "_meta_rollout"


def make_meta_controller(config: ExperimentConfig, env: Env | None = None, learner: PPO | None = None):
    """The configured meta-controller, or None (metagrad needs the run's ``env`` and ``learner``)."""
    if config.meta.kind == "none":
        return None
    if config.meta.kind == "bandit":
        from superlearner.meta_config import make_bandit

        return make_bandit(config)
    if config.meta.kind == "metagrad":
        from superlearner.meta_config import make_configured_metagrad

        return make_configured_metagrad(config, env, learner)
    from superlearner.meta import make_pbt

    m = config.meta
    return make_pbt(
        _meta_specs(config), truncation_fraction=m.truncation_fraction, ready_iterations=m.ready_iterations,
        interval=m.interval, perturb_factor=m.perturb_factor, resample_probability=m.resample_probability,
    )


def _meta_specs(config: ExperimentConfig):
    from superlearner.meta import select_specs

    names = list(dict.fromkeys(list(config.meta.adapt) + list(config.meta.init_low)))
    bounds = {name: (config.meta.init_low[name], config.meta.init_high[name]) for name in config.meta.init_low}
    specs = select_specs(names, **{k: v for k, v in bounds.items()})
    return specs


def spread_hparams(config: ExperimentConfig, hparams: PPOHparams, key: jax.Array, curriculum_hparams=None):
    """Hyperparameters named in ``meta.init_low`` drawn per member in their ranges (uniform in
    the spec's unconstrained space: log-uniform for rates). The same draw with or without a
    controller, so a population with and one without adaptation start alike.

    Returns ``(hparams, curriculum_hparams)``; names ``curriculum_<field>`` draw that field of
    ``curriculum_hparams`` (None when the run has no curriculum, and then returned as None).
    """
    from superlearner.meta import joint_hparams, sample_hparams, select_specs, split_joint_hparams

    names = list(config.meta.init_low)
    specs = select_specs(names, **{n: (config.meta.init_low[n], config.meta.init_high[n]) for n in names})
    size = config.train.population_size
    if curriculum_hparams is None:
        return sample_hparams(key, specs, size, hparams), None
    joint = sample_hparams(key, specs, size, joint_hparams(hparams, curriculum_hparams))
    return split_joint_hparams(joint, hparams, curriculum_hparams)


def init_meta(config: ExperimentConfig, key: jax.Array, controller=None, hparams: PPOHparams | None = None) -> dict:
    """The meta-controller's state, kept in ``TrainState.meta`` (metagrad starts from ``hparams``)."""
    from superlearner.meta import init_return_history

    ctrl_key, run_key = jax.random.split(key)
    controller = make_meta_controller(config) if controller is None else controller
    if config.meta.kind == "metagrad":
        ctrl = controller.init(config.train.population_size, ctrl_key, hparams)
    else:
        ctrl = controller.init(config.train.population_size, ctrl_key)
    return {
        "controller": ctrl,
        "returns": init_return_history(config.train.population_size, config.meta.progress_window),
        "rng": jax.random.key_data(run_key),
    }


def meta_step(
    controller, state: TrainState, episode_return: jax.Array, batch=None, config: ExperimentConfig | None = None,
    anchor_progress: Callable | None = None,
):
    """One meta-controller call across the population (outside the per-member vmap).

    ``batch`` (a `superlearner.metagrad.MetaGradBatch`) is the meta-gradient's progress signal.
    With ``anchor_progress`` (`superlearner.arena.make_anchor_progress`) the controller's fitness
    is the members' score against the fixed anchors, measured only when a step is due; other
    controllers read the recent mean return.
    """
    from superlearner.meta import (
        PopulationState, gather_members, joint_hparams, push_returns, recent_mean, split_joint_hparams,
    )

    meta = state.meta
    key, step_key = jax.random.split(jax.random.wrap_key_data(meta["rng"]))
    returns = push_returns(meta["returns"], episode_return)
    # PBT explores and copies the curriculum's knobs with the learner's (`curriculum_<field>`).
    joint = config is not None and config.meta.kind == "pbt" and "hparams" in state.curriculum
    hparams = joint_hparams(state.hparams, state.curriculum["hparams"]) if joint else state.hparams
    population = PopulationState(learner=state.learner, hparams=hparams, rng=state.rng)
    if anchor_progress is not None:
        params, measure_key = state.learner.params, jax.random.fold_in(step_key, 1)
        progress = lambda: anchor_progress(params, measure_key)  # noqa: E731
    elif batch is not None:
        progress = batch
    else:
        progress = recent_mean(returns)
    ctrl, population, events = controller.update(meta["controller"], population, progress, step_key)
    if not hasattr(events, "parent"):  # a bandit or meta-gradient step copies nobody
        from superlearner.meta_config import controller_metrics

        state = state.replace(
            learner=population.learner, hparams=population.hparams,
            meta={"controller": ctrl, "returns": returns, "rng": jax.random.key_data(key)},
        )
        return state, controller_metrics(config, ctrl, events)
    returns = gather_members(returns, events.parent)
    # A copied member continues its parent's games, levels, league, curriculum and statistics too: they are part of
    # what made the parent better, and the copy's own would no longer match its parameters.
    env_state = gather_members(state.env_state, events.parent)
    env_params = gather_members(state.env_params, events.parent)
    league = gather_members(state.league, events.parent)
    curriculum = gather_members(state.curriculum, events.parent)
    stats = gather_members(state.episode_stats, events.parent)
    hparams = population.hparams
    if joint:  # the explored values, not only the parent's copied ones
        hparams, curriculum_hparams = split_joint_hparams(hparams, state.hparams, state.curriculum["hparams"])
        curriculum = dict(curriculum, hparams=curriculum_hparams)
    state = state.replace(
        learner=population.learner, hparams=hparams, rng=population.rng,
        env_state=env_state, env_params=env_params, league=league, curriculum=curriculum, episode_stats=stats,
        meta={"controller": ctrl, "returns": returns, "rng": jax.random.key_data(key)},
    )
    metrics = {"meta_parent": events.parent.astype(jnp.float32), "meta_exploited": events.did_exploit.astype(jnp.float32)}
    return state, metrics


def _zero_selfplay_stats(size: int):
    from superlearner.selfplay import SelfPlayStats

    zeros = jnp.zeros((size,), jnp.float32)
    return SelfPlayStats(games=zeros, score=zeros, score_vs_self=zeros, score_vs_league=zeros, length=zeros)
