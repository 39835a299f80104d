"""Online meta-gradients and the update-rule bandit: gradients, bounds, no recompiles, exact resume."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from superlearner.run.checkpoint import Checkpointer
from superlearner.config import config_from_dict, validate_semantics
from superlearner.engine import make_engine
from superlearner.errors import ConfigError
from superlearner.learners.ppo import PPOHparams, Rollout, make_ppo
from superlearner.meta.controllers import PopulationState, from_unconstrained, select_specs, to_unconstrained
from superlearner.meta.metagrad import (
    MetaGradBatch,
    flatten,
    make_metagrad,
    meta_objective,
    outer_targets,
    rollout_batch,
)
from superlearner.learners.update_rules import dpo, policy_objective, ppo_clip, switch

ADAPTED = ["gamma", "gae_lambda", "ent_coef", "vf_coef", "learning_rate"]
# These programs run a few times on tiny inputs: XLA's backend optimisations would cost more
# compile time than they save.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def jit(fn, **options):
    return jax.jit(fn, compiler_options=FAST_COMPILE, **options)


def hparams_of(**values):
    base = dict(learning_rate=2.5e-4, ent_coef=0.01, vf_coef=0.5, gamma=0.99, gae_lambda=0.95, clip_eps=0.2,
                max_grad_norm=0.5, adam_eps=1e-5)
    base.update(values)
    return PPOHparams.from_values(**base)


def tiny_problem(seed=0, num_steps=16, num_envs=4):
    """A tiny PPO on 4-d observations, 2 actions, after one real update (so Adam holds a second
    moment), and an on-policy rollout of it with random rewards and episode ends."""
    ppo = make_ppo((4,), 2, hidden_sizes=(8,), num_epochs=1, num_minibatches=1, anneal_lr=False)
    keys = jax.random.split(jax.random.key(seed), 8)
    state = ppo.init(keys[0])

    def rollout_of(params, key):
        obs_key, act_key, reward_key, end_key = jax.random.split(key, 4)
        observation = jax.random.normal(obs_key, (num_steps, num_envs, 4))
        mask = jnp.ones((num_steps, num_envs, 2), bool)
        action, log_prob, value = ppo.act(params, observation, mask, act_key)
        next_value = jnp.concatenate([value[1:], value[-1:]], axis=0)
        continue_ = (jax.random.uniform(end_key, (num_steps, num_envs)) > 0.1).astype(jnp.float32)
        return Rollout(observation=observation, legal_action_mask=mask, action=action, log_prob=log_prob,
                       value=value, reward=jax.random.normal(reward_key, (num_steps, num_envs)),
                       v_tp1=next_value * continue_, continue_=continue_)

    state, _ = ppo.update(state, rollout_of(state.params, keys[1]), hparams_of(), keys[2])
    return ppo, state, rollout_of(state.params, keys[3])


# ----------------------------------------------------------------------------------------------
# The meta-gradient itself.


def test_meta_gradient_matches_finite_differences():
    ppo, state, rollout = tiny_problem()
    specs = select_specs(ADAPTED)
    # A large step and no gradient clipping, so that one inner step moves the outer objective
    # well above float32 rounding.
    hparams = hparams_of(learning_rate=0.03, max_grad_norm=1e3, ent_coef=0.05)
    inner = jax.tree.map(lambda x: x[:, :2], rollout)
    held_out = jax.tree.map(lambda x: x[:, 2:], rollout)
    advantage, target = outer_targets(held_out, held_out.value * 0.5, 0.99, 0.95)  # any fixed critic
    held_out_batch = flatten(rollout_batch(held_out, 0.99, 0.95))
    held_out_batch.update(advantage=advantage.reshape(-1), target=target.reshape(-1))

    def objective(u):
        return meta_objective(ppo, specs, u, hparams, state, inner, held_out_batch, 0.5)

    u = to_unconstrained(hparams, specs)
    eps = 3e-3
    direction = jax.random.normal(jax.random.key(5), u.shape)
    # Central differences along each axis and along a random direction, with the gradient, in
    # one compiled call.
    steps = jnp.concatenate([jnp.eye(len(specs)), direction[None]]) * eps
    grad, values = jit(lambda u: (jax.grad(objective)(u), jax.vmap(objective)(jnp.concatenate([u + steps, u - steps]))))(u)
    differences = (values[: len(steps)] - values[len(steps) :]) / (2 * eps)
    finite, directional = differences[:-1], differences[-1]
    scale = float(jnp.abs(grad).max())
    assert scale > 1e-3, "the problem must make the meta-gradient visible"
    np.testing.assert_allclose(np.asarray(grad), np.asarray(finite), rtol=0.05, atol=0.02 * scale)
    # Every adapted hyperparameter reaches the outer objective.
    assert (np.abs(np.asarray(grad)) > 1e-6).all(), dict(zip(ADAPTED, np.asarray(grad)))
    np.testing.assert_allclose(float(grad @ direction), float(directional), rtol=0.05, atol=0.02 * scale)


def test_controller_steps_downhill_within_bounds_and_writes_its_values():
    ppo, state, rollout = tiny_problem(seed=1)
    size = 3
    specs = select_specs(ADAPTED, learning_rate=(1e-4, 3e-2))
    # A big meta step size drives some values onto their bounds within a few steps.
    controller = make_metagrad(ppo, (4,), specs, meta_learning_rate=0.5, critic_hidden_sizes=(8,))
    members = jax.tree.map(lambda x: jnp.stack([x] * size), state)
    rollouts = jax.tree.map(lambda x: jnp.stack([x] * size), rollout)
    hparams = jax.tree.map(lambda x: jnp.stack([x] * size), hparams_of(learning_rate=0.01, max_grad_norm=1e3))
    population = PopulationState(learner=members, hparams=hparams, rng=jnp.zeros((size, 2), jnp.uint32))
    ctrl = controller.init(size, jax.random.key(0), hparams)
    update = jit(controller.update)
    hit_bound = False
    with jax.debug_key_reuse(True):
        for call in range(8):
            before = ctrl.unconstrained
            ctrl, population, events = update(ctrl, population, MetaGradBatch(members, rollouts), jax.random.key(call))
            assert bool(events.due)
            # The member's hparams are exactly the controller's values, inside the bounds.
            expected = from_unconstrained(ctrl.unconstrained, specs, population.hparams)
            for i, spec in enumerate(specs):
                value = np.asarray(getattr(population.hparams, spec.name))
                # (to float32 rounding: the transform is evaluated here outside the compiled step)
                np.testing.assert_allclose(value, np.clip(np.asarray(getattr(expected, spec.name)), spec.low, spec.high),
                                           rtol=3e-7)
                assert value.min() >= np.float32(spec.low) and value.max() <= np.float32(spec.high), spec.name
                u_low, u_high = spec.unconstrained_bounds
                assert np.all(np.asarray(ctrl.unconstrained[:, i]) >= np.float32(u_low) - 1e-6)
                assert np.all(np.asarray(ctrl.unconstrained[:, i]) <= np.float32(u_high) + 1e-6)
                hit_bound |= bool(np.isclose(value, spec.low, rtol=1e-5).any() | np.isclose(value, spec.high, rtol=1e-5).any())
            # Adam's first step moves each coordinate by the step size against the gradient's sign.
            if call == 0:
                moved = np.asarray(ctrl.unconstrained - before)
                sign = -np.sign(np.asarray(events.meta_grad))
                np.testing.assert_array_equal(np.sign(moved)[sign != 0], sign[sign != 0])
    assert hit_bound
    assert update._cache_size() == 1


# ----------------------------------------------------------------------------------------------
# The update rule as a traced index.


def test_switch_rule_matches_each_rule_and_never_recompiles():
    rule = switch()
    ratio = jnp.linspace(0.5, 1.6, 12)
    advantage = jnp.linspace(-2.0, 2.0, 12)
    eps = jnp.float32(0.2)
    objective = jit(lambda params: policy_objective(rule, params, ratio, advantage, eps))
    params = rule.init_meta_params()
    expected = [policy_objective(ppo_clip(), {}, ratio, advantage, eps),
                policy_objective(dpo(), dpo().init_meta_params(), ratio, advantage, eps)]
    for index in (0, 1, 2, 1, 0):
        got = objective(dict(params, index=jnp.int32(index)))
        want = expected[index] if index < 2 else expected[0]  # the fresh learned drift is PPO-clip
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert objective._cache_size() == 1
    assert not np.allclose(expected[0], expected[1])
    # Per member under vmap, each member with its own rule.
    batched = jax.vmap(lambda i: policy_objective(rule, dict(params, index=i), ratio, advantage, eps))(jnp.asarray([1, 0]))
    np.testing.assert_allclose(batched[0], expected[1], rtol=1e-6)
    np.testing.assert_allclose(batched[1], expected[0], rtol=1e-6)


def test_bad_meta_configs_say_what_to_set():
    with pytest.raises(ConfigError, match="learner.update_rule=switch"):
        make_engine(config_from_dict({"meta": {"kind": "bandit", "arms": {"update_rule": ["ppo_clip", "dpo"]}},
                                      "train": {"population_size": 2}}))
    with pytest.raises(ConfigError, match="needs meta.arms"):
        make_engine(config_from_dict({"meta": {"kind": "bandit"}}))
    with pytest.raises(ConfigError, match="unknown rules"):
        make_engine(config_from_dict({"learner": {"update_rule": "switch"},
                                      "meta": {"kind": "bandit", "arms": {"update_rule": ["ppo", "dpo"]}}}))
    with pytest.raises(ConfigError, match="num_envs must be >= 2"):
        make_engine(config_from_dict({"learner": {"num_envs": 1}, "meta": {"kind": "metagrad", "adapt": ["gamma"]}}))


# ----------------------------------------------------------------------------------------------
# In the engine: the loss uses the controller's values; arms switch without recompiling; the
# controller state survives a checkpoint exactly.

TINY = {
    "env": {"id": "cartpole"},
    "learner": {"num_envs": 2, "num_steps": 32, "num_minibatches": 1, "num_epochs": 1, "hidden_sizes": [16],
                "anneal_lr": False},
    "train": {"total_env_steps": 2 * 32 * 100, "population_size": 2},
    "log": {"tensorboard": False},
}


def _engine(learner=None, **meta):
    raw = {**TINY, "learner": {**TINY["learner"], **(learner or {})}, "meta": meta}
    config = config_from_dict(raw)
    validate_semantics(config)
    engine = make_engine(config)
    return engine, jit(engine.init)(0), jit(engine.train_chunk, static_argnums=1, donate_argnums=0)


def _assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _checkpoint_round_trip(tmp_path, engine, state, chunk):
    """Saves and restores ``state``; both continue one chunk; everything must agree exactly."""
    checkpointer = Checkpointer(tmp_path, asynchronous=False)
    checkpointer.save(int(state.iteration), state, {"iteration": int(state.iteration)})
    checkpointer.wait()
    restored, _ = checkpointer.restore(jit(engine.init)(1))  # another seed: nothing may leak through
    checkpointer.close()
    _assert_trees_equal(restored.meta, state.meta)
    copy = jax.tree.map(jnp.copy, state)
    straight, straight_metrics = chunk(copy, 1)
    resumed, resumed_metrics = chunk(restored, 1)
    _assert_trees_equal(resumed, straight)
    _assert_trees_equal(resumed_metrics, straight_metrics)


def test_metagrad_in_the_engine_loss_uses_controller_values_and_resumes_exactly(tmp_path):
    specs = select_specs(["gamma", "ent_coef", "learning_rate"])
    engine, state, chunk = _engine(kind="metagrad", adapt=[s.name for s in specs], interval=1, meta_learning_rate=0.05)
    previous_lr = None
    for _ in range(5):
        state, metrics = chunk(state, 1)
        ctrl = state.meta["controller"]
        controller_values = from_unconstrained(ctrl.unconstrained, specs, state.hparams)
        for spec in specs:
            value = np.asarray(getattr(state.hparams, spec.name))
            np.testing.assert_allclose(value, np.clip(getattr(controller_values, spec.name), spec.low, spec.high), rtol=3e-7)
            assert value.min() >= np.float32(spec.low) and value.max() <= np.float32(spec.high)
        # The update of the next iteration reports the learning rate its loss used.
        if previous_lr is not None:
            np.testing.assert_array_equal(metrics["learning_rate"][0], previous_lr)
        previous_lr = np.asarray(state.hparams.learning_rate)
        assert np.isfinite(metrics["meta_outer_loss"]).all()
    assert not np.allclose(np.asarray(state.hparams.gamma), 0.99), "the meta-gradient moved gamma"
    assert chunk._cache_size() == 1
    _checkpoint_round_trip(tmp_path, engine, state, chunk)


def test_bandit_switches_update_rules_per_member_without_recompiling_and_resumes_exactly(tmp_path):
    engine, state, chunk = _engine(learner={"update_rule": "switch"}, kind="bandit", interval=1, bandit_window=4,
                                   arms={"update_rule": ["ppo_clip", "dpo", "learned"]})
    arms = []
    for _ in range(6):
        state, metrics = chunk(state, 1)
        arm = np.asarray(metrics["meta_arm"][0]).astype(int)
        arms.append(arm)
        # The rule each member trains with next is the bandit's arm (indices of SWITCH_RULES).
        np.testing.assert_array_equal(np.asarray(state.learner.meta_params["index"]), arm)
        np.testing.assert_array_equal(np.asarray(state.meta["controller"].current_arm), arm)
    arms = np.stack(arms)
    assert len(np.unique(arms)) == 3, "every arm was tried"
    assert chunk._cache_size() == 1, "switching rules must not recompile"
    counts = state.meta["controller"].arm_counts
    np.testing.assert_array_equal(counts.sum(1), [6, 6])
    for k, name in enumerate(["ppo_clip", "dpo", "learned"]):
        np.testing.assert_array_equal(metrics[f"meta_arm_count_{name}"][0], counts[:, k])
        np.testing.assert_array_equal(counts[:, k], (arms == k).sum(0))
    _checkpoint_round_trip(tmp_path, engine, state, chunk)
