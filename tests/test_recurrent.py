"""Recurrent PPO (learner.memory=lstm): the update replays exactly what the policy did, carries
reset at episode boundaries, a memory task is learned, runs resume exactly, bad settings fail."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx, struct

from superlearner.run.agent import load_agent, load_train_state
from superlearner.run.checkpoint import Checkpointer
from superlearner.config import config_from_dict, validate_semantics
from superlearner.engine import initial_state, make_engine
from superlearner.core.env import Env, State
from superlearner.errors import ConfigError, UserError
from superlearner.core.evaluate import learner_act_fn, run_episodes
from superlearner.cli.levels import sample_levels
from superlearner.learners.ppo import PPOHparams
from superlearner.learners.networks import RecurrentActorCritic
from superlearner.run.trainer import resume, train

DELAY = 3


@struct.dataclass
class RecallState(State):
    cue: jax.Array


class Recall(Env):
    """Step 0 shows a cue (one of two); ``DELAY`` blank steps follow; then the query step, where
    the action that names the cue earns 1. Every query looks the same, so a memoryless policy
    earns at most 0.5 on average; one that remembers the cue earns 1."""

    id = "recall_test"
    max_episode_steps = DELAY + 2

    def __init__(self):
        self.num_actions = 2
        self.observation_shape = (3,)

    def _reset(self, key, params):
        return RecallState(**self._initial_fields(jnp.ones((2,), jnp.bool_)), cue=jax.random.bernoulli(key).astype(jnp.int32))

    def _step(self, state, action, key, params):
        query = state.step_count == DELAY + 1
        reward = jnp.where(query & (action == state.cue), 1.0, 0.0)
        return state.replace(rewards=reward[None].astype(jnp.float32), terminated=query)

    def observe(self, state, player):
        cue = jax.nn.one_hot(state.cue, 2) * (state.step_count == 0)
        return jnp.concatenate([cue, (state.step_count == DELAY + 1)[None].astype(jnp.float32)])


def _raw(env_id="recall_test", **learner):
    return {
        "name": "recurrent",
        "env": {"id": env_id},
        "learner": {
            "num_envs": 16, "num_steps": 2 * (DELAY + 2), "num_epochs": 4, "num_minibatches": 2,
            "hidden_sizes": [32], "memory": "lstm", "memory_size": 16, "anneal_lr": False, **learner,
        },
        "hparams": {"learning_rate": 3e-3, "ent_coef": 0.01, "gamma": 0.99},
        "train": {"total_env_steps": 16 * 10 * 300, "iterations_per_chunk": 50, "eval_episodes": 0},
        "log": {"tensorboard": False},
    }


def _hparams():
    return PPOHparams.from_values(learning_rate=0.0, ent_coef=0.0, vf_coef=0.5, gamma=0.99, gae_lambda=0.95,
                                  clip_eps=0.2, max_grad_norm=1e6, adam_eps=1e-8)


def test_unroll_equals_step_by_step_with_resets():
    model = RecurrentActorCritic((4,), 3, hidden_sizes=(8,), memory_size=5, rngs=nnx.Rngs(params=jax.random.key(0)))
    observations = jax.random.normal(jax.random.key(1), (6, 2, 4))
    resets = jnp.zeros((6, 2), bool).at[2, 0].set(True).at[4, 1].set(True)
    carry = jax.tree.map(lambda c: c + 0.3, model.initial_carry((2,)))  # a carry from before the sequence
    logits, values = model.unroll(carry, observations, resets)
    for t in range(6):
        carry = jax.tree.map(lambda c: jnp.where(resets[t][:, None], 0.0, c), carry)
        carry, step_logits, step_values = model(carry, observations[t])
        np.testing.assert_allclose(logits[t], step_logits, atol=1e-5)
        np.testing.assert_allclose(values[t], step_values, atol=1e-5)
    # The reset matters: env 0's outputs after step 2 differ from a run without it.
    no_reset, _ = model.unroll(jax.tree.map(lambda c: c + 0.3, model.initial_carry((2,))), observations, jnp.zeros((6, 2), bool))
    assert not np.allclose(no_reset[2:, 0], logits[2:, 0], atol=1e-4)


def _collect(config, num_iterations=1):
    """A recurrent engine's state after a few iterations, and the rollout of one more."""
    from superlearner.learners.rollout import collect_single_agent

    engine = make_engine(config, Recall())
    state = initial_state(engine, 0)
    if num_iterations:
        state, _ = jax.jit(engine.train_chunk, static_argnums=1)(state, num_iterations)
    first = lambda tree: jax.tree.map(lambda x: x[0], tree)  # noqa: E731
    member = state.replace(**{name: first(getattr(state, name)) for name in
                              ("learner", "env_state", "env_params", "episode_stats", "policy_carry")})
    _, _, rollout, carry = collect_single_agent(
        engine.env, engine.learner, member.learner.params, member.env_state, member.episode_stats,
        member.env_params, jax.random.key(5), config.learner.num_steps, carry=member.policy_carry,
    )
    return engine, member, rollout, carry


# Episodes last DELAY + 2 = 5 steps and start together, so with 10-step rollouts they line up with
# the rollout and with 5-step sequences; with 8-step rollouts they do not.
@pytest.mark.parametrize(
    "num_steps, sequence_length, an_end_inside_a_sequence, a_sequence_starting_mid_episode",
    [(10, 0, True, False), (10, 5, False, False), (8, 4, True, True)],
)
def test_update_replays_the_rollouts_log_probs_exactly(
    num_steps, sequence_length, an_end_inside_a_sequence, a_sequence_starting_mid_episode
):
    """With learning rate 0, one epoch and one minibatch, the loss sees the rollout's own policy:
    every ratio is 1. A replay that misplaced a carry or a reset would move the ratios."""
    config = config_from_dict(_raw(num_steps=num_steps, num_epochs=1, num_minibatches=1, sequence_length=sequence_length))
    engine, member, rollout, _ = _collect(config, num_iterations=20)
    update = lambda r: engine.learner.update(member.learner, r, _hparams(), jax.random.key(0))[1]  # noqa: E731
    metrics = update(rollout)
    assert float(metrics["approx_kl"]) < 1e-10 and float(metrics["clip_fraction"]) == 0.0
    # The check can fail: a replay that carries memory across episode ends sees other log-probs
    # where a sequence holds an episode end,
    ignoring_ends = float(update(rollout.replace(continue_=jnp.ones_like(rollout.continue_)))["approx_kl"])
    assert (ignoring_ends > 1e-7) == an_end_inside_a_sequence
    # and so does one from wrong stored carries where a sequence starts inside an episode.
    zeroed = float(update(rollout.replace(carry=jax.tree.map(jnp.zeros_like, rollout.carry)))["approx_kl"])
    assert (zeroed > 1e-7) == a_sequence_starting_mid_episode


def test_the_carry_restarts_where_an_episode_ends():
    config = config_from_dict(_raw())
    _, _, rollout, carry = _collect(config, num_iterations=1)
    ended = np.asarray(rollout.continue_ == 0)  # [T, N]
    cells = np.asarray(rollout.carry[0])  # [T, N, M]: the carry each step was taken with
    after_end = np.concatenate([np.zeros_like(ended[:1]), ended[:-1]], axis=0)
    assert after_end.any() and (~after_end).any()
    np.testing.assert_array_equal(cells[after_end], 0.0)
    assert np.abs(cells[~after_end & (np.arange(len(ended))[:, None] > 0)]).max() > 0
    # The carry handed to the next rollout is zero exactly for the envs whose episode just ended.
    np.testing.assert_array_equal(np.abs(np.asarray(carry[1])).sum(-1) == 0, ended[-1])


def test_recurrent_ppo_learns_what_a_memoryless_policy_cannot():
    """Recall: memoryless PPO is capped at 0.5 average return; the LSTM policy goes past 0.9."""
    results = {}
    for memory in ("lstm", "none"):
        config = config_from_dict(_raw(memory=memory))
        engine = make_engine(config, Recall())
        state = initial_state(engine, 0)
        chunk = jax.jit(engine.train_chunk, static_argnums=1)
        for _ in range(engine.num_iterations // config.train.iterations_per_chunk):
            state, _ = chunk(state, config.train.iterations_per_chunk)
        params = jax.tree.map(lambda x: x[0], state.learner.params)
        act = learner_act_fn(engine.learner, params, greedy=True)
        results[memory] = float(np.mean(run_episodes(engine.env, act, jax.random.key(1), 400)))
    assert results["lstm"] >= 0.9, results
    assert results["none"] <= 0.6, results


def test_a_recurrent_maze_run_resumes_exactly(tmp_path):
    raw = _raw("maze", num_envs=4, num_steps=16, sequence_length=8, hidden_sizes=[16])
    raw["env"]["options"] = {"height": 7, "width": 7}
    raw["train"] = {"total_env_steps": 4 * 16 * 4, "iterations_per_chunk": 1, "checkpoint_every_chunks": 1,
                    "keep_checkpoints": 10, "eval_episodes": 0}
    config = config_from_dict(raw)
    straight = train(config, tmp_path / "straight", show_progress=False)
    first = train(config, tmp_path / "resumed", show_progress=False, max_chunks=2)
    assert straight.completed and not first.completed
    assert resume(tmp_path / "resumed", show_progress=False).completed

    def final(run_dir):
        step = max(Checkpointer(run_dir, read_only=True).steps())
        return load_train_state(run_dir / "checkpoints" / str(step))[1]

    a, b = final(tmp_path / "straight"), final(tmp_path / "resumed")
    assert np.abs(np.asarray(a.policy_carry[1])).sum() > 0  # the carry is part of the saved run
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))

    # The loaded agent acts one state at a time with the memory of its episode: the same actions
    # as the batched episode policy, and a fresh memory when the next episode starts.
    agent = load_agent(tmp_path / "straight")
    env = agent.env
    level = jax.tree.map(lambda x: x[0], sample_levels(env, jax.random.key(3), 1))
    policy = agent.episode_act_fn(greedy=True)
    step = jax.jit(policy.step)
    for episode in range(2):
        state = env.reset(jax.random.key(episode), level)
        carry = policy.initial_carry(1)
        for t in range(12):
            batched, carry = step(state.observation[None], state.legal_action_mask[None], jax.random.key(t), carry)
            action = agent.act(jax.random.key(t), state)
            assert int(action) == int(batched[0])
            state = env.step(state, action, jax.random.key(100 + t), level)
    with pytest.raises(UserError, match="policy has memory"):
        agent.act_batch(state.observation[None], state.legal_action_mask[None], jax.random.key(0))


@pytest.mark.parametrize(
    "learner, extra, message",
    [
        ({"sequence_length": 3}, {}, "learner.sequence_length=3 must divide learner.num_steps=10"),
        ({"num_minibatches": 4, "num_envs": 6}, {}, "num_minibatches=4 must divide num_envs * num_steps / sequence_length = 6"),
        ({}, {"meta": {"kind": "metagrad"}}, "meta.kind=metagrad needs a feed-forward policy"),
    ],
)
def test_bad_recurrent_settings_fail_with_one_line(learner, extra, message):
    raw = _raw(**learner)
    raw.update(extra)
    with pytest.raises(ConfigError, match=message.replace("*", r"\*")):
        validate_semantics(config_from_dict(raw))


def test_recurrent_self_play_is_refused():
    with pytest.raises(ConfigError, match="recurrent policies train one-player envs; 'tic_tac_toe'"):
        make_engine(config_from_dict(_raw("tic_tac_toe")))


def test_the_four_curriculum_presets_train_one_recurrent_agent_on_one_budget():
    from superlearner.config import load_config

    configs = {name: load_config(f"maze_{name}") for name in ("dr", "plr", "accel", "sfl")}
    for config in configs.values():
        validate_semantics(config)
    base = configs["dr"]
    assert base.learner.memory == "lstm" and base.curriculum.kind == "dr"
    for name, config in configs.items():
        assert (config.learner, config.hparams, config.train.total_env_steps) == (
            base.learner, base.hparams, base.train.total_env_steps
        ), name
    assert len({config.curriculum.kind for config in configs.values()}) == 4
