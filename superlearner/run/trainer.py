"""The host loop: runs compiled train chunks, and between them logs, checkpoints and reports.

`train` starts a run in a fresh directory; `resume` continues one from its latest checkpoint.
Ctrl-C and SIGTERM (what preemptible cloud machines send) finish the chunk in flight, write a
checkpoint and return. A NaN or infinity in a loss or the parameters stops the run with a
message naming the iteration and the metric; the last good checkpoint is left as it was.

The TrainState lives on a device mesh (`superlearner.core.distributed`): ``train.mesh_pop`` devices
split the population, ``train.mesh_data`` split each member's env batch, and the train chunk is
compiled for that layout. In a multi-host job every process runs this same loop; process 0
alone writes the run directory, the logs and the progress bar, all processes write and restore
checkpoints together, and a stop (signal) on any process stops all of them at the same chunk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import yaml

from superlearner.core import distributed
from superlearner.run.checkpoint import CHECKPOINT_DIR, Checkpointer
from superlearner.config import ExperimentConfig, config_from_dict, config_to_dict, validate_semantics
from superlearner.engine import LEARNER_UPDATED, Engine, compile_concurrently, lower_init, make_engine
from superlearner.errors import UserError
from superlearner.version import __version__
from superlearner.run.logs import MetricsLog
from superlearner.run.memory import GIB, MemoryEstimate, check_fits, device_capacity, program_memory

CONFIG_FILE = "config.yaml"
# Metrics whose non-finite value means the run is broken.
GUARDED_METRICS = ("loss_total", "loss_policy", "loss_value", "entropy", "grad_norm")


class NonFiniteError(UserError):
    """A loss or a parameter became NaN or infinite."""


@dataclasses.dataclass
class RunResult:
    """What a finished (or stopped) run reports."""

    run_dir: Path
    iteration: int
    env_steps: int
    completed: bool
    stopped_by_signal: bool
    wall_time: float
    last_metrics: dict
    mesh: str = ""
    time_limited: bool = False  # stopped by `train.time_limit_minutes`


def prepare_run_dir(run_dir: Path, config: ExperimentConfig) -> None:
    """Creates ``run_dir`` for a new run; refuses one that already holds a run."""
    check_new_run_dir(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))


def check_new_run_dir(run_dir: Path) -> None:
    """Raises UserError when ``run_dir`` already holds a run or is not a directory."""
    if run_dir.exists():
        markers = [name for name in (CONFIG_FILE, CHECKPOINT_DIR, MetricsLog.FILE) if (run_dir / name).exists()]
        if markers:
            raise UserError(
                f"{run_dir} already holds a run ({', '.join(markers)}); use `superlearner resume {run_dir}` "
                "to continue it, or choose another --run-dir"
            )
        if not run_dir.is_dir():
            raise UserError(f"{run_dir} exists and is not a directory")


def read_run_config(run_dir: Path) -> ExperimentConfig:
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{run_dir}: not a run directory (no {CONFIG_FILE})")
    return config_from_dict(yaml.safe_load(path.read_text()) or {}, source=str(path))


def checkpoint_metadata(engine: Engine, iteration: int, wall_time: float) -> dict:
    return dict(
        config=config_to_dict(engine.config),
        env_id=engine.env.id,
        env_version=engine.env.version,
        package_version=__version__,
        iteration=int(iteration),
        env_steps=int(iteration) * engine.env_steps_per_iteration,
        wall_time=float(wall_time),
    )


@contextlib.contextmanager
def _stop_on_signals():
    """Turns SIGINT/SIGTERM into a flag the loop checks between chunks."""
    flag = {"stop": False, "signal": None}

    def handler(signum, frame):
        if flag["stop"] and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C aborts at once
        flag["stop"], flag["signal"] = True, signum

    previous = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, handler)
    except ValueError:  # not the main thread: no signal handling
        pass
    try:
        yield flag
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _first_non_finite(metrics: dict, valid: np.ndarray, base_iteration: int) -> tuple[int, str] | None:
    # An iteration whose update a curriculum skipped (robust PLR, ACCEL) has no losses to check.
    updated = np.asarray(metrics[LEARNER_UPDATED]) > 0 if LEARNER_UPDATED in metrics else None
    for index in np.flatnonzero(valid):
        for name in GUARDED_METRICS:
            if name not in metrics:
                continue
            values = np.asarray(metrics[name][index])
            if updated is not None:
                values = values[updated[index]]
            if not np.all(np.isfinite(values)):
                return base_iteration + int(index) + 1, name
    return None


def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def checkpoint_score(metrics: dict, strength: dict | None, has_probe: bool) -> float | None:
    """The score that ranks a checkpoint for "best" (higher is better), or None (not ranked).

    With fixed anchors to measure against (self-play with an arena), the score is the strength
    measured at this very checkpoint: the best member's mean score over the anchors, or minus
    the lowest exploitability for kuhn poker. A checkpoint saved between two measurements is not
    ranked, since a score against the agent's own league says nothing of its strength. Without
    anchors, the mean recent training return; learners without one (alphazero) rank nothing.
    """
    if has_probe:
        if strength is None:
            return None
        if "exploitability_league" in strength:
            score = -float(np.min(strength["exploitability_league"]))
        else:
            per_anchor = [np.asarray(v, np.float64) for k, v in strength.items() if k.startswith("vs_")]
            score = float(np.max(np.mean(per_anchor, axis=0))) if per_anchor else math.nan
    else:
        returns = metrics.get("episode_return")
        score = float(np.nanmean(returns)) if returns is not None else math.nan
    return score if math.isfinite(score) else None


def train(
    config: ExperimentConfig,
    run_dir: str | Path,
    *,
    show_progress: bool = True,
    max_chunks: int | None = None,
    on_chunk: Callable[[dict], None] | None = None,
) -> RunResult:
    """Starts a new run of ``config`` in ``run_dir`` (which must not hold another run).

    In a multi-host job every process calls this with the same arguments; ``run_dir`` must be
    on a file system they all see.
    """
    validate_semantics(config)
    engine = make_engine(config)  # validates the env id and options before anything is written
    mesh = make_run_mesh(config)
    run_dir = Path(run_dir)
    check_new_run_dir(run_dir)
    program = compile_run(engine, mesh)  # a run that would not fit its devices stops here
    distributed.sync("superlearner: run directory checked")  # before process 0 writes into it
    if distributed.is_main_process():
        prepare_run_dir(run_dir, config)
    distributed.sync("superlearner: run directory written")
    return _run(engine, mesh, run_dir, resume=False, show_progress=show_progress, max_chunks=max_chunks,
                on_chunk=on_chunk, program=program)


def resume(
    run_dir: str | Path,
    *,
    mesh: dict[str, int] | None = None,
    show_progress: bool = True,
    max_chunks: int | None = None,
    on_chunk: Callable[[dict], None] | None = None,
) -> RunResult:
    """Continues the run in ``run_dir`` from its latest checkpoint to its configured end.

    A run that died before its first checkpoint starts again from the beginning. ``mesh``
    (``{"pop": 2, "data": 4}``, either may be left out) replaces the run's device layout, e.g. to
    continue on a machine with another number of devices; the checkpoint is read onto the new
    layout.
    """
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    if mesh:
        config = with_mesh(config, mesh)
    validate_semantics(config)
    engine = make_engine(config)
    device_mesh = make_run_mesh(config)
    program = compile_run(engine, device_mesh)
    return _run(engine, device_mesh, run_dir, resume=True, show_progress=show_progress, max_chunks=max_chunks,
                on_chunk=on_chunk, program=program)


def with_mesh(config: ExperimentConfig, mesh: dict[str, int]) -> ExperimentConfig:
    """``config`` with ``train.mesh_pop`` / ``train.mesh_data`` from ``{"pop": P, "data": D}``."""
    changes = {f"mesh_{axis}": size for axis, size in mesh.items()}
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **changes))


def make_run_mesh(config: ExperimentConfig, source: str = "config") -> jax.sharding.Mesh:
    """The device mesh ``config`` asks for (train.mesh_pop, train.mesh_data; 0 = choose)."""
    shape = distributed.resolve_mesh_shape(
        config.train.population_size, config.learner.num_envs, jax.device_count(),
        config.train.mesh_pop, config.train.mesh_data, require_all=jax.process_count() > 1, source=source,
    )
    return distributed.make_mesh(shape)


@dataclasses.dataclass
class RunProgram:
    """A run's compiled train chunk and the layout it was compiled for (see `compile_run`)."""

    chunk: Any  # jax.stages.Compiled: (state) -> (state, metrics)
    shardings: Any
    memory: MemoryEstimate
    init: Any  # jax.stages.Compiled: (int32[] seed) -> TrainState, placed by ``shardings``


def compile_run(engine: Engine, mesh) -> RunProgram:
    """Compiles ``engine``'s train chunk for ``mesh`` and checks that it fits the devices.

    Nothing is allocated or written before the check, so a preset sized for a bigger machine
    fails with one line naming the settings to lower (`superlearner.run.memory.check_fits`);
    ``train.memory_budget_gib`` replaces the device's own capacity when set. The init program
    compiles at the same time as the chunk, on another thread (`compile_concurrently`).
    """
    config = engine.config
    abstract = jax.eval_shape(engine.init, jnp.int32(config.train.seed))  # reuses make_engine's trace
    shardings = distributed.train_state_shardings(abstract, mesh, config.train.population_size, config.learner.num_envs)
    placed = jax.tree.map(lambda x, sharding: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), abstract, shardings)
    chunk_fn = jax.jit(engine.train_chunk, static_argnums=1, donate_argnums=0,
                       out_shardings=(shardings, distributed.replicated(mesh)))
    with jax.set_mesh(mesh):  # the mesh learners' sharding constraints refer to
        lowered = chunk_fn.lower(placed, config.train.iterations_per_chunk)
    compiled, init = compile_concurrently(lowered, lower_init(engine, shardings))
    estimate = program_memory(compiled)
    device = mesh.devices.flat[0]
    budget = config.train.memory_budget_gib
    capacity = int(budget * GIB) if budget > 0 else device_capacity(device)
    check_fits(estimate, capacity, state=abstract, config=config, where=f"{device.platform}:{device.id}")
    return RunProgram(chunk=compiled, shardings=shardings, memory=estimate, init=init)


def _run(engine: Engine, mesh, run_dir: Path, *, resume: bool, show_progress: bool, max_chunks, on_chunk,
         program: RunProgram) -> RunResult:
    config = engine.config
    main = distributed.is_main_process()
    multi = jax.process_count() > 1
    show_progress = show_progress and main
    size, num_envs = config.train.population_size, config.learner.num_envs
    if show_progress and mesh.devices.size < jax.device_count():
        print(
            f"note: training on {distributed.describe(mesh)} of {jax.device_count()} devices: "
            f"population_size={size} and num_envs={num_envs} split over no more",
            file=sys.stderr,
        )
    shardings = program.shardings
    whole = distributed.replicated(mesh)
    checkpointer = Checkpointer(run_dir, keep=config.train.keep_checkpoints)
    # Jitted, so every leaf is its own buffer (the chunk donates them all).
    state = program.init(jnp.int32(config.train.seed))
    wall_offset = 0.0
    if resume and checkpointer.latest_step() is not None:
        state, metadata = checkpointer.restore(state)
        _check_compatible(engine, metadata, run_dir)
        wall_offset = float(metadata.get("wall_time", 0.0))
    iteration = int(state.iteration)
    log = MetricsLog(run_dir, config, resume_from=iteration if resume else None) if main else _NoLog()

    # Metrics come back replicated, so every process (and device_get) can read them whole.
    chunk_fn = program.chunk
    gather = jax.jit(lambda tree: tree, out_shardings=whole)
    all_finite = jax.jit(_all_finite, out_shardings=whole)
    # An on-device copy for the checkpoint writer: the state's own buffers are donated to the
    # next chunk while the checkpoint is still being written in the background.
    snapshot = jax.jit(lambda tree: jax.tree.map(jnp.copy, tree), out_shardings=shardings)
    probe, level_probe = _make_probes(engine, run_dir if main else None)
    probe_key = jax.random.key(config.train.seed + 1)
    steps_per_iteration = engine.env_steps_per_iteration
    total_steps = engine.num_iterations * steps_per_iteration
    start = time.perf_counter()
    last_metrics: dict = {}
    stopped_by_signal = False
    chunks_done = 0
    last_saved = iteration if resume else -1
    time_limit = 60.0 * config.train.time_limit_minutes

    def wall_time() -> float:
        return wall_offset + time.perf_counter() - start

    progress = _Progress(show_progress, total_steps, iteration * steps_per_iteration, config.name)
    peer_lost = False
    try:
        with _stop_on_signals() as stop, progress:
            # A resumed run that has used up its time does not start another chunk.
            time_limited = 0 < time_limit <= wall_offset
            while iteration < engine.num_iterations and not time_limited:
                chunk_start = time.perf_counter()
                try:
                    with jax.set_mesh(mesh):  # the mesh learners' sharding constraints refer to
                        state, metrics = chunk_fn(state)
                    metrics = jax.device_get(metrics)
                    params_finite = bool(all_finite(state.learner.params))
                    hparams = jax.device_get(gather(state.hparams))
                    # One process told to stop (a signal) stops them all, at the same chunk.
                    stop_now = _any_process(stop["stop"]) if multi else stop["stop"]
                except Exception as error:
                    if multi and distributed.is_peer_failure(error):
                        raise distributed.peer_lost(error, f"in the chunk after iteration {iteration}") from None
                    raise
                valid = np.asarray(metrics.pop("valid"))
                metrics.pop("iteration")
                bad = _first_non_finite(metrics, valid, iteration)
                if bad is None and not params_finite:
                    bad = (iteration + int(valid.sum()), "parameters")
                if bad is not None:
                    at, name = bad
                    kept = f"; the last good checkpoint (iteration {last_saved}) is intact" if last_saved >= 0 else ""
                    raise NonFiniteError(f"non-finite {name} at iteration {at}: training stopped{kept}")
                done_now = int(valid.sum())
                iteration += done_now
                chunks_done += 1
                elapsed = time.perf_counter() - chunk_start
                last = int(np.flatnonzero(valid)[-1])
                last_metrics = {name: np.asarray(values[last]).tolist() for name, values in metrics.items()}
                finished = iteration >= engine.num_iterations
                # Keyed by iteration, so a resumed run measures with the same randomness.
                strength = _measure_probes(probe, level_probe, state, gather if multi else None, config, chunks_done,
                                           finished, jax.random.fold_in(probe_key, iteration), iteration, last_metrics)
                record = log.write(
                    iteration=iteration,
                    env_steps=iteration * steps_per_iteration,
                    wall_time=wall_time(),
                    steps_per_second=done_now * steps_per_iteration * config.train.population_size / max(elapsed, 1e-9),
                    metrics=last_metrics,
                    hparams={k: np.asarray(v).tolist() for k, v in dataclasses.asdict(hparams).items()},
                )
                progress.update(iteration * steps_per_iteration, last_metrics)
                if on_chunk is not None:
                    on_chunk(record)
                due = chunks_done % config.train.checkpoint_every_chunks == 0
                out_of_chunks = max_chunks is not None and chunks_done >= max_chunks
                if time_limit > 0 and not finished:
                    # This chunk's duration predicts the next one's.
                    over = wall_time() + elapsed > time_limit
                    time_limited = _any_process(over) if multi else over
                if finished or due or stop_now or out_of_chunks or time_limited:
                    score = checkpoint_score(last_metrics, strength, probe is not None)
                    try:
                        checkpointer.save(
                            iteration, snapshot(state), checkpoint_metadata(engine, iteration, wall_time()),
                            score=score,
                        )
                    except Exception as error:
                        if multi and distributed.is_peer_failure(error):
                            raise distributed.peer_lost(error, f"while saving the checkpoint of iteration {iteration}") from None
                        raise
                    last_saved = iteration
                if stop_now:
                    stopped_by_signal = True
                    break
                if out_of_chunks:
                    break
    except distributed.PeerLostError:
        peer_lost = True
        raise
    finally:
        if not peer_lost:  # closing waits for the other processes, which are gone
            checkpointer.close()
        log.close()
    return RunResult(
        run_dir=run_dir,
        iteration=iteration,
        env_steps=iteration * steps_per_iteration,
        completed=iteration >= engine.num_iterations,
        stopped_by_signal=stopped_by_signal,
        wall_time=wall_time(),
        time_limited=time_limited,
        last_metrics=last_metrics,
        mesh=f"pop={mesh.shape[distributed.POP]},data={mesh.shape[distributed.DATA]}",
    )


def _make_probes(engine: Engine, run_dir: Path | None):
    """The strength probe (two-player games with anchors, or an exploitability to measure) and
    the curriculum's held-out probe, each None where it does not apply."""
    config, env = engine.config, engine.env
    probe = level_probe = None
    measurable = config.arena.anchors or getattr(env, "exploitability", None) is not None
    if env.num_players > 1 and config.arena.every_chunks > 0 and measurable:
        from superlearner.selfplay.arena import StrengthProbe

        probe = StrengthProbe(engine)
    if config.curriculum.probe_every_chunks > 0 and getattr(env, "level_space", None) is not None:
        from superlearner.curriculum.probe import CurriculumProbe

        level_probe = CurriculumProbe(engine, run_dir)
    return probe, level_probe


def _measure_probes(probe, level_probe, state, gather, config, chunks_done: int, finished: bool, key, iteration: int,
                    metrics: dict) -> dict | None:
    """Runs the probes that are due into ``metrics``; returns the strength probe's figures (None
    when it did not run). ``gather`` (multi-host jobs) gives the probes whole members."""
    strength = None
    if probe is not None and (chunks_done % config.arena.every_chunks == 0 or finished):
        probed = state.replace(learner=gather(state.learner), league=gather(state.league)) if gather else state
        strength = probe.measure(probed, key)
        metrics.update(strength)
    if level_probe is not None and (chunks_done % config.curriculum.probe_every_chunks == 0 or finished):
        probed = state.replace(learner=gather(state.learner), curriculum=gather(state.curriculum)) if gather else state
        metrics.update(level_probe.measure(probed, key, iteration))
    return strength


def _any_process(flag: bool) -> bool:
    """Whether ``flag`` is true on any process of the job (a small collective)."""
    from jax.experimental import multihost_utils

    return bool(np.any(multihost_utils.process_allgather(np.asarray([flag]))))


class _NoLog:
    """The metrics log of processes other than 0: records are made, not written."""

    def write(self, **record: Any) -> dict:
        return record

    def close(self) -> None:
        pass


def _check_compatible(engine: Engine, metadata: dict, run_dir: Path) -> None:
    if metadata.get("env_id") != engine.env.id or str(metadata.get("env_version")) != str(engine.env.version):
        from superlearner.errors import CheckpointError

        raise CheckpointError(
            f"{run_dir}: checkpoint is for env {metadata.get('env_id')} v{metadata.get('env_version')}, "
            f"this config builds {engine.env.id} v{engine.env.version}"
        )


class _Progress:
    """A rich progress bar (steps, steps/s, time left, main metrics), or nothing."""

    def __init__(self, enabled: bool, total: int, completed: int, name: str):
        self.enabled = enabled
        if not enabled:
            return
        from rich.progress import (
            BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
            TimeElapsedColumn, TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            transient=False,
        )
        self._task = self._progress.add_task(name, total=total, completed=completed, rate="", info="compiling...")
        self._last = (time.perf_counter(), completed)

    def __enter__(self):
        if self.enabled:
            self._progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self._progress.__exit__(*exc)

    def update(self, completed: int, metrics: dict) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        rate = (completed - self._last[1]) / max(now - self._last[0], 1e-9)
        self._last = (now, completed)
        shown = []
        for name in ("episode_return", "loss_total", "entropy", "vs_random", "exploitability"):
            if name in metrics:
                shown.append(f"{name}={np.mean(metrics[name]):.3g}")
        self._progress.update(self._task, completed=completed, rate=f"{rate:,.0f} steps/s", info=" ".join(shown))
