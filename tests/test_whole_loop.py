"""The whole loop (`connect_four_superlearner`: AlphaZero in a league, on a curriculum of start
positions, with the bandit on the online rating) at a tiny size: it runs as one program, its every
pillar is live, a stopped run resumes exactly, and the best checkpoint is the best-rated one."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from superlearner.config import load_config
from superlearner.run.agent import load_agent, load_train_state
from superlearner.run.checkpoint import Checkpointer
from superlearner.run.logs import read_metrics
from superlearner.run.trainer import resume, train

TINY = [
    "learner.num_envs=16", "learner.num_steps=8", "alphazero.num_simulations=4", "alphazero.channels=8",
    "alphazero.num_blocks=1", "alphazero.batch_size=32", "alphazero.num_updates=2", "alphazero.min_replay_size=64",
    "alphazero.replay_capacity=1024", "alphazero.eval_simulations=4", "alphazero.lr_timescale=40",
    "league.snapshot_every=2", "curriculum.capacity=64", "rating.every_iterations=2", "rating.games=4",
    "rating.anchors=[random, minimax:1]", "meta.interval=4", "arena.every_chunks=0",
    "train.total_env_steps=1536", "train.iterations_per_chunk=4", "train.checkpoint_every_chunks=1",
    "train.keep_checkpoints=10",
]


def _comparable(records):
    return [{k: v for k, v in r.items() if k not in ("wall_time", "steps_per_second")} for r in records]


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("loop") / "run"
    result = train(load_config("connect_four_superlearner", TINY), run_dir, show_progress=False)
    assert result.completed and result.iteration == 12
    return run_dir


def test_every_pillar_is_live_in_one_run(straight_run):
    records = read_metrics(straight_run)
    last = records[-1]["metrics"]
    assert last["league_size"][0] >= 2  # snapshots joined
    assert last["curriculum_buffer_size"][0] > 0  # start positions were scored and kept
    assert np.isfinite(last["rating_stderr"][0])  # the rating measured rounds
    assert sum(last[f"meta_arm_count_arm{k}"][0] for k in range(3)) == 3  # pulls at iterations 1, 5 and 9
    _, state, _ = load_train_state(straight_run / "checkpoints" / "12")
    assert int(state.rating.rounds[0]) == 6  # after iterations 1, 3, ..., 11


def test_a_stopped_whole_loop_resumes_exactly(straight_run, tmp_path):
    run_dir = tmp_path / "run"
    first = train(load_config("connect_four_superlearner", TINY), run_dir, show_progress=False, max_chunks=1)
    assert not first.completed and first.iteration == 4
    assert resume(run_dir, show_progress=False).completed
    assert _comparable(read_metrics(run_dir)) == _comparable(read_metrics(straight_run))
    steps = max(Checkpointer(run_dir, read_only=True).steps())
    a = load_train_state(run_dir / "checkpoints" / str(steps))[1]
    b = load_train_state(straight_run / "checkpoints" / str(steps))[1]
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(a), jax.device_get(b))


def test_the_best_checkpoint_is_the_best_rated(straight_run):
    ratings = {r["iteration"]: r["metrics"]["rating"][0] for r in read_metrics(straight_run)}
    checkpointer = Checkpointer(straight_run, read_only=True)
    try:
        best = checkpointer.best_step()
    finally:
        checkpointer.close()
    assert ratings[best] == max(ratings.values())
    assert load_agent(straight_run).step == best
