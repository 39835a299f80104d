"""The curriculum probe: held-out solve rate, level-buffer statistics and the level gallery."""

import json

import jax
import numpy as np

from superlearner.run.agent import load_train_state
from superlearner.config import config_from_dict
from superlearner.curriculum.probe import read_galleries
from superlearner.run.logs import read_metrics
from superlearner.core.registry import make
from superlearner.run.trainer import resume, train

PROBED_PLR = {
    "name": "probed_plr",
    "env": {"id": "maze", "options": {"max_episode_steps": 30}},
    "learner": {"num_envs": 8, "num_steps": 32, "num_minibatches": 2, "num_epochs": 1, "hidden_sizes": [16]},
    "curriculum": {"kind": "plr", "capacity": 24, "min_fill_ratio": 0.25, "replay_prob": 0.5,
                   "probe_every_chunks": 1, "probe_episodes": 2, "probe_gallery": 5},
    "train": {"total_env_steps": 8 * 32 * 8, "iterations_per_chunk": 2, "checkpoint_every_chunks": 1,
              "keep_checkpoints": 10, "eval_episodes": 0},
    "log": {"tensorboard": False},
}


def test_probe_logs_heldout_and_buffer_statistics_and_resumes_exactly(tmp_path):
    config = config_from_dict(json.loads(json.dumps(PROBED_PLR)))
    train(config, tmp_path / "straight", show_progress=False)
    train(config, tmp_path / "split", show_progress=False, max_chunks=2)
    resume(tmp_path / "split", show_progress=False)
    straight, split = read_metrics(tmp_path / "straight"), read_metrics(tmp_path / "split")
    assert [r["iteration"] for r in straight] == [2, 4, 6, 8]
    env = make("maze", max_episode_steps=30)
    num_named = len(env.named_levels())
    for record in straight:
        metrics = record["metrics"]
        rate = metrics["heldout_solve_rate"][0]
        # A rate over num_named levels x 2 episodes each.
        assert 0.0 <= rate <= 1.0 and abs(rate * num_named * 2 - round(rate * num_named * 2)) < 1e-6
        assert metrics["buffer_levels"][0] == metrics["curriculum_buffer_size"][0]
        assert metrics["buffer_score_max"][0] >= metrics["buffer_score_mean"][0]
    # The probe is keyed by the iteration: a resumed run measures what the straight one did.
    for a, b in zip(straight, split):
        for key in ("heldout_solve_rate", "buffer_score_mean", "buffer_path_length_mean"):
            assert a["metrics"][key] == b["metrics"][key], key

    final = load_train_state(tmp_path / "straight" / "checkpoints" / "8")[1]
    buffer = jax.tree.map(lambda x: np.asarray(x[0]), final.curriculum["buffer"])
    assert straight[-1]["metrics"]["buffer_levels"][0] == float(buffer.valid.sum())
    galleries = read_galleries(tmp_path / "straight")
    assert [g["iteration"] for g in galleries] == [2, 4, 6, 8]
    last = galleries[-1]["levels"]
    assert len(last) == 5
    scores = [level["score"] for level in last]
    assert scores == sorted(scores, reverse=True)
    # The gallery holds the buffer's best-scored levels, and their stated difficulty is right.
    valid_scores = np.sort(buffer.scores[buffer.valid & np.isfinite(buffer.scores)])[::-1]
    np.testing.assert_allclose(scores, valid_scores[:5], rtol=1e-6)
    for level in last:
        parsed = env.level_space.level_from_text(level["text"])
        assert int(env.level_space.shortest_path_length(parsed)) == level["path_length"]

    # `superlearner plot` draws them.
    from superlearner.run.plot import plot_run

    names = {p.name for p in plot_run(tmp_path / "straight")}
    assert {"heldout.png", "curriculum_buffer.png", "level_gallery.png"} <= names
    # Chunks that ended on a step robust PLR did not train on log no losses; the curve has gaps.
    assert "losses.png" in names
    for record in straight:
        loss, updated = record["metrics"]["loss_total"], record["metrics"]["learner_updated"][0]
        assert (loss is None or loss == [None]) == (updated == 0.0)
