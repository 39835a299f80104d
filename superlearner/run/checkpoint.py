"""Checkpoints through orbax, and only here.

A checkpoint is a step folder under ``<run>/checkpoints/`` holding two items:

* ``state``: every array of the TrainState, keyed by its path in the pytree
  (``learner.params...``), so a checkpoint can be checked against the structure the config
  builds before anything is loaded;
* ``metadata``: JSON with the resolved config, the env id and version, the package version,
  the iteration and env steps;

and ``checksums.json``: the size and SHA-256 of every file of the two items, written once they
are complete and before the checkpoint is committed (orbax's post-finalization hook), so that
every committed checkpoint has one (a synchronous writer adds it right after the commit).

Writes are atomic (orbax writes a temporary folder and renames it) and asynchronous (training
continues while arrays are written). The latest N periodic checkpoints and the best one by
the trainer's score (`superlearner.run.trainer.checkpoint_score`) are kept. A checkpoint that is
incomplete, of another structure, or of other shapes is refused with `CheckpointError`; nothing
is loaded silently wrong.

Every restore is verified: the files against ``checksums.json`` (checkpoints written before it
existed are checked by orbax alone), then orbax's own reading. A damaged checkpoint raises
`DamagedCheckpointError`; `Checkpointer.restore_intact` skips it with a one-line warning and uses
the newest intact one. A writer sets damaged checkpoints aside into ``<run>/damaged_checkpoints/``
(their steps are written again as the run goes on); a reader only passes over them. Temporary
folders of a save that never committed (a killed process) are removed by the next writer and
never read. A write that fails (a full disk, a lost permission) raises `RunWriteError` naming the
folder; the checkpoints committed before it are untouched.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from superlearner.core import distributed
from superlearner.errors import CheckpointError, DamagedCheckpointError, RunWriteError

CHECKPOINT_DIR = "checkpoints"
DAMAGED_DIR = "damaged_checkpoints"
FORMAT_VERSION = 1
CHECKSUMS_FILE = "checksums.json"
# Files orbax writes or rewrites as it commits a checkpoint, after the checksums are taken.
_WRITTEN_AT_COMMIT = frozenset({"_CHECKPOINT_METADATA", "commit_success.txt"})
# Small JSON files whose damage orbax would meet while merely listing or opening checkpoints.
_JSON_FILES = ("_CHECKPOINT_METADATA", "metadata/*", "metrics/*", "state/_METADATA")

# orbax logs every save at INFO through absl; keep the console for the progress bar.
logging.getLogger("absl").setLevel(logging.ERROR)


def _not_from_orbax(record: logging.LogRecord) -> bool:
    # orbax logs a failed write with its traceback and raises it again; the run reports it in one line.
    return "/orbax/" not in record.pathname.replace("\\", "/")


logging.getLogger("absl").addFilter(_not_from_orbax)


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


def _default_level_leaves(metadata: dict) -> dict[str, Any]:
    """``{key: leaf}`` of the default level (``env.default_params``) of the env a checkpoint's
    config names, keyed as the train state's ``env_params`` (without the member and env axes)."""
    from superlearner.core.registry import make

    env_config = metadata.get("config", {}).get("env", {})
    env = make(env_config["id"], **(env_config.get("options") or {}))
    return {".env_params" + key: np.asarray(leaf) for key, leaf in flatten_state(env.default_params).items()}


# Leaves the train state gained when an env's params gained fields (connect four's and othello's
# start positions), filled from the level such a run played: {prefix: metadata -> {key: leaf}}.
# A leaf is broadcast to the member and env axes the template gives it.
FILLED_PREFIXES = {
    # A run from before an env had levels played its default level (a game's standard start).
    ".env_params.": _default_level_leaves,
}


def _filled_leaves(missing: set[str], read_metadata) -> dict[str, Any]:
    """``{key: leaf}`` for every missing leaf of `FILLED_PREFIXES` that its filler provides;
    ``read_metadata()`` gives the checkpoint's metadata (read only when a leaf is missing)."""
    filled = {}
    for prefix, fill in FILLED_PREFIXES.items():
        if any(key.startswith(prefix) for key in missing):
            leaves = fill(read_metadata())
            filled.update({key: leaves[key] for key in missing if key.startswith(prefix) and key in leaves})
    return filled


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
    """Periodic, final and best checkpoints of one run directory.

    ``read_only``: a reader (eval, plot, ratings), which may run beside the run's writer; it
    never changes the directory and only passes over damaged checkpoints. A writer
    (``read_only=False``) must hold the run's lock (`superlearner.run.lock`); on opening, it sets
    aside the checkpoints whose damage shows at a quick look (`check_files` without checksums)
    and removes the temporary folders of saves that never committed.
    """

    def __init__(self, run_dir: str | Path, *, keep: int = 3, asynchronous: bool = True, read_only: bool = False):
        ocp = _ocp()
        from orbax.checkpoint import checkpoint_managers as cm

        self.run_dir = Path(run_dir).resolve()
        self.directory = self.run_dir / CHECKPOINT_DIR
        self.read_only = read_only
        self._asynchronous = asynchronous
        self._saving: int | None = None  # the step of the write in flight (or last written)
        # Damage that shows without reading the arrays, found before orbax lists the steps
        # (orbax itself would fail on an unreadable score or step file): {step: reason}.
        self.damaged = _damaged_steps(self.directory)
        self.set_aside: dict[int, Path] = {}
        if not read_only:
            if distributed.is_main_process():
                for step in self.damaged:
                    self._set_aside(step)
                # Saves a killed process never committed; orbax would remove them in the
                # background, and not before the next save.
                for folder in self.directory.glob(f"*{ocp.path.step.TMP_DIR_SUFFIX}*"):
                    shutil.rmtree(folder, ignore_errors=True)
            distributed.sync("superlearner: damaged checkpoints set aside")
        policy = cm.AnyPreservationPolicy(
            [
                cm.LatestN(keep),
                cm.BestN(get_metric_fn=_score, n=1, keep_checkpoints_without_metrics=False),
            ]
        )
        options = ocp.CheckpointManagerOptions(
            enable_async_checkpointing=asynchronous,
            async_options=ocp.AsyncOptions(post_finalization_callback=self._write_checksums_before_commit)
            if asynchronous and not read_only else None,
            preservation_policy=policy,
            # Without best_fn orbax neither writes the scores nor reads them back, and a reopened
            # run's "best" would silently be its latest checkpoint.
            best_fn=_score,
            best_mode="max",
            create=not read_only,
            read_only=read_only,
            cleanup_tmp_directories=not read_only,
            step_name_format=_StepsExcept(set(self.damaged)) if read_only and self.damaged else None,
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

    def committed_steps(self) -> list[int]:
        """The steps whose folders are committed on disk now (orbax's list is read at opening)."""
        return committed_steps(self.directory)

    def candidates(self, first: int | None = None) -> list[int]:
        """The steps to try in turn: ``first`` (when given), then the others newest first."""
        rest = sorted((s for s in self.steps() if s != first), reverse=True)
        return ([first] if first is not None else []) + rest

    def save(self, step: int, state: Any, metadata: dict, score: float | None = None) -> None:
        """Writes ``state`` at ``step`` (asynchronously); ``score`` (higher is better) ranks the best one.

        ``state`` holds host arrays or (sharded) `jax.Array`s; they must not be donated or
        deleted until the write is done (`wait`). In a multi-host job every process calls this
        with the same step: each writes the shards it holds, and the metadata is written once.
        Raises `RunWriteError` when this write, or the one before still in flight, fails.
        """
        ocp = _ocp()
        self.wait()  # a failure of the previous write is reported as that one's
        arrays = flatten_state(state)
        metadata = dict(metadata, format_version=FORMAT_VERSION, step=int(step))
        metrics = None if score is None else {"score": float(score)}
        self._saving = int(step)
        try:
            self._manager.save(
                int(step),
                args=ocp.args.Composite(state=ocp.args.StandardSave(arrays), metadata=ocp.args.JsonSave(metadata)),
                metrics=metrics,
                force=True,
            )
            if not self._asynchronous and distributed.is_main_process():
                write_checksums(self.directory / str(step))
        except Exception as error:
            raise self._write_failed(error)

    def _write_checksums_before_commit(self) -> None:
        # orbax calls this (on its writer thread) once the items' files are complete, before
        # the rename that commits them; storage that commits in place has no temporary folder.
        if not distributed.is_main_process():
            return
        uncommitted = self.directory / f"{self._saving}{_ocp().path.step.TMP_DIR_SUFFIX}"
        write_checksums(uncommitted if uncommitted.is_dir() else self.directory / str(self._saving))

    def _write_failed(self, error: Exception) -> Exception:
        """What a failed write raises: the error itself where another process of the job is
        gone (the trainer reports that), else a `RunWriteError` naming the folder."""
        if jax.process_count() > 1 and distributed.is_peer_failure(error):
            return error
        failure = RunWriteError.of(self.directory / str(self._saving), "the checkpoint", error)
        failure.__suppress_context__ = True
        return failure

    def _set_aside(self, step: int) -> None:
        """Moves a damaged checkpoint out of orbax's sight, into ``<run>/damaged_checkpoints/``."""
        target = self.run_dir / DAMAGED_DIR / str(step)
        copy = 1
        while target.exists():
            target, copy = self.run_dir / DAMAGED_DIR / f"{step}-{copy}", copy + 1
        target.parent.mkdir(exist_ok=True)
        os.replace(self.directory / str(step), target)
        self.set_aside[step] = target

    def restore(self, template: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restores the state at ``step`` (default: latest) into ``template``'s structure.

        The checkpoint's files are verified first (`check_files`); a damaged one raises
        `DamagedCheckpointError`, one of another structure or shapes `CheckpointError`.
        Each leaf lands with the template leaf's sharding (a `jax.Array`'s, or a
        `jax.ShapeDtypeStruct`'s when it has one), else on this process's first device. So a
        checkpoint written from one device layout can be read onto any other, and in a multi-host
        job every process reads only its own shards.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"{self.directory}: no checkpoint found")
        check_files(self.directory / str(step), checksums=True)
        metadata = self.read_metadata(step)
        return self._read(template, step), metadata

    def restore_intact(self, template: Any, steps: list[int] | None = None) -> tuple[Any, dict, int]:
        """``(state, metadata, step)`` of the first intact checkpoint of ``steps`` (default: all,
        newest first).

        Each damaged one is passed over with a one-line warning on stderr naming it and the
        checkpoint used instead (a writer also sets it aside); when none is intact,
        `DamagedCheckpointError` says so in one line. A checkpoint of another structure is
        refused at once (`CheckpointError`): an older one would not fit either.
        """
        skipped = dict(self.damaged)
        for step in self.candidates() if steps is None else steps:
            try:
                state, metadata = self.restore(template, step)
            except DamagedCheckpointError as error:
                if not (self.directory / str(step)).exists():
                    continue  # removed by the run's writer (an old checkpoint) while we read it
                skipped[step] = str(error).split(": ", 1)[-1]
                if not self.read_only:
                    if distributed.is_main_process():
                        self._set_aside(step)
                    distributed.sync(f"superlearner: checkpoint {step} set aside")
                    self._manager.reload()
                continue
            for damaged, reason in sorted(skipped.items(), reverse=True):
                _warn_damaged(self.directory / str(damaged), reason, step, self.set_aside.get(damaged))
            return state, metadata, step
        found = "; ".join(f"{s}: {reason}" for s, reason in sorted(skipped.items(), reverse=True))
        raise DamagedCheckpointError(f"{self.directory}: no intact checkpoint ({found or 'none found'})")

    def _read(self, template: Any, step: int) -> Any:
        """The arrays of checkpoint ``step`` in ``template``'s structure (files already checked)."""
        ocp = _ocp()
        where = f"{self.directory}/{step}"
        abstract = {k: _restore_target(v) for k, v in flatten_state(template).items()}
        derived, moved_from, filled = {}, set(), {}
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
                filled = _filled_leaves(set(abstract) - keys - set(derived), lambda: self.read_metadata(step))
                if keys | set(derived) | set(filled) != set(abstract):
                    unflatten_state(template, {k: np.zeros(0) for k in keys}, where)
                # Shapes and dtypes too, before orbax is asked to read into the target layout.
                if all(getattr(m, "shape", None) is not None and getattr(m, "dtype", None) is not None for m in stored.values()):
                    described = {k: jax.ShapeDtypeStruct(tuple(m.shape), np.dtype(m.dtype)) for k, m in stored.items()
                                 if k not in moved_from}
                    described.update({k: abstract[k] for k in set(derived) | set(filled)})
                    unflatten_state(template, described, where)
            reading = {k: v for k, v in abstract.items() if k not in derived and k not in filled}
            reading.update({source: abstract[key] for key, (source, _) in derived.items() if key not in DERIVED_LEAVES})
            restored = dict(self._manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(reading))
            )["state"])
        except CheckpointError:
            raise
        except Exception as error:  # orbax raises many kinds for a damaged folder
            reason = " ".join(f"{type(error).__name__}: {error}".split())[:300]
            raise DamagedCheckpointError(f"{where}: checkpoint cannot be read ({reason})") from None
        for key, leaf in filled.items():
            target = abstract[key]
            restored[key] = jax.device_put(np.broadcast_to(leaf, target.shape).astype(target.dtype), target.sharding)
        for key, (source, derive) in derived.items():
            restored[key] = derive(restored[source])
        for key, (source, _) in derived.items():
            if key not in DERIVED_LEAVES:
                restored.pop(source, None)
        return unflatten_state(template, restored, where)

    def read_metadata(self, step: int | None = None) -> dict:
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"{self.directory}: no checkpoint found")
        return read_metadata(self.directory / str(step))

    def wait(self) -> None:
        """Waits for the write in flight; raises `RunWriteError` when it failed."""
        try:
            self._manager.wait_until_finished()
        except Exception as error:
            raise self._write_failed(error)

    def close(self) -> None:
        """Waits for the write in flight and closes; raises `RunWriteError` when it failed."""
        try:
            self.wait()
        finally:
            try:
                self._manager.close()
            except Exception:  # the write's own failure, raised again: reported by wait
                pass


class _StepsExcept:
    """orbax's standard step folders less the given steps: how a reader, which must not move
    anything, keeps orbax from opening checkpoints known to be damaged."""

    def __init__(self, excluded: set[int]):
        self._standard = _ocp().path.step.standard_name_format()
        self._excluded = frozenset(excluded)

    def build_name(self, step: int) -> str:
        return self._standard.build_name(step)

    def find_all(self, base_path):
        return (m for m in self._standard.find_all(base_path) if m.step not in self._excluded)

    def find_step(self, base_path, step: int):
        if step in self._excluded:
            raise ValueError(f"checkpoint {step} is damaged")
        return self._standard.find_step(base_path, step)


def _warn_damaged(folder: Path, reason: str, used: int, moved_to: Path | None) -> None:
    if distributed.is_main_process():
        moved = f", set aside in {moved_to}" if moved_to is not None else ""
        print(f"warning: checkpoint {folder} is damaged ({reason}){moved}; using checkpoint {used} instead", file=sys.stderr)


def write_checksums(step_dir: Path) -> None:
    """Writes ``checksums.json`` into a checkpoint folder: ``{"files": {path: [bytes, sha256]}}``
    of every file in it (bar those orbax writes as it commits), atomically."""
    files = {}
    for path in sorted(step_dir.rglob("*")):
        if path.is_file() and path.name not in _WRITTEN_AT_COMMIT and not path.name.startswith(CHECKSUMS_FILE):
            files[path.relative_to(step_dir).as_posix()] = [path.stat().st_size, _sha256(path)]
    temporary = step_dir / f"{CHECKSUMS_FILE}.tmp"
    temporary.write_text(json.dumps({"format_version": 1, "files": files}))
    os.replace(temporary, step_dir / CHECKSUMS_FILE)


def check_files(step_dir: str | Path, checksums: bool = True) -> None:
    """Raises `DamagedCheckpointError` when a checkpoint folder's files show damage: a file of
    ``checksums.json`` missing, of another size, or (``checksums``) of other contents; a missing
    item; an unreadable JSON file. ``checksums=False`` reads no array data (a quick look)."""
    step_dir = Path(step_dir)
    listed = step_dir / CHECKSUMS_FILE
    if listed.is_file():
        try:
            files = json.loads(listed.read_bytes())["files"]
            files = {str(name): (int(size), str(digest)) for name, (size, digest) in files.items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise DamagedCheckpointError(f"{step_dir}: {CHECKSUMS_FILE} is unreadable") from None
        for name, (size, digest) in files.items():
            try:
                actual = (step_dir / name).stat().st_size
                same = actual != size or not checksums or _sha256(step_dir / name) == digest
            except OSError as error:
                problem = "is missing" if isinstance(error, FileNotFoundError) else f"is unreadable ({error.strerror})"
                raise DamagedCheckpointError(f"{step_dir}: {name} {problem}") from None
            if actual != size:
                raise DamagedCheckpointError(f"{step_dir}: {name} has {actual} bytes, {size} were written")
            if not same:
                raise DamagedCheckpointError(f"{step_dir}: {name} differs from what was written (SHA-256)")
    for item in ("state", "metadata"):
        if not (step_dir / item).is_dir():
            raise DamagedCheckpointError(f"{step_dir}: no {item} item (an incomplete checkpoint)")
    for pattern in _JSON_FILES:
        for path in step_dir.glob(pattern):
            if path.is_file() and path.name != "commit_success.txt":
                try:
                    json.loads(path.read_bytes())
                except (OSError, ValueError):
                    raise DamagedCheckpointError(f"{step_dir}: {path.relative_to(step_dir)} is unreadable") from None


def committed_steps(directory: str | Path) -> list[int]:
    """The steps of the committed checkpoint folders in ``directory`` (``<run>/checkpoints``),
    ascending; a temporary folder of an unfinished save is not one."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(int(folder.name) for folder in directory.iterdir() if folder.name.isdigit() and folder.is_dir())


def _damaged_steps(directory: Path) -> dict[int, str]:
    """``{step: reason}`` for the committed checkpoint folders of ``directory`` whose files show
    damage at a quick look (`check_files` without checksums)."""
    damaged = {}
    for step in committed_steps(directory):
        try:
            check_files(directory / str(step), checksums=False)
        except DamagedCheckpointError as error:
            damaged[step] = str(error).split(": ", 1)[-1]
    return damaged


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
        metadata = json.loads(path.read_bytes())
    except (OSError, ValueError) as error:  # ValueError: bad JSON or bytes that are no text at all
        reason = " ".join(str(error).split())[:200]
        raise DamagedCheckpointError(f"{step_dir}: checkpoint metadata is unreadable ({reason})") from None
    if not isinstance(metadata, dict):
        raise DamagedCheckpointError(f"{step_dir}: checkpoint metadata is unreadable (not a JSON object)")
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
        if step is None and checkpointer.damaged:
            found = "; ".join(f"{s}: {reason}" for s, reason in sorted(checkpointer.damaged.items(), reverse=True))
            raise DamagedCheckpointError(f"{path}: no intact checkpoint ({found})")
        if step is None:
            raise CheckpointError(f"{path}: the run has no checkpoint yet")
        return path, step
    if path.parent.name == CHECKPOINT_DIR and path.name.isdigit():
        return path.parent.parent, int(path.name)
    raise CheckpointError(
        f"{path}: expected a run directory (with {CHECKPOINT_DIR}/) or a checkpoint folder "
        f"(<run>/{CHECKPOINT_DIR}/<step>)"
    )
