"""Policy update rules as data: a drift function with explicit meta parameters.

A rule turns probability ratios ``r = pi(a|s) / pi_old(a|s)`` and advantages ``A`` into a
per-sample objective ``r * A - drift(meta_params, r, A, hparams)`` to be maximised, where the
drift is non-negative and zero at ``r = 1`` (the mirror-learning view of PPO; Kuba et al. 2022,
Lu et al. 2022 "Discovered Policy Optimisation"). Because the rule is a pure function of its
meta parameters, rules are interchangeable in one compiled program and differentiable in their
meta parameters.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp


class UpdateRule(NamedTuple):
    """A policy update rule.

    Attributes:
      name: the rule's config name.
      init_meta_params: ``() -> pytree`` of float32 arrays, the rule's meta parameters.
      drift: ``(meta_params, ratio[B], advantage[B], clip_eps[]) -> float[B] >= 0``.
    """

    name: str
    init_meta_params: Callable[[], Any]
    drift: Callable[[Any, jax.Array, jax.Array, jax.Array], jax.Array]


def policy_objective(rule: UpdateRule, meta_params, ratio, advantage, clip_eps) -> jax.Array:
    """float[B]: the per-sample objective ``r * A - drift`` (to maximise)."""
    return ratio * advantage - rule.drift(meta_params, ratio, advantage, clip_eps)


def ppo_clip() -> UpdateRule:
    """PPO's clipped surrogate (Schulman et al. 2017) written as a drift.

    ``min(r A, clip(r, 1-eps, 1+eps) A) = r A - relu((r - clip(r, 1-eps, 1+eps)) A)``.
    """

    def drift(meta_params, ratio, advantage, clip_eps):
        del meta_params
        clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
        return jax.nn.relu((ratio - clipped) * advantage)

    return UpdateRule("ppo_clip", lambda: {}, drift)


def dpo() -> UpdateRule:
    """The closed-form drift of Discovered Policy Optimisation (Lu et al. 2022), meta params
    ``alpha`` (positive advantages) and ``beta`` (negative advantages)."""

    def drift(meta_params, ratio, advantage, clip_eps):
        del clip_eps
        alpha, beta = meta_params["alpha"], meta_params["beta"]
        positive = (ratio - 1.0) * advantage
        negative = jnp.log(ratio) * advantage
        drift_pos = jax.nn.relu(positive - alpha * jnp.tanh(positive / alpha))
        drift_neg = jax.nn.relu(negative - beta * jnp.tanh(negative / beta))
        return jnp.where(advantage >= 0.0, drift_pos, drift_neg)

    return UpdateRule("dpo", lambda: {"alpha": jnp.float32(2.0), "beta": jnp.float32(0.6)}, drift)


RULES: dict[str, Callable[[], UpdateRule]] = {"ppo_clip": ppo_clip, "dpo": dpo}


def make_update_rule(name: str) -> UpdateRule:
    from superlearner.errors import ConfigError

    if name not in RULES:
        raise ConfigError(f"unknown update rule {name!r}; accepted: {', '.join(RULES)}")
    return RULES[name]()
