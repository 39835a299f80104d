"""Offline discovery of a learned drift function with evolution strategies.

Follows Lu et al. 2022 ("Discovered Policy Optimisation", Sec. 4): the weights of the learned
drift network (`superlearner.learners.update_rules.learned_drift`) are meta-trained by OpenAI-ES
(Salimans et al. 2017, through evosax) across many short PPO training runs, and the result is
measured on held-out levels against PPO-clip at equal env steps.

One generation is one compiled program: ``candidates x meta-training levels x seeds`` inner
runs, each a whole PPO training run of the experiment (`superlearner.engine`: init, then one
train chunk over every iteration), vmapped. The fitness of a candidate is its mean return over
the last ``meta.discovery.final_fraction`` of the iterations, averaged over levels and seeds;
all candidates of a generation share the seeds (common random numbers). With
``meta.discovery.meta_train_experiments`` the same program also trains every candidate on other
envs (each experiment at its own sizes and budget), and a candidate's fitness is its centred rank
on each task, averaged over the tasks, so that no env's return scale dominates.

Usage::

    python -m superlearner.run.discovery experiments/discover_drift.yaml --out rule.npz \\
        [--set meta.discovery.generations=20 ...]

then train any preset with ``--set learner.update_rule=learned learner.update_rule_file=rule.npz``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from superlearner.config import ExperimentConfig, config_to_dict, load_config, validate_semantics
from superlearner.errors import ConfigError, UserError
from superlearner.learners.update_rules import init_learned_meta_params, save_rule_file

# ----------------------------------------------------------------------------------------------
# Types.


class InnerRuns(NamedTuple):
    """Batched inner training runs of one experiment (see `make_inner_runs`).

    Attributes:
      run: ``(meta_params, levels[L], seeds int32[S]) -> float32[L, S]``, the final return of
        each run; pure, the caller jits it (vmap it over candidates for a generation).
      level_names: names of the L levels, in order.
      num_iterations: PPO iterations of each run.
      env_steps: env steps of each run.
    """

    run: Callable[[Any, Any, jax.Array], jax.Array]
    level_names: tuple
    num_iterations: int
    env_steps: int


@dataclasses.dataclass
class DiscoveryResult:
    """What `discover` found and measured (host-side numbers, JSON-ready via `as_dict`)."""

    meta_params: dict
    fitness_history: list  # per generation: mean, best of the population and of the ES mean
    test: dict  # held-out levels: per rule, per-seed returns, mean and 95% CI
    train: dict  # meta-training levels, measured like the held-out ones
    wall_time: float
    config: dict
    test_env: dict = dataclasses.field(default_factory=dict)  # the held-out experiment, if any
    train_envs: dict = dataclasses.field(default_factory=dict)  # the other meta-training experiments

    def as_dict(self) -> dict:
        extra = {"test_env": self.test_env} if self.test_env else {}
        if self.train_envs:
            extra["train_envs"] = self.train_envs
        return dict(fitness_history=self.fitness_history, test=self.test, train=self.train, **extra,
                    wall_time=self.wall_time, config=self.config)


# ----------------------------------------------------------------------------------------------
# Levels and inner runs.


def make_levels(env, overrides: dict, source: str, key: str):
    """The env's default level with each entry of ``overrides`` (name -> {field: value}) applied,
    stacked along a leading axis L; `ConfigError` in one line for unknown fields."""
    if not overrides:
        raise ConfigError(f"{source}: meta.discovery.{key} is empty; give at least one level, e.g. {{default: {{}}}}")
    default = env.default_params
    fields = [f.name for f in dataclasses.fields(default)] if dataclasses.is_dataclass(default) else []
    if not jax.tree.leaves(default) and len(overrides) > 1:
        raise ConfigError(f"{source}: meta.discovery.{key} names {len(overrides)} levels, but {env.id} has no level "
                          "parameters; give one level, e.g. {default: {}}")
    levels = []
    for name, values in overrides.items():
        values = values or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: meta.discovery.{key}.{name} must map level fields to numbers, got {values!r}")
        for field_name, value in values.items():
            if field_name not in fields:
                raise ConfigError(
                    f"{source}: meta.discovery.{key}.{name}.{field_name} is not a field of {env.id}'s level; "
                    f"accepted: {', '.join(fields) or 'none'}"
                )
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{source}: meta.discovery.{key}.{name}.{field_name}={value!r} must be a number")
        levels.append(default.replace(**{k: jnp.asarray(v, jnp.float32) for k, v in values.items()}))
    return jax.tree.map(lambda *xs: jnp.stack(xs), *levels), tuple(overrides)


def make_inner_runs(config: ExperimentConfig, level_names: tuple = ()) -> InnerRuns:
    """Whole PPO training runs of ``config`` (population size 1) as one pure batched function.

    The run's learner uses the learned drift; its meta parameters are set to the candidate's
    before training, and every env of the run plays the given level (re-reset on it).
    """
    from superlearner.engine import make_engine

    engine = make_engine(config)
    env, num_envs = engine.env, config.learner.num_envs
    num_final = max(1, int(round(config.meta.discovery.final_fraction * engine.num_iterations)))

    def one_run(meta_params, level, seed):
        state = engine.init(seed)
        env_params = jax.tree.map(lambda x: jnp.broadcast_to(x, (1, num_envs) + x.shape), level)
        reset_keys = jax.random.split(jax.random.fold_in(jax.random.key(seed), 7), num_envs)
        env_state = jax.vmap(env.reset)(reset_keys, jax.tree.map(lambda x: x[0], env_params))
        learner = state.learner
        if learner.meta_params:  # a rule without meta parameters (PPO-clip) takes none
            learner = learner.replace(meta_params=jax.tree.map(lambda x: x[None], meta_params))
        state = state.replace(
            learner=learner, env_params=env_params, env_state=jax.tree.map(lambda x: x[None], env_state)
        )
        _, metrics = engine.train_chunk(state, engine.num_iterations)
        returns = metrics["episode_return"][:, 0]  # [K]
        return jnp.mean(returns[-num_final:])

    def run(meta_params, levels, seeds):
        per_seed = lambda level: jax.vmap(lambda s: one_run(meta_params, level, s))(seeds)  # noqa: E731
        if not jax.tree.leaves(levels):  # an env without level parameters has one level
            return per_seed(levels)[None]
        return jax.vmap(per_seed)(levels)

    return InnerRuns(
        run=run, level_names=level_names, num_iterations=engine.num_iterations,
        env_steps=engine.num_iterations * engine.env_steps_per_iteration,
    )


def inner_config(config: ExperimentConfig, update_rule: str, source: str = "config") -> ExperimentConfig:
    """``config`` for one inner run: population 1 and the given rule (no rule file)."""
    if config.train.population_size != 1:
        raise ConfigError(
            f"{source}: train.population_size={config.train.population_size}; discovery vmaps its own "
            "inner runs (meta.discovery.population_size), so each experiment run must have population_size 1"
        )
    if config.meta.kind != "none":
        raise ConfigError(f"{source}: meta.kind={config.meta.kind}; the inner runs of discovery take meta.kind none")
    learner = dataclasses.replace(config.learner, update_rule=update_rule, update_rule_file="")
    return dataclasses.replace(config, learner=learner)


# ----------------------------------------------------------------------------------------------
# Statistics.


def mean_and_ci95(values) -> dict:
    """Mean and the two-sided 95% Student-t confidence interval of the mean of ``values``."""
    from scipy import stats

    values = np.asarray(values, np.float64).ravel()
    mean = float(values.mean())
    if values.size < 2:
        return dict(mean=mean, low=mean, high=mean, n=int(values.size))
    half = float(stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size))
    return dict(mean=mean, low=mean - half, high=mean + half, n=int(values.size))


# ----------------------------------------------------------------------------------------------
# The discovery loop.


def check_discovery(config: ExperimentConfig, source: str = "config") -> None:
    """One-line errors for a discovery config that cannot run."""
    validate_semantics(config, source)
    d = config.meta.discovery
    if d.population_size % 2:
        raise ConfigError(f"{source}: meta.discovery.population_size={d.population_size} must be even (antithetic sampling)")
    inner_config(config, "learned", source)
    meta_train_experiments(config, source)
    if d.meta_test_experiment:
        held_out_experiment(config, source)


class Task(NamedTuple):
    """One meta-training task of the search: inner runs of an experiment and the levels they play."""

    name: str
    runs: InnerRuns
    levels: Any


def centred_ranks(fitness: jax.Array) -> jax.Array:
    """float32[C]: the rank of each of the C fitness values scaled to [-0.5, 0.5] (the lowest
    -0.5, the highest 0.5; 0 for a single candidate). Equal values share their mean rank, so a
    task that many candidates solve alike ranks them alike instead of by chance."""
    count = fitness.shape[0]
    below = (fitness[None, :] < fitness[:, None]).sum(axis=1)
    equal = (fitness[None, :] == fitness[:, None]).sum(axis=1)
    ranks = below + (equal - 1) / 2.0
    return (ranks / max(count - 1, 1) - (0.5 if count > 1 else 0.0)).astype(jnp.float32)


def combine_fitness(per_task: jax.Array) -> jax.Array:
    """float32[C] from the fitness of C candidates on T tasks, ``[T, C]``: the task's own fitness
    when there is one task, else the centred rank on each task averaged over the tasks."""
    if per_task.shape[0] == 1:
        return per_task[0]
    return jax.vmap(centred_ranks)(per_task).mean(axis=0)


def discover(
    config: ExperimentConfig,
    *,
    source: str = "config",
    log: Callable[[str], None] = print,
    on_search_done: Callable[[dict, list], None] | None = None,
) -> DiscoveryResult:
    """Meta-trains a learned drift with OpenAI-ES and measures it against PPO-clip.

    Reads ``config.meta.discovery`` (see `superlearner.config.DiscoveryConfig`); the inner runs
    are ``config``'s PPO runs. Keys: everything derives from ``config.train.seed``.
    Returns the ES mean's meta parameters (the discovered rule) and the measurements (see
    `measure`); ``on_search_done(meta_params, history)`` is called before measuring.
    """
    from evosax.algorithms import Open_ES
    import optax

    check_discovery(config, source)
    d = config.meta.discovery
    start = time.perf_counter()
    learned_config = inner_config(config, "learned", source)
    from superlearner.core.registry import make

    env = make(config.env.id, **config.env.options)
    train_levels, train_names = make_levels(env, d.meta_train_levels, source, "meta_train_levels")
    make_levels(env, d.meta_test_levels, source, "meta_test_levels")  # checked before the search
    runs = make_inner_runs(learned_config, train_names)
    tasks = [Task(config.env.id, runs, train_levels)]
    for other in meta_train_experiments(config, source):
        levels, names = _default_level(other)
        tasks.append(Task(other.env.id, make_inner_runs(inner_config(other, "learned", source), names), levels))

    key = jax.random.key(config.train.seed)
    rule_key, init_key, es_key, seed_key = jax.random.split(key, 4)
    mean = init_learned_meta_params(rule_key, hidden_size=d.hidden_size)
    strategy = Open_ES(
        population_size=d.population_size, solution=mean,
        optimizer=optax.adam(d.learning_rate), std_schedule=optax.constant_schedule(d.sigma),
    )
    es_params = strategy.default_params
    es_state = strategy.init(init_key, mean, es_params)

    def generation(es_state, key, seeds):
        ask_key, tell_key = jax.random.split(key)
        candidates, es_state = strategy.ask(ask_key, es_state, es_params)
        per_task = jnp.stack([
            jax.vmap(task.runs.run, in_axes=(0, None, None))(candidates, task.levels, seeds).mean(axis=(1, 2))
            for task in tasks
        ])  # [T, C]: each task's returns [C, L, S] averaged over levels and seeds
        fitness = combine_fitness(per_task)
        es_state, _ = strategy.tell(tell_key, candidates, -fitness, es_state, es_params)  # evosax minimises
        return es_state, per_task

    generation = jax.jit(generation)
    history = []
    log(
        f"discovery: {d.generations} generations x {d.population_size} candidates x {len(train_names)} levels x "
        f"{d.seeds_per_candidate} seeds; each inner run {runs.env_steps} env steps ({runs.num_iterations} PPO iterations)"
    )
    for task in tasks[1:]:
        log(f"  also meta-training on {task.name}: {task.runs.env_steps} env steps ({task.runs.num_iterations} "
            "PPO iterations) per inner run; fitness: centred rank averaged over the tasks")
    for index in range(d.generations):
        tick = time.perf_counter()
        seeds = jax.random.randint(jax.random.fold_in(seed_key, index), (d.seeds_per_candidate,), 0, 2**30)
        es_state, per_task = generation(es_state, jax.random.fold_in(es_key, index), seeds)
        per_task = np.asarray(per_task)
        # The first task's returns (mean and best) stay the headline, in its own units.
        entry = dict(generation=index, mean=float(per_task[0].mean()), best=float(per_task[0].max()),
                     wall_time=time.perf_counter() - tick)
        if len(tasks) > 1:
            entry["tasks"] = {task.name: dict(mean=float(row.mean()), best=float(row.max()))
                              for task, row in zip(tasks, per_task)}
        history.append(entry)
        returns = "; ".join(f"{task.name} mean {row.mean():.2f} best {row.max():.2f}" for task, row in zip(tasks, per_task))
        log(f"generation {index + 1}/{d.generations}: fitness {returns} ({time.perf_counter() - tick:.1f} s)")
    discovered = jax.tree.map(np.asarray, strategy.get_mean(es_state))
    if on_search_done is not None:
        on_search_done(discovered, history)
    measured = measure(config, discovered, source=source, log=log, runs=runs)
    return DiscoveryResult(
        meta_params=discovered, fitness_history=history, test=measured["test"], train=measured["train"],
        wall_time=time.perf_counter() - start, config=config_to_dict(config), test_env=measured.get("test_env", {}),
        train_envs=measured.get("train_envs", {}),
    )


def measure(config: ExperimentConfig, meta_params: dict, *, source: str = "config",
            log: Callable[[str], None] = print, runs: InnerRuns | None = None) -> dict:
    """The learned rule ``meta_params`` against PPO-clip on the held-out and the meta-training
    levels: ``meta.discovery.test_seeds`` seeds each, the same seeds and env steps for both.

    Returns ``{"test"|"train": {"discovered"|"ppo_clip": {level: stats, "all": stats,
    "per_seed": [...], "wall_time": s}, "discovered_minus_ppo_clip": stats}}`` where a stats
    entry is `mean_and_ci95` (and the per-seed returns); "all" averages each seed over levels.
    """
    d = config.meta.discovery
    from superlearner.core.registry import make

    env = make(config.env.id, **config.env.options)
    if runs is None:
        runs = make_inner_runs(inner_config(config, "learned", source))
    ppo_runs = make_inner_runs(inner_config(config, "ppo_clip", source))
    test_seeds = jnp.arange(d.test_seeds, dtype=jnp.int32) + 10_000 * (config.train.seed + 1)
    measured = {}
    for split, key in (("test", "meta_test_levels"), ("train", "meta_train_levels")):
        levels, names = make_levels(env, getattr(d, key), source, key)
        measured[split] = _compare(split, runs, ppo_runs, meta_params, levels, names, test_seeds, log)
    for name, other in zip(d.meta_train_experiments, meta_train_experiments(config, source)):
        measured.setdefault("train_envs", {})[name] = _compare_experiment(
            f"meta-training env {other.env.id}", other, name, meta_params, test_seeds, source, log
        )
    if d.meta_test_experiment:
        held_out = held_out_experiment(config, source)
        measured["test_env"] = _compare_experiment(
            f"held-out env {held_out.env.id}", held_out, d.meta_test_experiment, meta_params, test_seeds, source, log
        )
    return measured


def _compare_experiment(split, experiment, name, meta_params, seeds, source, log) -> dict:
    """`_compare` on another experiment's env at its default level, at its own sizes and budget."""
    levels, names = _default_level(experiment)
    compared = _compare(
        split, make_inner_runs(inner_config(experiment, "learned", source)),
        make_inner_runs(inner_config(experiment, "ppo_clip", source)), meta_params, levels, names, seeds, log,
    )
    return dict(compared, experiment=name, env=experiment.env.id)


def _default_level(experiment: ExperimentConfig):
    """``(levels, names)``: the experiment env's default level as one level named by the env."""
    from superlearner.core.registry import make

    env = make(experiment.env.id, **experiment.env.options)
    return jax.tree.map(lambda x: jnp.stack([x]), env.default_params), (env.id,)


def _other_experiment(config: ExperimentConfig, name: str, key: str, role: str, source: str) -> ExperimentConfig:
    """The experiment ``name`` (``meta.discovery.<key>``), checked for discovery's inner runs:
    single-agent PPO on another env than ``config``'s, population 1, no meta-controller."""
    from superlearner.core.registry import make

    where = f"{source}: meta.discovery.{key}={name!r}"
    try:
        other = load_config(name)
    except UserError as error:
        raise ConfigError(f"{where}: {error}") from None
    from superlearner.learners.base import learner_def

    if not learner_def(other.learner.kind, where).update_rules:
        raise ConfigError(f"{where} trains learner.kind={other.learner.kind}, whose update is no update rule; "
                          f"{role} must be a PPO experiment (a learner that reads learner.update_rule)")
    if make(other.env.id, **other.env.options).num_players != 1:
        raise ConfigError(f"{where} is a {other.env.id} self-play experiment; {role} must be single-agent")
    if other.env.id == config.env.id:
        levels_key = "meta_test_levels" if key == "meta_test_experiment" else "meta_train_levels"
        raise ConfigError(f"{where} trains on {other.env.id}, the experiment's own env; levels of it go in meta.discovery.{levels_key}")
    inner_config(other, "learned", where)
    return other


def meta_train_experiments(config: ExperimentConfig, source: str = "config") -> list[ExperimentConfig]:
    """The experiments of ``meta.discovery.meta_train_experiments``, checked (see
    `_other_experiment`; each env at most once); `ConfigError` in one line."""
    names = config.meta.discovery.meta_train_experiments
    others = [_other_experiment(config, name, "meta_train_experiments", "a meta-training task", source) for name in names]
    seen = {}
    for name, other in zip(names, others):
        if other.env.id in seen:
            raise ConfigError(
                f"{source}: meta.discovery.meta_train_experiments names {seen[other.env.id]!r} and {name!r}, both on "
                f"{other.env.id}; give each env once (its levels go in one experiment)"
            )
        seen[other.env.id] = name
    return others


def held_out_experiment(config: ExperimentConfig, source: str = "config") -> ExperimentConfig:
    """The experiment named by ``meta.discovery.meta_test_experiment``, checked like a
    meta-training one and on an env none of them trains on; `ConfigError` in one line."""
    d = config.meta.discovery
    held_out = _other_experiment(config, d.meta_test_experiment, "meta_test_experiment", "the held-out task", source)
    for name, other in zip(d.meta_train_experiments, meta_train_experiments(config, source)):
        if other.env.id == held_out.env.id:
            raise ConfigError(
                f"{source}: meta.discovery.meta_test_experiment={d.meta_test_experiment!r} trains on {held_out.env.id}, "
                f"which meta_train_experiments already trains on ({name!r}); hold out an env the search never sees"
            )
    return held_out


def _compare(split, runs, ppo_runs, meta_params, levels, names, seeds, log) -> dict:
    """The learned rule and PPO-clip on ``levels`` with the same ``seeds``: per rule and level the
    returns with `mean_and_ci95`, and the paired per-seed difference."""
    measured = {}
    for rule, fn, params in (("discovered", runs.run, meta_params), ("ppo_clip", ppo_runs.run, {})):
        tick = time.perf_counter()
        returns = _run_in_batches(fn, params, levels, seeds)  # [L, S]
        entry = {"wall_time": time.perf_counter() - tick}
        for name, row in zip(names, returns):
            entry[name] = dict(mean_and_ci95(row), returns=row.tolist())
        entry["all"] = mean_and_ci95(returns.mean(axis=0))  # per seed, averaged over levels
        entry["per_seed"] = returns.mean(axis=0).tolist()
        measured[rule] = entry
        stats = entry["all"]
        mean, low, high = _numbers(stats["mean"], stats["low"], stats["high"])
        per_level = ", ".join(f"{name} {_numbers(entry[name]['mean'])[0]}" for name in names)
        log(f"{split} {rule}: mean {mean} 95% CI [{low}, {high}] over {seeds.shape[0]} seeds "
            f"({per_level}; {entry['wall_time']:.1f} s)")
    # Both rules train on the same seeds: the per-seed difference is a paired comparison.
    difference = np.subtract(measured["discovered"]["per_seed"], measured["ppo_clip"]["per_seed"])
    measured["discovered_minus_ppo_clip"] = pair = mean_and_ci95(difference)
    mean, low, high = _numbers(pair["mean"], pair["low"], pair["high"], sign="+")
    log(f"{split} discovered - ppo_clip (paired): {mean} 95% CI [{low}, {high}]")
    return measured


def _numbers(*values: float, sign: str = "") -> list[str]:
    """Returns for the log, all with one decimal on large scales (cartpole, acrobot) and three on
    small ones (catch pays +1 or -1 per episode), chosen by the largest of ``values``."""
    digits = 1 if max(abs(value) for value in values) >= 10 else 3
    return [f"{value:{sign}.{digits}f}" for value in values]


# Runs per compiled call when measuring. On XLA's CPU backend (jax 0.10.2) the PPO-clip inner
# runs batched 16 wide were seen to block forever in execution while 4 and 8 wide ran; small
# batches sidestep it at little cost.
MEASURE_BATCH = 4


def _run_in_batches(fn, params, levels, seeds) -> np.ndarray:
    """float[L, S]: ``fn(params, level[1], seeds[<= MEASURE_BATCH])`` level by level, seeds in batches."""
    compiled = jax.jit(fn)
    leaves = jax.tree.leaves(levels)
    num_levels = leaves[0].shape[0] if leaves else 1  # an env without level parameters has one level
    rows = []
    for index in range(num_levels):
        level = jax.tree.map(lambda x: x[index : index + 1], levels)
        parts = [np.asarray(compiled(params, level, seeds[i : i + MEASURE_BATCH]))[0]
                 for i in range(0, seeds.shape[0], MEASURE_BATCH)]
        rows.append(np.concatenate(parts))
    return np.stack(rows)


# ----------------------------------------------------------------------------------------------
# Entry point.


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m superlearner.run.discovery",
        description="Meta-train a learned drift function with evolution strategies and export it.",
    )
    parser.add_argument("experiment", help="preset name or YAML path (see experiments/discover_drift.yaml)")
    parser.add_argument("--out", required=True, help="rule file to write (.npz); a .json report is written beside it")
    parser.add_argument("--measure", metavar="RULE_FILE", default=None,
                        help="skip the search: measure this rule file against PPO-clip (report to --out's .json)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. meta.discovery.generations=20")
    args = parser.parse_args(argv)
    out = Path(args.out)
    try:
        config = load_config(args.experiment, args.overrides)
        check_discovery(config, args.experiment)
        d = config.meta.discovery
        extra = dict(experiment=config.name, env=config.env.id, meta_train_levels=list(d.meta_train_levels),
                     meta_train_experiments=list(d.meta_train_experiments),
                     meta_test_levels=list(d.meta_test_levels), meta_test_experiment=d.meta_test_experiment)
        if args.measure:
            from superlearner.learners.update_rules import read_rule_file

            start = time.perf_counter()
            _, meta_params = read_rule_file(args.measure)
            measured = measure(config, meta_params, source=args.experiment)
            report = dict(rule_file=str(args.measure), **measured,
                          wall_time=time.perf_counter() - start, config=config_to_dict(config))
        else:
            def save(meta_params, history):
                save_rule_file(out, meta_params, extra=dict(extra, fitness_history=history))
                print(f"wrote {out}")

            result = discover(config, source=args.experiment, on_search_done=save)
            header = dict(extra, test={rule: result.test[rule]["all"] for rule in ("discovered", "ppo_clip")})
            if result.test_env:
                header["test_env"] = {rule: result.test_env[rule]["all"] for rule in ("discovered", "ppo_clip")}
            for name, entry in result.train_envs.items():
                header.setdefault("train_envs", {})[name] = {rule: entry[rule]["all"] for rule in ("discovered", "ppo_clip")}
            save_rule_file(out, result.meta_params, extra=header)
            report = result.as_dict()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report_path = out.with_suffix(".json")
    report_path.write_text(json.dumps(report, indent=1))
    print(f"wrote {report_path} ({report['wall_time']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
