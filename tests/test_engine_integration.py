"""The engine with its optional parts: curriculum episode boundaries, league and PBT resume."""

import json

import jax
import numpy as np

from superlearner.run.agent import load_train_state
from superlearner.config import config_from_dict
from superlearner.engine import make_engine
from superlearner.run.trainer import resume, train


def test_episodes_ending_mid_rollout_restart_on_the_curriculums_level():
    config = config_from_dict({
        "env": {"id": "maze", "options": {"height": 7, "width": 7, "view_size": 3, "max_episode_steps": 12}},
        "learner": {"num_envs": 6, "num_steps": 40, "num_minibatches": 2, "num_epochs": 1, "hidden_sizes": [16]},
        "curriculum": {"kind": "plr", "capacity": 16, "min_fill_ratio": 0.25, "replay_prob": 0.5},
        "train": {"total_env_steps": 6 * 40 * 6},
    })
    engine = make_engine(config)
    state = jax.jit(engine.init, static_argnums=0)(0)
    chunk = jax.jit(engine.train_chunk, static_argnums=1)
    modes = []
    for _ in range(6):
        state, metrics = chunk(state, 1)
        modes.append(float(metrics["curriculum_mode"][0, 0]))
        # Every env's episodes (several end within each 40-step rollout: the limit is 12 steps)
        # were played on the level the curriculum chose for it, not a random one.
        assert int(state.episode_stats.num_episodes[0].min()) > 0
        np.testing.assert_array_equal(np.asarray(state.env_state.walls), np.asarray(state.env_params.walls))
        np.testing.assert_array_equal(np.asarray(state.env_state.goal), np.asarray(state.env_params.goal))
    assert int(state.curriculum["buffer"].valid[0].sum()) > 0, "scored levels must enter the buffer"
    assert len(set(modes)) > 1, "robust PLR alternates fresh and replayed levels"


TINY_SELFPLAY = {
    "name": "tiny_selfplay",
    "env": {"id": "tic_tac_toe"},
    "learner": {"num_envs": 8, "num_steps": 8, "num_minibatches": 2, "num_epochs": 1, "hidden_sizes": [16]},
    "league": {"capacity": 3, "snapshot_every": 1, "weight_self": 0.5, "weight_pfsp_hard": 0.5},
    "arena": {"every_chunks": 0},
    "meta": {"kind": "pbt", "adapt": ["learning_rate"], "interval": 2, "ready_iterations": 2,
             "truncation_fraction": 0.5, "progress_window": 2},
    "train": {"total_env_steps": 8 * 8 * 8, "population_size": 2, "iterations_per_chunk": 2,
              "checkpoint_every_chunks": 1, "keep_checkpoints": 10},
    "log": {"tensorboard": False},
}


def test_league_and_meta_controller_resume_exactly(tmp_path):
    config = config_from_dict(json.loads(json.dumps(TINY_SELFPLAY)))
    train(config, tmp_path / "straight", show_progress=False)
    train(config, tmp_path / "split", show_progress=False, max_chunks=2)
    resume(tmp_path / "split", show_progress=False)
    straight = load_train_state(tmp_path / "straight" / "checkpoints" / "8")[1]
    split = load_train_state(tmp_path / "split" / "checkpoints" / "8")[1]
    for part in ("league", "meta", "learner", "hparams", "env_state"):
        for a, b in zip(jax.tree.leaves(getattr(straight, part)), jax.tree.leaves(getattr(split, part))):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=part)
    # The league filled up and recorded games; the controller ran generations.
    assert int(straight.league.num_added.min()) >= 3
    assert float(straight.league.games.sum()) > 0
    assert int(straight.meta["controller"].generation.max()) >= 1
