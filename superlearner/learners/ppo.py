"""Proximal Policy Optimisation (Schulman et al. 2017) with masked categorical policies.

Reads top to bottom: types, factory, init, act, loss, update. The policy objective comes from an
`UpdateRule` (PPO-clip by default) with explicit meta parameters. With ``memory="lstm"`` the
policy is recurrent (`RecurrentActorCritic`): it acts through ``step`` with a carry, the rollout
stores the carry of every step, and the update replays sequences of ``sequence_length`` steps
from their stored carries (truncated backpropagation through time). Every number a meta-learner
may change is a float32 array in `PPOHparams`, passed in at each update: changing it never
recompiles. Shapes (envs, steps, minibatches, network) are static.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from superlearner.core.distributed import split_over_data
from superlearner.learners.networks import ActorCritic, RecurrentActorCritic, choose_action, masked_logits
from superlearner.learners.returns import generalized_advantage_estimation
from superlearner.schema import Hparam, hparams_type
from superlearner.learners.update_rules import UpdateRule, make_update_rule, policy_objective

# ----------------------------------------------------------------------------------------------
# Types.


PPO_HPARAMS: tuple[Hparam, ...] = (
    Hparam("learning_rate", 2.5e-4, "Adam step size", 0.0, 1.0, search=(1e-6, 1e-1, "log")),
    Hparam("ent_coef", 0.01, "entropy bonus coefficient", 0.0, 10.0, search=(1e-5, 1.0, "log")),
    Hparam("vf_coef", 0.5, "value loss coefficient", 0.0, 100.0, search=(1e-2, 10.0, "log")),
    Hparam("gamma", 0.99, "discount", 0.0, 1.0, search=(0.9, 0.9999, "logit")),
    Hparam("gae_lambda", 0.95, "GAE lambda", 0.0, 1.0, search=(0.5, 0.999, "logit")),
    Hparam("clip_eps", 0.2, "PPO clip range (also the value clip range)", 0.0, 10.0, search=(0.05, 0.5, "log")),
    Hparam("max_grad_norm", 0.5, "global gradient-norm clip", 0.0, 1e6, search=(0.05, 10.0, "log")),
    Hparam("adam_eps", 1e-5, "Adam epsilon", 0.0, 1.0),
)
"""PPO's traced hyperparameters, declared once: the `PPOHparams` fields, the config's ``hparams``
section and the meta-controllers' search space all come from this tuple."""

PPOHparams = hparams_type(
    "PPOHparams", PPO_HPARAMS,
    "Adaptable hyperparameters, float32 scalars (a leading population axis in the TrainState).",
)


@struct.dataclass
class LearnerState:
    """Network parameters, optimizer state and update-rule meta parameters of one member."""

    params: Any
    opt_state: Any
    meta_params: Any
    num_updates: jax.Array


@struct.dataclass
class Rollout:
    """A batch of experience, leading axes ``[T, N]`` (time, env).

    ``reward`` is the acting player's reward; ``v_tp1`` the value of the next state from the
    acting player's view (0 at terminal states), ``continue_`` 0 at episode ends.
    """

    observation: jax.Array
    legal_action_mask: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    v_tp1: jax.Array
    continue_: jax.Array
    # 1 where the step is a real decision of the learner; None when every step is (the losses
    # then take plain means, which is measurably cheaper on small batches).
    valid: jax.Array | None = None
    # Recurrent policies: the carry each step was taken with (leaves ``[T, N, M]``), already zero
    # where an episode starts. None for feed-forward policies.
    carry: Any = None


class PPO(NamedTuple):
    """The PPO learner's pure functions (see `make_ppo`)."""

    init: Callable[[jax.Array], LearnerState]
    policy: Callable[[Any, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]
    act: Callable[..., tuple[jax.Array, jax.Array, jax.Array]]
    value: Callable[[Any, jax.Array], jax.Array]
    update: Callable[..., tuple[LearnerState, dict]]
    graphdef: Any
    rule: UpdateRule
    # ``(params, meta_params, batch, hparams) -> (loss, metrics)`` on one flat minibatch (the
    # keys `update` builds); the online meta-gradient differentiates through it.
    loss: Callable[..., tuple[jax.Array, dict]] | None = None
    # Recurrent policies (``memory="lstm"``); for feed-forward ones ``recurrent`` is False and
    # these are None. ``initial_carry(batch) -> carry`` (zeros, leaves ``[batch, M]``);
    # ``step(params, carry, observation, legal_action_mask, key, greedy=False) -> (carry, action,
    # log_prob, value)``; ``step_value(params, carry, observation) -> value``.
    recurrent: bool = False
    initial_carry: Callable[[int], Any] | None = None
    step: Callable[..., tuple] | None = None
    step_value: Callable[..., jax.Array] | None = None
    # ``(state, rollout, loss_batch, hparams, key) -> (state, metrics)``: `update` from a loss batch
    # already computed (`loss_batch`), so a caller that needs the advantages too computes them once.
    update_batch: Callable[..., tuple[LearnerState, dict]] | None = None


# ----------------------------------------------------------------------------------------------
# Factory.


def rollout_batch(rollout, gamma: jax.Array, gae_lambda: jax.Array) -> dict:
    """The learner's loss batch of a rollout ``[T, N]`` (keys of `PPO.loss`), leading axes kept.

    GAE advantages and value targets use ``gamma`` and ``gae_lambda`` (traced, differentiable).
    """
    advantage = jax.vmap(generalized_advantage_estimation, in_axes=(1, 1, 1, None, 1, None), out_axes=1)(
        rollout.reward, rollout.value, rollout.v_tp1, jnp.full(rollout.reward.shape[:1], gamma),
        rollout.continue_, gae_lambda,
    )
    return dict(
        observation=rollout.observation,
        legal_action_mask=rollout.legal_action_mask,
        action=rollout.action,
        log_prob=rollout.log_prob,
        value=rollout.value,
        advantage=advantage,
        target=advantage + rollout.value,
    )


def make_ppo(
    observation_shape,
    num_actions: int,
    *,
    num_epochs: int = 4,
    num_minibatches: int = 4,
    network: str = "mlp",
    hidden_sizes=(64, 64),
    conv_channels=(32, 32),
    activation: str = "tanh",
    anneal_lr: bool = True,
    total_updates: int = 1,
    update_rule: str = "ppo_clip",
    update_rule_file: str = "",
    normalize_advantages: bool = True,
    clip_value_loss: bool = True,
    compute_dtype: str = "float32",
    memory: str = "none",
    memory_size: int = 128,
    sequence_length: int = 0,
) -> PPO:
    """Builds PPO for observations ``observation_shape`` and ``num_actions`` discrete actions.

    ``total_updates`` is the number of `update` calls of the whole run (for annealing).
    ``update_rule_file`` holds a learned rule's meta parameters (`superlearner.learners.update_rules`).
    ``compute_dtype`` is the network's matmul dtype ("bfloat16" on accelerators); parameters,
    optimizer state, logits, values and losses are float32 either way.
    ``memory``: "none" (a feed-forward policy) or "lstm" (an LSTM of ``memory_size`` units after
    the torso). ``sequence_length``: recurrent policies, the length of the sequences the update
    replays (it must divide the rollout length; 0: the whole rollout).
    """
    if memory not in ("none", "lstm"):
        raise ValueError(f"memory={memory!r}: accepted none, lstm")
    recurrent = memory == "lstm"
    rule = make_update_rule(update_rule, update_rule_file or None)

    def build_model(key):
        options = dict(
            kind=network, hidden_sizes=hidden_sizes, conv_channels=conv_channels, activation=activation,
            dtype=jnp.dtype(compute_dtype), rngs=nnx.Rngs(params=key),
        )
        if recurrent:
            return RecurrentActorCritic(observation_shape, num_actions, memory_size=memory_size, **options)
        return ActorCritic(observation_shape, num_actions, **options)

    graphdef, abstract_params = nnx.split(nnx.eval_shape(lambda: build_model(jax.random.key(0))))
    del abstract_params

    def optimizer(hparams: PPOHparams, learning_rate) -> optax.GradientTransformation:
        # Built inside the trace from traced values: the optimizer state's structure does not
        # depend on them, so new values never recompile.
        # Gradient clipping is done by hand in `update`, where the norm is needed for the metrics
        # anyway: computing it once saves a pass over every gradient.
        return optax.chain(
            optax.scale_by_adam(eps=hparams.adam_eps),
            optax.scale_by_learning_rate(learning_rate),
        )

    # --- init ---------------------------------------------------------------------------------

    def init(key: jax.Array) -> LearnerState:
        _, params = nnx.split(build_model(key))
        dummy = PPOHparams.from_values(**{f: 1.0 for f in PPOHparams.__dataclass_fields__})
        opt_state = optimizer(dummy, 1.0).init(params)
        return LearnerState(
            params=params, opt_state=opt_state, meta_params=rule.init_meta_params(),
            num_updates=jnp.int32(0),
        )

    # --- acting -------------------------------------------------------------------------------

    def policy(params, observation, legal_action_mask):
        """Masked logits ``[..., A]`` and values ``[...]``."""
        logits, value = nnx.merge(graphdef, params)(observation)
        return masked_logits(logits, legal_action_mask), value

    def act(params, observation, legal_action_mask, key, greedy: bool = False):
        """Samples (or takes the argmax of) the masked policy. Returns action, log_prob, value."""
        logits, value = policy(params, observation, legal_action_mask)
        action, log_prob = choose_action(logits, key, greedy)
        return action, log_prob, value

    def value(params, observation):
        return nnx.merge(graphdef, params).value(observation)

    def initial_carry(batch: int):
        zeros = jnp.zeros((batch, memory_size), jnp.float32)
        return zeros, zeros

    def step(params, carry, observation, legal_action_mask, key, greedy: bool = False):
        """One recurrent step: the new carry, then action, log_prob and value as in `act`."""
        carry, logits, value = nnx.merge(graphdef, params)(carry, observation)
        logits = masked_logits(logits, legal_action_mask)
        action, log_prob = choose_action(logits, key, greedy)
        return carry, action, log_prob, value

    def step_value(params, carry, observation):
        return nnx.merge(graphdef, params)(carry, observation)[2]

    def memoryless(*_, **__):
        raise TypeError(
            "this PPO policy is recurrent (memory=lstm): act through step(params, carry, ...) with a carry "
            "from initial_carry(batch)"
        )

    def evaluate(params, batch: dict) -> tuple[jax.Array, jax.Array]:
        """Masked logits and values of a loss batch: flat ``[B]``, or recurrent sequences
        ``[L, B]`` replayed from ``batch["carry"]`` with ``batch["reset"]``."""
        if not recurrent:
            return policy(params, batch["observation"], batch["legal_action_mask"])
        logits, values = nnx.merge(graphdef, params).unroll(batch["carry"], batch["observation"], batch["reset"])
        return masked_logits(logits, batch["legal_action_mask"]), values

    # --- loss and update ----------------------------------------------------------------------

    loss_fn = _make_loss(evaluate, rule, normalize_advantages, clip_value_loss)
    update_batch = _make_update(
        loss_fn, optimizer, num_epochs, num_minibatches, anneal_lr, total_updates, recurrent, sequence_length
    )

    def update(state: LearnerState, rollout: Rollout, hparams: PPOHparams, key: jax.Array):
        """One PPO update on a rollout ``[T, N]``: GAE, then epochs of shuffled minibatches.

        Returns the new state and a dict of float32 scalar metrics.
        """
        return update_batch(state, rollout, loss_batch(rollout, hparams), hparams, key)

    recurrent_fns = {}
    if recurrent:
        recurrent_fns = dict(recurrent=True, initial_carry=initial_carry, step=step, step_value=step_value)
        policy = act = value = memoryless  # noqa: F811 -- a recurrent policy has no memoryless form
    return PPO(
        init=init, policy=policy, act=act, value=value, update=update, graphdef=graphdef, rule=rule, loss=loss_fn,
        update_batch=update_batch, **recurrent_fns,
    )



# ----------------------------------------------------------------------------------------------
# Loss and update.


def loss_batch(rollout: Rollout, hparams: PPOHparams) -> dict:
    """The loss batch ``[T, N]`` of a rollout: `rollout_batch` plus the ``valid`` weights of a
    self-play rollout (steps that are no learner decision weigh 0)."""
    batch = rollout_batch(rollout, hparams.gamma, hparams.gae_lambda)
    if rollout.valid is not None:
        batch["valid"] = rollout.valid.astype(jnp.float32)
    return batch


def _make_loss(evaluate: Callable, rule: UpdateRule, normalize_advantages: bool, clip_value_loss: bool) -> Callable:
    """PPO's loss ``(params, meta_params, batch, hparams) -> (loss, metrics)`` on one minibatch,
    with the policy objective of ``rule`` (Schulman et al. 2017, eq. 7 for PPO-clip)."""

    def loss_fn(params, meta_params, batch: dict, hparams: PPOHparams):
        logits, values = evaluate(params, batch)
        log_probs = jax.nn.log_softmax(logits)
        log_prob = jnp.take_along_axis(log_probs, batch["action"][..., None], axis=-1)[..., 0]
        weight = batch.get("valid")
        if weight is None:
            mean = jnp.mean
        else:
            count = jnp.maximum(weight.sum(), 1.0)

            def mean(x):
                return (x * weight).sum() / count

        advantage = batch["advantage"]
        if normalize_advantages:
            adv_mean = mean(advantage)
            adv_std = jnp.sqrt(mean((advantage - adv_mean) ** 2))
            advantage = (advantage - adv_mean) / (adv_std + 1e-8)
        ratio = jnp.exp(log_prob - batch["log_prob"])
        policy_loss = -mean(policy_objective(rule, meta_params, ratio, advantage, hparams.clip_eps))

        target = batch["target"]
        value_error = (values - target) ** 2
        if clip_value_loss:
            clipped = batch["value"] + jnp.clip(values - batch["value"], -hparams.clip_eps, hparams.clip_eps)
            value_error = jnp.maximum(value_error, (clipped - target) ** 2)
        value_loss = 0.5 * mean(value_error)

        probs = jnp.exp(log_probs)
        entropy = mean(-(probs * log_probs).sum(-1))
        total = policy_loss + hparams.vf_coef * value_loss - hparams.ent_coef * entropy
        metrics = dict(
            loss_total=total,
            loss_policy=policy_loss,
            loss_value=value_loss,
            entropy=entropy,
            approx_kl=mean((ratio - 1.0) - jnp.log(ratio)),
            clip_fraction=mean((jnp.abs(ratio - 1.0) > hparams.clip_eps).astype(jnp.float32)),
        )
        return total, metrics

    return loss_fn


def _make_update(
    loss_fn: Callable, optimizer: Callable, num_epochs: int, num_minibatches: int, anneal_lr: bool,
    total_updates: int, recurrent: bool, sequence_length: int,
) -> Callable:
    """``update_batch(state, rollout, batch, hparams, key) -> (state, metrics)``: epochs of
    shuffled minibatches of a loss batch ``[T, N]`` (`loss_batch` of ``rollout``)."""

    def update_batch(state: LearnerState, rollout: Rollout, batch: dict, hparams: PPOHparams, key: jax.Array):
        if recurrent:
            batch, starts = to_sequences(batch, rollout, sequence_length)
        else:
            batch = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), batch)
            starts = {}
        # Recurrent: the shuffled unit is a sequence (axis 1 of the time-major leaves; the start
        # carries in ``starts`` have it first).
        batch_axis = 1 if recurrent else 0
        batch_size = batch["action"].shape[batch_axis]
        minibatch_size = batch_size // num_minibatches

        if anneal_lr:
            progress = state.num_updates.astype(jnp.float32) / total_updates
            learning_rate = hparams.learning_rate * jnp.maximum(1.0 - progress, 0.0)
        else:
            learning_rate = hparams.learning_rate
        tx = optimizer(hparams, learning_rate)

        def minibatch_step(carry, minibatch):
            params, opt_state = carry
            grads, metrics = jax.grad(loss_fn, has_aux=True)(params, state.meta_params, minibatch, hparams)
            grad_norm = jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads)))
            scale = jnp.minimum(1.0, hparams.max_grad_norm / jnp.maximum(grad_norm, 1e-12))
            grads = jax.tree.map(lambda g: g * scale, grads)
            metrics["grad_norm"] = grad_norm
            updates, opt_state = tx.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            return (params, opt_state), metrics

        def split(x, axis):
            """``x`` permuted along ``axis`` (done before) and cut into minibatches, first axis."""
            x = x.reshape(x.shape[:axis] + (num_minibatches, minibatch_size) + x.shape[axis + 1:])
            # On a device mesh each data device computes its share of every minibatch; the
            # gradient mean becomes an all-reduce (identity on one device).
            return split_over_data(jnp.moveaxis(x, axis, 0), axis + 1)

        def epoch_step(carry, epoch_key):
            order = jax.random.permutation(epoch_key, batch_size)
            permute = (lambda x: x[:, order]) if recurrent else (lambda x: x[order])  # noqa: E731
            shuffled = jax.tree.map(lambda x: split(permute(x), batch_axis), batch)
            if recurrent:
                shuffled["carry"] = jax.tree.map(lambda x: split(x[order], 0), starts)
            return jax.lax.scan(minibatch_step, carry, shuffled)

        (params, opt_state), metrics = jax.lax.scan(
            epoch_step, (state.params, state.opt_state), jax.random.split(key, num_epochs)
        )
        metrics = jax.tree.map(jnp.mean, metrics)
        metrics["learning_rate"] = learning_rate
        new_state = state.replace(params=params, opt_state=opt_state, num_updates=state.num_updates + 1)
        return new_state, metrics

    return update_batch


def to_sequences(batch: dict, rollout: Rollout, sequence_length: int) -> tuple[dict, Any]:
    """A loss batch ``[T, N]`` as time-major sequences ``[L, (T / L) * N]``, with the carry at
    each sequence's first step (leaves ``[(T / L) * N, M]``) and ``reset`` flags: the carry is
    zeroed before step t where the step before ended an episode. A sequence's first step uses
    its stored carry, which is already zero there if an episode starts."""
    num_steps = batch["action"].shape[0]
    length = sequence_length or num_steps
    ended = rollout.continue_ == 0
    batch["reset"] = jnp.concatenate([jnp.zeros_like(ended[:1]), ended[:-1]], axis=0)

    def cut(x):  # [T, N, ...] -> [L, (T / L) * N, ...], sequence k * N + n = env n, steps kL..
        x = x.reshape((num_steps // length, length) + x.shape[1:]).swapaxes(0, 1)
        return x.reshape((length, -1) + x.shape[3:])

    sequences = jax.tree.map(cut, batch)
    sequences["reset"] = sequences["reset"].at[0].set(False)
    starts = jax.tree.map(lambda x: x[::length].reshape((-1,) + x.shape[2:]), rollout.carry)
    return sequences, starts
