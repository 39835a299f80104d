"""Scale-out: the same experiment on 1 device, on 8 simulated CPU devices, and as 2 processes.

Agreement. A population of 2 trains PPO on cartpole for 8 iterations; the parameters of the
runs must agree within ``PARAM_ATOL`` (measured: about 3e-8 after 4 iterations, 6e-8 after 8).
Exact equality is not expected: random numbers are the same on any layout (JAX's threefry is
partitionable), but the compiled programs are not, so float32 sums (a loss averaged over a
batch split across devices, reductions fused differently for one member per device than for two
vmapped members) are added in another order and round differently. Those last-bit differences
stay tiny over a short run; sampled actions would only diverge if a probability sat exactly on
a sampling threshold.

The 8-device run happens in a subprocess (``XLA_FLAGS`` must be set before jax is imported);
the two-process runs are ``superlearner train`` processes joined over localhost with gloo.
"""

import json
import socket
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest
import yaml

from superlearner.core import distributed
from superlearner.run.agent import load_train_state
from superlearner.cli.main import main
from superlearner.config import config_from_dict
from superlearner.engine import make_engine
from superlearner.errors import ConfigError, UserError
from superlearner.run.logs import read_metrics
from superlearner.run.trainer import train

PARAM_ATOL = 1e-5

SMALL = {
    "name": "scale",
    "env": {"id": "cartpole"},
    "learner": {"num_envs": 4, "num_steps": 8, "num_minibatches": 2, "num_epochs": 1, "hidden_sizes": [8, 8]},
    "train": {
        "total_env_steps": 4 * 8 * 8, "population_size": 2, "iterations_per_chunk": 1,
        "checkpoint_every_chunks": 4, "eval_episodes": 0,
    },
    "log": {"tensorboard": False},
}


def _final_params(run_dir):
    _, state, _ = load_train_state(run_dir)
    return [np.asarray(x) for x in jax.tree.leaves(state.learner.params)]


def _assert_params_agree(run_a, run_b):
    a, b = _final_params(run_a), _final_params(run_b)
    assert len(a) == len(b)
    worst = max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))
    assert worst <= PARAM_ATOL, f"parameters differ by up to {worst:.3g}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _with_devices(env: dict, count: int) -> dict:
    env = dict(env)
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={count}".strip()
    return env


@pytest.fixture(scope="module")
def one_device_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("one") / "run"
    result = train(config_from_dict(SMALL), run_dir, show_progress=False)
    assert result.completed and result.mesh == "pop=1,data=1"
    return run_dir


# ----------------------------------------------------------------------------------------------
# The mesh (no compilation).


def test_the_default_mesh_uses_every_device_it_can_population_first():
    shape = distributed.resolve_mesh_shape
    assert str(shape(2, 4, 8)) == "pop=2,data=4"
    assert str(shape(8, 4, 8)) == "pop=8,data=1"  # members never communicate
    assert str(shape(1, 4, 8)) == "pop=1,data=4"  # fewer devices: 4 envs split at most 4 ways
    assert str(shape(3, 6, 4)) == "pop=3,data=1"
    assert str(shape(1, 1, 1)) == "pop=1,data=1"
    assert str(shape(2, 4, 8, data=2)) == "pop=2,data=2"
    assert str(shape(4, 4, 8, pop=1)) == "pop=1,data=4"


def test_mesh_requests_that_do_not_fit_name_the_key_and_what_is_accepted():
    with pytest.raises(ConfigError, match=r"train.mesh_pop=3 must divide train.population_size=2; accepted: 1, 2"):
        distributed.resolve_mesh_shape(2, 4, 8, pop=3)
    with pytest.raises(ConfigError, match=r"train.mesh_data=3 must divide learner.num_envs=4; accepted: 1, 2, 4"):
        distributed.resolve_mesh_shape(2, 4, 8, data=3)
    with pytest.raises(ConfigError, match=r"needs 8 devices but 1 are available"):
        distributed.resolve_mesh_shape(2, 4, 1, pop=2, data=4)
    with pytest.raises(ConfigError, match=r"must use all 8 devices"):
        distributed.resolve_mesh_shape(1, 4, 8, require_all=True)


def test_parse_mesh():
    assert distributed.parse_mesh("pop=2,data=4") == {"pop": 2, "data": 4}
    assert distributed.parse_mesh("data=8") == {"data": 8}
    for bad in ("pop=0", "pop=2,pop=2", "model=2", "pop2", ""):
        with pytest.raises(UserError, match="expected pop=P,data=D"):
            distributed.parse_mesh(bad)


def test_train_state_layout():
    engine = make_engine(config_from_dict(SMALL))
    abstract = jax.eval_shape(lambda: engine.init(0))
    mesh = distributed.make_mesh(distributed.MeshShape(1, 1))
    shardings = distributed.train_state_shardings(abstract, mesh, 2, 4)
    spec = lambda tree: {tuple(s.spec) for s in jax.tree.leaves(tree)}  # noqa: E731
    assert spec(shardings.learner) == {("pop",)}
    assert spec(shardings.rng) == {("pop",)}
    assert spec(shardings.env_state) == {("pop", "data")}
    assert spec(shardings.episode_stats) == {("pop", "data")}
    assert spec(shardings.iteration) == {()}


def test_cli_mesh_errors_are_one_line_and_write_nothing(one_device_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", "cartpole_ppo", "--run-dir", str(run_dir), "--mesh", "pop=2", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "train.mesh_pop=2 must divide train.population_size=1" in err
    assert "\n" not in err and not run_dir.exists()
    assert main(["train", "cartpole_ppo", "--run-dir", str(run_dir), "--mesh", "pop=two"]) == 2
    assert "expected pop=P,data=D" in capsys.readouterr().err
    assert main(["train", "cartpole_ppo", "--run-dir", str(run_dir), "--coordinator", "127.0.0.1:1"]) == 2
    assert "missing --num-processes, --process-id" in capsys.readouterr().err
    before = sorted(p.name for p in one_device_run.rglob("*"))
    assert main(["resume", str(one_device_run), "--mesh", "pop=3"]) == 2
    assert "train.mesh_pop=3 must divide train.population_size=2" in capsys.readouterr().err
    assert sorted(p.name for p in one_device_run.rglob("*")) == before


# ----------------------------------------------------------------------------------------------
# Eight devices.

EIGHT_DEVICES = textwrap.dedent(
    """
    import json, sys
    import jax
    from superlearner.config import config_from_dict
    from superlearner.run.trainer import resume, train

    assert jax.device_count() == 8
    # A batch marked with split_over_data is reduced across the data devices.
    from superlearner.core import distributed
    mesh = distributed.make_mesh(distributed.MeshShape(1, 8))
    loss = jax.jit(lambda x: (distributed.split_over_data(x, 0) ** 2).mean())
    with jax.set_mesh(mesh):
        assert "all-reduce" in loss.lower(jax.numpy.ones((16, 3))).compile().as_text()
    assert "all-reduce" not in loss.lower(jax.numpy.ones((16, 3))).compile().as_text()

    config = config_from_dict(json.loads(sys.argv[1]))
    # Stop half-way and resume: the checkpoint is written from, and read back onto, the mesh.
    first = train(config, sys.argv[2], show_progress=False, max_chunks=4)
    second = resume(sys.argv[2], show_progress=False)
    print(json.dumps({"mesh": first.mesh, "stopped_at": first.iteration, "completed": second.completed}))
    """
)


def test_eight_devices_agree_with_one(one_device_run, tmp_path, subprocess_env):
    run_dir = tmp_path / "eight"
    done = subprocess.run(
        [sys.executable, "-c", EIGHT_DEVICES, json.dumps(SMALL), str(run_dir)],
        env=_with_devices(subprocess_env, 8), capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"mesh": "pop=2,data=4", "stopped_at": 4, "completed": True}
    _assert_params_agree(one_device_run, run_dir)
    eight, one = read_metrics(run_dir), read_metrics(one_device_run)
    assert [r["iteration"] for r in eight] == [r["iteration"] for r in one]
    np.testing.assert_allclose(eight[-1]["metrics"]["episode_return"], one[-1]["metrics"]["episode_return"], rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# Two processes.


def _launch(tmp_path, env, run_dir, port, extra=()):
    preset = tmp_path / "scale.yaml"
    preset.write_text(yaml.safe_dump(SMALL))
    processes = []
    for process_id in range(2):
        command = [
            sys.executable, "-m", "superlearner.cli", "train", str(preset), "--run-dir", str(run_dir),
            "--no-progress", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
            "--process-id", str(process_id), "--peer-timeout", "60", *extra,
        ]
        processes.append(subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    return processes


def _finish(process, timeout):
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"process did not end within {timeout} s: {err[-2000:]}")
    return process.returncode, out, err


def test_two_processes_train_one_run_that_agrees_with_one_process(one_device_run, tmp_path, subprocess_env):
    run_dir = tmp_path / "two"
    # Two devices per process: the mesh spans both hosts on both axes.
    processes = _launch(tmp_path, _with_devices(subprocess_env, 2), run_dir, _free_port())
    results = [_finish(p, timeout=240) for p in processes]
    for rc, out, err in results:
        assert rc == 0, err[-3000:]
    (_, out0, _), (_, out1, _) = results
    assert "run finished" in out0 and "run finished" not in out1  # process 0 alone reports
    records = read_metrics(run_dir)
    assert [r["iteration"] for r in records] == list(range(1, 9)), "one log, written once"
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["4", "8"]
    _, _, metadata = load_train_state(run_dir)
    assert metadata["config"]["train"]["population_size"] == 2
    _assert_params_agree(one_device_run, run_dir)


def test_a_killed_process_stops_the_other_with_one_line(tmp_path, subprocess_env):
    run_dir = tmp_path / "killed"
    # A run long enough to be still training when the peer is killed.
    survivor, victim = _launch(tmp_path, _with_devices(subprocess_env, 2), run_dir, _free_port(),
                               extra=("--set", "train.total_env_steps=1000000"))
    # The first log line: both processes have compiled and are in the training loop, where
    # every chunk runs collectives over gloo. (A peer lost while the other is still compiling
    # is seen by XLA's coordination service first, which ends the process with its own message.)
    deadline = time.monotonic() + 180
    while not ((run_dir / "metrics.jsonl").exists() and (run_dir / "metrics.jsonl").read_text().strip()):
        if time.monotonic() > deadline or survivor.poll() is not None:
            victim.kill()
            survivor.kill()
            pytest.fail(f"the job did not start: {survivor.communicate()[1][-2000:]}")
        time.sleep(0.05)
    victim.kill()
    victim.wait()
    killed_at = time.monotonic()
    rc, _, err = _finish(survivor, timeout=90)
    assert time.monotonic() - killed_at < 60
    assert rc == 2, err[-3000:]
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: process 0 of 2: lost contact with the other processes"), err[-3000:]
    assert lines[-1].endswith("every process stops")
    assert not any("Traceback" in line for line in lines)


def test_a_job_whose_peers_never_join_stops_with_one_line(tmp_path, subprocess_env):
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable, "-m", "superlearner.cli", "train", "cartpole_ppo", "--run-dir", str(tmp_path / "run"),
            "--coordinator", f"127.0.0.1:{_free_port()}", "--num-processes", "2", "--process-id", "1",
            "--peer-timeout", "2",
        ],
        env=subprocess_env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2 and time.monotonic() - started < 30
    assert done.stderr.strip().splitlines() == [
        f"error: could not join the multi-host job at {done.args[8]} as process 1 of 2 within 2 s "
        "(is every process started, with the same --coordinator and --num-processes?)"
    ]
    assert not (tmp_path / "run").exists()
