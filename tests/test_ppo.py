"""PPO: the loss on a hand-computed case, masking, update rules, and no recompilation."""

import jax
import jax.numpy as jnp
import numpy as np

from superlearner.config import config_from_dict
from superlearner.engine import make_engine
from superlearner.learners.ppo import PPOHparams, Rollout, make_ppo
from superlearner.learners.update_rules import dpo, policy_objective, ppo_clip


def test_ppo_clip_objective_matches_the_clipped_surrogate():
    ratio = jnp.array([0.5, 0.9, 1.0, 1.1, 1.5, 0.5, 1.5])
    advantage = jnp.array([1.0, 1.0, 2.0, -1.0, 1.0, -2.0, -1.0])
    eps = 0.2
    expected = jnp.minimum(ratio * advantage, jnp.clip(ratio, 1 - eps, 1 + eps) * advantage)
    got = policy_objective(ppo_clip(), {}, ratio, advantage, jnp.float32(eps))
    np.testing.assert_allclose(got, expected, atol=1e-6)
    # By hand: r=1.5, A=1 is clipped to 1.2; r=0.5, A=-2 is clipped to 0.8 * -2.
    assert np.isclose(got[4], 1.2) and np.isclose(got[5], -1.6)


def test_dpo_drift_is_non_negative_and_zero_at_ratio_one():
    rule = dpo()
    meta = rule.init_meta_params()
    ratio = jnp.exp(jnp.linspace(-2, 2, 41))[:, None] * jnp.ones((1, 9))
    advantage = jnp.linspace(-3, 3, 9)[None, :] * jnp.ones((41, 1))
    drift = rule.drift(meta, ratio.ravel(), advantage.ravel(), jnp.float32(0.2))
    assert jnp.all(drift >= 0)
    at_one = rule.drift(meta, jnp.ones(9), jnp.linspace(-3, 3, 9), jnp.float32(0.2))
    np.testing.assert_allclose(at_one, 0.0, atol=1e-7)
    # The drift is differentiable in its meta parameters (update rules as data).
    grad = jax.grad(lambda m: rule.drift(m, ratio.ravel(), advantage.ravel(), 0.2).sum())(meta)
    assert np.isfinite(float(grad["alpha"])) and float(jnp.abs(grad["alpha"])) > 0


def _hparams(**overrides):
    values = dict(learning_rate=1e-3, ent_coef=0.0, vf_coef=0.5, gamma=0.9, gae_lambda=1.0,
                  clip_eps=0.2, max_grad_norm=1e6, adam_eps=1e-8)
    values.update(overrides)
    return PPOHparams.from_values(**values)


def test_masked_actions_are_never_sampled():
    ppo = make_ppo((3,), 5, hidden_sizes=(8,))
    state = ppo.init(jax.random.key(0))
    mask = jnp.array([[True, False, True, False, False], [False, False, False, True, False]] * 500)
    obs = jax.random.normal(jax.random.key(1), (1000, 3)) * 10
    actions, log_probs, _ = jax.jit(ppo.act)(state.params, obs, mask, jax.random.key(2))
    assert np.all(np.take_along_axis(np.asarray(mask), np.asarray(actions)[:, None], 1))
    assert np.all(np.isfinite(log_probs))
    # The greedy action is legal too, and the only legal action has probability one.
    greedy, log_probs, _ = ppo.act(state.params, obs, mask, jax.random.key(3), greedy=True)
    assert np.all(np.take_along_axis(np.asarray(mask), np.asarray(greedy)[:, None], 1))
    np.testing.assert_allclose(log_probs[1::2], 0.0, atol=1e-6)


def test_ppo_loss_on_a_hand_computed_case():
    """One sample, an untrained policy (uniform over two legal actions, value 0 at zero input).

    With zero observations the MLP outputs its biases (zero at init): logits 0 and value 0.
    At the first minibatch step ratio = 1, so the policy loss is -A (advantage not normalised),
    the value loss 0.5 * target^2, the entropy log 2.
    """
    ppo = make_ppo((2,), 2, hidden_sizes=(4,), num_epochs=1, num_minibatches=1,
                   normalize_advantages=False, clip_value_loss=False, anneal_lr=False)
    state = ppo.init(jax.random.key(0))
    log_half = float(np.log(0.5))
    rollout = Rollout(
        observation=jnp.zeros((1, 1, 2)),
        legal_action_mask=jnp.ones((1, 1, 2), bool),
        action=jnp.zeros((1, 1), jnp.int32),
        log_prob=jnp.full((1, 1), log_half),
        value=jnp.zeros((1, 1)),
        reward=jnp.full((1, 1), 2.0),
        v_tp1=jnp.zeros((1, 1)),
        continue_=jnp.zeros((1, 1)),
        valid=jnp.ones((1, 1)),
    )
    _, metrics = ppo.update(state, rollout, _hparams(ent_coef=0.1), jax.random.key(1))
    # Advantage = r + gamma * 0 - 0 = 2; target = 2.
    assert np.isclose(metrics["loss_policy"], -2.0, atol=1e-5)
    assert np.isclose(metrics["loss_value"], 0.5 * 4.0, atol=1e-5)
    assert np.isclose(metrics["entropy"], np.log(2.0), atol=1e-5)
    assert np.isclose(metrics["loss_total"], -2.0 + 0.5 * 2.0 - 0.1 * np.log(2.0), atol=1e-5)
    assert np.isclose(metrics["approx_kl"], 0.0, atol=1e-7)


TINY = {
    "env": {"id": "cartpole"},
    "learner": {"num_envs": 4, "num_steps": 16, "num_minibatches": 2, "num_epochs": 1, "hidden_sizes": [16]},
    "train": {"total_env_steps": 4 * 16 * 6, "population_size": 2},
}


def test_changing_hyperparameters_never_recompiles():
    engine = make_engine(config_from_dict(TINY))
    chunk = jax.jit(engine.train_chunk, static_argnums=1)
    state = engine.init(0)
    state, _ = chunk(state, 2)
    assert chunk._cache_size() == 1
    for lr, gamma, clip in [(1e-2, 0.5, 0.1), (3e-5, 0.999, 0.3)]:
        hparams = state.hparams.replace(
            learning_rate=jnp.array([lr, lr / 2], jnp.float32),
            gamma=jnp.array([gamma, 0.9], jnp.float32),
            clip_eps=jnp.array([clip, 0.2], jnp.float32),
        )
        state, metrics = chunk(state.replace(hparams=hparams), 2)
        assert chunk._cache_size() == 1
    # The learning rate the update used is the one in the state (annealed from it).
    progress = (int(state.iteration) - 1) / engine.num_iterations
    np.testing.assert_allclose(
        metrics["learning_rate"][-1], np.array([3e-5, 1.5e-5]) * (1 - progress), rtol=1e-5
    )


def test_population_members_with_different_hparams_differ_and_match_solo_runs():
    """A population of 2 is one vmapped program; member 1 equals the same member trained alone
    in distribution (its hyperparameters act only on its own parameters)."""
    engine = make_engine(config_from_dict(TINY))
    state = engine.init(0)
    hparams = state.hparams.replace(learning_rate=jnp.array([0.0, 1e-2], jnp.float32))
    state, _ = jax.jit(engine.train_chunk, static_argnums=1)(state.replace(hparams=hparams), 3)
    start = engine.init(0)
    frozen = jax.tree.map(lambda a, b: np.array_equal(a[0], b[0]), state.learner.params, start.learner.params)
    moved = jax.tree.map(lambda a, b: np.array_equal(a[1], b[1]), state.learner.params, start.learner.params)
    assert all(jax.tree.leaves(frozen)), "a zero learning rate must leave member 0 unchanged"
    assert not any(jax.tree.leaves(moved)), "member 1 must have learned"


def test_bfloat16_compute_keeps_parameters_optimizer_state_and_losses_float32():
    """learner.compute_dtype=bfloat16 runs the matmuls in bfloat16 only: parameters, optimizer
    moments, logits, values and losses stay float32, and the update stays close to float32's."""
    results = {}
    for dtype in ("float32", "bfloat16"):
        raw = dict(TINY, learner=dict(TINY["learner"], compute_dtype=dtype))
        engine = make_engine(config_from_dict(raw))
        state, metrics = jax.jit(engine.train_chunk, static_argnums=1)(engine.init(0), 2)
        floats = [x.dtype for x in jax.tree.leaves((state.learner.params, state.learner.opt_state)) if jnp.issubdtype(x.dtype, jnp.floating)]
        assert floats and all(d == jnp.float32 for d in floats), dtype
        assert metrics["loss_total"].dtype == jnp.float32
        results[dtype] = state.learner.params
    # Same start, slightly different arithmetic: parameters stay within bfloat16 rounding.
    for a, b in zip(jax.tree.leaves(results["float32"]), jax.tree.leaves(results["bfloat16"])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-2)
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(results["float32"]), jax.tree.leaves(results["bfloat16"])))
