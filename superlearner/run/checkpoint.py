"""Checkpoints through orbax, and only here.

A checkpoint is a step folder under ``<run>/checkpoints/`` holding two items:

* ``state``: every array of the TrainState, keyed by its path in the pytree
  (``learner.params...``), so a checkpoint can be checked against the structure the config
  builds before anything is loaded;
* ``metadata``: JSON with the resolved config, the env id and version, the package version,
  the iteration and env steps.

Writes are atomic (orbax writes a temporary folder and renames it) and asynchronous (training
continues while arrays are written). The latest N periodic checkpoints and the best one by
the trainer's score (`superlearner.run.trainer.checkpoint_score`) are kept. A checkpoint that is incomplete, of another structure, or of other
shapes is refused with `CheckpointError`; nothing is loaded silently wrong.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from superlearner.errors import CheckpointError

CHECKPOINT_DIR = "checkpoints"
FORMAT_VERSION = 1

# orbax logs every save at INFO through absl; keep the console for the progress bar.
logging.getLogger("absl").setLevel(logging.ERROR)


def _ocp():
    import orbax.checkpoint as ocp

    return ocp


# Leaves the train state gained after checkpoints had been written, and how to derive each from
# what such a checkpoint holds: {key: (source key, function of the source leaf)}.
DERIVED_LEAVES = {
    # Self-play opponent groups (`superlearner.learners.ppo_selfplay`): without groups a game's pair is its
    # opponent twice.
    ".env_state.pair": (".env_state.opponent", lambda opponent: jnp.stack([opponent, opponent], axis=-1)),
}


# Leaves that moved to another place of the train state, by prefix: {new prefix: old prefix}. A
# leaf the template wants under the new prefix is read from the old place when only that exists.
MOVED_PREFIXES = {
    # AlphaZero's self-play games moved from its learner state into the member's env state when
    # AlphaZero joined the shared engine (`superlearner.learners.alphazero_learner`).
    ".env_state.": ".learner.games.",
}


def _moved_leaves(missing: set[str], stored: set[str]) -> dict[str, tuple[str, Any]]:
    """``{new key: (old key, identity)}`` for every missing leaf whose old place is stored."""
    moved = {}
    for key in missing:
        for new, old in MOVED_PREFIXES.items():
            if key.startswith(new) and old + key[len(new):] in stored:
                moved[key] = (old + key[len(new):], lambda leaf: leaf)
    return moved


def flatten_state(tree: Any) -> dict[str, Any]:
    """``{path: array}`` for every leaf of ``tree`` (paths as `jax.tree_util.keystr`)."""
    paths, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path): leaf for path, leaf in paths}


def unflatten_state(template: Any, arrays: dict[str, Any], where: str) -> Any:
    """Rebuilds ``template``'s structure from ``arrays``; raises CheckpointError on a mismatch."""
    paths, treedef = jax.tree_util.tree_flatten_with_path(template)
    expected = [jax.tree_util.keystr(path) for path, _ in paths]
    missing = [k for k in expected if k not in arrays]
    extra = [k for k in arrays if k not in set(expected)]
    if missing or extra:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
        raise CheckpointError(
            f"{where}: checkpoint does not match this config's train state ({detail}); "
            "was it written by another config or version?"
        )
    leaves = []
    for (path, want), key in zip(paths, expected):
        got = arrays[key]
        if tuple(np.shape(got)) != tuple(np.shape(want)) or np.dtype(got.dtype) != np.dtype(want.dtype):
            raise CheckpointError(
                f"{where}: {key} has shape {tuple(np.shape(got))} {got.dtype} in the checkpoint, "
                f"expected {tuple(np.shape(want))} {want.dtype}"
            )
        leaves.append(got)
    return jax.tree.unflatten(treedef, leaves)


def _score(metrics: dict) -> float:
    return metrics["score"]


class Checkpointer:
    """Periodic, final and best checkpoints of one run directory."""

    def __init__(self, run_dir: str | Path, *, keep: int = 3, asynchronous: bool = True, read_only: bool = False):
        ocp = _ocp()
        from orbax.checkpoint import checkpoint_managers as cm

        self.directory = Path(run_dir).resolve() / CHECKPOINT_DIR
        policy = cm.AnyPreservationPolicy(
            [
                cm.LatestN(keep),
                cm.BestN(get_metric_fn=_score, n=1, keep_checkpoints_without_metrics=False),
            ]
        )
        options = ocp.CheckpointManagerOptions(
            enable_async_checkpointing=asynchronous,
            preservation_policy=policy,
            # Without best_fn orbax neither writes the scores nor reads them back, and a reopened
            # run's "best" would silently be its latest checkpoint.
            best_fn=_score,
            best_mode="max",
            create=not read_only,
            read_only=read_only,
            cleanup_tmp_directories=not read_only,
        )
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=options,
            item_handlers={"state": ocp.StandardCheckpointHandler(), "metadata": ocp.JsonCheckpointHandler()},
        )

    def steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def best_step(self) -> int | None:
        return self._manager.best_step()

    def save(self, step: int, state: Any, metadata: dict, score: float | None = None) -> None:
        """Writes ``state`` at ``step`` (asynchronously); ``score`` (higher is better) ranks the best one.

        ``state`` holds host arrays or (sharded) `jax.Array`s; they must not be donated or
        deleted until the write is done (`wait`). In a multi-host job every process calls this
        with the same step: each writes the shards it holds, and the metadata is written once.
        """
        ocp = _ocp()
        arrays = flatten_state(state)
        metadata = dict(metadata, format_version=FORMAT_VERSION, step=int(step))
        metrics = None if score is None else {"score": float(score)}
        self._manager.save(
            int(step),
            args=ocp.args.Composite(state=ocp.args.StandardSave(arrays), metadata=ocp.args.JsonSave(metadata)),
            metrics=metrics,
            force=True,
        )

    def restore(self, template: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restores the state at ``step`` (default: latest) into ``template``'s structure.

        Each leaf lands with the template leaf's sharding (a `jax.Array`'s, or a
        `jax.ShapeDtypeStruct`'s when it has one), else on this process's first device. So a
        checkpoint written from one device layout can be read onto any other, and in a multi-host
        job every process reads only its own shards.
        """
        ocp = _ocp()
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"{self.directory}: no checkpoint found")
        where = f"{self.directory}/{step}"
        metadata = self.read_metadata(step)
        abstract = {k: _restore_target(v) for k, v in flatten_state(template).items()}
        derived, moved_from = {}, set()
        try:
            stored = self._manager.item_metadata(step)["state"]
            if stored is not None:
                keys = set(stored.keys())
                derived = {
                    k: DERIVED_LEAVES[k] for k in set(abstract) - keys
                    if k in DERIVED_LEAVES and DERIVED_LEAVES[k][0] in keys
                }
                derived.update(_moved_leaves(set(abstract) - keys - set(derived), keys))
                moved_from = {source for key, (source, _) in derived.items() if key not in DERIVED_LEAVES}
                keys = keys - moved_from
                if keys | set(derived) != set(abstract):
                    unflatten_state(template, {k: np.zeros(0) for k in keys}, where)
                # Shapes and dtypes too, before orbax is asked to read into the target layout.
                if all(getattr(m, "shape", None) is not None and getattr(m, "dtype", None) is not None for m in stored.values()):
                    described = {k: jax.ShapeDtypeStruct(tuple(m.shape), np.dtype(m.dtype)) for k, m in stored.items()
                                 if k not in moved_from}
                    described.update({k: abstract[k] for k in derived})
                    unflatten_state(template, described, where)
            reading = {k: v for k, v in abstract.items() if k not in derived}
            reading.update({source: abstract[key] for key, (source, _) in derived.items() if key not in DERIVED_LEAVES})
            restored = dict(self._manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(reading))
            )["state"])
        except CheckpointError:
            raise
        except Exception as error:  # orbax raises many kinds for a damaged folder
            raise CheckpointError(f"{where}: checkpoint cannot be read ({type(error).__name__}: {error})") from None
        for key, (source, derive) in derived.items():
            restored[key] = derive(restored[source])
        for key, (source, _) in derived.items():
            if key not in DERIVED_LEAVES:
                restored.pop(source, None)
        return unflatten_state(template, restored, where), metadata

    def read_metadata(self, step: int | None = None) -> dict:
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"{self.directory}: no checkpoint found")
        return read_metadata(self.directory / str(step))

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


def _restore_target(leaf: Any) -> jax.ShapeDtypeStruct:
    sharding = getattr(leaf, "sharding", None)
    if sharding is None:
        sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.ShapeDtypeStruct(np.shape(leaf), leaf.dtype, sharding=sharding)


def read_metadata(step_dir: str | Path) -> dict:
    """The JSON metadata of one checkpoint folder, checked for completeness."""
    step_dir = Path(step_dir)
    path = step_dir / "metadata" / "metadata"
    if not path.is_file():
        candidates = list((step_dir / "metadata").glob("*")) if (step_dir / "metadata").is_dir() else []
        if not candidates:
            raise CheckpointError(f"{step_dir}: not a superlearner checkpoint (no metadata item)")
        path = candidates[0]
    try:
        metadata = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{step_dir}: checkpoint metadata is unreadable ({error})") from None
    if metadata.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{step_dir}: checkpoint format {metadata.get('format_version')!r} is not supported "
            f"(this version reads format {FORMAT_VERSION})"
        )
    return metadata


def latest_checkpoint(run_dir: str | Path) -> Path:
    """The folder of a run's latest checkpoint: what a comparison at equal env steps evaluates
    (a run directory alone loads its best checkpoint, which may be an earlier one)."""
    step = Checkpointer(run_dir, read_only=True).latest_step()
    if step is None:
        raise CheckpointError(f"{run_dir}: the run has no checkpoint yet")
    return Path(run_dir).resolve() / CHECKPOINT_DIR / str(step)


def locate(path: str | Path) -> tuple[Path, int]:
    """``(run_dir, step)`` for a run directory (its best, else latest checkpoint) or one
    checkpoint folder (``<run>/checkpoints/<step>``)."""
    path = Path(path).resolve()
    if not path.exists():
        raise CheckpointError(f"{path}: no such run directory or checkpoint")
    if (path / CHECKPOINT_DIR).is_dir():
        checkpointer = Checkpointer(path, read_only=True)
        step = checkpointer.best_step()
        if step is None:
            step = checkpointer.latest_step()
        if step is None:
            raise CheckpointError(f"{path}: the run has no checkpoint yet")
        return path, step
    if path.parent.name == CHECKPOINT_DIR and path.name.isdigit():
        return path.parent.parent, int(path.name)
    raise CheckpointError(
        f"{path}: expected a run directory (with {CHECKPOINT_DIR}/) or a checkpoint folder "
        f"(<run>/{CHECKPOINT_DIR}/<step>)"
    )
