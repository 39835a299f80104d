"""Devices and hosts: the device mesh, the layout of the TrainState on it, and joining a
multi-host job.

**Devices.** A run's devices form a `jax.sharding.Mesh` with two axes: ``pop`` splits the
population (the leading axis P of every per-member field) and ``data`` splits each member's env
batch (axis N of the ``[P, N]`` env fields). The train chunk is compiled once with `jax.jit` for
that layout (GSPMD): per-member work needs no communication, and env steps and policy calls of
the rollout run split over ``data`` without any code saying so. A learner that shuffles the
whole batch into minibatches gathers it first; marking each minibatch with `split_over_data`
keeps its loss split too, so the gradient mean becomes an all-reduce over ``data`` (without the
mark every ``data`` device computes the whole update: the same numbers, done redundantly).

The layout comes from ``train.mesh_pop`` and ``train.mesh_data`` (``--mesh pop=2,data=4`` on the
command line); 0 means "choose". The choice uses as many devices as the population and the env
batch can be split over (an axis size must divide P, respectively N), giving devices to ``pop``
first, since members never exchange data, and the rest to ``data``. When P and N cannot use every
device, fewer are used and the trainer says so.

**Hosts.** `initialize` joins a job of several processes (one per host) through
`jax.distributed.initialize`; from then on `jax.devices()` lists the devices of every host and
one mesh spans them all. Each process runs the same program; process 0 alone writes the run
directory, the logs and the progress display, while checkpoints are written by all processes
together (orbax) and restored by all.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
from typing import Any

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from superlearner.errors import ConfigError, UserError

POP, DATA = "pop", "data"
DEFAULT_PEER_TIMEOUT = 300


class PeerLostError(UserError):
    """Another process of a multi-host job stopped answering; this one stops too."""


# ----------------------------------------------------------------------------------------------
# The mesh.


@dataclasses.dataclass(frozen=True)
class MeshShape:
    """Devices along each mesh axis; ``pop * data`` devices are used."""

    pop: int
    data: int

    @property
    def num_devices(self) -> int:
        return self.pop * self.data

    def __str__(self) -> str:
        return f"pop={self.pop},data={self.data}"


def parse_mesh(text: str) -> dict[str, int]:
    """``"pop=2,data=4"`` -> ``{"pop": 2, "data": 4}`` (either axis may be left out)."""
    sizes: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in (POP, DATA) or not value.strip().isdigit() or int(value) < 1 or name in sizes:
            raise UserError(
                f"--mesh {text!r}: expected pop=P,data=D with positive integers (either may be left out), "
                "e.g. --mesh pop=2,data=4"
            )
        sizes[name] = int(value)
    if not sizes:
        raise UserError(f"--mesh {text!r}: expected pop=P,data=D, e.g. --mesh pop=2,data=4")
    return sizes


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def resolve_mesh_shape(
    population_size: int,
    num_envs: int,
    num_devices: int,
    pop: int = 0,
    data: int = 0,
    *,
    require_all: bool = False,
    source: str = "config",
) -> MeshShape:
    """The mesh shape for a population of ``population_size`` members with ``num_envs`` envs each.

    Args:
      population_size: P, the leading axis of per-member fields.
      num_envs: N, the env axis of ``[P, N]`` fields.
      num_devices: devices available (all hosts together).
      pop, data: requested axis sizes (``train.mesh_pop``, ``train.mesh_data``); 0 = choose.
      require_all: every device must be used (several processes: each must hold a part).
      source: where the request came from, for error messages.

    Raises:
      ConfigError: an axis that does not divide its dimension, or more devices than there are.
    """
    if pop and population_size % pop:
        raise ConfigError(
            f"{source}: train.mesh_pop={pop} must divide train.population_size={population_size}; "
            f"accepted: {', '.join(map(str, _divisors(population_size)))} (or 0 to choose)"
        )
    if data and num_envs % data:
        raise ConfigError(
            f"{source}: train.mesh_data={data} must divide learner.num_envs={num_envs}; "
            f"accepted: {', '.join(map(str, _divisors(num_envs)))} (or 0 to choose)"
        )
    pops = [pop] if pop else _divisors(population_size)
    datas = [data] if data else _divisors(num_envs)
    # Most devices first; then more on `pop` (members never communicate).
    candidates = sorted(
        (MeshShape(p, d) for p in pops for d in datas if p * d <= num_devices),
        key=lambda m: (m.num_devices, m.pop),
        reverse=True,
    )
    if not candidates:
        raise ConfigError(
            f"{source}: train.mesh_pop={pop or 'auto'}, train.mesh_data={data or 'auto'} needs "
            f"{max(pop, 1) * max(data, 1)} devices but {num_devices} are available; "
            f"accepted: pop * data <= {num_devices}"
        )
    shape = candidates[0]
    if require_all and shape.num_devices != num_devices:
        raise ConfigError(
            f"{source}: a multi-process job must use all {num_devices} devices, but mesh {shape} uses "
            f"{shape.num_devices} (population_size={population_size}, num_envs={num_envs}); choose "
            f"train.population_size and learner.num_envs so that mesh_pop * mesh_data = {num_devices}"
        )
    return shape


def make_mesh(shape: MeshShape, devices=None) -> Mesh:
    """A ``(pop, data)`` mesh over the first ``shape.num_devices`` of ``devices`` (default: all).

    The axes are `AxisType.Auto`: shardings inside the program are left to the compiler (GSPMD),
    so library code needs no sharding annotations.
    """
    devices = jax.devices() if devices is None else list(devices)
    return jax.make_mesh(
        (shape.pop, shape.data), (POP, DATA), axis_types=(AxisType.Auto, AxisType.Auto),
        devices=devices[: shape.num_devices],
    )


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding of an array every device holds whole."""
    return NamedSharding(mesh, PartitionSpec())


def train_state_shardings(state: Any, mesh: Mesh, population_size: int, num_envs: int) -> Any:
    """A NamedSharding for every leaf of a TrainState (arrays or `jax.ShapeDtypeStruct`s).

    * learner, hparams, rng, league, curriculum, rating: ``[P, ...]`` split over ``pop``;
    * env_state, env_params, episode_stats, policy_carry: ``[P, N, ...]`` split over ``pop`` and ``data``
      (leaves without an env axis, e.g. self-play statistics ``[P]``, over ``pop`` only);
    * iteration and the meta-controller's state (it compares members): replicated.
    """

    def member(x):
        shape = tuple(x.shape)
        if shape[:1] == (population_size,):
            return NamedSharding(mesh, PartitionSpec(POP))
        return replicated(mesh)

    def env(x):
        shape = tuple(x.shape)
        if shape[:2] == (population_size, num_envs):
            return NamedSharding(mesh, PartitionSpec(POP, DATA))
        return member(x)

    def whole(x):
        return replicated(mesh)

    return state.replace(
        learner=jax.tree.map(member, state.learner),
        hparams=jax.tree.map(member, state.hparams),
        env_state=jax.tree.map(env, state.env_state),
        env_params=jax.tree.map(env, state.env_params),
        episode_stats=jax.tree.map(env, state.episode_stats),
        policy_carry=jax.tree.map(env, state.policy_carry),
        rng=jax.tree.map(member, state.rng),
        iteration=jax.tree.map(whole, state.iteration),
        league=jax.tree.map(member, state.league),
        curriculum=jax.tree.map(member, state.curriculum),
        meta=jax.tree.map(whole, state.meta),
        rating=jax.tree.map(member, state.rating),
    )


def split_over_data(x: jax.Array, axis: int) -> jax.Array:
    """``x`` with its ``axis`` split over the mesh's ``data`` devices (a sharding constraint).

    For learners: called on a minibatch ``[..., B, ...]`` after shuffling (which gathers the
    env batch), it makes each ``data`` device compute the loss and gradient of its ``B / D``
    rows, so the gradient mean becomes an all-reduce instead of every device computing the whole
    minibatch. Identity when no mesh is set (`jax.set_mesh`), when it has no ``data`` axis of
    more than one device, or when ``D`` does not divide ``B``; never changes values.
    Under the population `vmap` (``spmd_axis_name="pop"``) the member axis stays on ``pop``.
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or DATA not in mesh.axis_names:
        return x
    devices = mesh.shape[DATA]
    if devices == 1 or x.shape[axis] % devices:
        return x
    spec = [None] * x.ndim
    spec[axis] = DATA
    return jax.lax.with_sharding_constraint(x, PartitionSpec(*spec))


# ----------------------------------------------------------------------------------------------
# Hosts.


def _env_int(name: str) -> int | None:
    text = os.environ.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise UserError(f"${name}={text!r}: must be an integer") from None


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    auto: bool = False,
    timeout: int = DEFAULT_PEER_TIMEOUT,
) -> bool:
    """Joins a multi-host job through `jax.distributed.initialize`; returns whether it did.

    Unset arguments are read from ``$JAX_COORDINATOR_ADDRESS``, ``$JAX_NUM_PROCESSES`` and
    ``$JAX_PROCESS_ID``. With none of them set and ``auto`` false this is a single-process run
    and nothing happens; with ``auto`` JAX detects the job from its cluster (TPU pod slice,
    SLURM, Open MPI, Kubernetes). Must run before anything touches a device.

    ``timeout`` (seconds) bounds the wait for every process to join, the silence after which a
    process counts as lost (the job then stops), and the wait for the others at the end. A job
    that is not complete within ``timeout`` ends this process with a one-line ``error:`` on
    stderr and exit status 2 (JAX's own timeout would abort it with a stack dump).

    On the CPU, processes exchange data over TCP (gloo), so several processes on one machine
    work as several hosts would.
    """
    coordinator = coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS") or None
    num_processes = num_processes if num_processes is not None else _env_int("JAX_NUM_PROCESSES")
    process_id = process_id if process_id is not None else _env_int("JAX_PROCESS_ID")
    if not auto and coordinator is None and num_processes is None and process_id is None:
        return False
    if timeout < 1:
        raise UserError(f"--peer-timeout {timeout}: must be at least 1 second")
    if not auto:
        given = {"--coordinator": coordinator, "--num-processes": num_processes, "--process-id": process_id}
        missing = [flag for flag, value in given.items() if value is None]
        if missing:
            raise UserError(
                f"joining a multi-host job needs --coordinator, --num-processes and --process-id "
                f"(or $JAX_COORDINATOR_ADDRESS, $JAX_NUM_PROCESSES, $JAX_PROCESS_ID); missing {', '.join(missing)}; "
                "use --distributed on a cluster JAX detects itself (TPU pod, SLURM, Open MPI)"
            )
    if coordinator is not None:
        host, sep, port = coordinator.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise UserError(f"--coordinator {coordinator!r}: expected HOST:PORT, e.g. 10.0.0.1:1234")
    if num_processes is not None and num_processes < 1:
        raise UserError(f"--num-processes {num_processes}: must be at least 1")
    if process_id is not None and num_processes is not None and not 0 <= process_id < num_processes:
        raise UserError(f"--process-id {process_id}: must be in 0..{num_processes - 1} for --num-processes {num_processes}")
    # Only the CPU client reads this; without it CPU processes cannot run collectives together.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    where = f"{coordinator or 'the cluster coordinator'} as process {process_id if process_id is not None else '?'}"
    if num_processes is not None:
        where += f" of {num_processes}"

    def give_up():
        print(
            f"error: could not join the multi-host job at {where} within {timeout} s "
            "(is every process started, with the same --coordinator and --num-processes?)",
            file=sys.stderr,
        )
        exit_now(2)

    # JAX waits in native code and aborts the process when its own deadline passes; this timer
    # (a little earlier) ends it with one readable line instead.
    watchdog = threading.Timer(timeout, give_up)
    watchdog.daemon = True
    watchdog.start()
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator,
            num_processes=num_processes,
            process_id=process_id,
            initialization_timeout=int(timeout) + 30,
            heartbeat_timeout_seconds=int(timeout),
            shutdown_timeout_seconds=int(timeout),
        )
    except Exception as error:  # JAX raises several kinds: refused, bad cluster settings
        raise UserError(f"could not join the multi-host job at {where} ({_first_line(error)})") from None
    finally:
        watchdog.cancel()
    return True


def is_main_process() -> bool:
    """Whether this process writes files and logs (process 0; always true for one process)."""
    return jax.process_index() == 0


def sync(name: str) -> None:
    """Waits until every process of the job reaches the point called ``name`` (a no-op alone)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


# Words in the errors XLA, gloo and the coordination service raise when a peer process is gone.
_PEER_FAILURE_WORDS = ("gloo", "connection", "unavailable", "deadline", "barrier", "coordination", "heartbeat", "peer", "socket")


def is_peer_failure(error: BaseException) -> bool:
    """Whether ``error`` (raised by a step shared with other processes) means one of them is gone."""
    if isinstance(error, UserError) or jax.process_count() == 1:
        return False
    text = f"{type(error).__name__} {error}".lower()
    return any(word in text for word in _PEER_FAILURE_WORDS)


def peer_lost(error: BaseException, during: str) -> PeerLostError:
    """The one-line error for a collective that failed because another process went away."""
    return PeerLostError(
        f"process {jax.process_index()} of {jax.process_count()}: lost contact with the other processes "
        f"{during} ({_first_line(error)}); every process stops"
    )


def exit_now(code: int) -> None:
    """Ends this process at once, skipping JAX's shutdown handshake with peers that are gone
    (which would wait for them and then abort with a wall of logs)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    line = text[0] if text else type(error).__name__
    return line if len(line) <= 240 else line[:237] + "..."


def describe(mesh: Mesh) -> str:
    """E.g. ``"8 devices (cpu) as pop=2 x data=4, 1 process"``."""
    devices = mesh.devices.reshape(-1)
    kind = devices[0].platform
    processes = len({d.process_index for d in devices})
    plural = "es" if processes != 1 else ""
    return (
        f"{devices.size} device{'s' if devices.size != 1 else ''} ({kind}) as "
        f"pop={mesh.shape[POP]} x data={mesh.shape[DATA]}, {processes} process{plural}"
    )
