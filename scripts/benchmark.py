"""Benchmarks, one family per subcommand; each run prints a table and appends it to docs/benchmarks.md.

    python scripts/benchmark.py envs [--batch-sizes 1 64 1024 8192] [--envs ...] [--steps N]
                                     [--repeats R] [--no-pgx] [--no-write] [--output PATH]

Families:
  envs        batched random-play throughput of every registered env (and of pgx's games, when pgx
              is installed, under the identical harness).
  ppo         PPO training time on CartPole at PureJaxRL's settings; larger batches, many seeds at
              once, and the engine's overhead against chunk size.
  selfplay    league self-play PPO throughput of the board-game presets next to single-agent PPO.
  curriculum  maze curricula (DR, PLR, ACCEL, SFL) throughput and their overhead over DR.
  meta        wall-time overhead of population based training over independent members.
  alphazero   AlphaZero self-play iteration time at pgx's AlphaZero example settings.
  loop        the whole loop's overhead on AlphaZero: league, curriculum, rating and bandit against plain.
  memory      device memory (state, temporaries, peak) of every preset's compiled train chunk.
  precision   bfloat16 against float32 network compute: speed and learning.
  scaling     env steps per second against number of envs, population size and number of devices
              (a device mesh; simulated devices on CPU), with compile times.

A family is one function ``bench_<name>(args) -> Report`` and one line in ``FAMILIES`` that names
it, its help text and its own command-line arguments; the shared arguments (``--repeats``,
``--no-write``, ``--output``) and the writing of the report are common to all.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

import superlearner as sl
from superlearner.core.testing import random_legal_action

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"

DOC_HEADER = """\
# Benchmarks

Each section below was appended by `scripts/benchmark.py`, with the date, the machine, the package
versions and the exact command that produced it; run the same command to reproduce a table (add
`--no-write` to print it without touching this file). Figures from different machines or
accelerators are not comparable; compare rows within one section. Each section also records the
load average before the run: figures taken while other processes kept the CPU busy are noisy
(repeats are interleaved across envs, so ratios within a section suffer least).

* `python scripts/benchmark.py envs`: environment steps per second under batched random play
  (uniformly random legal actions, auto-reset, one `lax.scan` of N steps under `jit`, compile
  excluded, best of a few repeats), for every registered env and, when pgx is installed, for
  pgx's `tic_tac_toe`, `connect_four` and `othello` under the identical harness.
* `ppo`, `selfplay`, `curriculum`, `meta`, `alphazero`, `memory`, `precision`, `scaling`: training speed,
  overheads and memory of the engine's learners and presets (each section says what it timed).
"""


# ---------------------------------------------------------------------------------------------
# The report every family returns.


@dataclasses.dataclass
class Table:
    """One table of a report: a title, column names and rows of already formatted cells."""

    title: str
    columns: list[str]
    rows: list[list[str]]


@dataclasses.dataclass
class Report:
    """What a family measured: a heading, notes on the method, and tables."""

    heading: str
    notes: list[str]
    tables: list[Table]


@dataclasses.dataclass(frozen=True)
class Family:
    """A benchmark family: its function, help line and own ``(flags, argparse kwargs)``."""

    run: Callable[[argparse.Namespace], Report]
    help: str
    arguments: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = ()


def arg(*flags: str, **kwargs: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    return flags, kwargs


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


# ---------------------------------------------------------------------------------------------
# envs: batched random-play throughput.

PGX_GAMES = ("tic_tac_toe", "connect_four", "othello")
PGX_PREFIX = "pgx/"


def default_num_steps(batch_size: int) -> int:
    """Scan length for a batch size: about 2^16 env steps per timed call, 16..1024 iterations."""
    return max(16, min(1024, 2**16 // batch_size))


def make_random_play(
    init_fn: Callable, step_fn: Callable, batch_size: int, num_steps: int
) -> Callable[[jax.Array], Any]:
    """A jitted ``key -> states``: reset ``batch_size`` envs, then ``num_steps`` random moves each.

    ``init_fn(key) -> state`` and ``step_fn(state, action, key) -> state`` act on one unbatched
    env and reset it themselves when an episode ends. Actions are uniform over the legal ones
    (the same sampler for every env). The final states are returned so no part of the step can
    be optimised away.
    """

    def run(key: jax.Array):
        init_key, play_key = jax.random.split(key)
        states = jax.vmap(init_fn)(jax.random.split(init_key, batch_size))

        def body(states, step_key):
            action_key, env_key = jax.random.split(step_key)
            actions = jax.vmap(random_legal_action)(jax.random.split(action_key, batch_size), states)
            states = jax.vmap(step_fn)(states, actions, jax.random.split(env_key, batch_size))
            return states, None

        states, _ = jax.lax.scan(body, states, jax.random.split(play_key, num_steps))
        return states

    return jax.jit(run)


def best_times(plays: dict[str, Callable], repeats: int, seed: int = 0) -> dict[str, float]:
    """The best of ``repeats`` timed calls of each ``play``; compiling calls are not timed.

    The repeats are interleaved (every play once, then every play again), so a burst of load
    from other processes hits all of them alike and the ratios between them stay fair.
    """
    keys = jax.random.split(jax.random.key(seed), repeats + 1)
    for play in plays.values():
        jax.block_until_ready(play(keys[0]))
    best = {name: float("inf") for name in plays}
    for key in keys[1:]:
        for name, play in plays.items():
            start = time.perf_counter()
            jax.block_until_ready(play(key))
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def superlearner_harness(env_id: str) -> tuple[Callable, Callable]:
    env = sl.make(env_id)

    def step(state, action, key):
        next_state, _ = sl.step_auto_reset(env, state, action, key)
        return next_state

    return env.reset, step


def pgx_harness(game: str) -> tuple[Callable, Callable]:
    import pgx
    from pgx.experimental import auto_reset

    env = pgx.make(game)
    return env.init, auto_reset(env.step, env.init)


def bench_envs(args: argparse.Namespace) -> Report:
    """Env steps per second of random play, for each env at each batch size."""
    targets, skipped = _env_targets(args)
    batch_sizes = args.batch_sizes
    num_steps = {b: args.steps or default_num_steps(b) for b in batch_sizes}
    harnesses = {
        name: pgx_harness(name[len(PGX_PREFIX):]) if name.startswith(PGX_PREFIX) else superlearner_harness(name)
        for name in targets
    }
    results: dict[str, dict[int, float]] = {name: {} for name in targets}
    for batch_size in batch_sizes:
        n = num_steps[batch_size]
        plays = {
            name: make_random_play(init_fn, step_fn, batch_size, n)
            for name, (init_fn, step_fn) in harnesses.items()
        }
        for name, seconds in best_times(plays, args.repeats).items():
            results[name][batch_size] = batch_size * n / seconds
            print(f"  {name:<20} B={batch_size:<6} {format_rate(results[name][batch_size]):>8} steps/s",
                  file=sys.stderr)

    columns = ["env"] + [f"B={b}" for b in batch_sizes]
    rows = [[name] + [format_rate(results[name][b]) for b in batch_sizes] for name in results]
    tables = [Table("Env steps per second", columns, rows)]
    pairs = [g for g in PGX_GAMES if g in results and PGX_PREFIX + g in results]
    if pairs:
        ratio_rows = [
            [g] + [f"{results[g][b] / results[PGX_PREFIX + g][b]:.2f}x" for b in batch_sizes]
            for g in pairs
        ]
        tables.append(Table("superlearner / pgx, same game and harness", columns, ratio_rows))

    steps_text = ", ".join(f"B={b}: {num_steps[b]}" for b in batch_sizes)
    notes = [
        "One env step is one move of the player to move. Actions are uniformly random legal "
        "actions; finished episodes restart (superlearner: `step_auto_reset`; pgx: "
        "`pgx.experimental.auto_reset`).",
        f"Timed: one jitted `lax.scan` of N steps over a `vmap` of B envs, compile excluded, "
        f"best of {args.repeats} repeats interleaved across envs. N per batch size: {steps_text}.",
    ]
    if skipped:
        notes.append("Not measured: " + "; ".join(skipped) + ".")
    return Report("envs: random-play throughput", notes, tables)


def _env_targets(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """The names to measure (env ids and ``pgx/<game>``) and why others were left out."""
    pgx_available = importlib.util.find_spec("pgx") is not None
    requested = args.envs
    if requested is None:
        requested = sl.list_envs()
        if pgx_available and not args.no_pgx:
            requested += [PGX_PREFIX + g for g in PGX_GAMES]
    targets, skipped = [], []
    for name in requested:
        if name.startswith(PGX_PREFIX):
            if not pgx_available:
                skipped.append(f"{name} (pgx is not installed)")
            elif name[len(PGX_PREFIX):] not in PGX_GAMES:
                raise sl.UserError(f"envs: {name!r} is not benchmarked, accepted pgx games: {', '.join(PGX_GAMES)}")
            else:
                targets.append(name)
            continue
        try:
            sl.make(name)
        except ImportError as error:
            skipped.append(f"{name} (cannot be imported: {error})")
            continue
        targets.append(name)
    return targets, skipped


def format_rate(rate: float) -> str:
    if rate >= 1e6:
        return f"{rate / 1e6:.2f}M"
    if rate >= 1e3:
        return f"{rate / 1e3:.1f}k"
    return f"{rate:.0f}"


# ---------------------------------------------------------------------------------------------
# ppo: the training engine against PureJaxRL's reference settings.

# PureJaxRL's PPO on CartPole-v1 (4 envs x 128 steps, 5e5 steps, 4 epochs, 4 minibatches, 64x64
# tanh MLP) measured on the 2-core CPU this project is developed on: seconds with and without
# compilation. It is not rerun here (it is not our code); compare on the same machine class.
PUREJAXRL_REFERENCE = {"with_compile": (6.4, 7.8), "without_compile": (2.8, 3.4)}


def _timed_training(overrides: dict, chunk: int | None = None, repeats: int = 1, preset: str = "cartpole_ppo") -> dict:
    """Builds an engine from ``preset`` with ``overrides`` and trains it to the end twice: once
    including compilation (engine construction, init and the chunk), then (best of
    ``repeats``, other seeds) with every program compiled."""
    import numpy as np

    import jax.numpy as jnp

    from superlearner.engine import compile_concurrently, lower_init, make_engine

    config = _preset_config(preset, overrides)
    size = chunk or config.train.iterations_per_chunk
    start = time.perf_counter()
    engine = make_engine(config)
    # As the trainer does it (`superlearner.run.trainer.compile_run`): init and chunk compile together.
    abstract = jax.eval_shape(engine.init, jnp.int32(config.train.seed))
    chunk_program = jax.jit(engine.train_chunk, static_argnums=1, donate_argnums=0).lower(abstract, size)
    run, init = compile_concurrently(chunk_program, lower_init(engine))

    def train_all(seed):
        state = init(jnp.int32(seed))
        metrics = None
        while int(state.iteration) < engine.num_iterations:
            state, metrics = run(state)
        jax.block_until_ready(state)
        valid = np.asarray(metrics["valid"])
        return float(np.asarray(metrics["episode_return"])[valid][-1].mean())

    final_return = train_all(config.train.seed)
    with_compile = time.perf_counter() - start
    without = float("inf")
    for repeat in range(repeats):
        start = time.perf_counter()
        train_all(config.train.seed + 1 + repeat)
        without = min(without, time.perf_counter() - start)
    steps = engine.num_iterations * engine.env_steps_per_iteration * config.train.population_size
    return dict(steps=steps, with_compile=with_compile, without_compile=without, final_return=final_return,
                iterations=engine.num_iterations)


def _preset_config(preset: str, overrides: dict):
    """A preset's config with ``{key: value}`` overrides (as ``--set key=value``), logging off."""
    from superlearner.config import apply_overrides, config_from_dict, config_to_dict, load_config

    base = config_to_dict(load_config(preset))
    raw = apply_overrides(base, [f"{k}={v}" for k, v in {"log.tensorboard": "false", **overrides}.items()])
    return config_from_dict(raw, source=preset)


def _chunk_throughput(preset: str, overrides: dict, iterations: int, repeats: int, num_devices: int | None = None,
                      warmup_chunks: int = 0, prepare=None) -> dict:
    """Env steps per second of ``iterations`` train iterations of ``preset`` (one compiled chunk,
    compile timed apart, best of ``repeats`` calls), without the host loop's logging.

    With ``warmup_chunks``, that many chunks run first and each timed chunk continues from the
    last (a curriculum's buffer then holds what a run's would at that point, so its replay and
    training steps are in the timed window); otherwise every call starts from the initial state.

    With ``num_devices``, the state lives on a (pop, data) mesh of the first that many devices,
    laid out as `superlearner train` would (the result then also names the mesh).

    ``prepare(engine, state) -> state``, if given, edits the initial state before anything runs.
    """
    from superlearner.core import distributed
    from superlearner.engine import initial_state, make_engine

    config = _preset_config(preset, overrides)
    start = time.perf_counter()
    engine = make_engine(config)
    if num_devices is None:
        mesh = shape = None
        state = initial_state(engine, config.train.seed)
        chunk = jax.jit(engine.train_chunk, static_argnums=1)
    else:
        shape = distributed.resolve_mesh_shape(config.train.population_size, config.learner.num_envs, num_devices,
                                               config.train.mesh_pop, config.train.mesh_data)
        mesh = distributed.make_mesh(shape, jax.devices()[:num_devices])
        abstract = jax.eval_shape(lambda: engine.init(config.train.seed))
        shardings = distributed.train_state_shardings(abstract, mesh, config.train.population_size, config.learner.num_envs)
        state = initial_state(engine, config.train.seed, shardings)
        chunk = jax.jit(engine.train_chunk, static_argnums=1, out_shardings=(shardings, distributed.replicated(mesh)))
    if prepare is not None:
        state = prepare(engine, state)
    with jax.set_mesh(mesh) if mesh is not None else contextlib.nullcontext():
        compiled = chunk.lower(state, iterations).compile()
    compile_seconds = time.perf_counter() - start
    warmed, _ = jax.block_until_ready(compiled(state))
    for _ in range(warmup_chunks - 1):
        warmed, _ = jax.block_until_ready(compiled(warmed))
    start_state = warmed if warmup_chunks > 0 else state
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out, _ = jax.block_until_ready(compiled(start_state))
        best = min(best, time.perf_counter() - start)
        if warmup_chunks > 0:
            start_state = out
    steps = iterations * engine.env_steps_per_iteration * config.train.population_size
    return dict(config=config, engine=engine, compile=compile_seconds, seconds=best, rate=steps / best, steps=steps,
                mesh=None if shape is None else str(shape), state=start_state)


# PureJaxRL's PPO settings for CartPole-v1 (its ppo.py's __main__ block, without the debug prints).
PUREJAXRL_CONFIG = {
    "LR": 2.5e-4, "NUM_ENVS": 4, "NUM_STEPS": 128, "TOTAL_TIMESTEPS": 5e5, "UPDATE_EPOCHS": 4,
    "NUM_MINIBATCHES": 4, "GAMMA": 0.99, "GAE_LAMBDA": 0.95, "CLIP_EPS": 0.2, "ENT_COEF": 0.01,
    "VF_COEF": 0.5, "MAX_GRAD_NORM": 0.5, "ACTIVATION": "tanh", "ENV_NAME": "CartPole-v1",
    "ANNEAL_LR": True, "DEBUG": False,
}

# Runs PureJaxRL's own make_train from a checkout, in a fresh process, and prints one JSON line.
# Two adaptations, neither touching what is timed: its wrappers module imports brax at the top
# (unused for gymnax envs; a stub stands in when brax is absent), and gymnax 1.x's step returns
# terminated and truncated apart where PureJaxRL expects one done flag (their "or", which is
# what done meant in the gymnax it was written for).
_PUREJAXRL_DRIVER = r"""
import json, sys, time, types
sys.path.insert(0, sys.argv[1])
try:
    import brax  # noqa: F401
except ImportError:
    brax = types.ModuleType("brax"); brax.envs = types.ModuleType("brax.envs")
    sys.modules["brax"] = brax; sys.modules["brax.envs"] = brax.envs
import jax, jax.numpy as jnp, gymnax
_make = gymnax.make
class _FiveValueStep:
    def __init__(self, env): self._env = env
    def __getattr__(self, name): return getattr(self._env, name)
    def step(self, key, state, action, params=None):
        out = self._env.step(key, state, action, params)
        if len(out) == 6:
            obs, state, reward, terminated, truncated, info = out
            return obs, state, reward, jnp.logical_or(terminated, truncated), info
        return out
def make(*args, **kwargs):
    env, params = _make(*args, **kwargs)
    return _FiveValueStep(env), params
gymnax.make = make
from purejaxrl.ppo import make_train
config = json.loads(sys.argv[2])
start = time.perf_counter()
train = jax.jit(make_train(dict(config)))
out = jax.block_until_ready(train(jax.random.PRNGKey(30)))
with_compile = time.perf_counter() - start
final = float(out["metrics"]["returned_episode_returns"][-1].mean())
start = time.perf_counter()
jax.block_until_ready(train(jax.random.PRNGKey(31)))
print(json.dumps(dict(with_compile=with_compile, without_compile=time.perf_counter() - start, final_return=final)))
"""

# Our rows of the same-run comparison: the preset as PureJaxRL runs it (a truncated episode is
# treated as terminated, so no value pass over the rollout's last observations) and the preset as
# shipped (bootstrapping from the value of a truncated episode's last observation).
SAME_RUN_VARIANTS = {
    "superlearner (truncation as termination, as PureJaxRL)": {"learner.bootstrap_truncation": "false"},
    "superlearner (preset default: bootstrap at truncation)": {},
}

# Our side of the same comparison, also in a fresh process so neither side gains from caches.
_SUPERLEARNER_DRIVER = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import benchmark
result = benchmark._timed_training(json.loads(sys.argv[2]), repeats=1)
print(json.dumps({k: result[k] for k in ("with_compile", "without_compile", "final_return")}))
"""


def _run_driver(driver: str, *argv: str, env: dict | None = None, timeout: float = 1800.0,
                python: str = sys.executable) -> dict:
    """Runs a driver program in a fresh process of ``python`` (with ``env``, default: this
    one's); returns the JSON of its last line (see `_run_command`)."""
    return _run_command([python, "-c", driver, *argv], env=env, timeout=timeout, label=" ".join(argv))


def _run_command(command: list[str], env: dict | None = None, timeout: float = 1800.0, label: str | None = None) -> dict:
    """Runs ``command``; returns the JSON of its last line of output. A command still running
    after ``timeout`` seconds is killed and reported, so one stuck measurement never stalls the
    whole suite; a failure is a one-line error with the command's last line of errors."""
    import subprocess

    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise sl.UserError(f"benchmark subprocess ran past {timeout:.0f} s and was stopped: {label or ' '.join(command)}") from None
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit status {done.returncode}"
        raise sl.UserError(f"benchmark subprocess failed: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _same_run_comparison(purejaxrl_dir: Path, repeats: int) -> tuple[Table, list[str]]:
    """PureJaxRL's PPO and ours at PureJaxRL's CartPole settings, each in fresh processes,
    alternating ``repeats`` times; every repeat's figure is shown, and the best."""

    if not (purejaxrl_dir / "purejaxrl" / "ppo.py").is_file():
        raise sl.UserError(f"--purejaxrl {purejaxrl_dir}: no purejaxrl/ppo.py there (expected a PureJaxRL checkout)")
    for package in ("gymnax", "distrax"):
        if importlib.util.find_spec(package) is None:
            raise sl.UserError(f"--purejaxrl needs {package} installed (pip install -e '.[bench]')")
    scripts_dir = str(Path(__file__).resolve().parent)
    runs: dict[str, list[dict]] = {name: [] for name in (*SAME_RUN_VARIANTS, "PureJaxRL")}
    for repeat in range(repeats):
        for name, overrides in SAME_RUN_VARIANTS.items():
            runs[name].append(_run_driver(_SUPERLEARNER_DRIVER, scripts_dir, json.dumps(overrides)))
        runs["PureJaxRL"].append(_run_driver(_PUREJAXRL_DRIVER, str(purejaxrl_dir), json.dumps(PUREJAXRL_CONFIG)))
        print(f"  repeat {repeat + 1}: " + ", ".join(
            f"{name} {r[-1]['with_compile']:.2f} / {r[-1]['without_compile']:.2f} s" for name, r in runs.items()), file=sys.stderr)
    rows = []
    for name, results in runs.items():
        with_compile = [r["with_compile"] for r in results]
        without = [r["without_compile"] for r in results]
        rows.append([name, " ".join(f"{x:.2f}" for x in with_compile), f"{min(with_compile):.2f}",
                     " ".join(f"{x:.2f}" for x in without), f"{min(without):.2f}",
                     format_rate(5e5 / min(without)), " ".join(f"{r['final_return']:.0f}" for r in results)])
    table = Table(
        "Same run: PureJaxRL's ppo.py and superlearner's cartpole_ppo (4 envs x 128 steps, 5e5 steps), alternating fresh processes",
        ["system", "s with compile, each repeat", "best", "s without compile, each repeat", "best",
         "env steps/s (best)", "final train return"], rows)
    notes = [
        "Same-run comparison: each repeat runs superlearner's cartpole_ppo preset twice (as PureJaxRL "
        "treats truncation, `--set learner.bootstrap_truncation=false`, which is the same algorithm; "
        "and as shipped, which also bootstraps truncated episodes from a value pass over the rollout's "
        "last observations), then PureJaxRL's own "
        "`make_train` from the checkout given with --purejaxrl, each in a fresh Python process. 'With "
        "compile' starts after the imports (PureJaxRL: before `jax.jit(make_train(config))`; ours: before "
        "`make_engine`) and ends when the first whole run is done; 'without' is a second whole run "
        "with another seed in the same process.",
        "PureJaxRL runs on gymnax's CartPole-v1; its wrappers' top-level brax import is stubbed when brax "
        "is absent, and gymnax 1.x's separate terminated/truncated flags are or-ed into its done flag.",
    ]
    return table, notes


def bench_ppo(args: argparse.Namespace) -> Report:
    tables = []
    extra_notes: list[str] = []
    if args.purejaxrl is not None:
        table, extra_notes = _same_run_comparison(args.purejaxrl, args.repeats)
        tables.append(table)
        if args.only_comparison:
            return Report("ppo: training engine throughput (CartPole)", extra_notes, tables)
    reference = _timed_training({}, repeats=args.repeats)
    low, high = PUREJAXRL_REFERENCE["with_compile"]
    low2, high2 = PUREJAXRL_REFERENCE["without_compile"]
    rows = [
        ["superlearner (this run)", f"{reference['with_compile']:.2f}", f"{reference['without_compile']:.2f}",
         format_rate(reference["steps"] / reference["without_compile"]), f"{reference['final_return']:.0f}"],
        ["PureJaxRL (reference figure)", f"{low}-{high}", f"{low2}-{high2}",
         f"{format_rate(5e5 / high2)}-{format_rate(5e5 / low2)}", "500"],
    ]
    tables.append(Table("CartPole PPO, 4 envs x 128 steps, 5e5 env steps (cartpole_ppo preset)",
                        ["system", "s with compile", "s without", "env steps/s", "final train return"], rows))

    rows = []
    for num_envs in args.num_envs:
        result = _timed_training({"learner.num_envs": num_envs, "train.total_env_steps": max(500_000, num_envs * 128 * 40)}, repeats=1)
        rows.append([str(num_envs), format_rate(result["steps"] / result["without_compile"]), f"{result['with_compile']:.1f}"])
    tables.append(Table("Larger batches (128 steps per env, 4 epochs x 4 minibatches)", ["num_envs", "env steps/s", "s with compile"], rows))

    result = _timed_training({"train.population_size": args.seeds}, repeats=1)
    tables.append(Table(
        f"{args.seeds} seeds at once (population_size={args.seeds}, one vmapped program, 5e5 steps each)",
        ["members", "s with compile", "s without", "env steps/s (all members)"],
        [[str(args.seeds), f"{result['with_compile']:.1f}", f"{result['without_compile']:.1f}",
          format_rate(result["steps"] / result["without_compile"])]],
    ))

    rows = []
    for chunk in args.chunk_sizes:
        result = _timed_training({}, chunk=chunk, repeats=1)
        rows.append([str(chunk), format_rate(result["steps"] / result["without_compile"]), f"{result['without_compile']:.2f}"])
    tables.append(Table("Engine overhead: iterations per compiled chunk (977 = the whole run in one scan)",
                        ["iterations per chunk", "env steps/s", "s without compile"], rows))
    notes = extra_notes + [
        "Times are wall-clock seconds for the whole run; 'with compile' starts before the engine is built.",
        "The PureJaxRL reference row is the figure measured on this machine class (2-core CPU) and given "
        "in the issue, not rerun here; run with --purejaxrl DIR for the same-run comparison.",
    ]
    return Report("ppo: training engine throughput (CartPole)", notes, tables)


# ---------------------------------------------------------------------------------------------
# selfplay: league self-play throughput next to single-agent PPO.

SELFPLAY_PRESETS = ("tic_tac_toe_selfplay", "connect_four_selfplay", "othello_selfplay", "kuhn_poker_selfplay")


def bench_selfplay(args: argparse.Namespace) -> Report:
    """Learner decisions per second of the self-play presets (rollout against league opponents,
    PPO update and league bookkeeping), and cartpole PPO at each preset's batch shape."""
    rows = []
    for preset in args.presets:
        single = None
        for groups in args.groups:
            overrides = {} if groups is None else {"league.opponent_groups": groups}
            result = _chunk_throughput(preset, overrides, args.iterations, args.repeats, prepare=_full_league)
            lc = result["config"].learner
            if single is None:
                single = _chunk_throughput("cartpole_ppo", {"learner.num_envs": lc.num_envs, "learner.num_steps": lc.num_steps,
                                                            "learner.num_minibatches": lc.num_minibatches, "learner.num_epochs": lc.num_epochs},
                                           args.iterations, args.repeats)
            rows.append([preset, str(result["config"].league.opponent_groups), f"{lc.num_envs} x {lc.num_steps}",
                         format_rate(result["rate"]), format_rate(single["rate"]),
                         f"{result['rate'] / single['rate']:.2f}", f"{result['compile']:.1f}"])
            print(f"  {preset:<24} groups {result['config'].league.opponent_groups:>3} {format_rate(result['rate']):>8} decisions/s",
                  file=sys.stderr)
    notes = [
        "A learner decision is one move of the learning agent together with the league opponent's "
        "replies (every env move of the opponent is extra work not counted in the rate).",
        f"Timed: one compiled chunk of {args.iterations} iterations (rollout, PPO update, league "
        f"bookkeeping), compile excluded, best of {args.repeats}. The cartpole column is single-agent "
        "PPO with the same envs x steps, epochs and minibatches.",
        "The league starts full (every slot holds a snapshot of the initial learner), so games draw "
        "their opponents from all of its slots as in a run's steady state.",
        "Opponent groups: 0 draws every game's opponent on its own (each reply runs every league "
        "opponent's network on all games, or gathers each game's network when the league has over 32 "
        "opponents); G > 0 (`league.opponent_groups`) "
        "shares one draw among the new games of each of G groups per rollout, so a reply runs two "
        "networks per group.",
    ]
    table = Table("Self-play PPO throughput", ["preset", "opponent groups", "envs x steps", "decisions/s",
                                               "cartpole PPO steps/s (same shape)", "ratio", "s compile"], rows)
    return Report("selfplay: league self-play throughput", notes, [table])


def _groups_arg(text: str):
    if text == "preset":
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give 'preset' or a whole number >= 0 (0: no groups)")
    return value


def _full_league(engine, state):
    """``state`` with every league slot holding a snapshot of the initial learner."""
    from superlearner.selfplay.league import add_snapshot

    league = state.league
    for slot in range(1, engine.config.league.capacity):
        league = jax.vmap(lambda lg, p: add_snapshot(lg, p, jnp.int32(slot)))(league, state.learner.params)
    return state.replace(league=league)


# ---------------------------------------------------------------------------------------------
# curriculum: level samplers inside the chunk, against domain randomisation.

CURRICULUM_PRESETS = ("maze_dr", "maze_plr", "maze_accel", "maze_sfl")
# JaxUED's maze examples (32 envs, convolutional LSTM policy) on the 2-core CPU this project is
# developed on, env steps per second; not rerun here (not our code).
JAXUED_REFERENCE = {"maze_dr": "4.4k", "maze_plr": "5.4k-6.0k"}


def describe_policy(lc) -> str:
    """The network of a learner config in words, e.g. "64x64 MLP and a 32-unit LSTM"."""
    torso = "x".join(map(str, lc.hidden_sizes)) + (" conv+MLP" if lc.network == "conv" else " MLP")
    if lc.memory == "none":
        return torso
    length = lc.sequence_length or lc.num_steps
    return f"{torso} and a {lc.memory_size}-unit LSTM, {length}-step sequences"


def _curriculum_warmup_chunks(preset: str, overrides: dict, iterations: int) -> int:
    """Chunks to run before timing ``preset`` (with ``overrides``): until its buffer may replay
    (``min_fill_ratio`` of the capacity, at most one batch of levels inserted per iteration), plus two."""
    config = _preset_config(preset, overrides)
    fill = config.curriculum.min_fill_ratio * config.curriculum.capacity / config.learner.num_envs
    return math.ceil(fill / iterations) + 2


# Our preset of each of JaxUED's maze examples in the same-run comparison.
JAXUED_EXAMPLES = {"maze_dr": "dr", "maze_plr": "plr", "maze_accel": "accel"}


def bench_curriculum(args: argparse.Namespace) -> Report:
    overrides = dict(item.split("=", 1) for item in args.overrides if "=" in item)
    if len(overrides) != len(args.overrides):
        raise sl.UserError(f"--set {args.overrides}: expected KEY=VALUE, e.g. learner.memory=none")
    results, jaxued = {}, {}
    for round_index in range(args.rounds if args.jaxued is not None else 1):
        for preset in args.presets:
            result = _chunk_throughput(preset, overrides, args.iterations, args.repeats,
                                       warmup_chunks=_curriculum_warmup_chunks(preset, overrides, args.iterations))
            if preset not in results or result["rate"] > results[preset]["rate"]:
                results[preset] = result
            if args.jaxued is not None and preset in JAXUED_EXAMPLES:
                example = JAXUED_EXAMPLES[preset]
                out = _run_command([args.jaxued_python, str(Path(__file__).resolve().parent / "reference_jaxued.py"),
                                    "--checkout", str(args.jaxued), "--example", example,
                                    "--updates", str(args.iterations), "--chunks", str(args.repeats)])
                if preset not in jaxued or out["rate"] > jaxued[preset]["rate"]:
                    jaxued[preset] = out
            print(f"  round {round_index + 1} {preset:<12} ours {format_rate(results[preset]['rate']):>8}"
                  + (f", JaxUED {format_rate(jaxued[preset]['rate']):>8}" if preset in jaxued else "") + " steps/s",
                  file=sys.stderr)
    base = results.get("maze_dr")
    rows = []
    for preset, result in results.items():
        overhead = f"{100 * (base['rate'] / result['rate'] - 1):+.1f}%" if base else "-"
        buffer = result["state"].curriculum.get("buffer") if isinstance(result["state"].curriculum, dict) else None
        filled = "-" if buffer is None else str(int(np.asarray(buffer.valid).sum()))
        if args.jaxued is not None:
            theirs = jaxued.get(preset)
            reference = [format_rate(theirs["rate"]) if theirs else "-",
                         f"{result['rate'] / theirs['rate']:.1f}x" if theirs else "-"]
        else:
            reference = [JAXUED_REFERENCE.get(preset, "-")]
        rows.append([preset, result["config"].curriculum.kind, format_rate(result["rate"]), overhead, *reference,
                     filled, f"{result['compile']:.1f}"])
        print(f"  {preset:<12} {format_rate(result['rate']):>8} steps/s", file=sys.stderr)
    lc = next(iter(results.values()))["config"].learner
    notes = [
        f"Timed: one compiled chunk of {args.iterations} iterations ({lc.num_envs} envs x {lc.num_steps} steps, "
        f"the presets' policy: {describe_policy(lc)}), compile excluded, best of {args.repeats} successive chunks "
        "after warm-up chunks that fill the level buffer to where it may replay (buffer column: levels it holds), "
        "so robust PLR's and ACCEL's steps without a gradient step (fresh levels, mutations) come in their "
        "run-time share; the wall time per iteration includes the sampler, level scoring and buffer updates.",
        "Overhead is the extra wall time per env step against domain randomisation (maze_dr) in this run.",
    ]
    if overrides:
        notes.append("Overrides of every timed preset: " + ", ".join(f"{k}={v}" for k, v in overrides.items()) + ".")
    if args.jaxued is not None:
        counts = "; ".join(f"{p}: {json.dumps(r['counts'])}" for p, r in jaxued.items())
        notes.append(
            f"JaxUED columns: its own examples (examples/maze_dr.py, maze_plr.py, maze_plr.py --use_accel of the "
            f"checkout given with --jaxued; 32 envs x 256 steps, its conv + LSTM policy and PPO settings) run by "
            f"scripts/reference_jaxued.py in a fresh process after each of ours, {args.rounds} rounds, best chunk "
            f"of {args.iterations} updates after its buffer is as full; the policies differ. Its timed updates "
            f"per kind: {counts}."
        )
        columns = ["JaxUED env steps/s (same run)", "ours / JaxUED"]
    else:
        notes.append("JaxUED column: reference figures for its maze examples (32 envs, a convolutional LSTM policy) "
                     "on this machine class, not rerun here; the policies differ.")
        columns = ["JaxUED (reference)"]
    table = Table("Curriculum throughput on 13x13 mazes", ["preset", "sampler", "env steps/s", "time vs DR",
                                                           *columns, "buffer", "s compile"], rows)
    return Report("curriculum: level samplers in the train chunk", notes, [table])


# ---------------------------------------------------------------------------------------------
# meta: the cost of population based training over independent members.


def bench_meta(args: argparse.Namespace) -> Report:
    overrides = {"train.total_env_steps": args.total_env_steps}
    results = {}
    for _ in range(args.repeats):  # interleaved, so load hits both alike
        for preset in ("cartpole_population", "cartpole_pbt"):
            result = _timed_training(overrides, preset=preset)
            if preset not in results or result["with_compile"] < results[preset]["with_compile"]:
                results[preset] = result
    plain, pbt = results["cartpole_population"], results["cartpole_pbt"]
    rows = [
        [name, f"{r['with_compile']:.1f}", f"{r['without_compile']:.1f}", format_rate(r["steps"] / r["without_compile"])]
        for name, r in (("8 members, no adaptation", plain), ("8 members, PBT", pbt))
    ]
    overhead = 100 * (pbt["without_compile"] / plain["without_compile"] - 1)
    notes = [
        f"Whole runs of {args.total_env_steps} env steps per member (cartpole_population and cartpole_pbt "
        f"presets: 8 members, 4 envs x 128 steps each), best of {args.repeats} interleaved repeats.",
        f"PBT's overhead over independent members, compile excluded: {overhead:+.1f}% of wall time.",
    ]
    table = Table("Population of 8 on cartpole", ["run", "s with compile", "s without", "env steps/s (all members)"], rows)
    return Report("meta: adaptation overhead", notes, [table])


# ---------------------------------------------------------------------------------------------
# alphazero: self-play with search at pgx's AlphaZero example settings.

# pgx's AlphaZero example (connect_four, 3 residual blocks of 32 channels, 16 simulations, 256
# games x 64 moves per iteration) on the 2-core CPU this project is developed on, as the issue
# gives it; --pgx-example runs the example itself in the same run instead.
PGX_ALPHAZERO_REFERENCE = (16.0, 17.0)

# The settings of the comparison, in pgx's example's config names: 256 // 1024-sample minibatches
# give 16 SGD steps per iteration, as ours take.
PGX_ALPHAZERO_CONFIG = {
    "env_id": "connect_four", "seed": 0, "num_channels": 32, "num_layers": 3, "resnet_v2": True,
    "num_simulations": 16, "max_num_steps": 64, "training_batch_size": 1024, "learning_rate": 0.001,
}

# Imports pgx's examples/alphazero/train.py from a checkout with its command-line config, and
# times its iteration as its main loop runs it: self-play, loss inputs, the host-side shuffle into
# minibatches, then one pmapped SGD step per minibatch. What is stubbed is outside the iteration:
# wandb (logging), the baseline model (downloaded, used by evaluation only), and two JAX names that
# newer JAX removed (jax.tree_map, jax.device_put_replicated; the replacement of the latter gives
# the arrays the sharding the pmapped train step returns, so nothing recompiles).
_PGX_ALPHAZERO_DRIVER = r"""
import json, statistics, sys, time, types
directory, settings, iterations = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
sys.path.insert(0, directory)
try:
    import wandb  # noqa: F401
except ImportError:
    sys.modules["wandb"] = types.ModuleType("wandb")
import jax, jax.numpy as jnp
if not hasattr(jax, "tree_map"):
    jax.tree_map = jax.tree_util.tree_map
import pgx
pgx.make_baseline_model = lambda *args, **kwargs: None
sys.argv = ["train.py"] + [f"{name}={value}" for name, value in settings.items()]
import train as az
devices = az.num_devices
model = az.forward.init(jax.random.PRNGKey(0), jax.vmap(az.env.init)(jax.random.split(jax.random.PRNGKey(0), 2)).observation)
opt_state = az.optimizer.init(params=model[0])
model, opt_state = jax.pmap(lambda tree: tree, axis_name="i")(
    jax.tree_util.tree_map(lambda x: jnp.stack([x] * devices), (model, opt_state)))
def iteration(model, opt_state, key):
    key, play_key = jax.random.split(key)
    samples = az.compute_loss_input(az.selfplay(model, jax.random.split(play_key, devices)))
    samples = jax.device_get(samples)
    samples = jax.tree_util.tree_map(lambda x: x.reshape((-1, *x.shape[3:])), samples)
    key, shuffle_key = jax.random.split(key)
    order = jax.random.permutation(shuffle_key, jnp.arange(samples.obs.shape[0]))
    samples = jax.tree_util.tree_map(lambda x: x[order], samples)
    num_updates = samples.obs.shape[0] // az.config.training_batch_size
    minibatches = jax.tree_util.tree_map(lambda x: x.reshape((num_updates, devices, -1) + x.shape[1:]), samples)
    for i in range(num_updates):
        model, opt_state, policy_loss, value_loss = az.train(model, opt_state, jax.tree_util.tree_map(lambda x: x[i], minibatches))
        policy_loss.mean().item(), value_loss.mean().item()
    return jax.block_until_ready((model, opt_state)) + (key,)
key = jax.random.PRNGKey(settings["seed"])
start = time.perf_counter()
model, opt_state, key = iteration(model, opt_state, key)
first = time.perf_counter() - start
times = []
for _ in range(iterations):
    start = time.perf_counter()
    model, opt_state, key = iteration(model, opt_state, key)
    times.append(time.perf_counter() - start)
print(json.dumps(dict(first=first, times=times, best=min(times), median=statistics.median(times))))
"""

_SUPERLEARNER_ALPHAZERO_DRIVER = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import benchmark
print(json.dumps(benchmark._alphazero_iteration_times(int(sys.argv[2]), int(sys.argv[3]))))
"""


def _alphazero_iteration_times(num_envs: int, iterations: int) -> dict:
    """Our AlphaZero iteration at pgx's example settings with ``num_envs`` games: the first
    (compiling) call and ``iterations`` timed ones, in seconds."""
    import statistics

    from superlearner.learners.alphazero import AlphaZeroHparams, AlphaZeroSettings, make_alphazero

    env = sl.make("connect_four")
    hparams = AlphaZeroHparams.from_values()
    settings = AlphaZeroSettings(num_envs=num_envs, unroll_length=64, num_simulations=16, channels=32,
                                 num_blocks=3, batch_size=1024, num_updates=16, min_replay_size=1024,
                                 replay_capacity=max(65536, num_envs * 64 * 2))
    learner = make_alphazero(env, settings)
    start = time.perf_counter()
    state = jax.jit(learner.init)(jax.random.key(0))
    iteration = jax.jit(learner.iteration).lower(state, hparams, jax.random.key(1)).compile()
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    state, _ = iteration(state, hparams, jax.random.key(1))  # fills the buffer, so SGD runs from now on
    jax.block_until_ready(state)
    first = compile_seconds + time.perf_counter() - start
    times = []
    for repeat in range(iterations):
        start = time.perf_counter()
        state, _ = iteration(state, hparams, jax.random.key(2 + repeat))
        jax.block_until_ready(state)
        times.append(time.perf_counter() - start)
    return dict(first=first, compile=compile_seconds, times=times, best=min(times), median=statistics.median(times))


def _alphazero_same_run(example_dir: Path, python: str, rounds: int, iterations: int) -> tuple[Table, list[str]]:
    """pgx's AlphaZero example and ours at 256 games, alternating fresh processes ``rounds``
    times, ``iterations`` timed iterations each."""

    if not (example_dir / "train.py").is_file() or not (example_dir / "network.py").is_file():
        raise sl.UserError(f"--pgx-example {example_dir}: no train.py and network.py there "
                           "(expected examples/alphazero of a pgx checkout)")
    scripts_dir = str(Path(__file__).resolve().parent)
    config = dict(PGX_ALPHAZERO_CONFIG, selfplay_batch_size=256)
    runs: dict[str, list[dict]] = {"superlearner": [], "pgx example": []}
    for round_index in range(rounds):
        runs["superlearner"].append(_run_driver(_SUPERLEARNER_ALPHAZERO_DRIVER, scripts_dir, "256", str(iterations)))
        runs["pgx example"].append(_run_driver(_PGX_ALPHAZERO_DRIVER, str(example_dir), json.dumps(config),
                                               str(iterations), python=python))
        print(f"  round {round_index + 1}: " + ", ".join(
            f"{name} best {r[-1]['best']:.2f} s" for name, r in runs.items()), file=sys.stderr)
    rows = []
    for name, results in runs.items():
        times = [t for r in results for t in r["times"]]
        best = min(times)
        rows.append([name, " ".join(f"{t:.2f}" for t in times), f"{best:.2f}", f"{sorted(times)[len(times) // 2]:.2f}",
                     format_rate(256 * 64 / best), " ".join(f"{r['first']:.1f}" for r in results)])
    ratio = min(t for r in runs["pgx example"] for t in r["times"]) / min(t for r in runs["superlearner"] for t in r["times"])
    table = Table("Same run: pgx's AlphaZero example and superlearner's AlphaZero (connect_four, 256 games), alternating fresh processes",
                  ["system", "s per iteration, each", "best", "median", "positions/s (best)", "s first iteration (compile), each"],
                  rows)
    notes = [
        f"Same-run comparison: {rounds} rounds, each a fresh process of ours then one of pgx's example "
        f"(examples/alphazero/train.py and network.py of the checkout given with --pgx-example, imported "
        f"with its command-line config {json.dumps(config)}), each timing {iterations} iterations after a "
        "first one that compiles. pgx's iteration is its main loop's: self-play, loss inputs, a host-side "
        "shuffle into minibatches and 16 pmapped SGD steps; its evaluation and logging are left out, as "
        "ours are.",
        f"pgx's best over ours: {ratio:.2f}x (above 1: ours is faster).",
    ]
    return table, notes


def bench_alphazero(args: argparse.Namespace) -> Report:
    rows, tables, notes = [], [], []
    for num_envs in args.num_envs:
        result = _alphazero_iteration_times(num_envs, args.repeats)
        best = result["best"]
        reference = f"{PGX_ALPHAZERO_REFERENCE[0]:.0f}-{PGX_ALPHAZERO_REFERENCE[1]:.0f}" if num_envs == 256 else "-"
        rows.append([str(num_envs), f"{best:.2f}", reference, format_rate(num_envs * 64 / best), f"{result['compile']:.1f}"])
        print(f"  games={num_envs:<6} {best:.2f} s/iteration", file=sys.stderr)
    tables.append(Table("AlphaZero on connect_four", ["games in parallel", "s per iteration", "pgx s per iteration (reference)",
                                                      "positions/s", "s compile"], rows))
    notes.append(
        "One iteration: every game plays 64 moves with Gumbel MuZero search (16 simulations, the env as "
        "the model), positions enter the replay ring, then 16 SGD steps on minibatches of 1024; the "
        "network is 3 residual blocks of 32 channels. Best of the timed iterations after a warm-up one. "
        "pgx column: its AlphaZero example at the same settings on this machine class (the issue's "
        "reference figure)."
    )
    if args.pgx_example is not None:
        table, same_run_notes = _alphazero_same_run(args.pgx_example, args.pgx_python, args.rounds, args.repeats)
        tables.insert(0, table)
        notes = same_run_notes + notes
    return Report("alphazero: self-play with search", notes, tables)


# ---------------------------------------------------------------------------------------------
# memory: what each preset's compiled chunk needs.


def bench_memory(args: argparse.Namespace) -> Report:
    import resource

    from superlearner.config import list_presets
    from superlearner.engine import make_engine
    from superlearner.run.memory import device_capacity, program_memory, tree_bytes

    mib = 1024**2
    capacity = device_capacity()
    rows = []
    for preset in args.presets or list_presets():
        config = _preset_config(preset, {})
        engine = make_engine(config)
        state = jax.eval_shape(engine.init, 0)
        compiled = (jax.jit(engine.train_chunk, static_argnums=1, donate_argnums=0)
                    .lower(state, config.train.iterations_per_chunk).compile())
        estimate = program_memory(compiled)
        fits = "yes" if capacity is None or estimate.peak <= capacity else "no"
        rows.append([preset, f"{tree_bytes(state) / mib:.1f}", f"{estimate.temporaries / mib:.1f}",
                     f"{estimate.peak / mib:.1f}", fits])
        print(f"  {preset:<28} peak {estimate.peak / mib:8.1f} MiB", file=sys.stderr)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    notes = [
        "Per preset: the TrainState's size, XLA's temporary buffers of the compiled train chunk, and the "
        "chunk's peak (state + temporaries + outputs that do not reuse the donated state), as XLA's "
        "buffer assignment reports them for the device the presets compile for.",
        f"Device capacity used for 'fits': {capacity / 1024**3:.1f} GiB." if capacity else "Device capacity unknown.",
        f"Peak resident memory of this benchmark process after compiling all of them: {rss:.0f} MiB "
        "(host side: compilers and Python included).",
        "`superlearner train` makes the same estimate before it starts and refuses a run that would not "
        "fit, naming the settings to lower.",
    ]
    table = Table("Device memory of the presets' train chunks", ["preset", "state MiB", "temporaries MiB", "peak MiB", "fits"], rows)
    return Report("memory: preset footprints", notes, [table])


# ---------------------------------------------------------------------------------------------
# precision: bfloat16 network compute against float32.


def bench_precision(args: argparse.Namespace) -> Report:
    rows = []
    for dtype in ("float32", "bfloat16"):
        run = _timed_training({"learner.compute_dtype": dtype}, repeats=1)
        wide = _chunk_throughput("cartpole_ppo", {"learner.compute_dtype": dtype, "learner.num_envs": args.num_envs},
                                 args.iterations, args.repeats)
        rows.append([dtype, f"{run['with_compile']:.1f}", format_rate(run["steps"] / run["without_compile"]),
                     f"{run['final_return']:.0f}", format_rate(wide["rate"])])
    notes = [
        "cartpole_ppo trained to the end with the network's matmuls in each dtype (parameters, optimizer "
        "state and losses float32 in both); final train return is the mean return of the episodes "
        "finished in the last iteration.",
        f"Wide column: one compiled chunk of {args.iterations} iterations with {args.num_envs} envs.",
        "On CPUs without native bfloat16 matmuls XLA emulates it, so bfloat16 is expected to pay only "
        "on GPUs and TPUs.",
    ]
    table = Table("Compute dtype", ["compute dtype", "s with compile", "env steps/s", "final train return",
                                    f"env steps/s, {args.num_envs} envs"], rows)
    return Report("precision: bfloat16 against float32", notes, [table])


# ---------------------------------------------------------------------------------------------
# scaling: throughput against batch, population and devices.

# Times one compiled chunk of cartpole_ppo on a (pop, data) mesh of the first D devices, in a
# fresh process (on CPU, XLA_FLAGS makes D simulated devices, which must be set before jax is
# imported); prints one JSON line.
_SCALING_DRIVER = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import jax
import benchmark
num_devices, iterations, repeats = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
overrides = dict(arg.split("=", 1) for arg in sys.argv[5:])
result = benchmark._chunk_throughput("cartpole_ppo", overrides, iterations, repeats, num_devices=num_devices)
print(json.dumps({"mesh": result["mesh"], "platform": jax.devices()[0].platform, "compile": result["compile"],
                  "seconds": result["seconds"], "rate": result["rate"]}))
"""


def _scaling_run(num_devices: int, overrides: dict, iterations: int, repeats: int) -> dict:
    env = dict(os.environ)
    if jax.default_backend() == "cpu":
        flags = env.get("XLA_FLAGS", "")
        env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={num_devices}".strip()
    argv = [f"{k}={v}" for k, v in overrides.items()]
    return _run_driver(_SCALING_DRIVER, str(Path(__file__).resolve().parent), str(num_devices), str(iterations),
                       str(repeats), *argv, env=env)


def bench_scaling(args: argparse.Namespace) -> Report:
    base = {"learner.num_steps": args.num_steps, "learner.num_minibatches": 4}
    tables = []
    rows = []
    for num_envs in args.num_envs:
        result = _chunk_throughput("cartpole_ppo", {**base, "learner.num_envs": num_envs}, args.iterations, args.repeats)
        rows.append([str(num_envs), format_rate(result["rate"]), f"{result['compile']:.1f}"])
        print(f"  envs={num_envs:<6} {format_rate(result['rate'])} env steps/s", file=sys.stderr)
    tables.append(Table("Number of envs (one member, one device)", ["envs", "env steps/s", "s compile"], rows))
    rows = []
    for size in args.population_sizes:
        overrides = {**base, "learner.num_envs": args.population_envs, "train.population_size": size}
        result = _chunk_throughput("cartpole_ppo", overrides, args.iterations, args.repeats)
        rows.append([str(size), format_rate(result["rate"]), format_rate(result["rate"] / size), f"{result['compile']:.1f}"])
        print(f"  population={size:<4} {format_rate(result['rate'])} env steps/s", file=sys.stderr)
    tables.append(Table(f"Population size ({args.population_envs} envs per member, one device)",
                        ["members", "env steps/s (all members)", "per member", "s compile"], rows))
    rows = []
    overrides = {**base, "learner.num_envs": args.device_envs, "train.population_size": args.device_population}
    platform = None
    single = None
    for num_devices in args.devices:
        result = _scaling_run(num_devices, overrides, args.iterations, args.repeats)
        platform = result["platform"]
        single = single or result["rate"]
        rows.append([str(num_devices), result["mesh"], format_rate(result["rate"]), f"{result['rate'] / single:.2f}",
                     f"{result['compile']:.1f}"])
        print(f"  devices={num_devices:<3} {result['mesh']:<16} {format_rate(result['rate'])} env steps/s", file=sys.stderr)
    tables.append(Table(
        f"Devices ({args.device_population} members x {args.device_envs} envs, default mesh)",
        ["devices", "mesh", "env steps/s (all members)", "x first row", "s compile"], rows,
    ))
    notes = [
        f"cartpole_ppo with {args.num_steps} steps per rollout and 4 minibatches; one compiled chunk of "
        f"{args.iterations} iterations, best of {args.repeats} calls, compile (engine, init and chunk) timed apart.",
        "Devices: a fresh process per row, the train chunk compiled for the default (pop, data) mesh of the "
        "first D devices, as `superlearner train` places it.",
    ]
    if platform == "cpu":
        notes.append("CPU rows use simulated devices (XLA_FLAGS=--xla_force_host_platform_device_count=D) that "
                     "share the same cores: they show the cost of partitioning, not a speed-up.")
    return Report("scaling: envs, population and devices", notes, tables)


# ---------------------------------------------------------------------------------------------
# The families. Adding one: write bench_<name>(args) -> Report above and add its line here.

# ---------------------------------------------------------------------------------------------
# loop: the whole loop's pillars on AlphaZero, each against plain AlphaZero in the same run.

LOOP_VARIANTS = {
    "plain": {"league.kind": "none", "curriculum.kind": "none", "meta.kind": "none", "meta.progress": "return",
              "rating.kind": "none"},
    "league": {"curriculum.kind": "none", "meta.kind": "none", "meta.progress": "return", "rating.kind": "none"},
    "curriculum": {"league.kind": "none", "meta.kind": "none", "meta.progress": "return", "rating.kind": "none"},
    "rating + bandit": {"league.kind": "none", "curriculum.kind": "none"},
    "all": {},
}


def bench_loop(args: argparse.Namespace) -> Report:
    """Seconds per iteration of `connect_four_superlearner` with each pillar alone and all together,
    against plain AlphaZero: one compiled chunk each, timed in alternation, medians."""
    from superlearner.engine import initial_state, make_engine

    chunks = {}
    for name, overrides in LOOP_VARIANTS.items():
        if args.variants and name not in args.variants and name != "plain":
            continue
        extra = dict(item.split("=", 1) for item in args.set or ())
        config = _preset_config(args.preset, {**extra, **overrides, "arena.every_chunks": 0})
        engine = make_engine(config)
        compiled = jax.jit(engine.train_chunk, static_argnums=1).lower(
            initial_state(engine, 0), args.iterations).compile()
        state = initial_state(engine, 0)
        for _ in range(args.warmup_chunks):  # the replay buffer, league and level buffer as in a run
            state, _ = jax.block_until_ready(compiled(state))
        chunks[name] = [compiled, state]
    times: dict[str, list[float]] = {name: [] for name in chunks}
    for _ in range(args.repeats):
        for name, (compiled, state) in chunks.items():
            start = time.perf_counter()
            state, _ = jax.block_until_ready(compiled(state))
            times[name].append((time.perf_counter() - start) / args.iterations)
            chunks[name][1] = state
    plain = float(np.median(times["plain"]))
    rows = []
    for name, values in times.items():
        median = float(np.median(values))
        rows.append([name, f"{median:.3f}", f"{min(values):.3f}", f"{100 * (median / plain - 1):+.1f}%"])
    overhead = 100 * (float(np.median(times["all"])) / plain - 1) if "all" in times else math.nan
    notes = [
        f"`{args.preset}` with pillars switched off (the same learner, search, network and batch shape; the "
        f"host arena off), one compiled chunk of {args.iterations} iterations per variant after "
        f"{args.warmup_chunks} warm-up chunks, {args.repeats} timed chunks each in alternation; medians.",
        "A timed chunk holds one rating round (its games against the anchors and the previous round) when its "
        "length is the preset's rating.every_iterations; the bandit's pulls cost nothing measurable beside it.",
        f"Overhead of league, curriculum, rating and controller together over plain AlphaZero: {overhead:+.1f}% "
        "(target: under 15%).",
    ]
    table = Table("Seconds per iteration", ["variant", "median s", "best s", "over plain"], rows)
    if not args.no_write:
        _write_rows("loop_overhead.jsonl", [dict(variant=name, seconds_per_iteration=values, preset=args.preset,
                                                 iterations=args.iterations) for name, values in times.items()])
    return Report("loop: the whole loop's overhead on AlphaZero", notes, [table])


def row_provenance(command: str) -> dict:
    """What every row file records beside its figures: the command, commit, machine and date."""
    import subprocess

    load = " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "n/a"
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=DEFAULT_OUTPUT.parent).stdout.strip()
    return dict(command=command, commit=commit, machine=machine_description(load),
                date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))


def _write_rows(name: str, rows: list[dict]) -> None:
    """Appends ``rows`` to ``docs/results/<name>``, each with `row_provenance`."""
    header = row_provenance("python scripts/benchmark.py " + shlex.join(sys.argv[1:]))
    path = DEFAULT_OUTPUT.parent / "results" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        for row in rows:
            handle.write(json.dumps({**header, **row}) + "\n")


FAMILIES: dict[str, Family] = {
    "envs": Family(
        bench_envs,
        "batched random-play env steps per second",
        (
            arg("--batch-sizes", type=positive_int, nargs="+", default=[1, 64, 1024, 8192], metavar="B",
                help="numbers of envs stepped in parallel (default: 1 64 1024 8192)"),
            arg("--envs", nargs="+", default=None, metavar="ID",
                help="env ids and pgx/<game> names (default: every registered env and, when pgx "
                     "is installed, pgx/tic_tac_toe pgx/connect_four pgx/othello)"),
            arg("--steps", type=positive_int, default=None, metavar="N",
                help="scan length of one timed call (default: about 2^16 / B, within 16..1024)"),
            arg("--no-pgx", action="store_true", help="leave pgx's games out of the default list"),
        ),
    ),
    "ppo": Family(
        bench_ppo,
        "PPO training speed on CartPole against PureJaxRL's reference settings",
        (
            arg("--num-envs", type=positive_int, nargs="+", default=[64, 1024], metavar="N",
                help="larger batch sizes to report (default: 64 1024)"),
            arg("--seeds", type=positive_int, default=16, help="seeds trained at once (default 16)"),
            arg("--chunk-sizes", type=positive_int, nargs="+", default=[1, 10, 61, 977], metavar="K",
                help="iterations per compiled chunk to compare (default: 1 10 61 977)"),
            arg("--purejaxrl", type=Path, default=None, metavar="DIR",
                help="a PureJaxRL checkout: also run its ppo.py at the same settings in this run "
                     "(needs gymnax and distrax, in the bench extra)"),
            arg("--only-comparison", action="store_true",
                help="with --purejaxrl: measure the same-run comparison only"),
        ),
    ),
    "selfplay": Family(
        bench_selfplay,
        "self-play PPO throughput of the board-game presets, next to single-agent PPO",
        (
            arg("--presets", nargs="+", default=list(SELFPLAY_PRESETS), metavar="PRESET", help="self-play presets to time"),
            arg("--iterations", type=positive_int, default=20, help="iterations per timed chunk (default 20)"),
            arg("--groups", nargs="+", type=_groups_arg, default=[0, 8], metavar="G",
                help="league.opponent_groups values to time; 'preset' keeps the preset's own (default: 0 8)"),
        ),
    ),
    "curriculum": Family(
        bench_curriculum,
        "maze curricula (DR, PLR, ACCEL, SFL) throughput and overhead over DR",
        (
            arg("--presets", nargs="+", default=list(CURRICULUM_PRESETS), metavar="PRESET", help="maze presets to time"),
            arg("--iterations", type=positive_int, default=20, help="iterations per timed chunk (default 20)"),
            arg("--jaxued", type=Path, default=None, metavar="DIR",
                help="a JaxUED checkout: also time its own maze examples in this run (scripts/reference_jaxued.py)"),
            arg("--jaxued-python", default=sys.executable, metavar="PYTHON",
                help="the Python that runs JaxUED's examples (default: this one)"),
            arg("--rounds", type=positive_int, default=2, metavar="R",
                help="alternations of the same-run comparison (default 2)"),
            arg("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                help="override a key of every timed preset, e.g. --set learner.memory=none (JaxUED's examples "
                     "run as they are)"),
        ),
    ),
    "meta": Family(
        bench_meta,
        "wall-time overhead of PBT over a population of independent members",
        (arg("--total-env-steps", type=positive_int, default=200_000, help="env steps per member (default 2e5)"),),
    ),
    "loop": Family(
        bench_loop,
        "the whole loop's pillars on AlphaZero (league, curriculum, rating and bandit): overhead over plain AlphaZero",
        (
            arg("--preset", default="connect_four_superlearner", help="the whole-loop preset (default connect_four_superlearner)"),
            arg("--iterations", type=positive_int, default=20, help="iterations per timed chunk (default 20: one rating round of the preset)"),
            arg("--warmup-chunks", type=positive_int, default=3, help="chunks run before timing (default 3)"),
            arg("--variants", nargs="+", default=None, choices=list(LOOP_VARIANTS),
                help="variants to time beside plain (default: all of them)"),
            arg("--set", nargs="+", default=None, metavar="KEY=VALUE", help="overrides of the preset, for every variant"),
        ),
    ),
    "alphazero": Family(
        bench_alphazero,
        "AlphaZero self-play iteration time at pgx's example settings (connect_four)",
        (arg("--num-envs", type=positive_int, nargs="+", default=[64, 256], metavar="N",
             help="games played in parallel (default: 64 256)"),
         arg("--pgx-example", type=Path, default=None, metavar="DIR",
             help="examples/alphazero of a pgx checkout: also time pgx's own example at the same settings, "
                  "alternating fresh processes (needs pgx, dm-haiku, omegaconf and pydantic in --pgx-python)"),
         arg("--pgx-python", default=sys.executable, metavar="PYTHON",
             help="the Python that runs pgx's example (default: this one)"),
         arg("--rounds", type=positive_int, default=2, metavar="R",
             help="alternations of the same-run comparison (default 2)")),
    ),
    "memory": Family(
        bench_memory,
        "device memory of every preset's compiled train chunk",
        (arg("--presets", nargs="+", default=None, metavar="PRESET", help="presets (default: all)"),),
    ),
    "precision": Family(
        bench_precision,
        "bfloat16 against float32 network compute: speed and learning",
        (
            arg("--num-envs", type=positive_int, default=1024, help="envs of the wide throughput column (default 1024)"),
            arg("--iterations", type=positive_int, default=10, help="iterations per timed chunk (default 10)"),
        ),
    ),
    "scaling": Family(
        bench_scaling,
        "env steps per second against envs, population size and devices, with compile times",
        (
            arg("--num-envs", type=positive_int, nargs="+", default=[4, 64, 1024, 8192], metavar="N",
                help="envs of one member (default: 4 64 1024 8192)"),
            arg("--population-sizes", type=positive_int, nargs="+", default=[1, 2, 8, 32], metavar="P",
                help="population sizes (default: 1 2 8 32)"),
            arg("--population-envs", type=positive_int, default=64, help="envs per member in the population table (default 64)"),
            arg("--devices", type=positive_int, nargs="+", default=[1, 2, 4, 8], metavar="D",
                help="numbers of devices (simulated on CPU; default: 1 2 4 8)"),
            arg("--device-population", type=positive_int, default=8, help="members in the device table (default 8)"),
            arg("--device-envs", type=positive_int, default=256, help="envs per member in the device table (default 256)"),
            arg("--num-steps", type=positive_int, default=32, help="rollout length (default 32)"),
            arg("--iterations", type=positive_int, default=5, help="iterations per timed chunk (default 5)"),
        ),
    ),
}


# ---------------------------------------------------------------------------------------------
# The shell: arguments, machine description, printing and writing.


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python scripts/benchmark.py",
        description="Benchmarks; each prints a table and appends it to docs/benchmarks.md.",
    )
    subparsers = parser.add_subparsers(dest="family", required=True, metavar="FAMILY")
    for name, family in FAMILIES.items():
        sub = subparsers.add_parser(name, help=family.help, description=family.help)
        for flags, kwargs in family.arguments:
            sub.add_argument(*flags, **kwargs)
        sub.add_argument("--repeats", type=positive_int, default=3, help="timed repeats; the best counts (default 3)")
        sub.add_argument("--no-write", action="store_true", help="print only; do not append to the output file")
        sub.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                         help="markdown file the section is appended to (default docs/benchmarks.md)")
    return parser


def machine_description(load_before: str) -> dict[str, str]:
    """CPU model and core count, the accelerators JAX sees, and the package versions."""
    cpu = platform.processor() or platform.machine()
    vector = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    # Machines sold under one model name differ in vector units, which decide
                    # convolution and matmul speed on the CPU.
                    flags = set(line.split(":", 1)[1].split())
                    vector = next((name for name in ("amx_tile", "avx512f", "avx2") if name in flags), "")
                    break
    except OSError:
        pass
    if vector:
        cpu = f"{cpu} ({vector.replace('_tile', '').replace('512f', '-512').upper()})"
    devices = jax.devices()
    kinds = sorted({d.device_kind for d in devices})
    accelerator = f"{len(devices)} x {', '.join(kinds)} ({devices[0].platform})"
    versions = []
    for package in ("superlearner", "jax", "jaxlib", "flax", "pgx"):
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{package} not installed")
    return {
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "accelerator": accelerator,
        "python": platform.python_version(),
        "load": load_before,
        "versions": ", ".join(versions),
    }


def _generic_paths(argv: list[str]) -> list[str]:
    """``argv`` with the local checkout path of ``--purejaxrl`` replaced by a placeholder, so the
    recorded command reads the same on every machine."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--purejaxrl" and i + 1 < len(out):
            out[i + 1] = "PUREJAXRL_CHECKOUT"
        elif arg.startswith("--purejaxrl="):
            out[i] = "--purejaxrl=PUREJAXRL_CHECKOUT"
        elif arg == "--jaxued" and i + 1 < len(out):
            out[i + 1] = "JAXUED_CHECKOUT"
        elif arg == "--jaxued-python" and i + 1 < len(out):
            out[i + 1] = "JAXUED_PYTHON"
        elif arg == "--pgx-example" and i + 1 < len(out):
            out[i + 1] = "PGX_CHECKOUT/examples/alphazero"
        elif arg == "--pgx-python" and i + 1 < len(out):
            out[i + 1] = "PGX_PYTHON"
    return out


def to_markdown(report: Report, machine: dict[str, str], command: str, when: datetime.datetime) -> str:
    lines = [
        f"## {report.heading} ({when:%Y-%m-%d %H:%M} UTC)",
        "",
        f"- Command: `{command}`",
        f"- CPU: {machine['cpu']} (load average before the run: {machine['load']})",
        f"- Accelerator: {machine['accelerator']}",
        f"- Versions: Python {machine['python']}, {machine['versions']}",
        "",
    ]
    for note in report.notes:
        lines += [note, ""]
    for table in report.tables:
        lines += [f"**{table.title}**", ""]
        lines.append("| " + " | ".join(table.columns) + " |")
        lines.append("|" + "|".join(["---"] + ["---:"] * (len(table.columns) - 1)) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in table.rows]
        lines.append("")
    return "\n".join(lines)


def print_report(report: Report, machine: dict[str, str]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table as RichTable
    except ImportError:
        print(to_markdown(report, machine, "", datetime.datetime.now(datetime.timezone.utc)))
        return
    console = Console()
    console.print(f"[bold]{report.heading}[/bold]  {machine['cpu']}; {machine['accelerator']}")
    for table in report.tables:
        rich_table = RichTable(title=table.title)
        for i, column in enumerate(table.columns):
            rich_table.add_column(column, justify="left" if i == 0 else "right")
        for row in table.rows:
            rich_table.add_row(*row)
        console.print(rich_table)
    for note in report.notes:
        console.print(note, style="dim")


def append_section(path: Path, section: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.exists() else DOC_HEADER
    path.write_text(text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    # Other processes on the machine slow a run down; the 1-minute load says how busy it was.
    load_before = f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "unknown"
    try:
        report = FAMILIES[args.family].run(args)
    except sl.UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    machine = machine_description(load_before)
    print_report(report, machine)
    if not args.no_write:
        command = "python scripts/benchmark.py " + shlex.join(_generic_paths(argv))
        when = datetime.datetime.now(datetime.timezone.utc)
        append_section(args.output, to_markdown(report, machine, command, when))
        print(f"appended to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
