"""Online meta-gradients: hyperparameters adapted by differentiating through one inner update.

Each member's adapted hyperparameters ``eta`` (some of discount, GAE lambda, entropy and value
coefficients, learning rate; any `HparamSpec`) are held in their specs' unconstrained form ``u``.
At each meta step, on the experience ``tau`` the member just collected with parameters
``theta``:

1. the envs of ``tau`` are split into an inner part and a held-out part;
2. one inner PPO step is taken on the inner part with the hyperparameters ``eta(u)``
   (advantages and value targets from ``gamma`` and ``lambda``, the loss weighted by the
   coefficients, the step scaled by the learning rate): ``theta'(u)``;
3. the outer objective ``J'`` is evaluated at ``theta'(u)`` on the held-out part with fixed outer
   hyperparameters: the policy surrogate ``pi_theta' / pi_theta * A'`` and the main critic's
   error against ``A' + V'``, where ``A'`` and ``V'`` come from a separately learned critic
   trained with the fixed outer discount, so the objective does not move with the inner
   discount the meta-learner changes (Zahavy et al. 2020);
4. ``u`` takes an Adam step along ``-dJ'/du`` (the meta-gradient, through ``theta'(u)``), is
   clipped to the unconstrained box of the bounds, and the member's hparams are set to
   ``eta(u)``: the values the next learner update uses.

The inner step is the learner's Adam step without its first moment (momentum carries past
gradients, which do not depend on ``eta``) and with its second-moment estimate as the learner's
optimizer holds it: ``theta' = theta - lr * clip(g) / (sqrt(nu_hat) + eps)`` (plain gradient
descent before the learner's first update, when there is no estimate yet). So ``theta'(u)`` is
one smooth function of ``u`` and the meta-gradient is its exact derivative.

Like the other controllers (`superlearner.meta.controllers`) this is an ``(init, update)`` pair;
``update(ctrl_state, population, progress, key)`` takes as ``progress`` a `MetaGradBatch`: the
experience each member collected and the learner state that collected it.

References: Xu, van Hasselt & Silver 2018, "Meta-Gradient Reinforcement Learning";
Zahavy et al. 2020, "A Self-Tuning Actor-Critic Algorithm" (STAC).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from superlearner.errors import UserError
from superlearner.meta.controllers import (
    HparamSpec,
    MetaController,
    PopulationState,
    _check_float,
    _check_int,
    _check_specs,
    clip_to_bounds,
    from_unconstrained,
    to_unconstrained,
)
from superlearner.learners.ppo import rollout_batch
from superlearner.learners.networks import Torso, orthogonal
from superlearner.learners.returns import generalized_advantage_estimation

ADAM_B2 = 0.999  # the learner's Adam (optax.scale_by_adam's default)

# ----------------------------------------------------------------------------------------------
# Types.


@struct.dataclass
class MetaGradBatch:
    """What the meta-gradient controller reads per member (its ``progress``).

    Attributes:
      learner: the learner state (leading axis P) that collected ``rollout``: parameters and
        optimizer state before the update that consumed it.
      rollout: `superlearner.learners.ppo.Rollout`, leading axes ``[P, T, N]``.
    """

    learner: Any
    rollout: Any


@struct.dataclass
class MetaGradState:
    """The meta-gradient controller's state (every leaf has a leading axis P but ``num_calls``).

    Attributes:
      unconstrained: float32[P, S], the adapted hparams in unconstrained form; the member's
        hparams are ``from_unconstrained`` of it after every step.
      meta_opt_state: Adam moments of the meta step over ``unconstrained``.
      meta_learning_rate: float32[P], the meta step size (traced: changing it never recompiles).
      critic_params: the outer critic's network parameters.
      critic_opt_state: the outer critic's Adam state.
      num_calls: int32[], update calls so far.
    """

    unconstrained: jax.Array
    meta_opt_state: Any
    meta_learning_rate: jax.Array
    critic_params: Any
    critic_opt_state: Any
    num_calls: jax.Array


@struct.dataclass
class MetaGradEvents:
    """What one meta-gradient update did.

    Attributes:
      due: bool[], a meta step ran at this call.
      meta_grad: float32[P, S], ``dJ'/du`` of the step (0 when not due).
      outer_loss: float32[P], ``J'`` at the inner-updated parameters (NaN when not due).
      critic_loss: float32[P], the outer critic's mean squared error before its step.
    """

    due: jax.Array
    meta_grad: jax.Array
    outer_loss: jax.Array
    critic_loss: jax.Array


class OuterCritic(nnx.Module):
    """The separately learned critic of the outer objective: an MLP value ``[...]``."""

    def __init__(self, observation_shape, hidden_sizes: Sequence[int], *, rngs: nnx.Rngs):
        self.torso = Torso(observation_shape, kind="mlp", hidden_sizes=hidden_sizes, conv_channels=(),
                           activation="tanh", rngs=rngs)
        self.head = nnx.Linear(self.torso.output_size, 1, kernel_init=orthogonal(1.0), rngs=rngs)

    def __call__(self, observation: jax.Array) -> jax.Array:
        return self.head(self.torso(observation))[..., 0]


# ----------------------------------------------------------------------------------------------
# Pieces on one member (batch them with vmap at the call site).


def flatten(batch: dict) -> dict:
    """``[T, N, ...] -> [T * N, ...]`` on every entry."""
    return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), batch)


def outer_targets(rollout, critic_value: jax.Array, gamma: jax.Array, gae_lambda: jax.Array):
    """Advantages and value targets ``[T, N]`` of the outer critic's values ``critic_value[T, N]``.

    The value of the state after step t is the critic's own value of ``observation[t + 1]`` where
    the episode goes on; at an episode end and after the last step (whose next observation the
    rollout does not keep) it is the rollout's ``v_tp1`` (0 at a terminal state).
    """
    num_steps = critic_value.shape[0]
    inside = (jnp.arange(num_steps) < num_steps - 1)[:, None] & (rollout.continue_ > 0)
    shifted = jnp.concatenate([critic_value[1:], critic_value[-1:]], axis=0)
    v_tp1 = jnp.where(inside, shifted, rollout.v_tp1)
    advantage = jax.vmap(generalized_advantage_estimation, in_axes=(1, 1, 1, None, 1, None), out_axes=1)(
        rollout.reward, critic_value, v_tp1, jnp.full((num_steps,), gamma), rollout.continue_, gae_lambda
    )
    return advantage, advantage + critic_value


def _adam_nu(opt_state):
    for part in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState)):
        if isinstance(part, optax.ScaleByAdamState):
            return part.count, part.nu
    raise UserError("the meta-gradient's inner step needs the learner's Adam state (optax.scale_by_adam)")


def inner_step(loss_fn, params, opt_state, meta_params, batch: dict, hparams):
    """``theta'``: one step of the learner's Adam without momentum, its second moment as held
    (and without the learner's learning-rate annealing: the step uses ``hparams.learning_rate``).

    Args:
      loss_fn: `PPO.loss`, ``(params, meta_params, batch, hparams) -> (loss, metrics)``.
      params, opt_state, meta_params: one member's learner state parts.
      batch: a flat loss batch ``[B]``.
      hparams: `PPOHparams` of scalars (traced; the step is differentiable in them).
    """
    grads = jax.grad(lambda p: loss_fn(p, meta_params, batch, hparams)[0])(params)
    norm = jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads)))
    scale = jnp.minimum(1.0, hparams.max_grad_norm / jnp.maximum(norm, 1e-12))
    grads = jax.tree.map(lambda g: g * scale, grads)
    count, nu = _adam_nu(opt_state)
    correction = 1.0 - ADAM_B2 ** jnp.maximum(count, 1).astype(jnp.float32)

    def step(p, g, v):
        preconditioner = jnp.where(count > 0, jnp.sqrt(v / correction) + hparams.adam_eps, 1.0)
        return p - hparams.learning_rate * g / preconditioner

    return jax.tree.map(step, params, grads, nu)


def outer_loss(policy_fn, params, batch: dict, vf_coef: float) -> jax.Array:
    """``J'`` (to minimise) on a flat held-out batch ``[B]`` whose ``advantage`` and ``target``
    are the outer critic's: ``-mean(ratio * A')`` with ``A'`` normalised, plus
    ``vf_coef * 0.5 * mean((V - target')^2)``."""
    logits, values = policy_fn(params, batch["observation"], batch["legal_action_mask"])
    log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), batch["action"][..., None], axis=-1)[..., 0]
    ratio = jnp.exp(log_prob - batch["log_prob"])
    advantage = batch["advantage"]
    advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-8)
    return -jnp.mean(ratio * advantage) + vf_coef * 0.5 * jnp.mean((values - batch["target"]) ** 2)


def meta_objective(learner, specs, u, hparams, learner_state, inner_rollout, held_out_batch: dict,
                   outer_vf_coef: float) -> jax.Array:
    """``J'(theta'(u))`` for one member: the outer loss after one inner step with ``eta(u)``.

    Args:
      learner: `PPO` (its ``loss`` and ``policy``).
      specs: the S adapted hparams; ``u`` is float[S] in their unconstrained form.
      hparams: `PPOHparams` of scalars; the spec'd fields are replaced by ``eta(u)``.
      learner_state: the member's `LearnerState` (``theta``, its Adam state, rule meta params).
      inner_rollout: `Rollout` ``[T, N_inner]`` for the inner step.
      held_out_batch: flat batch (see `outer_loss`) of the held-out envs.
    """
    h = from_unconstrained(u, specs, hparams)
    batch = flatten(rollout_batch(inner_rollout, h.gamma, h.gae_lambda))
    new_params = inner_step(learner.loss, learner_state.params, learner_state.opt_state,
                            learner_state.meta_params, batch, h)
    return outer_loss(learner.policy, new_params, held_out_batch, outer_vf_coef)


# ----------------------------------------------------------------------------------------------
# The controller.

_OWNER = "make_metagrad"


def fit_outer_critic(critic_value, critic_tx, num_steps: int, params, opt_state, rollout, gamma: float,
                     gae_lambda: float):
    """``num_steps`` full-batch steps of the outer critic towards the fixed outer discount's
    GAE targets on ``rollout``; returns its parameters, optimizer state and its loss before."""

    def critic_loss(params):
        value = critic_value(params, rollout.observation)
        _, target = outer_targets(rollout, jax.lax.stop_gradient(value), gamma, gae_lambda)
        return 0.5 * jnp.mean((value - target) ** 2)

    def critic_step(carry, _):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(critic_loss)(params)
        updates, opt_state = critic_tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    first_loss = critic_loss(params)
    (params, opt_state), _ = jax.lax.scan(critic_step, (params, opt_state), None, length=num_steps)
    return params, opt_state, first_loss


@dataclasses.dataclass(frozen=True, eq=False)
class _MetaGradSettings:
    """`make_metagrad`'s checked arguments and the static pieces built from them."""

    learner: Any
    observation_shape: Sequence[int]
    specs: tuple[HparamSpec, ...]
    meta_learning_rate: float
    outer_gamma: float
    outer_gae_lambda: float
    outer_vf_coef: float
    critic_hidden_sizes: Sequence[int]
    critic_steps: int
    interval: int
    holdout_fraction: float
    critic_graphdef: Any
    critic_tx: optax.GradientTransformation
    meta_tx: optax.GradientTransformation
    low: jax.Array  # float32[S]: the unconstrained box of the specs
    high: jax.Array

    def critic_value(self, params, observation: jax.Array) -> jax.Array:
        """The outer critic's value ``[...]`` of ``observation[..., *observation_shape]``."""
        return nnx.merge(self.critic_graphdef, params)(observation)


def make_metagrad(
    learner,
    observation_shape: Sequence[int],
    specs: Sequence[HparamSpec],
    *,
    meta_learning_rate: float = 1e-3,
    outer_gamma: float = 0.99,
    outer_gae_lambda: float = 0.95,
    outer_vf_coef: float = 0.5,
    critic_hidden_sizes: Sequence[int] = (64, 64),
    critic_learning_rate: float = 1e-3,
    critic_steps: int = 4,
    interval: int = 1,
    holdout_fraction: float = 0.5,
) -> MetaController:
    """Online meta-gradient adaptation of ``specs`` (Xu et al. 2018; see the module docstring).

    Args:
      learner: the `superlearner.learners.ppo.PPO` the population trains with (its ``loss`` and
        ``policy`` are differentiated through).
      observation_shape: the env's observation shape (the outer critic's input).
      specs: the hparams to adapt (S >= 1), e.g. ``select_specs(["gamma", "ent_coef"])``.
      meta_learning_rate: Adam step size on ``u`` (starting value; traced in the state).
      outer_gamma, outer_gae_lambda: the outer objective's fixed discount and GAE lambda.
      outer_vf_coef: weight of the main critic's error in ``J'``.
      critic_hidden_sizes: the outer critic's MLP widths.
      critic_learning_rate: the outer critic's Adam step size.
      critic_steps: full-batch Adam steps of the outer critic per meta step (static).
      interval: calls between meta steps.
      holdout_fraction: share of a rollout's envs held out for ``J'`` (at least one env on each
        side, so rollouts need two or more envs).
    """
    specs = _check_specs(specs)
    if not specs:
        raise UserError(f"{_OWNER}: needs at least one HparamSpec to adapt (meta.adapt)")
    if getattr(learner, "loss", None) is None:
        raise UserError(f"{_OWNER}: the learner exposes no loss to differentiate through")
    meta_learning_rate = _check_float(_OWNER, "meta_learning_rate", meta_learning_rate, 0.0, 10.0)
    outer_gamma = _check_float(_OWNER, "outer_gamma", outer_gamma, 0.0, 1.0)
    outer_gae_lambda = _check_float(_OWNER, "outer_gae_lambda", outer_gae_lambda, 0.0, 1.0)
    outer_vf_coef = _check_float(_OWNER, "outer_vf_coef", outer_vf_coef, 0.0, 1e3)
    critic_learning_rate = _check_float(_OWNER, "critic_learning_rate", critic_learning_rate, 0.0, 1.0)
    critic_steps = _check_int(_OWNER, "critic_steps", critic_steps, 0)
    interval = _check_int(_OWNER, "interval", interval, 1)
    holdout_fraction = _check_float(_OWNER, "holdout_fraction", holdout_fraction, 0.0, 1.0, low_open=True)
    critic_graphdef, _ = nnx.split(
        nnx.eval_shape(lambda: OuterCritic(observation_shape, critic_hidden_sizes, rngs=nnx.Rngs(0)))
    )
    settings = _MetaGradSettings(
        learner=learner,
        observation_shape=observation_shape,
        specs=specs,
        meta_learning_rate=meta_learning_rate,
        outer_gamma=outer_gamma,
        outer_gae_lambda=outer_gae_lambda,
        outer_vf_coef=outer_vf_coef,
        critic_hidden_sizes=critic_hidden_sizes,
        critic_steps=critic_steps,
        interval=interval,
        holdout_fraction=holdout_fraction,
        critic_graphdef=critic_graphdef,
        critic_tx=optax.adam(critic_learning_rate),
        meta_tx=optax.scale_by_adam(),
        low=jnp.asarray([spec.unconstrained_bounds[0] for spec in specs], jnp.float32),
        high=jnp.asarray([spec.unconstrained_bounds[1] for spec in specs], jnp.float32),
    )
    return MetaController(init=functools.partial(_init, settings), update=functools.partial(_update, settings))


def _init(m: _MetaGradSettings, population_size: int, key: jax.Array, hparams: Any = None) -> MetaGradState:
    """State for P members; ``hparams`` (fields ``[P]``) gives the starting values of the
    adapted hparams (default: the middle of each unconstrained box, which the engine always
    replaces with the run's own starting values). Consumes key (the outer critics' weights)."""
    size = _check_int(_OWNER, "population_size", population_size, 1)

    def one(member_key):
        critic = OuterCritic(m.observation_shape, m.critic_hidden_sizes, rngs=nnx.Rngs(params=member_key))
        _, params = nnx.split(critic)
        return params, m.critic_tx.init(params)

    critic_params, critic_opt_state = jax.vmap(one)(jax.random.split(key, size))
    if hparams is None:
        unconstrained = jnp.broadcast_to((m.low + m.high) / 2, (size, len(m.specs)))
    else:
        unconstrained = jnp.clip(to_unconstrained(clip_to_bounds(hparams, m.specs), m.specs), m.low, m.high)
    unconstrained = jnp.asarray(unconstrained, jnp.float32)
    return MetaGradState(
        unconstrained=unconstrained,
        meta_opt_state=jax.vmap(m.meta_tx.init)(unconstrained),
        meta_learning_rate=jnp.full((size,), m.meta_learning_rate, jnp.float32),
        critic_params=critic_params,
        critic_opt_state=critic_opt_state,
        num_calls=jnp.int32(0),
    )


def _member_step(m: _MetaGradSettings, u, meta_opt_state, meta_lr, critic_params, critic_opt_state,
                 learner_state, hparams, rollout):
    """One member's meta step (steps 1-4 of the module docstring) on its rollout ``[T, N]``:
    the outer critic's fit, then ``u``'s Adam step along ``-dJ'/du``, clipped to the box.

    Returns ``(u, meta_opt_state, critic_params, critic_opt_state, meta_grad, J', critic_loss)``.
    """
    num_envs = rollout.reward.shape[1]
    num_held_out = min(max(int(round(m.holdout_fraction * num_envs)), 1), num_envs - 1)
    if num_envs < 2:
        raise UserError(f"{_OWNER}: a rollout of {num_envs} env cannot be split; use learner.num_envs >= 2")
    inner = jax.tree.map(lambda x: x[:, : num_envs - num_held_out], rollout)
    held_out = jax.tree.map(lambda x: x[:, num_envs - num_held_out :], rollout)

    # The outer critic learns the fixed outer discount's values on the whole rollout.
    critic_params, critic_opt_state, first_critic_loss = fit_outer_critic(
        m.critic_value, m.critic_tx, m.critic_steps, critic_params, critic_opt_state, rollout, m.outer_gamma,
        m.outer_gae_lambda,
    )
    advantage, target = outer_targets(
        held_out, m.critic_value(critic_params, held_out.observation), m.outer_gamma, m.outer_gae_lambda
    )
    held_out_batch = flatten(rollout_batch(held_out, m.outer_gamma, m.outer_gae_lambda))
    held_out_batch.update(advantage=advantage.reshape(-1), target=target.reshape(-1))

    def objective(u):
        return meta_objective(m.learner, m.specs, u, hparams, learner_state, inner, held_out_batch, m.outer_vf_coef)

    loss, meta_grad = jax.value_and_grad(objective)(u)
    meta_grad = jnp.where(jnp.isfinite(meta_grad), meta_grad, 0.0)
    updates, meta_opt_state = m.meta_tx.update(meta_grad, meta_opt_state)
    u = jnp.clip(u - meta_lr * updates, m.low, m.high)
    return u, meta_opt_state, critic_params, critic_opt_state, meta_grad, loss, first_critic_loss


def _update(m: _MetaGradSettings, state: MetaGradState, population: PopulationState, progress: MetaGradBatch,
            key: jax.Array):
    """One call per training iteration; see `make_metagrad`.

    Args:
      state: `MetaGradState` for P members.
      population: `PopulationState`, leading axis P; only ``hparams`` is changed.
      progress: `MetaGradBatch`, the experience each member collected (leading axis P).
      key: unused (every step is deterministic full-batch), accepted for the interface.
    """
    del key
    size = state.unconstrained.shape[0]
    if progress.rollout.reward.shape[0] != size:
        raise UserError(
            f"{_OWNER}: the controller state was made for {size} members, "
            f"but the rollout has {progress.rollout.reward.shape[0]}"
        )
    due = state.num_calls % m.interval == 0

    def step(state):
        u, meta_opt_state, critic_params, critic_opt_state, meta_grad, loss, critic_loss = jax.vmap(
            functools.partial(_member_step, m)
        )(
            state.unconstrained, state.meta_opt_state, state.meta_learning_rate, state.critic_params,
            state.critic_opt_state, progress.learner, population.hparams, progress.rollout,
        )
        new = state.replace(unconstrained=u, meta_opt_state=meta_opt_state, critic_params=critic_params,
                            critic_opt_state=critic_opt_state)
        return new, meta_grad, loss, critic_loss

    def skip(state):
        nan = jnp.full((size,), jnp.nan, jnp.float32)
        return state, jnp.zeros_like(state.unconstrained), nan, nan

    new_state, meta_grad, loss, critic_loss = jax.lax.cond(due, step, skip, state)
    new_state = new_state.replace(num_calls=state.num_calls + 1)
    # The hparams are always the controller's values: the next update's loss reads them.
    population = population.replace(
        hparams=clip_to_bounds(from_unconstrained(new_state.unconstrained, m.specs, population.hparams), m.specs)
    )
    events = MetaGradEvents(due=due, meta_grad=meta_grad, outer_loss=loss, critic_loss=critic_loss)
    return new_state, population, events
