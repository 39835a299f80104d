"""The host loop: runs compiled train chunks, and between them logs, checkpoints and reports.

`train` starts a run in a fresh directory; `resume` continues one from its newest intact
checkpoint (a damaged one is passed over with a warning, `superlearner.run.checkpoint`), and may
change the settings that leave the compiled shapes and the state as they are, such as the budget
(`RESUME_SETTINGS`). Both hold the run's writer lock (`superlearner.run.lock`): a second writer
is refused at once. Ctrl-C and SIGTERM (what preemptible cloud machines send) finish the chunk
in flight, write a checkpoint and return. A NaN or infinity in a loss or the parameters stops the
run with a message naming the iteration and the metric; a checkpoint or log write that fails (a
full disk, a lost permission) stops it with a message naming the file. Either way the last good
checkpoint is left as it was, and a process killed at any point (``kill -9``) resumes to the same
parameters and log as a run never stopped: the cadences of checkpoints and probes count the
chunks of the whole run, and the log drops what was written after the checkpoint resumed from.

The TrainState lives on a device mesh (`superlearner.core.distributed`): ``train.mesh_pop`` devices
split the population, ``train.mesh_data`` split each member's env batch, and the train chunk is
compiled for that layout. In a multi-host job every process runs this same loop; process 0
alone writes the run directory, the logs and the progress bar, all processes write and restore
checkpoints together, and a stop (signal) on any process stops all of them at the same chunk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import yaml

from superlearner.core import distributed
from superlearner.run.checkpoint import CHECKPOINT_DIR, Checkpointer, committed_steps
from superlearner.config import ExperimentConfig, apply_overrides, config_from_dict, config_to_dict, validate_semantics
from superlearner.engine import LEARNER_UPDATED, Engine, compile_concurrently, lower_init, make_engine
from superlearner.errors import ConfigError, RunWriteError, UserError
from superlearner.version import __version__
from superlearner.run.lock import hold_run_lock
from superlearner.run.logs import MetricsLog
from superlearner.run.memory import GIB, MemoryEstimate, check_fits, device_capacity, program_memory

CONFIG_FILE = "config.yaml"
# Settings `resume` may change: none alters the compiled train chunk's state shapes or the
# TrainState's layout, so the checkpoint fits the new program as it is.
RESUME_SETTINGS = (
    "train.total_env_steps", "train.time_limit_minutes", "train.checkpoint_every_chunks", "train.keep_checkpoints",
    "train.iterations_per_chunk", "train.eval_episodes", "train.memory_budget_gib", "arena.every_chunks",
    "arena.games", "curriculum.probe_every_chunks", "curriculum.probe_episodes", "curriculum.probe_gallery",
    "log.tensorboard", "log.wandb", "log.wandb_project", "description",
)
# Settings under which the budget (train.total_env_steps) shapes the step-size schedule: a run
# resumed with another budget does not equal one given that budget from the start, since the step
# size jumps from its place on the old schedule to its place on the new one.
BUDGET_SCHEDULES = {
    "learner.anneal_lr=true": lambda config: config.learner.kind == "ppo" and config.learner.anneal_lr,
    "alphazero.lr_schedule=cosine": lambda config: (
        config.learner.kind == "alphazero" and getattr(config.section("alphazero"), "lr_schedule", "") == "cosine"
    ),
}
# The heading of the history of settings changed on resume, kept as comments at the end of
# config.yaml (so the file stays a config that `superlearner train` reads as it is).
HISTORY_HEADING = "# Settings changed on resume (superlearner resume --set), oldest first:"
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
    # Whole or not at all, so that a process killed here leaves no torn config to resume from.
    temporary = run_dir / (CONFIG_FILE + ".tmp")
    temporary.write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
    os.replace(temporary, run_dir / CONFIG_FILE)


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
    A run with an online rating (``rating.kind``) ranks by it before anything else: the best
    member's rating at its latest round (unranked before the first round).
    """
    if "rating" in metrics and "rating_stderr" in metrics:
        ratings, measured = np.asarray(metrics["rating"], np.float64), np.isfinite(np.asarray(metrics["rating_stderr"], np.float64))
        return float(np.max(ratings[measured])) if measured.any() else None
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
    with _writer_lock(run_dir, "train"):
        if distributed.is_main_process():
            check_new_run_dir(run_dir)  # again, holding the lock: another writer may have begun meanwhile
            try:
                prepare_run_dir(run_dir, config)
            except OSError as error:
                raise RunWriteError.of(run_dir / CONFIG_FILE, "the run's config", error) from None
        distributed.sync("superlearner: run directory written")
        return _run(engine, mesh, run_dir, resume=False, show_progress=show_progress, max_chunks=max_chunks,
                    on_chunk=on_chunk, program=program)


def resume(
    run_dir: str | Path,
    *,
    mesh: dict[str, int] | None = None,
    overrides: Sequence[str] = (),
    allow_schedule_change: bool = False,
    show_progress: bool = True,
    max_chunks: int | None = None,
    on_chunk: Callable[[dict], None] | None = None,
) -> RunResult:
    """Continues the run in ``run_dir`` from its newest intact checkpoint to its configured end.

    A run that died before its first checkpoint starts again from the beginning. ``mesh``
    (``{"pop": 2, "data": 4}``, either may be left out) replaces the run's device layout, e.g. to
    continue on a machine with another number of devices; the checkpoint is read onto the new
    layout.

    ``overrides`` (``["train.total_env_steps=2000000"]``, as ``--set``) change settings of
    `RESUME_SETTINGS` only; the changes go into ``config.yaml``, with the history of earlier ones,
    once the checkpoint is read, and a refused one changes nothing. The resumed run then equals a
    run configured so from the start (parameters exactly; log records too where the old budget
    ended on a chunk boundary). A budget that a step-size schedule is laid over
    (`BUDGET_SCHEDULES`) is refused unless ``allow_schedule_change``.
    """
    run_dir = Path(run_dir)
    read_run_config(run_dir)  # not a run: say so before the lock creates anything
    with _writer_lock(run_dir, "resume"):
        config, changes = settings_for_resume(read_run_config(run_dir), overrides, run_dir, allow_schedule_change)
        running = with_mesh(config, mesh) if mesh else config
        validate_semantics(running)
        engine = make_engine(running)
        device_mesh = make_run_mesh(running)
        program = compile_run(engine, device_mesh)
        return _run(engine, device_mesh, run_dir, resume=True, show_progress=show_progress, max_chunks=max_chunks,
                    on_chunk=on_chunk, program=program, settings_change=(config, changes) if changes else None)


def _writer_lock(run_dir: Path, command: str):
    """The run's writer lock, held by process 0 of a job (the one that writes the run directory)."""
    return hold_run_lock(run_dir, command) if distributed.is_main_process() else contextlib.nullcontext()


def settings_for_resume(config: ExperimentConfig, overrides: Sequence[str], run_dir: Path,
                        allow_schedule_change: bool = False) -> tuple[ExperimentConfig, list[tuple[str, Any, Any]]]:
    """The run's ``config`` with ``overrides`` (``KEY=VALUE``) applied, and the changes as
    ``[(key, old value, new value)]``; raises `ConfigError` (one line) for a key outside
    `RESUME_SETTINGS`, a bad value, a budget below what the run has trained, or a budget that a
    step-size schedule is laid over (unless ``allow_schedule_change``, which warns instead)."""
    if not overrides:
        return config, []
    for item in overrides:
        key = item.partition("=")[0].strip()
        if "=" in item and key not in RESUME_SETTINGS:
            raise ConfigError(
                f"--set {key}: resume changes only settings that leave the compiled shapes and the state as they are: "
                f"{', '.join(RESUME_SETTINGS)} (the device layout: --mesh); start a new run to change {key}"
            )
    before = config_to_dict(config)
    changed = config_from_dict(apply_overrides(before, overrides), source="resume --set")
    validate_semantics(changed, source="resume --set")
    old, new = _flatten(before), _flatten(config_to_dict(changed))
    changes = [(key, old.get(key), new.get(key)) for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
    if changed.iterations != config.iterations:
        trained = max(committed_steps(run_dir / CHECKPOINT_DIR), default=0)
        per_iteration = config.learner.num_envs * config.learner.num_steps
        if changed.iterations < trained:
            raise ConfigError(
                f"--set train.total_env_steps={changed.train.total_env_steps}: the run has trained "
                f"{trained * per_iteration} env steps already (checkpoint {trained}); give at least that"
            )
        shaping = [name for name, applies in BUDGET_SCHEDULES.items() if applies(config)]
        if shaping:
            why = (f"this run's step size follows a schedule laid over its budget ({shaping[0]}): with another budget "
                   "it jumps to its place on the new schedule, so the resumed run does not equal one given that "
                   "budget from the start")
            if not allow_schedule_change:
                raise ConfigError(f"--set train.total_env_steps: {why}; add --allow-schedule-change to change it anyway")
            print(f"warning: --set train.total_env_steps: {why}", file=sys.stderr)
    return changed, changes


def _flatten(raw: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in raw.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def record_resume_settings(run_dir: Path, config: ExperimentConfig, changes: list[tuple[str, Any, Any]],
                           iteration: int) -> None:
    """Writes ``config`` into the run's config.yaml (atomically) with ``changes`` added to the
    history of changed settings at its end: one comment line per change, oldest first."""
    path = run_dir / CONFIG_FILE
    history = []
    lines = path.read_text().splitlines() if path.is_file() else []
    if HISTORY_HEADING in lines:
        history = [line for line in lines[lines.index(HISTORY_HEADING) + 1:] if line.startswith("#")]
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    history += [
        f"# {stamp}, resumed at iteration {iteration}: {key}: {json.dumps(old)} -> {json.dumps(new)}"
        for key, old, new in changes
    ]
    text = yaml.safe_dump(config_to_dict(config), sort_keys=False) + "\n" + "\n".join([HISTORY_HEADING, *history]) + "\n"
    temporary = path.with_name(CONFIG_FILE + ".tmp")
    try:
        temporary.write_text(text)
        os.replace(temporary, path)
    except OSError as error:
        raise RunWriteError.of(path, "the run's config", error) from None


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
         program: RunProgram, settings_change: tuple[ExperimentConfig, list] | None = None) -> RunResult:
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
    log, failed, peer_lost = _NoLog(), False, False
    try:
        # Jitted, so every leaf is its own buffer (the chunk donates them all).
        state, wall_offset = _restore(checkpointer, engine, program.init(jnp.int32(config.train.seed)), run_dir, resume)
        iteration = int(state.iteration)
        if settings_change is not None and main:
            record_resume_settings(run_dir, *settings_change, iteration)
        if main:
            log = MetricsLog(run_dir, config, resume_from=iteration if resume else None)
    except BaseException:
        _close(checkpointer, run_dir, 0, quiet=True)
        raise

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
                # Chunks of the whole run, resumed parts included: cadences counted by it make a
                # resumed run check, probe and checkpoint where an unbroken one does.
                chunk_number = -(-iteration // config.train.iterations_per_chunk)
                elapsed = time.perf_counter() - chunk_start
                last = int(np.flatnonzero(valid)[-1])
                last_metrics = {name: np.asarray(values[last]).tolist() for name, values in metrics.items()}
                finished = iteration >= engine.num_iterations
                # Keyed by iteration, so a resumed run measures with the same randomness.
                strength = _measure_probes(probe, level_probe, state, gather if multi else None, config, chunk_number,
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
                due = chunk_number % config.train.checkpoint_every_chunks == 0
                out_of_chunks = max_chunks is not None and chunks_done >= max_chunks
                if time_limit > 0 and not finished:
                    # This chunk's duration predicts the next one's.
                    over = wall_time() + elapsed > time_limit
                    time_limited = _any_process(over) if multi else over
                if finished or due or stop_now or out_of_chunks or time_limited:
                    score = checkpoint_score(last_metrics, strength, probe is not None)
                    _save(checkpointer, snapshot(state), iteration, checkpoint_metadata(engine, iteration, wall_time()), score)
                    last_saved = iteration
                if stop_now:
                    stopped_by_signal = True
                    break
                if out_of_chunks:
                    break
    except distributed.PeerLostError:
        peer_lost = True
        raise
    except (RunWriteError, OSError) as error:
        failed = True
        if isinstance(error, OSError) and error.filename is None:  # not a file's write (a closed pipe)
            raise
        raise _stopped_by_write(error, checkpointer, run_dir, iteration) from None
    except BaseException:
        failed = True
        raise
    finally:
        log.close()
        if not peer_lost:  # closing waits for the other processes, which are gone
            _close(checkpointer, run_dir, iteration, quiet=failed)
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


def _save(checkpointer: Checkpointer, state: Any, iteration: int, metadata: dict, score: float | None) -> None:
    try:
        checkpointer.save(iteration, state, metadata, score=score)
    except Exception as error:
        if jax.process_count() > 1 and distributed.is_peer_failure(error):
            raise distributed.peer_lost(error, f"while saving the checkpoint of iteration {iteration}") from None
        raise


def _restore(checkpointer: Checkpointer, engine: Engine, fresh: Any, run_dir: Path, resume: bool) -> tuple[Any, float]:
    """The state to start from and the wall time it has used: the newest intact checkpoint's when
    resuming (a run that died before its first checkpoint starts again), else ``fresh``."""
    if not resume or not (checkpointer.steps() or checkpointer.damaged):
        return fresh, 0.0
    state, metadata, _ = checkpointer.restore_intact(fresh)
    _check_compatible(engine, metadata, run_dir)
    return state, float(metadata.get("wall_time", 0.0))


def _stopped_by_write(error: Exception, checkpointer: Checkpointer, run_dir: Path, iteration: int) -> RunWriteError:
    """The one line a failed write stops the run with: what failed, and what a resume starts from."""
    if not isinstance(error, RunWriteError):  # a file written outside the run's own writers (a probe's)
        error = RunWriteError.of(getattr(error, "filename", None) or run_dir, "a file of the run", error)
    try:
        checkpointer.wait()  # a write still in flight may yet land, or fail too
    except RunWriteError:
        pass
    steps = checkpointer.committed_steps()
    kept = (f"the last good checkpoint ({checkpointer.directory / str(steps[-1])}) is intact and "
            f"`superlearner resume {run_dir}` continues from it" if steps else
            f"no checkpoint was written yet; `superlearner resume {run_dir}` starts the run again")
    return RunWriteError(f"{error}; training stopped after iteration {iteration}: {kept} once the file system takes writes again")


def _close(checkpointer: Checkpointer, run_dir: Path, iteration: int, quiet: bool) -> None:
    """Closes ``checkpointer``, waiting for its last write; a failure of that write is the run's
    error unless another one is already on its way (``quiet``)."""
    try:
        checkpointer.close()
    except RunWriteError as error:
        if not quiet:
            raise _stopped_by_write(error, checkpointer, run_dir, iteration) from None


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
