"""Device memory: what a compiled train chunk needs, and whether a run fits before it starts.

XLA reports, for a compiled program, the bytes of its arguments, outputs and temporaries and how
many output bytes reuse (alias) donated argument buffers. The train chunk donates the TrainState,
so its peak is about ``arguments + temporaries + outputs - aliased``. `check_fits` compares that
with the device's capacity and, when it does not fit, names the config settings that set the
largest part, so a preset sized for an accelerator fails in one line instead of with an
out-of-memory error minutes into compilation or training.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import numpy as np

from superlearner.errors import UserError

GIB = 1024**3


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a compiled program needs on its device.

    Attributes:
      arguments: bytes of the inputs (the TrainState).
      outputs: bytes of the outputs (the new TrainState and the chunk's metrics).
      temporaries: bytes of XLA's scratch buffers (rollouts, activations, gradients).
      aliased: output bytes written into donated argument buffers.
    """

    arguments: int
    outputs: int
    temporaries: int
    aliased: int

    @property
    def peak(self) -> int:
        """Bytes live at once at most: inputs, scratch, and outputs that do not reuse inputs."""
        return self.arguments + self.temporaries + max(self.outputs - self.aliased, 0)


def program_memory(compiled: Any) -> MemoryEstimate:
    """The `MemoryEstimate` of a ``jax.stages.Compiled`` program (``jit(f).lower(...).compile()``).

    Sizes are per device for a sharded program. Returns zeros where the backend reports nothing.
    """
    stats = compiled.memory_analysis()
    if isinstance(stats, (list, tuple)):  # older JAX: one entry per device program
        stats = stats[0] if stats else None
    if stats is None:
        return MemoryEstimate(0, 0, 0, 0)
    return MemoryEstimate(
        arguments=int(stats.argument_size_in_bytes),
        outputs=int(stats.output_size_in_bytes),
        temporaries=int(stats.temp_size_in_bytes),
        aliased=int(stats.alias_size_in_bytes),
    )


def tree_bytes(tree: Any) -> int:
    """Bytes of every array leaf of ``tree`` (arrays or ``jax.ShapeDtypeStruct``s)."""
    return int(sum(np.prod(x.shape, dtype=np.int64) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))


def device_capacity(device: jax.Device | None = None) -> int | None:
    """Bytes one device may use: the allocator's limit on GPU/TPU, physical memory on CPU.

    None when neither is known.
    """
    device = device or jax.local_devices()[0]
    try:
        stats = device.memory_stats()
    except Exception:  # some backends do not implement it
        stats = None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    if device.platform == "cpu":
        try:
            return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        except (ValueError, OSError, AttributeError):
            return None
    return None


def largest_parts(state: Any, config: Any, temporaries: int = 0) -> list[str]:
    """The config settings that size the biggest parts of a run's memory, biggest first.

    ``temporaries`` (XLA's scratch: rollouts, activations, gradients) count towards the env
    batch, which sets their size.
    """
    from superlearner.engine import TrainState

    lc, tc = config.learner, config.train
    suggestions = {
        "env": f"learner.num_envs (now {lc.num_envs}) or learner.num_steps (now {lc.num_steps})",
        "learner": f"train.population_size (now {tc.population_size}) or learner.hidden_sizes",
        "league": f"league.capacity (now {config.league.capacity})",
        "curriculum": f"curriculum.capacity (now {config.curriculum.capacity})",
    }
    parts = {"env": temporaries, "learner": 0, "league": 0, "curriculum": 0}
    if isinstance(state, TrainState):
        parts["env"] += tree_bytes((state.env_state, state.env_params, state.episode_stats))
        parts["learner"] = tree_bytes(state.learner)
        parts["league"] = tree_bytes(state.league)
        parts["curriculum"] = tree_bytes(state.curriculum)
    parts["env"] = max(parts["env"], 1)  # the env batch is always worth naming
    order = sorted(parts, key=lambda name: -parts[name])
    return [suggestions[name] for name in order if parts[name] > 0]


def format_bytes(count: int) -> str:
    """``count`` bytes in GiB, MiB or KiB, whichever reads best."""
    for unit, size in (("GiB", GIB), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= size:
            return f"{count / size:.2f} {unit}"
    return f"{count} B"


def check_fits(
    estimate: MemoryEstimate,
    capacity: int | None,
    *,
    state: Any = None,
    config: Any = None,
    where: str = "the device",
) -> None:
    """Raises a one-line `UserError` when ``estimate.peak`` exceeds ``capacity`` bytes.

    The message gives the need, the capacity, and the settings to lower (from ``state`` and
    ``config`` when given). Does nothing when ``capacity`` is None (unknown).
    """
    if capacity is None or estimate.peak <= capacity:
        return
    need = (
        f"needs about {format_bytes(estimate.peak)} on {where} (state {format_bytes(estimate.arguments)}, "
        f"temporaries {format_bytes(estimate.temporaries)}) but {format_bytes(capacity)} is available"
    )
    hint = ""
    if config is not None:
        hint = "; lower " + "; or lower ".join(largest_parts(state, config, estimate.temporaries)[:2])
    raise UserError(f"this run {need}{hint}")
