"""PPO (`superlearner.learners.ppo`) behind the learner interface (`superlearner.learners.base`).

One-player envs: N envs stepped T times by the policy (feed-forward or recurrent), levels given by
the curriculum or a teacher's draws. Two-player zero-sum games: N games against opponents drawn
from the member's league, one step per learner decision (`superlearner.learners.ppo_selfplay`). The batch is
the rollout with its loss batch (GAE advantages and value targets) computed once: the update
trains on it and the curriculum scores levels from its advantages (`Outcome.value_error`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

from superlearner.core.env import Env
from superlearner.errors import ConfigError
from superlearner.learners.base import CollectContext, Learner, LearnerDef, MemberState, MetaGradient, Outcome
from superlearner.learners.ppo import PPO_HPARAMS, PPOHparams, Rollout, loss_batch, make_ppo
from superlearner.schema import hparam_fields
from superlearner.core.wrappers import EpisodeStats


@struct.dataclass
class PPOBatch:
    """What PPO's update trains on: the rollout ``[T, N]`` and its loss batch (`loss_batch`)."""

    rollout: Rollout
    loss: dict


def make_ppo_learner(config, env: Env) -> Learner:
    """PPO for ``env`` with the config's ``learner`` settings (see `LearnerConfig`)."""
    lc = config.learner
    ppo = make_ppo(
        env.observation_shape, env.num_actions, num_epochs=lc.num_epochs, num_minibatches=lc.num_minibatches,
        network=lc.network, hidden_sizes=lc.hidden_sizes, conv_channels=lc.conv_channels, activation=lc.activation,
        anneal_lr=lc.anneal_lr, total_updates=config.iterations, update_rule=lc.update_rule,
        update_rule_file=lc.update_rule_file, normalize_advantages=lc.normalize_advantages,
        clip_value_loss=lc.clip_value_loss, compute_dtype=lc.compute_dtype, memory=lc.memory,
        memory_size=lc.memory_size, sequence_length=lc.sequence_length,
    )
    self_play = env.num_players == 2 and env.zero_sum
    num_envs, num_steps = lc.num_envs, lc.num_steps
    lg = config.league

    def update(learner_state, batch: PPOBatch | Rollout, hparams: PPOHparams, key):
        if isinstance(batch, Rollout):  # a bare rollout, e.g. from `collect_single_agent`: its loss batch first
            batch = PPOBatch(batch, loss_batch(batch, hparams))
        return ppo.update_batch(learner_state, batch.rollout, batch.loss, hparams, key)

    def outcome(rollout: Rollout, loss: dict, episode_return) -> Outcome:
        done = rollout.continue_ == 0
        return Outcome(reward=rollout.reward, done=done, value=rollout.value, value_error=loss["advantage"],
                       episode_return=jnp.where(done, episode_return, 0.0))

    if self_play:
        from superlearner.learners.ppo_selfplay import collect_self_play, new_matches, to_learner_decision, zero_stats

        def start(member: MemberState, key) -> MemberState:
            match_key, reply_key = jax.random.split(key)
            matches = new_matches(env, member.league, match_key, num_envs, member.env_params, lg.opening_moves,
                                  lg.opponent_groups)
            matches = to_learner_decision(env, member.league, matches, reply_key, ppo, member.learner.params,
                                          lg.opponent_groups, lg.opponent_temperature)
            return member.replace(env_state=matches, episode_stats=zero_stats())

        def collect(member: MemberState, key, context: CollectContext):
            matches, league, rollout, stats, episode_return = collect_self_play(
                env, ppo, member.learner.params, member.league, member.env_state, member.env_params, key, num_steps,
                lg.opening_moves, lg.opponent_groups, lg.opponent_temperature, with_returns=True,
            )
            loss = loss_batch(rollout, member.hparams)
            member = member.replace(env_state=matches, league=league, episode_stats=stats)
            return member, PPOBatch(rollout, loss), outcome(rollout, loss, episode_return)

        def summarize(member: MemberState, _outcome: Outcome) -> dict:
            stats = member.episode_stats
            return dict(episode_return=2.0 * stats.score - 1.0, score=stats.score, score_vs_self=stats.score_vs_self,
                        score_vs_league=stats.score_vs_league, games=stats.games, episode_length=stats.length)
    else:
        from superlearner.learners.rollout import collect_single_agent

        def start(member: MemberState, key) -> MemberState:
            env_state = jax.vmap(env.reset)(jax.random.split(key, num_envs), member.env_params)
            stats = jax.tree.map(lambda x: jnp.broadcast_to(x, (num_envs,) + x.shape), EpisodeStats.zeros(env.num_players))
            carry = ppo.initial_carry(num_envs) if ppo.recurrent else {}
            return member.replace(env_state=env_state, episode_stats=stats, policy_carry=carry)

        def collect(member: MemberState, key, context: CollectContext):
            recurrent = dict(carry=member.policy_carry) if ppo.recurrent else {}
            env_state, stats, rollout, env_params, finished, *carry = collect_single_agent(
                env, ppo, member.learner.params, member.env_state, member.episode_stats, member.env_params, key,
                num_steps, lc.bootstrap_truncation, reset_params=context.reset_params, with_finished=True, **recurrent,
            )
            loss = loss_batch(rollout, member.hparams)
            member = member.replace(env_state=env_state, episode_stats=stats, env_params=env_params,
                                    policy_carry=carry[0] if ppo.recurrent else {})
            return member, PPOBatch(rollout, loss), outcome(rollout, loss, finished["episode_return"])

        def summarize(member: MemberState, _outcome: Outcome) -> dict:
            stats = member.episode_stats
            finished = stats.num_episodes > 0
            num_finished = jnp.maximum(finished.sum(), 1)
            return dict(
                episode_return=jnp.where(finished, stats.last_return[:, 0], 0.0).sum() / num_finished,
                episode_length=jnp.where(finished, stats.last_length, 0).sum() / num_finished,
                episodes=stats.num_episodes.sum().astype(jnp.float32),
            )

    metagrad = None
    if not ppo.recurrent:
        metagrad = MetaGradient(loss=ppo.loss, policy=ppo.policy, rollout=lambda batch: batch.rollout)
    return Learner(
        kind="ppo", init=ppo.init, start=start, collect=collect, update=update, summarize=summarize,
        policy=ppo.policy, act=ppo.act, value=ppo.value, metagrad=metagrad, recurrent=ppo.recurrent,
        initial_carry=ppo.initial_carry, step=ppo.step, step_value=ppo.step_value, algorithm=ppo,
    )


def validate_ppo(config, env: Env | None, source: str) -> None:
    """PPO's cross-field rules; a one-line `ConfigError` for a config it cannot train."""
    lc = config.learner
    batch = lc.num_envs * lc.num_steps
    if batch % lc.num_minibatches:
        raise ConfigError(f"{source}: learner.num_minibatches={lc.num_minibatches} must divide num_envs * num_steps = {batch}")
    if lc.memory != "none":
        length = lc.sequence_length or lc.num_steps
        if lc.num_steps % length:
            raise ConfigError(
                f"{source}: learner.sequence_length={lc.sequence_length} must divide learner.num_steps={lc.num_steps} "
                "(0: the whole rollout)"
            )
        sequences = lc.num_envs * (lc.num_steps // length)
        if sequences % lc.num_minibatches:
            raise ConfigError(
                f"{source}: with learner.memory={lc.memory} a minibatch holds whole sequences: learner.num_minibatches="
                f"{lc.num_minibatches} must divide num_envs * num_steps / sequence_length = {sequences}"
            )
        if config.meta.kind == "metagrad":
            raise ConfigError(f"{source}: meta.kind=metagrad needs a feed-forward policy; learner.memory={lc.memory} is recurrent (use none)")
        if env is not None and env.num_players != 1:
            raise ConfigError(
                f"{source}: learner.memory={lc.memory}: recurrent policies train one-player envs; {env.id!r} is a "
                f"{env.num_players}-player game (use memory=none)"
            )
    if config.league.opponent_simulations:
        raise ConfigError(
            f"{source}: league.opponent_simulations={config.league.opponent_simulations}: ppo's league opponents play "
            "their raw policy (accepted: 0; a learner with a search of its own, such as alphazero, accepts more)"
        )
    if lc.update_rule_file:
        from superlearner.learners.update_rules import make_update_rule

        make_update_rule(lc.update_rule, lc.update_rule_file)  # one-line errors


HparamsConfig = dataclasses.make_dataclass(
    "HparamsConfig", hparam_fields(PPO_HPARAMS), frozen=True,
    namespace={"__doc__": "PPO's hyperparameters' starting values (traced, never recompile). Each value is one "
                          "number for every population member, or a list with one per member.",
               "__module__": __name__},
)

PPO_LEARNER = LearnerDef(
    kind="ppo", hparams=PPO_HPARAMS, hparams_type=PPOHparams, section="hparams", section_type=HparamsConfig,
    make=make_ppo_learner, validate=validate_ppo, self_play_league=True, update_rules=True,
    description="Proximal Policy Optimisation: feed-forward or LSTM policies, single-agent and self-play",
)
