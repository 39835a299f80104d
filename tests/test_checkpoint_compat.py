"""Checkpoints written before the shared engine (AlphaZero's games inside its learner state) load
into the current train state layout, leaf for leaf, and resume."""

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from superlearner.run.agent import load_agent, load_train_state

DATA = Path(__file__).parent / "data" / "pre_engine_refactor"
EXPECTED = json.loads((DATA / "expected.json").read_text())


def _params_sum(params) -> float:
    return float(sum(np.asarray(x, np.float64).sum() for x in jax.tree.leaves(params)))


@pytest.mark.parametrize("run", ["alphazero_tic_tac_toe", "ppo_tic_tac_toe"])
def test_a_checkpoint_from_before_the_shared_engine_loads_with_the_same_values(run):
    """The expected figures were computed by the code that wrote the checkpoints."""
    engine, state, _ = load_train_state(DATA / run)
    expected = EXPECTED[run]
    assert int(state.iteration) == expected["iteration"]
    assert _params_sum(state.learner.params) == pytest.approx(expected["params_sum"], rel=1e-6)
    games = state.env_state.env_state if run.startswith("alphazero") else state.env_state.game
    assert float(np.asarray(games.boards).sum()) == expected["boards_sum"]
    agent = load_agent(DATA / run)
    assert 0 <= int(agent.act(jax.random.key(0), engine.env.reset(jax.random.key(1)))) < engine.env.num_actions


def test_an_old_alphazero_run_resumes_and_trains_on(tmp_path):
    from superlearner.run.trainer import resume

    run_dir = tmp_path / "run"
    shutil.copytree(DATA / "alphazero_tic_tac_toe", run_dir)
    config = (run_dir / "config.yaml").read_text().replace("total_env_steps: 96", "total_env_steps: 160")
    (run_dir / "config.yaml").write_text(config)
    resume(run_dir, show_progress=False)
    _, state, _ = load_train_state(run_dir)
    assert int(state.iteration) == 5
