"""Policy update rules as data: a drift function with explicit meta parameters.

A rule turns probability ratios ``r = pi(a|s) / pi_old(a|s)`` and advantages ``A`` into a
per-sample objective ``r * A - drift(meta_params, r, A, hparams)`` to be maximised, where the
drift is non-negative and zero at ``r = 1`` (the mirror-learning view of PPO; Kuba et al. 2022,
Lu et al. 2022 "Discovered Policy Optimisation"). Because the rule is a pure function of its
meta parameters, rules are interchangeable in one compiled program and differentiable in their
meta parameters.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


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


# ----------------------------------------------------------------------------------------------
# A learned drift function (Lu et al. 2022, "Discovered Policy Optimisation", Sec. 4: a drift
# network over the ratio and the advantage, meta-trained by evolution strategies).

LEARNED_FEATURES = (
    "ratio_minus_one",
    "log_ratio",
    "advantage",
    "ratio_minus_one_times_advantage",
    "log_ratio_times_advantage",
    "ppo_clip_drift",
)
"""The inputs of the learned drift network, in order (recorded in every rule file's header)."""

LEARNED_HIDDEN_SIZE = 16
"""Hidden width of a freshly initialised learned drift network (a file fixes its own)."""


def drift_features(ratio: jax.Array, advantage: jax.Array, clip_eps: jax.Array) -> jax.Array:
    """float[..., F]: the `LEARNED_FEATURES` of ratios ``[...]`` and advantages ``[...]``.

    The last feature is PPO-clip's own drift, so a network can start exactly at PPO-clip and
    meta-training only has to learn a correction.
    """
    log_ratio = jnp.log(jnp.maximum(ratio, 1e-8))
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    return jnp.stack(
        [
            ratio - 1.0,
            log_ratio,
            advantage,
            (ratio - 1.0) * advantage,
            log_ratio * advantage,
            jax.nn.relu((ratio - clipped) * advantage),
        ],
        axis=-1,
    )


def learned_drift_potential(meta_params, ratio: jax.Array, advantage: jax.Array, clip_eps) -> jax.Array:
    """float[...]: the network ``f(r, A) = skip . x + w2 . tanh(x W1 + b1)`` over the features ``x``.

    Args:
      meta_params: ``{"skip": [F], "w1": [F, H], "b1": [H], "w2": [H]}``.
      ratio, advantage: float[...] of one shape.
      clip_eps: float[], the scale of the PPO-clip feature.
    """
    x = drift_features(ratio, advantage, clip_eps)
    hidden = jnp.tanh(x @ meta_params["w1"] + meta_params["b1"])
    return x @ meta_params["skip"] + hidden @ meta_params["w2"]


def learned_drift(meta_params, ratio: jax.Array, advantage: jax.Array, clip_eps: jax.Array) -> jax.Array:
    """float[B] >= 0: ``relu(f(r, A) - f(1, A))`` for the network ``f`` of `learned_drift_potential`.

    Non-negative because of the ``relu``; exactly zero at ``r = 1`` because both terms are then
    the same computation on the same inputs; so every weight setting is a valid drift in the
    mirror-learning sense (Kuba et al. 2022) and evolution strategies may search them freely.
    """
    at_one = learned_drift_potential(meta_params, jnp.ones_like(ratio), advantage, clip_eps)
    return jax.nn.relu(learned_drift_potential(meta_params, ratio, advantage, clip_eps) - at_one)


def init_learned_meta_params(key: jax.Array | None = None, hidden_size: int = LEARNED_HIDDEN_SIZE, scale: float = 0.0) -> dict:
    """Meta parameters of the learned drift.

    With ``scale = 0`` (the default) the hidden layer's output weights ``w2`` are zero and the
    skip weights select the PPO-clip feature: the rule is then PPO-clip exactly, while the first
    layer holds random features ``W1 ~ N(0, 1/F)``, ``b1 ~ N(0, 0.5^2)`` so that the hidden
    units differ and a perturbation of ``w2`` changes the drift at first order. ``key`` draws
    them (default ``jax.random.key(0)``: the same start everywhere). With ``scale > 0`` every
    weight is drawn ``N(0, scale^2)`` instead (tests, random search).
    """
    key = jax.random.key(0) if key is None else key
    num_features = len(LEARNED_FEATURES)
    w1_key, b1_key, w2_key, skip_key = jax.random.split(key, 4)
    if scale > 0.0:
        return {
            "skip": scale * jax.random.normal(skip_key, (num_features,), jnp.float32),
            "w1": scale * jax.random.normal(w1_key, (num_features, hidden_size), jnp.float32),
            "b1": scale * jax.random.normal(b1_key, (hidden_size,), jnp.float32),
            "w2": scale * jax.random.normal(w2_key, (hidden_size,), jnp.float32),
        }
    return {
        "skip": jnp.zeros((num_features,), jnp.float32).at[LEARNED_FEATURES.index("ppo_clip_drift")].set(1.0),
        "w1": jax.random.normal(w1_key, (num_features, hidden_size), jnp.float32) / np.sqrt(num_features),
        "b1": 0.5 * jax.random.normal(b1_key, (hidden_size,), jnp.float32),
        "w2": jnp.zeros((hidden_size,), jnp.float32),
    }


def learned(meta_params: dict | None = None) -> UpdateRule:
    """A learned drift function (`learned_drift`) whose meta parameters start at ``meta_params``
    (default: PPO-clip exactly, see `init_learned_meta_params`)."""
    start = init_learned_meta_params() if meta_params is None else meta_params
    start = {name: jnp.asarray(value, jnp.float32) for name, value in start.items()}
    return UpdateRule("learned", lambda: dict(start), learned_drift)


SWITCH_RULES = ("ppo_clip", "dpo", "learned")
"""The rules a `switch` rule holds, in index order (index 0 is PPO-clip)."""


def switch(rules: tuple[UpdateRule, ...] | None = None) -> UpdateRule:
    """Several rules in one program; a traced index in the meta parameters picks the active one.

    Meta parameters: ``{"index": int32[], "rules": (meta params of each rule, ...)}``. Because the
    index is an array, a meta-controller (the bandit, `superlearner.meta.controllers.make_sw_ucb`) changes
    the rule a member trains with by writing it, and the program is never compiled again.

    Args:
      rules: the rules (default: `SWITCH_RULES`, in that order); ``index`` is clipped to
        ``[0, len(rules) - 1]``.
    """
    rules = tuple(RULES[name]() for name in SWITCH_RULES) if rules is None else tuple(rules)

    def init_meta_params():
        return {"index": jnp.int32(0), "rules": tuple(rule.init_meta_params() for rule in rules)}

    def drift(meta_params, ratio, advantage, clip_eps):
        index = jnp.clip(jnp.asarray(meta_params["index"], jnp.int32), 0, len(rules) - 1)
        branches = [
            (lambda params, rule=rule: rule.drift(params, ratio, advantage, clip_eps)) for rule in rules
        ]
        # `lax.switch` takes one operand: each branch picks its own rule's meta parameters.
        return jax.lax.switch(
            index, [lambda all_params, i=i, b=b: b(all_params[i]) for i, b in enumerate(branches)], meta_params["rules"]
        )

    return UpdateRule("switch", init_meta_params, drift)


RULES: dict[str, Callable[[], UpdateRule]] = {"ppo_clip": ppo_clip, "dpo": dpo, "learned": learned, "switch": switch}


def make_update_rule(name: str, rule_file: str | None = None) -> UpdateRule:
    """The rule called ``name``; ``rule_file`` (learned rules, and the learned branch of a
    switch rule) holds the learned drift's meta parameters."""
    from superlearner.errors import ConfigError

    if name not in RULES:
        raise ConfigError(f"unknown update rule {name!r}; accepted: {', '.join(RULES)}")
    if rule_file:
        if name not in ("learned", "switch"):
            raise ConfigError(
                f"learner.update_rule_file={rule_file!r} is only read by update_rule=learned or switch, not {name!r}"
            )
        learned_rule = learned(load_rule_file(rule_file))
        if name == "switch":
            return switch(tuple(learned_rule if n == "learned" else RULES[n]() for n in SWITCH_RULES))
        return learned_rule
    return RULES[name]()


# ----------------------------------------------------------------------------------------------
# Rule files: ``.npz`` (numpy, no pickle) holding the meta parameters and a JSON header.

RULE_FILE_FORMAT = "superlearner.update_rule"
RULE_FILE_VERSION = 1
_HEADER_KEY = "__header__"


def save_rule_file(path, meta_params: dict, *, rule: str = "learned", extra: dict | None = None) -> Path:
    """Writes a learned rule's meta parameters to ``path`` (``.npz``); returns the path.

    The header (JSON in the ``__header__`` entry) records the format, version, rule name,
    feature list and hidden size; ``extra`` (JSON-able) is stored alongside, e.g. how the rule
    was discovered.
    """
    path = Path(path)
    arrays = {name: np.asarray(value, np.float32) for name, value in meta_params.items()}
    header = {
        "format": RULE_FILE_FORMAT,
        "version": RULE_FILE_VERSION,
        "rule": rule,
        "features": list(LEARNED_FEATURES),
        "hidden_size": int(arrays["w1"].shape[1]),
        "extra": extra or {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:  # a file handle: numpy would otherwise append ".npz"
        np.savez(handle, **{_HEADER_KEY: np.array(json.dumps(header))}, **arrays)
    return path


def read_rule_file(path) -> tuple[dict, dict]:
    """(header, meta params as float32 numpy arrays) of a rule file; `ConfigError` in one line if
    the file is missing or not a valid learned-rule file."""
    from superlearner.errors import ConfigError

    path = Path(path)
    expected = (
        f"expected a learned update-rule .npz (written by superlearner.learners.update_rules.save_rule_file) "
        f"with a header and arrays {', '.join(_EXPECTED_KEYS)}"
    )
    if not path.is_file():
        raise ConfigError(f"{path}: no such update-rule file; {expected}")
    try:
        with np.load(path, allow_pickle=False) as data:
            entries = {name: data[name] for name in data.files}
    except Exception as error:  # a zip, header or pickled-object error: the file is not ours
        raise ConfigError(f"{path}: not a readable update-rule file ({type(error).__name__}); {expected}") from None
    try:
        header = json.loads(str(entries.pop(_HEADER_KEY)[()]))
        if not isinstance(header, dict):
            raise ValueError
    except Exception:
        raise ConfigError(f"{path}: the update-rule file has no valid header; {expected}") from None
    if header.get("format") != RULE_FILE_FORMAT or header.get("rule") != "learned":
        raise ConfigError(f"{path}: format {header.get('format')!r} rule {header.get('rule')!r}; {expected}")
    if header.get("version") != RULE_FILE_VERSION:
        raise ConfigError(f"{path}: update-rule file version {header.get('version')!r}; this superlearner reads version {RULE_FILE_VERSION}")
    if list(header.get("features", [])) != list(LEARNED_FEATURES):
        raise ConfigError(f"{path}: features {header.get('features')!r} differ from this superlearner's {list(LEARNED_FEATURES)}")
    if sorted(entries) != sorted(_EXPECTED_KEYS):
        raise ConfigError(f"{path}: arrays {sorted(entries)}; {expected}")
    num_features = len(LEARNED_FEATURES)
    hidden = entries["w1"].shape[1] if entries["w1"].ndim == 2 else -1
    shapes = {"skip": (num_features,), "w1": (num_features, hidden), "b1": (hidden,), "w2": (hidden,)}
    for name, shape in shapes.items():
        value = entries[name]
        if value.shape != shape or hidden < 1 or not np.issubdtype(value.dtype, np.floating) or not np.all(np.isfinite(value)):
            raise ConfigError(
                f"{path}: array {name} has shape {value.shape} dtype {value.dtype}; expected finite floats of shape "
                f"{shape if hidden >= 1 else '(F, H)'} (F={num_features} features)"
            )
    return header, {name: value.astype(np.float32) for name, value in entries.items()}


def load_rule_file(path) -> dict:
    """The meta parameters (jnp float32 arrays) of a learned-rule file; see `read_rule_file`."""
    _, arrays = read_rule_file(path)
    return {name: jnp.asarray(value) for name, value in arrays.items()}


_EXPECTED_KEYS = ("skip", "w1", "b1", "w2")
