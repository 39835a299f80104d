"""Update rules as data: the learned drift's guarantees, its gradients and its file format."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from superlearner.config import config_from_dict, validate_semantics
from superlearner.errors import ConfigError
from superlearner.learners.ppo import make_ppo
from superlearner.learners.update_rules import (
    LEARNED_FEATURES, init_learned_meta_params, learned, learned_drift, load_rule_file, make_update_rule,
    policy_objective, ppo_clip, read_rule_file, save_rule_file,
)

RATIO = jnp.exp(jnp.linspace(-2.0, 2.0, 41))[:, None] * jnp.ones((1, 13))
ADVANTAGE = jnp.linspace(-4.0, 4.0, 13)[None, :] * jnp.ones((41, 1))
EPS = jnp.float32(0.2)


def _random_weights(seed, scale=1.0, hidden=16):
    return init_learned_meta_params(jax.random.key(seed), hidden_size=hidden, scale=scale)


@pytest.mark.parametrize("seed", range(6))
def test_learned_drift_is_non_negative_and_zero_at_ratio_one(seed):
    meta = _random_weights(seed, scale=[0.3, 1.0, 3.0][seed % 3])
    for drift_fn in (learned_drift, jax.jit(learned_drift)):
        drift = drift_fn(meta, RATIO.ravel(), ADVANTAGE.ravel(), EPS)
        assert drift.shape == (41 * 13,)
        assert bool(jnp.all(drift >= 0.0))
        at_one = drift_fn(meta, jnp.ones(13), ADVANTAGE[0], EPS)
        np.testing.assert_array_equal(np.asarray(at_one), 0.0)  # exactly, not approximately
    # Not trivially zero: a random network drifts somewhere.
    assert float(drift.max()) > 0.0


def test_learned_drift_under_vmap_over_weights():
    metas = jax.vmap(lambda k: init_learned_meta_params(k, scale=1.0))(jax.random.split(jax.random.key(3), 5))
    batched = jax.jit(jax.vmap(learned_drift, in_axes=(0, None, None, None)))
    drift = batched(metas, RATIO.ravel(), ADVANTAGE.ravel(), EPS)
    assert drift.shape == (5, 41 * 13) and bool(jnp.all(drift >= 0.0))
    one = batched(metas, jnp.ones(13), ADVANTAGE[0], EPS)
    np.testing.assert_array_equal(np.asarray(one), 0.0)
    np.testing.assert_allclose(drift[2], learned_drift(jax.tree.map(lambda x: x[2], metas), RATIO.ravel(), ADVANTAGE.ravel(), EPS), rtol=1e-5, atol=1e-6)


def test_learned_rule_starts_as_ppo_clip_exactly():
    rule = learned()
    got = policy_objective(rule, rule.init_meta_params(), RATIO.ravel(), ADVANTAGE.ravel(), EPS)
    expected = policy_objective(ppo_clip(), {}, RATIO.ravel(), ADVANTAGE.ravel(), EPS)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_gradients_with_respect_to_meta_params_are_finite_and_informative():
    meta = _random_weights(5, scale=0.5)

    def objective(m):
        return policy_objective(learned(), m, RATIO.ravel(), ADVANTAGE.ravel(), EPS).mean()

    for grad_fn in (jax.jit(jax.grad(objective)),):
        grads = grad_fn(meta)
        assert set(grads) == {"skip", "w1", "b1", "w2"}
        for name, g in grads.items():
            assert g.shape == meta[name].shape and bool(jnp.all(jnp.isfinite(g))), name
        assert float(jnp.abs(grads["w2"]).sum()) > 0.0 and float(jnp.abs(grads["w1"]).sum()) > 0.0
    # And at the PPO-clip start, where the hidden units are switched off, still finite.
    start = grad_fn(init_learned_meta_params())
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in start.values())
    assert float(jnp.abs(start["w2"]).sum()) > 0.0


def test_rule_file_round_trip_gives_identical_weights(tmp_path):
    meta = _random_weights(7, scale=1.0, hidden=8)
    path = save_rule_file(tmp_path / "rule.npz", meta, extra={"note": "test"})
    assert path == tmp_path / "rule.npz" and path.is_file()
    header, arrays = read_rule_file(path)
    assert header["rule"] == "learned" and header["version"] == 1 and header["hidden_size"] == 8
    assert header["features"] == list(LEARNED_FEATURES) and header["extra"] == {"note": "test"}
    loaded = load_rule_file(path)
    for name in meta:
        np.testing.assert_array_equal(np.asarray(loaded[name]), np.asarray(meta[name]))
        assert loaded[name].dtype == jnp.float32
    # The file is plain numpy: it loads without pickle.
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == ["__header__", "b1", "skip", "w1", "w2"]
    # Through the learner: PPO's meta params are the file's weights.
    ppo = make_ppo((4,), 2, hidden_sizes=(8,), update_rule="learned", update_rule_file=str(path))
    state = ppo.init(jax.random.key(0))
    for name in meta:
        np.testing.assert_array_equal(np.asarray(state.meta_params[name]), np.asarray(meta[name]))


def _assert_one_line_error(path, match):
    with pytest.raises(ConfigError) as info:
        load_rule_file(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    assert match in message, message
    return message


def test_malformed_rule_files_give_one_line_errors(tmp_path):
    _assert_one_line_error(tmp_path / "missing.npz", "no such update-rule file")
    text = tmp_path / "text.npz"
    text.write_text("not a zip")
    _assert_one_line_error(text, "not a readable update-rule file")
    no_header = tmp_path / "no_header.npz"
    np.savez(no_header, **{k: np.asarray(v) for k, v in init_learned_meta_params().items()})
    _assert_one_line_error(no_header, "expected a learned update-rule .npz")
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, __header__=np.array([{"rule": "learned"}], dtype=object))
    _assert_one_line_error(pickled, "not a readable update-rule file")
    good = save_rule_file(tmp_path / "good.npz", init_learned_meta_params())
    with np.load(good) as data:
        entries = {k: data[k] for k in data.files}
    bad_shape = tmp_path / "bad_shape.npz"
    np.savez(bad_shape, **dict(entries, w2=np.zeros(3, np.float32)))
    _assert_one_line_error(bad_shape, "array w2 has shape (3,)")
    nan = tmp_path / "nan.npz"
    np.savez(nan, **dict(entries, skip=np.full(len(LEARNED_FEATURES), np.nan, np.float32)))
    _assert_one_line_error(nan, "finite floats")
    wrong_rule = tmp_path / "wrong_rule.npz"
    np.savez(wrong_rule, **dict(entries, __header__=np.array('{"format": "superlearner.update_rule", "rule": "dpo"}')))
    _assert_one_line_error(wrong_rule, "rule 'dpo'")


def test_config_validates_the_rule_file(tmp_path):
    missing = tmp_path / "nope.npz"
    config = config_from_dict({"learner": {"update_rule": "learned", "update_rule_file": str(missing)}})
    with pytest.raises(ConfigError, match="no such update-rule file"):
        validate_semantics(config)
    path = save_rule_file(tmp_path / "ok.npz", init_learned_meta_params())
    validate_semantics(config_from_dict({"learner": {"update_rule": "learned", "update_rule_file": str(path)}}))
    with pytest.raises(ConfigError, match="only read by update_rule=learned"):
        validate_semantics(config_from_dict({"learner": {"update_rule": "dpo", "update_rule_file": str(path)}}))
    with pytest.raises(ConfigError, match="accepted"):
        make_update_rule("learnt")


def test_a_rule_file_loads_into_any_preset_through_the_config():
    """``learner.update_rule_file`` puts the file's weights into every member's meta params."""
    from pathlib import Path

    from superlearner.config import load_config
    from superlearner.engine import initial_state, make_engine

    path = Path(__file__).resolve().parents[1] / "experiments" / "rules" / "discovered_cartpole.npz"
    _, weights = read_rule_file(path)
    config = load_config("cartpole_ppo", ["learner.update_rule=learned", f"learner.update_rule_file={path}",
                                          "train.population_size=2", "learner.hidden_sizes=[16]"])
    state = initial_state(make_engine(config), 0)
    for name, value in weights.items():
        for member in range(2):
            np.testing.assert_array_equal(np.asarray(state.learner.meta_params[name][member]), value)


def test_rule_file_paths_are_relative_to_the_yaml_file_or_the_working_directory(tmp_path, monkeypatch):
    """A relative rule file in a YAML file is found next to that file; on the command line, in
    the working directory; either way the resolved config holds an absolute path."""
    from superlearner.config import load_config

    (tmp_path / "presets" / "rules").mkdir(parents=True)
    path = save_rule_file(tmp_path / "presets" / "rules" / "mine.npz", init_learned_meta_params())
    preset = tmp_path / "presets" / "learned.yaml"
    preset.write_text("env:\n  id: cartpole\nlearner:\n  update_rule: learned\n  update_rule_file: rules/mine.npz\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(str(preset))
    assert config.learner.update_rule_file == str(path.resolve())
    validate_semantics(config)
    monkeypatch.chdir(tmp_path / "presets")
    config = load_config(str(preset), ["learner.update_rule_file=rules/mine.npz"])
    assert config.learner.update_rule_file == str(path.resolve())
    monkeypatch.chdir(elsewhere)
    with pytest.raises(ConfigError, match="no such update-rule file"):
        validate_semantics(load_config(str(preset), ["learner.update_rule_file=rules/mine.npz"]))
