"""One writer per run: an operating-system lock on ``<run>/.lock``.

`superlearner.run.trainer.train` and `resume` hold it for as long as they write into the run
directory; a second writer fails at once with one line naming the process that holds it. The
lock is the kernel's (``flock``): it goes away with its process, so a run killed by ``kill -9``
or a lost machine leaves no stale lock behind. The file itself stays, holding the last writer's
process id for the message.

Readers (``eval``, ``plot``, ``ratings``, `load_agent`) never take the lock: a checkpoint appears
by an atomic rename once complete and the metrics log grows by whole lines, so a reader sees
the run as of some moment of the writer's, never a half-written checkpoint.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from superlearner.errors import RunLockedError, RunWriteError

LOCK_FILE = ".lock"


@contextlib.contextmanager
def hold_run_lock(run_dir: str | Path, command: str) -> Iterator[None]:
    """Holds the writer's lock of ``run_dir`` (created if missing) for the ``with`` block.

    Raises `RunLockedError` when another process holds it, naming that process and
    ``command`` (what was refused, e.g. ``"resume"``).
    """
    run_dir = Path(run_dir)
    path = run_dir / LOCK_FILE
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise RunWriteError(f"{path}: cannot create the run's lock file ({error.strerror or error})") from None
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLockedError(
                f"{run_dir} is being written by {_holder(path)}; `superlearner {command}` refused: "
                "one writer per run (wait for it to end, or stop it first)"
            ) from None
        _record_holder(descriptor, command)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def _record_holder(descriptor: int, command: str) -> None:
    holder = dict(pid=os.getpid(), command=command, host=socket.gethostname(), since=time.strftime("%Y-%m-%d %H:%M:%S"))
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, (json.dumps(holder) + "\n").encode(), 0)
    except OSError:
        pass  # the lock holds without the note; a refused writer is then told less


def _holder(path: Path) -> str:
    """Who holds the lock, as far as its file tells."""
    try:
        holder = json.loads(path.read_text())
        return (
            f"process {holder['pid']} (superlearner {holder['command']} on {holder['host']}, "
            f"since {holder['since']})"
        )
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"
