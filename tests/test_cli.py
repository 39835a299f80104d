"""The command line: readable one-line errors, SIGTERM checkpoints, resume, eval and plot."""

import json
import signal
import subprocess
import sys
import time

import pytest

from superlearner.cli.main import main


def run_cli(args, env, cwd, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "superlearner.cli", *args], capture_output=True, text=True,
        env=env, cwd=cwd, timeout=timeout,
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "cartpole_pp"], "did you mean 'cartpole_ppo'"),
        (["train", "cartpole_ppo", "--set", "learner.num_env=8"], "did you mean learner.num_envs"),
        (["train", "cartpole_ppo", "--set", "hparams.gamma=1.5"], "hparams.gamma=1.5 is out of range"),
        (["train", "cartpole_ppo", "--set", "learner.network=mpl"], "did you mean 'mlp'"),
        (["train", "cartpole_ppo", "--set", "learner.num_minibatches=7"], "must divide"),
        (["train", "cartpole_ppo", "--set", "env.id=cartpol"], "did you mean 'cartpole'"),
        (["train", "cartpole_ppo", "--set", "train.seed=abc"], "train.seed='abc' must be an integer"),
        (["eval", "does/not/exist"], "no such run directory"),
    ],
)
def test_bad_input_gives_one_readable_line(args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(args + (["--run-dir", str(tmp_path / "run")] if args[0] == "train" else []))
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ") and message in lines[0]
    assert not (tmp_path / "run").exists(), "a bad config must not create or touch a run directory"


def test_the_console_script_prints_errors_without_a_traceback(tmp_path, subprocess_env):
    result = run_cli(["train", "cartpole_pp", "--run-dir", str(tmp_path / "run")], subprocess_env, tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        result.stderr.strip()
    ] and "did you mean 'cartpole_ppo'" in result.stderr
    assert "Traceback" not in result.stderr


def test_sigterm_checkpoints_and_resume_finishes(tmp_path, subprocess_env):
    run_dir = tmp_path / "run"
    overrides = [
        "--set", "train.total_env_steps=400000", "--set", "train.iterations_per_chunk=4",
        "--set", "train.checkpoint_every_chunks=1000", "--set", "train.eval_episodes=5",
        "--set", "learner.hidden_sizes=[16]", "--set", "log.tensorboard=false",
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "superlearner.cli", "train", "cartpole_ppo", "--run-dir", str(run_dir), "--no-progress", *overrides],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env, cwd=tmp_path,
    )
    metrics = run_dir / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and (not metrics.exists() or not metrics.read_text().strip()):
        time.sleep(0.2)
    assert metrics.exists(), "training never logged"
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert "stopped" in out and "resume" in out
    steps = [int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit()]
    assert steps, "SIGTERM must leave a checkpoint"
    logged = [json.loads(line)["iteration"] for line in metrics.read_text().splitlines()]
    assert max(steps) == logged[-1] < 977

    # Shorten the rest of the run for the test: resume continues to the configured end.
    config = (run_dir / "config.yaml").read_text().replace("total_env_steps: 400000", f"total_env_steps: {(max(steps) + 4) * 512}")
    (run_dir / "config.yaml").write_text(config)
    result = run_cli(["resume", str(run_dir), "--no-progress"], subprocess_env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "finished" in result.stdout and "mean return" in result.stdout
    logged = [json.loads(line)["iteration"] for line in metrics.read_text().splitlines()]
    assert logged == sorted(set(logged)), "no step logged twice"
    assert json.loads((run_dir / "eval.json").read_text())["episodes"] == 5

    result = run_cli(["plot", str(run_dir)], subprocess_env, tmp_path)
    assert result.returncode == 0, result.stderr
    pngs = sorted(p.name for p in (run_dir / "plots").glob("*.png"))
    assert {"return.png", "losses.png", "hparams.png"} <= set(pngs)
    assert all((run_dir / "plots" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_envs_lists_every_builtin_with_a_description(tmp_path, subprocess_env):
    result = run_cli(["envs"], subprocess_env, tmp_path)
    assert result.returncode == 0
    listed = {line.split()[0]: line for line in result.stdout.splitlines()}
    for env_id in ("tic_tac_toe", "connect_four", "othello", "kuhn_poker", "maze", "cartpole"):
        assert env_id in listed and "cannot be loaded" not in listed[env_id]
