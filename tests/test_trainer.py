"""The host loop: exact resume, log replacement, refusing to overwrite, checkpoints, NaN guard."""

import json
import shutil

import jax
import numpy as np
import pytest

import superlearner as sl
from superlearner.run.agent import load_train_state
from superlearner.run.checkpoint import Checkpointer
from superlearner.config import config_from_dict
from superlearner.errors import CheckpointError, UserError
from superlearner.run.logs import read_metrics
from superlearner.run.trainer import NonFiniteError, checkpoint_score, resume, train

TINY = {
    "name": "tiny",
    "env": {"id": "cartpole"},
    "learner": {"num_envs": 4, "num_steps": 16, "num_minibatches": 2, "num_epochs": 2, "hidden_sizes": [16, 16]},
    "train": {"total_env_steps": 4 * 16 * 8, "iterations_per_chunk": 2, "checkpoint_every_chunks": 1, "keep_checkpoints": 10},
    "log": {"tensorboard": False},
}


def _config(**train):
    raw = json.loads(json.dumps(TINY))
    raw["train"].update(train)
    return config_from_dict(raw)


def _comparable(records):
    return [{k: v for k, v in r.items() if k not in ("wall_time", "steps_per_second")} for r in records]


def _params(run_dir):
    _, state, _ = load_train_state(run_dir / "checkpoints" / str(max(Checkpointer(run_dir, read_only=True).steps())))
    return state


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("straight")
    result = train(_config(), run_dir / "run", show_progress=False)
    assert result.completed and result.iteration == 8
    return run_dir / "run"


def test_resume_is_exact(straight_run, tmp_path):
    run_dir = tmp_path / "run"
    first = train(_config(), run_dir, show_progress=False, max_chunks=2)
    assert not first.completed and first.iteration == 4
    second = resume(run_dir, show_progress=False)
    assert second.completed and second.iteration == 8
    a, b = _params(straight_run), _params(run_dir)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert _comparable(read_metrics(run_dir)) == _comparable(read_metrics(straight_run))


def test_resume_after_a_crash_replaces_later_log_lines(straight_run, tmp_path):
    run_dir = tmp_path / "run"
    train(_config(), run_dir, show_progress=False, max_chunks=3)
    # As if the process died after logging iteration 6 but before its checkpoint was complete.
    shutil.rmtree(run_dir / "checkpoints" / "6")
    records = read_metrics(run_dir)
    assert [r["iteration"] for r in records] == [2, 4, 6]
    resume(run_dir, show_progress=False)
    iterations = [r["iteration"] for r in read_metrics(run_dir)]
    assert iterations == [2, 4, 6, 8], "no step may be logged twice"
    assert _comparable(read_metrics(run_dir)) == _comparable(read_metrics(straight_run))


def test_a_run_that_died_before_its_first_checkpoint_starts_again(straight_run, tmp_path):
    run_dir = tmp_path / "run"
    train(_config(), run_dir, show_progress=False, max_chunks=1)
    shutil.rmtree(run_dir / "checkpoints")
    result = resume(run_dir, show_progress=False)
    assert result.completed
    assert _comparable(read_metrics(run_dir)) == _comparable(read_metrics(straight_run))


def test_a_time_limit_stops_after_the_chunk_that_reaches_it_with_a_checkpoint(straight_run, tmp_path):
    run_dir = tmp_path / "run"
    # A limit of 6 ms: the first chunk takes longer, so the run stops after it, although no
    # periodic checkpoint is due before the end.
    config = _config(time_limit_minutes=1e-4, checkpoint_every_chunks=100)
    result = train(config, run_dir, show_progress=False)
    assert result.time_limited and not result.completed and result.iteration == 2
    assert Checkpointer(run_dir, read_only=True).steps() == [2]
    for x, y in zip(jax.tree.leaves(_params(run_dir)), jax.tree.leaves(load_train_state(straight_run / "checkpoints" / "2")[1])):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    # Resuming a run that has used up its time trains nothing more and writes no log line.
    again = resume(run_dir, show_progress=False)
    assert again.time_limited and again.iteration == 2
    assert [r["iteration"] for r in read_metrics(run_dir)] == [2]
    assert not train(_config(time_limit_minutes=60.0), tmp_path / "other", show_progress=False).time_limited


def test_training_refuses_a_directory_that_holds_a_run(straight_run):
    before = sorted(p.name for p in straight_run.iterdir())
    metrics_before = (straight_run / "metrics.jsonl").read_text()
    with pytest.raises(UserError, match="already holds a run"):
        train(_config(), straight_run, show_progress=False)
    assert sorted(p.name for p in straight_run.iterdir()) == before
    assert (straight_run / "metrics.jsonl").read_text() == metrics_before


def test_a_bad_config_writes_nothing(tmp_path):
    raw = json.loads(json.dumps(TINY))
    raw["env"]["id"] = "cartpol"
    with pytest.raises(UserError, match="did you mean 'cartpole'"):
        train(config_from_dict(raw), tmp_path / "run", show_progress=False)
    assert not (tmp_path / "run").exists()


def test_corrupted_and_incompatible_checkpoints_are_refused(straight_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(straight_run, copy)
    step_dir = copy / "checkpoints" / "8"
    # Another network size: the structure no longer matches.
    from superlearner.engine import make_engine

    raw = json.loads(json.dumps(TINY))
    raw["learner"]["hidden_sizes"] = [32, 32]
    engine = make_engine(config_from_dict(raw))
    with pytest.raises(CheckpointError, match="expected"):
        Checkpointer(copy, read_only=True).restore(jax.eval_shape(lambda: engine.init(0)), 8)
    # Damaged array files.
    for path in (step_dir / "state").rglob("*"):
        if path.is_file() and path.stat().st_size > 0 and "metadata" not in path.name:
            path.write_bytes(b"\0" * 7)
    with pytest.raises(CheckpointError):
        load_train_state(step_dir)


class _NanCartPole(sl.make("cartpole").__class__):
    """Cartpole whose reward turns NaN after 300 steps of play in total."""

    id = "nan_cartpole"

    def _step(self, state, action, key, params):
        out = super()._step(state, action, key, params)
        return out.replace(rewards=out.rewards * jax.numpy.where(state.step_count >= 20, jax.numpy.nan, 1.0))


def test_non_finite_losses_stop_the_run_and_keep_the_last_checkpoint(tmp_path):
    sl.register("nan_cartpole", _NanCartPole, overwrite=True)
    raw = json.loads(json.dumps(TINY))
    raw["env"]["id"] = "nan_cartpole"
    run_dir = tmp_path / "run"
    with pytest.raises(NonFiniteError, match=r"non-finite \w+ at iteration \d+"):
        train(config_from_dict(raw), run_dir, show_progress=False)
    steps = Checkpointer(run_dir, read_only=True).steps()
    if steps:  # whatever was saved before the NaN is readable and finite
        _, state, _ = load_train_state(run_dir / "checkpoints" / str(max(steps)))
        assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state.learner.params))


def test_checkpoint_score_ranks_self_play_by_anchor_strength_not_league_score():
    # Single-agent (no arena probe): the mean recent training return.
    assert checkpoint_score({"episode_return": [400.0, 500.0]}, None, has_probe=False) == 450.0
    assert checkpoint_score({}, None, has_probe=False) is None  # alphazero: nothing to rank by
    # Self-play with anchors: the best member's mean over anchors, measured at this checkpoint;
    # the league score (episode_return) is ignored.
    strength = {"vs_random": [0.9, 1.0], "vs_minimax:2": [0.3, 0.1], "lost_vs_random": [0.1, 0.0]}
    assert checkpoint_score({"episode_return": [0.99]}, strength, has_probe=True) == pytest.approx(0.6)
    # Saved between two measurements: not ranked.
    assert checkpoint_score({"episode_return": [0.99]}, None, has_probe=True) is None
    # Kuhn poker: lower exploitability ranks higher.
    kuhn = {"exploitability": [0.3], "exploitability_league": [0.04]}
    assert checkpoint_score({}, kuhn, has_probe=True) == pytest.approx(-0.04)


def test_the_best_checkpoint_is_found_again_after_reopening_and_resuming(tmp_path):
    """The best score is written with the checkpoint: a reopened run (eval, resume) finds the
    best one, not the latest, and a resumed run keeps it against later, worse checkpoints."""
    import jax.numpy as jnp

    checkpointer = Checkpointer(tmp_path, keep=2, asynchronous=False)
    for step, score in [(1, 0.5), (2, 0.9), (3, 0.1), (4, None), (5, 0.2)]:
        checkpointer.save(step, {"x": jnp.full(3, step)}, {"a": 1}, score=score)
    checkpointer.close()
    reopened = Checkpointer(tmp_path, read_only=True)
    assert reopened.steps() == [2, 4, 5] and reopened.best_step() == 2
    reopened.close()
    resumed = Checkpointer(tmp_path, keep=2, asynchronous=False)
    for step, score in [(6, 0.3), (7, 0.4), (8, None)]:
        resumed.save(step, {"x": jnp.full(3, step)}, {"a": 1}, score=score)
    resumed.close()
    final = Checkpointer(tmp_path, read_only=True)
    assert final.steps() == [2, 7, 8] and final.best_step() == 2


def test_an_undefined_metric_is_null_in_the_file_and_left_out_of_the_dashboards(tmp_path):
    from superlearner.run.logs import MetricsLog

    class Board:
        def __init__(self):
            self.scalars = {}

        def add_scalar(self, name, value, step):
            self.scalars[name] = value

        def flush(self):
            pass

        close = flush

    log = MetricsLog(tmp_path, config_from_dict({"log": {"tensorboard": False}}))
    log._tensorboard = board = Board()
    log.write(iteration=3, env_steps=96, steps_per_second=1.0,
              metrics={"solve_rate": np.array([np.nan, np.nan]), "loss": np.array([0.5, 1.5])})
    log.close()
    (record,) = read_metrics(tmp_path / "metrics.jsonl")
    assert record["metrics"]["solve_rate"] == [None, None] and record["metrics"]["loss"] == [0.5, 1.5]
    assert "metrics/solve_rate" not in board.scalars and "metrics/solve_rate/member_0" not in board.scalars
    assert board.scalars["metrics/loss"] == 1.0 and board.scalars["metrics/loss/member_1"] == 1.5
    assert all(np.isfinite(value) for value in board.scalars.values())
