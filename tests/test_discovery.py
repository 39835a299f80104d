"""Offline drift discovery: config checks, inner runs, and a tiny end-to-end search."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from superlearner.run import discovery
from superlearner.config import apply_overrides, config_from_dict, load_config
from superlearner.errors import ConfigError
from superlearner.core.registry import make
from superlearner.learners.update_rules import init_learned_meta_params, read_rule_file

TINY = [
    "learner.num_envs=2", "learner.num_steps=16", "learner.num_minibatches=2", "learner.num_epochs=1",
    "learner.hidden_sizes=[8]", "train.total_env_steps=96",
    "meta.discovery.population_size=2", "meta.discovery.generations=1", "meta.discovery.test_seeds=2",
    "meta.discovery.hidden_size=4",
    "meta.discovery.meta_train_levels={default: {}}", "meta.discovery.meta_test_levels={long_pole: {length: 0.8}}",
]


def test_the_preset_is_a_valid_discovery_config():
    config = load_config("discover_drift")
    discovery.check_discovery(config)
    d = config.meta.discovery
    assert set(d.meta_train_levels).isdisjoint(d.meta_test_levels)
    assert config.learner.update_rule == "learned"


def test_bad_discovery_configs_give_one_line_errors():
    env = make("cartpole")
    with pytest.raises(ConfigError, match="not a field of cartpole's level; accepted: gravity") as info:
        discovery.make_levels(env, {"x": {"lenght": 0.3}}, "cfg", "meta_train_levels")
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="is empty"):
        discovery.make_levels(env, {}, "cfg", "meta_test_levels")
    with pytest.raises(ConfigError, match="catch has no level parameters; give one level"):
        discovery.make_levels(make("catch"), {"a": {}, "b": {}}, "cfg", "meta_train_levels")
    with pytest.raises(ConfigError, match="must be even"):
        discovery.check_discovery(config_from_dict({"meta": {"discovery": {"population_size": 3}}}))
    with pytest.raises(ConfigError, match="population_size 1"):
        discovery.check_discovery(config_from_dict({"train": {"population_size": 2}}))


def test_a_held_out_experiment_must_be_another_single_agent_ppo_task():
    for name, message in [
        ("tic_tac_toe_selfplay", "must be single-agent"),
        ("connect_four_alphazero", "must be a PPO experiment"),
        ("cartpole_ppo", "the experiment's own env"),
        ("maze_metagrad", "meta.kind none"),
        ("acrobot_ppp", "meta_test_experiment='acrobot_ppp'"),
    ]:
        config = load_config("discover_drift", [f"meta.discovery.meta_test_experiment={name}"])
        with pytest.raises(ConfigError, match=message) as info:
            discovery.check_discovery(config)
        assert "\n" not in str(info.value)
    discovery.check_discovery(load_config("discover_drift", ["meta.discovery.meta_test_experiment=acrobot_ppo"]))


def test_meta_training_experiments_are_checked_and_never_the_held_out_env():
    base = ["meta.discovery.meta_test_experiment=acrobot_ppo"]
    for value, message in [
        ("[catch_ppo, catch_ppo]", "both on catch; give each env once"),
        ("[acrobot_ppo]", "which meta_train_experiments already trains on"),
        ("[tic_tac_toe_selfplay]", "a meta-training task must be single-agent"),
        ("[cartpole_ppo]", "levels of it go in meta.discovery.meta_train_levels"),
    ]:
        config = load_config("discover_drift", base + [f"meta.discovery.meta_train_experiments={value}"])
        with pytest.raises(ConfigError, match=message) as info:
            discovery.check_discovery(config)
        assert "\n" not in str(info.value)
    discovery.check_discovery(load_config("discover_drift", base + ["meta.discovery.meta_train_experiments=[catch_ppo]"]))


def test_centred_ranks_and_the_combined_fitness_of_several_tasks():
    np.testing.assert_allclose(discovery.centred_ranks(jnp.array([3.0, -1.0, 10.0])), [0.0, -0.5, 0.5])
    np.testing.assert_allclose(discovery.centred_ranks(jnp.array([7.0])), [0.0])
    # Ties share their mean rank: ranks 0, 2, 2, 2 of 0..3 (the three 1.0s hold ranks 1, 2, 3).
    np.testing.assert_allclose(discovery.centred_ranks(jnp.array([0.5, 1.0, 1.0, 1.0])), [-0.5, 1 / 6, 1 / 6, 1 / 6], rtol=1e-6)
    # One task: its own returns, in its own units.
    np.testing.assert_allclose(discovery.combine_fitness(jnp.array([[1.0, 5.0, 2.0, 0.0]])), [1.0, 5.0, 2.0, 0.0])
    # Two tasks on very different scales weigh the same: ranks [-1/6, 1/2, 1/6, -1/2] and
    # [1/2, -1/2, 1/6, -1/6], averaged.
    per_task = jnp.array([[1.0, 500.0, 2.0, 0.0], [-80.0, -400.0, -150.0, -200.0]])
    np.testing.assert_allclose(discovery.combine_fitness(per_task), [1 / 6, 0.0, 1 / 6, -1 / 3], atol=1e-6)


def test_the_held_out_experiment_trains_both_rules_on_its_own_env_with_the_same_seeds(tmp_path):
    held_out = tmp_path / "tiny_acrobot.yaml"
    held_out.write_text(
        "name: tiny_acrobot\nenv: {id: acrobot}\n"
        "learner: {num_envs: 2, num_steps: 32, num_minibatches: 2, num_epochs: 1, hidden_sizes: [8]}\n"
        "train: {total_env_steps: 1280}\n"  # every env finishes an episode (500 steps at most)
    )
    config = load_config("discover_drift", TINY + [f"meta.discovery.meta_test_experiment={held_out}"])
    discovery.check_discovery(config)
    # The learned rule at its start is PPO-clip, so on the same seeds both rules train alike.
    measured = discovery.measure(config, init_learned_meta_params(hidden_size=4), log=lambda line: None)
    test_env = measured["test_env"]
    assert test_env["env"] == "acrobot" and test_env["experiment"] == str(held_out)
    got, expected = (np.asarray(test_env[rule]["per_seed"]) for rule in ("discovered", "ppo_clip"))
    assert got.shape == (2,)
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    # Acrobot pays -1 per step and cartpole +1: the held-out returns are the other env's.
    assert np.all(got < 0) and np.all(np.asarray(measured["test"]["ppo_clip"]["per_seed"]) > 0)


def test_levels_override_only_the_named_fields():
    env = make("cartpole")
    levels, names = discovery.make_levels(env, {"a": {}, "b": {"length": 0.8}}, "cfg", "meta_train_levels")
    assert names == ("a", "b")
    np.testing.assert_allclose(levels.length, [float(env.default_params.length), 0.8])
    np.testing.assert_allclose(levels.gravity, float(env.default_params.gravity))


def test_learned_rule_at_its_start_trains_like_ppo_clip():
    config = load_config("discover_drift", TINY)
    env = make("cartpole")
    levels, names = discovery.make_levels(env, {"default": {}}, "cfg", "meta_train_levels")
    learned = discovery.make_inner_runs(discovery.inner_config(config, "learned"), names)
    ppo = discovery.make_inner_runs(discovery.inner_config(config, "ppo_clip"), names)
    seeds = jnp.arange(2, dtype=jnp.int32)
    got = jax.jit(learned.run)(init_learned_meta_params(hidden_size=4), levels, seeds)
    expected = jax.jit(ppo.run)({}, levels, seeds)
    assert got.shape == (1, 2)
    np.testing.assert_allclose(got, expected, rtol=1e-4)


@pytest.mark.slow
def test_discovery_end_to_end_over_two_envs_writes_a_loadable_rule(tmp_path, capsys):
    extra = tmp_path / "tiny_catch.yaml"
    extra.write_text(
        "name: tiny_catch\nenv: {id: catch}\n"
        "learner: {num_envs: 2, num_steps: 16, num_minibatches: 2, num_epochs: 1, hidden_sizes: [8]}\n"
        "train: {total_env_steps: 128}\n"
    )
    out = tmp_path / "rule.npz"
    args = ["discover_drift", "--out", str(out)]
    for item in TINY + [f"meta.discovery.meta_train_experiments=[{extra}]"]:
        args += ["--set", item]
    assert discovery.main(args) == 0
    header, arrays = read_rule_file(out)
    assert header["rule"] == "learned" and header["hidden_size"] == 4
    assert header["extra"]["meta_test_levels"] == ["long_pole"]
    assert header["extra"]["meta_train_experiments"] == [str(extra)]
    report = json.loads(out.with_suffix(".json").read_text())
    (entry,) = report["fitness_history"]
    # The search ranked every candidate on both envs; the headline stays the first env's return.
    assert set(entry["tasks"]) == {"cartpole", "catch"}
    assert entry["tasks"]["cartpole"]["mean"] == entry["mean"]
    # Catch pays +1 or -1 once per 9-step episode; cartpole +1 per step.
    assert -1.0 <= entry["tasks"]["catch"]["mean"] <= 1.0 < entry["tasks"]["cartpole"]["best"]
    measured = report["train_envs"][str(extra)]
    assert measured["env"] == "catch" and len(measured["ppo_clip"]["per_seed"]) == 2
    assert set(header["extra"]["train_envs"][str(extra)]) == {"discovered", "ppo_clip"}
    for rule in ("discovered", "ppo_clip"):
        entry = report["test"][rule]["all"]
        assert entry["n"] == 2 and entry["low"] <= entry["mean"] <= entry["high"]
    assert "discovered_minus_ppo_clip" in report["test"]
    # The rule file trains through the learner config.
    config = config_from_dict(apply_overrides({}, ["learner.update_rule=learned", f"learner.update_rule_file={out}"]))
    from superlearner.config import validate_semantics

    validate_semantics(config)
    printed = capsys.readouterr().out
    assert "generation 1/1" in printed and "also meta-training on catch" in printed


def test_mean_and_ci95():
    stats = discovery.mean_and_ci95([1.0, 2.0, 3.0])
    assert stats["mean"] == 2.0 and stats["n"] == 3
    assert np.isclose(stats["high"] - 2.0, 4.302653 * 1.0 / np.sqrt(3), rtol=1e-5)
