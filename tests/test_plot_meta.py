"""Figures of the meta-learner: drift surfaces of update rules and the PBT lineage tree."""

import json

import numpy as np
import pytest
import yaml

from superlearner.run.plot import (
    drift_surface, lineage_in_order, plot_drift_surfaces, plot_lineage, plot_rule_file, plot_run,
)
from superlearner.learners.update_rules import dpo, init_learned_meta_params, learned, ppo_clip, save_rule_file


def _assert_non_trivial_png(path, min_width=300, min_height=200):
    import matplotlib.image

    image = matplotlib.image.imread(str(path))
    height, width = image.shape[:2]
    assert width >= min_width and height >= min_height, image.shape
    pixels = image[..., :3].reshape(-1, 3)
    assert len(np.unique(pixels, axis=0)) > 20, "the picture is (almost) one colour"
    # Not mostly blank either.
    assert np.mean(np.any(pixels < 0.9, axis=1)) > 0.02


def test_drift_surface_values():
    ratio, advantage, drift = drift_surface(ppo_clip(), {}, clip_eps=0.2, num_points=31)
    assert drift.shape == (31, 31) and np.all(drift >= 0)
    inside = (ratio > 0.8) & (ratio < 1.2)
    np.testing.assert_allclose(drift[:, inside], 0.0)
    assert drift.max() > 0


def test_drift_surfaces_and_rule_file_pngs(tmp_path):
    rules = {"ppo_clip": (ppo_clip(), {}), "dpo": (dpo(), dpo().init_meta_params()),
             "learned": (learned(), init_learned_meta_params(scale=0.5, key=__import__("jax").random.key(1)))}
    path = plot_drift_surfaces(rules, tmp_path / "drift.png")
    _assert_non_trivial_png(path, min_width=900)
    rule_file = save_rule_file(tmp_path / "rule.npz", init_learned_meta_params())
    png = plot_rule_file(rule_file)
    assert png == tmp_path / "rule_drift.png"
    assert plot_run(rule_file) == [png]  # `superlearner plot rule.npz`
    _assert_non_trivial_png(png, min_width=900)


def test_lineage_ring_is_read_oldest_first():
    ring = np.array([[10, 11], [20, 21], [30, 31]])  # slot g % 3 holds generation g
    np.testing.assert_array_equal(lineage_in_order(ring, 2), [[10, 11], [20, 21]])
    np.testing.assert_array_equal(lineage_in_order(ring, 4), [[20, 21], [30, 31], [10, 11]])
    assert lineage_in_order(ring, 0).shape == (0, 2)


def test_lineage_png(tmp_path):
    rng = np.random.default_rng(0)
    parents = np.tile(np.arange(8), (12, 1))
    for g in range(12):
        losers = rng.choice(8, 2, replace=False)
        parents[g, losers] = rng.choice(np.setdiff1d(np.arange(8), losers), 2)
    path = plot_lineage(parents, tmp_path / "lineage.png")
    _assert_non_trivial_png(path)
    # An empty lineage (no generation yet) still draws.
    plot_lineage(np.zeros((0, 4), int), tmp_path / "empty.png")


@pytest.mark.parametrize("rule", ["learned", "dpo"])
def test_plot_run_adds_the_drift_surface_for_rules_with_a_drift(tmp_path, rule):
    run = tmp_path / "run"
    run.mkdir()
    learner = {"update_rule": rule}
    if rule == "learned":
        learner["update_rule_file"] = str(save_rule_file(tmp_path / "r.npz", init_learned_meta_params()))
    (run / "config.yaml").write_text(yaml.safe_dump({"learner": learner, "meta": {"kind": "none"}}))
    with open(run / "metrics.jsonl", "w") as handle:
        for i in range(5):
            handle.write(json.dumps({"iteration": i + 1, "env_steps": 512 * (i + 1), "steps_per_second": 1e4,
                                     "metrics": {"episode_return": [10.0 * i]},
                                     "hparams": {"clip_eps": [0.2], "learning_rate": [2.5e-4]}}) + "\n")
    written = plot_run(run)
    names = [p.name for p in written]
    assert "drift_surface.png" in names and "return.png" in names
    _assert_non_trivial_png(run / "plots" / "drift_surface.png", min_width=600)


@pytest.mark.slow
def test_plot_run_draws_the_lineage_of_a_tiny_pbt_run(tmp_path):
    from superlearner.config import load_config
    from superlearner.run.plot import read_lineage
    from superlearner.run.trainer import train

    config = load_config("cartpole_pbt", [
        "train.population_size=4", "train.total_env_steps=2048", "learner.num_steps=32", "learner.num_envs=4",
        "train.iterations_per_chunk=16", "meta.interval=2", "meta.ready_iterations=2", "train.eval_episodes=0",
        "log.tensorboard=false", "learner.hidden_sizes=[8]",
    ])
    run = tmp_path / "pbt"
    train(config, run, show_progress=False)
    lineage = read_lineage(run)
    assert lineage.shape == (8, 4)  # 16 iterations, a generation every 2
    assert np.all((lineage >= 0) & (lineage < 4))
    written = plot_run(run)
    assert run / "plots" / "lineage.png" in written
    _assert_non_trivial_png(run / "plots" / "lineage.png")
