"""One writer per run: a second train or resume is refused in one line naming the process that
holds the run; the lock goes with its process (kill -9 leaves none); readers take no lock."""

import signal
import subprocess
import sys

import pytest

from superlearner.cli.main import main
from superlearner.errors import RunLockedError
from superlearner.run.agent import load_train_state
from superlearner.run.lock import hold_run_lock
from superlearner.run.trainer import train

from tiny_runs import tiny_config

HOLD = (
    "import sys, time\n"
    "from superlearner.run.lock import hold_run_lock\n"
    "with hold_run_lock(sys.argv[1], 'resume'):\n"
    "    print('held', flush=True)\n"
    "    time.sleep(600)\n"
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("locked") / "run"
    train(tiny_config(4), run_dir, show_progress=False, max_chunks=1)
    return run_dir


def _hold(path, env):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True, env=env)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_writer_is_refused_in_one_line_naming_the_holder(run_dir, tmp_path, subprocess_env, capsys):
    holder = _hold(run_dir, subprocess_env)
    try:
        log_before = (run_dir / "metrics.jsonl").read_bytes()
        assert main(["resume", str(run_dir), "--no-progress"]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ")
        assert f"process {holder.pid} (superlearner resume" in lines[0] and "one writer per run" in lines[0]
        assert (run_dir / "metrics.jsonl").read_bytes() == log_before
        # A reader needs no lock, and sees the run as it is.
        _, state, _ = load_train_state(run_dir)
        assert int(state.iteration) == 2
    finally:
        holder.kill()
        holder.wait()


def test_a_new_run_in_a_directory_another_process_writes_is_refused(tmp_path, subprocess_env):
    holder = _hold(tmp_path / "new", subprocess_env)
    try:
        with pytest.raises(RunLockedError, match=f"process {holder.pid} "):
            train(tiny_config(4), tmp_path / "new", show_progress=False)
        assert not (tmp_path / "new" / "config.yaml").exists()
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_dies_with_its_process(tmp_path, subprocess_env):
    holder = _hold(tmp_path, subprocess_env)
    with pytest.raises(RunLockedError):
        with hold_run_lock(tmp_path, "resume"):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with hold_run_lock(tmp_path, "resume"):  # no stale lock after kill -9
        with pytest.raises(RunLockedError, match="process"):
            with hold_run_lock(tmp_path, "train"):
                pass
