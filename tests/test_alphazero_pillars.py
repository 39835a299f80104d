"""Every pillar with the search learner: AlphaZero in a league, adapted by PBT and by the bandit,
and on a curriculum of levels. Each trains a tiny run and resumes it exactly, and each checks the
property that makes the pillar real for this learner (only the learner's positions are replayed,
PBT copies weights and explores AlphaZero's own hyperparameters, levels come from the sampler)."""

import json

import jax
import numpy as np
import pytest

from superlearner.run.agent import load_train_state
from superlearner.run.checkpoint import Checkpointer
from superlearner.config import config_from_dict, validate_semantics
from superlearner.engine import initial_state, make_engine
from superlearner.errors import ConfigError
from superlearner.selfplay.league import SELF
from superlearner.run.logs import read_metrics
from superlearner.run.trainer import resume, train

ALPHAZERO = {
    "num_simulations": 4, "max_num_considered_actions": 4, "replay_capacity": 256, "batch_size": 32,
    "num_updates": 2, "min_replay_size": 32, "channels": 8, "num_blocks": 1, "eval_simulations": 4,
}


def _config(env="tic_tac_toe", num_envs=8, num_steps=6, iterations=4, env_options=None, **sections):
    raw = {
        "name": "tiny_alphazero_pillars",
        "env": {"id": env, "options": env_options or {}},
        "learner": {"kind": "alphazero", "num_envs": num_envs, "num_steps": num_steps},
        "alphazero": dict(ALPHAZERO),
        "arena": {"every_chunks": 0},
        "train": {"total_env_steps": num_envs * num_steps * iterations, "iterations_per_chunk": 2,
                  "checkpoint_every_chunks": 1, "keep_checkpoints": 10, "eval_episodes": 0},
        "log": {"tensorboard": False},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return config_from_dict(json.loads(json.dumps(raw)))


LEAGUE = {"league": {"kind": "snapshots", "capacity": 3, "snapshot_every": 1, "weight_self": 0.0, "weight_uniform": 1.0,
                     "weight_pfsp_hard": 0.0}}
PBT = {"train": {"population_size": 2}, "meta": {"kind": "pbt", "adapt": ["learning_rate", "gumbel_scale"],
                                                 "interval": 1, "ready_iterations": 0}}
BANDIT = {"meta": {"kind": "bandit", "arms": {"learning_rate": [1e-3, 3e-3]}, "interval": 1}}
# Maze episodes of at most 6 moves end inside every 8-move collection, so levels get scores.
CURRICULUM = {"env": "maze", "env_options": {"max_episode_steps": 6}, "num_envs": 4, "num_steps": 8,
              "curriculum": {"kind": "plr", "capacity": 8, "min_fill_ratio": 0.25, "replay_prob": 0.5}}


def _latest_state(run_dir):
    steps = Checkpointer(run_dir, read_only=True).steps()
    return load_train_state(run_dir / "checkpoints" / str(max(steps)))[1]


def _comparable(records):
    return [{k: v for k, v in r.items() if k not in ("wall_time", "steps_per_second")} for r in records]


def _assert_resumes_exactly(config, tmp_path):
    straight, parted = tmp_path / "straight", tmp_path / "parted"
    assert train(config, straight, show_progress=False).completed
    first = train(config, parted, show_progress=False, max_chunks=1)
    assert not first.completed
    assert resume(parted, show_progress=False).completed
    a, b = _latest_state(straight), _latest_state(parted)
    for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))
    assert _comparable(read_metrics(parted)) == _comparable(read_metrics(straight))
    return a, read_metrics(straight)


def test_alphazero_in_a_league_replays_only_its_own_moves_and_resumes_exactly(tmp_path):
    config = _config(**LEAGUE)
    state, records = _assert_resumes_exactly(config, tmp_path)
    # The starting parameters, then a snapshot every iteration; every game was played against one
    # of them (weight_self 0).
    assert int(state.league.num_added[0]) == 1 + 4
    assert (np.asarray(state.env_state.opponent) != SELF).all()
    assert float(np.asarray(state.league.games).sum()) > 0
    metrics = records[-1]["metrics"]
    assert "league_size" in metrics and "score_vs_league" in metrics
    # Only the learner's moves are replayed: one seat per game, so about half of all moves.
    positions = state.learner.buffer.positions
    written = int(state.learner.buffer.size[0])
    players = np.asarray(positions.player[0, :written])
    stored = np.asarray(positions.valid[0, :written] | positions.pending[0, :written])
    assert 0.3 < stored.mean() < 0.7, stored.mean()
    assert set(np.unique(players[stored])) <= {0, 1}


def test_league_opponents_that_search_with_their_own_snapshot_play_stronger_than_raw_ones():
    """The same learner against the same (untrained) snapshot: 16 simulations through the real
    rules find wins and blocks that the raw policy, near uniform at the start, does not."""
    scores = {}
    for simulations in (0, 16):
        league = dict(LEAGUE["league"], opponent_simulations=simulations, opponent_temperature=0.0)
        engine = make_engine(_config(num_envs=128, num_steps=9, iterations=1, league=league))
        state, metrics = jax.jit(engine.train_chunk, static_argnums=1)(initial_state(engine, 0), 1)
        assert float(metrics["games"][0, 0]) > 64
        scores[simulations] = float(metrics["score_vs_league"][0, 0])
    assert scores[16] < scores[0] - 0.1, scores


def test_alphazero_with_pbt_explores_its_own_hyperparameters_and_resumes_exactly(tmp_path):
    config = _config(**PBT)
    state, records = _assert_resumes_exactly(config, tmp_path)
    parents = [r["metrics"]["meta_parent"] for r in records]
    assert any(p != [0.0, 1.0] for p in parents), "PBT never copied a member in 4 generations"
    lr = np.asarray(state.hparams.learning_rate)
    gumbel = np.asarray(state.hparams.gumbel_scale)
    # Explore multiplies (or divides) a copied value by perturb_factor, inside the declared bounds.
    assert not np.allclose(lr, 1e-3) or not np.allclose(gumbel, 1.0)
    assert ((1e-5 <= lr) & (lr <= 1e-1)).all() and ((0.0 <= gumbel) & (gumbel <= 2.0)).all()


def test_alphazero_with_the_bandit_pulls_arms_of_its_hyperparameters(tmp_path):
    engine = make_engine(_config(**BANDIT))
    state = initial_state(engine, 0)
    chunk = jax.jit(engine.train_chunk, static_argnums=1)
    seen = set()
    for _ in range(4):
        state, metrics = chunk(state, 1)
        seen |= {float(x) for x in np.asarray(state.hparams.learning_rate)}
    assert seen <= {np.float32(1e-3), np.float32(3e-3)} and len(seen) == 2


def test_alphazero_on_a_curriculum_plays_the_sampled_levels_and_resumes_exactly(tmp_path):
    config = _config(**CURRICULUM)
    state, records = _assert_resumes_exactly(config, tmp_path)
    assert int(np.asarray(state.curriculum["buffer"].valid[0]).sum()) > 0
    metrics = records[-1]["metrics"]
    assert "curriculum_buffer_size" in metrics and "learner_updated" in metrics
    # The envs play the levels of the sampler's last batch, not the maze's default level.
    default = make_engine(config).env.default_params
    levels = jax.tree.map(lambda x: np.asarray(x[0]), state.env_params)
    assert not all(np.array_equal(a, np.broadcast_to(b, a.shape)) for a, b in
                   zip(jax.tree.leaves(levels), jax.tree.leaves(default)))


@pytest.mark.parametrize(
    "sections, words",
    [
        ({"league": {"kind": "snapshots", "opponent_groups": 2}}, "draws each game's league opponent on its own"),
        ({"meta": {"kind": "metagrad", "adapt": ["learning_rate"]}}, "has no differentiable update"),
        ({"env": "kuhn_poker"}, "perfect information"),
    ],
)
def test_combinations_that_cannot_work_fail_in_one_line_before_compiling(sections, words):
    with pytest.raises(ConfigError) as error:
        config = _config(**sections)
        validate_semantics(config)
        make_engine(config)
    assert words in str(error.value) and "\n" not in str(error.value)
