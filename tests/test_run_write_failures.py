"""A full disk or a failing file system: a checkpoint or log write that fails stops the run with
one line naming the file and the error, the checkpoints before it stay intact, and `resume`
continues once writes work again, to the same end as an unbroken run."""

import errno
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

import superlearner.run.checkpoint as checkpoint_module
import superlearner.run.logs as logs_module
from superlearner.cli.main import main
from superlearner.errors import RunWriteError
from superlearner.run.agent import load_train_state
from superlearner.run.checkpoint import Checkpointer, check_files
from superlearner.run.logs import read_metrics
from superlearner.run.trainer import resume, train

from tiny_runs import comparable, tiny_config

NO_SPACE = OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    train(tiny_config(), run_dir, show_progress=False)
    return run_dir


def _fail_on_call(monkeypatch, owner, name, call, error):
    """Makes ``owner.name`` raise ``error`` from its ``call``-th call on."""
    original, calls = getattr(owner, name), []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) >= call:
            raise error
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, failing)


def _resumes_to_the_unbroken_end(run_dir, straight_run):
    result = resume(run_dir, show_progress=False)
    assert result.completed
    assert not list((run_dir / "checkpoints").glob("*.orbax-checkpoint-tmp*")), "the failed save's folder is removed"
    a = load_train_state(run_dir / "checkpoints" / "8")[1]
    b = load_train_state(straight_run / "checkpoints" / "8")[1]
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert comparable(read_metrics(run_dir)) == comparable(read_metrics(straight_run))


def test_a_checkpoint_write_that_fails_stops_the_run_and_resume_continues(straight_run, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    # The third checkpoint's files cannot be completed: the disk is full.
    _fail_on_call(monkeypatch, checkpoint_module, "write_checksums", 3, NO_SPACE)
    with pytest.raises(RunWriteError) as raised:
        train(tiny_config(), run_dir, show_progress=False)
    message = str(raised.value)
    assert "\n" not in message
    assert f"{run_dir.resolve()}/checkpoints/6: the checkpoint could not be written ([Errno 28] No space left on device)" in message
    assert "the last good checkpoint" in message and "checkpoints/4) is intact" in message
    assert Checkpointer(run_dir, read_only=True).steps() == [2, 4]
    for step in ("2", "4"):
        check_files(run_dir / "checkpoints" / step, checksums=True)
    monkeypatch.undo()  # space is back
    _resumes_to_the_unbroken_end(run_dir, straight_run)


def test_a_log_write_that_fails_stops_the_run_in_one_line_and_resume_continues(
    straight_run, tmp_path, monkeypatch, capsys
):
    run_dir = tmp_path / "run"
    shutil.copytree(straight_run, run_dir)
    shutil.rmtree(run_dir / "checkpoints")
    (run_dir / "metrics.jsonl").unlink()
    real_open = open

    class FullDisk:
        """A file whose third write finds the disk full."""

        def __init__(self, file):
            self._file, self._writes = file, 0

        def write(self, text):
            self._writes += 1
            if self._writes >= 3:
                self._file.write(text[: len(text) // 2])  # what reached the disk before it filled
                self._file.flush()
                raise OSError(errno.ENOSPC, "No space left on device")
            return self._file.write(text)

        def __getattr__(self, name):
            return getattr(self._file, name)

    monkeypatch.setattr(logs_module, "open", lambda *a, **k: FullDisk(real_open(*a, **k)), raising=False)
    assert main(["resume", str(run_dir), "--no-progress"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {run_dir}/metrics.jsonl: the metrics log could not be written")
    assert "[Errno 28] No space left on device" in lines[0] and "checkpoints/4) is intact" in lines[0]
    monkeypatch.undo()
    _resumes_to_the_unbroken_end(run_dir, straight_run)


def test_a_lost_permission_on_the_run_config_is_one_line(straight_run, tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(straight_run, run_dir)
    config_before = (run_dir / "config.yaml").read_bytes()
    real_write_text = Path.write_text

    def write_text(path, *args, **kwargs):
        if path.name == "config.yaml.tmp":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_write_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)
    assert main(["resume", str(run_dir), "--set", "train.keep_checkpoints=5", "--no-progress"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "config.yaml: the run's config could not be written ([Errno 13] Permission denied)" in lines[0]
    assert (run_dir / "config.yaml").read_bytes() == config_before
