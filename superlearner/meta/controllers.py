"""Meta-controllers: population based training and a sliding-window UCB bandit, inside jit.

A meta-controller watches a progress signal per population member and changes the members'
hyperparameters (and, for population based training, their weights) while they train. Like a
learner it is a pair of pure functions in a NamedTuple made by a factory:

* ``init(population_size, key) -> ctrl_state``
* ``update(ctrl_state, population, progress, key) -> (ctrl_state, population, events)``

``population`` is a `PopulationState` (learner state, hparams and RNG key data, each with a
leading axis P), ``progress`` is ``float32[P]`` (higher is better) and ``events`` a small
fixed-shape pytree for logging. ``update`` is meant to be called once per training iteration
inside the compiled train chunk; it decides by itself, with traced conditions, whether a step is
due, and is an exact no-op otherwise. Every controller state is a pytree of fixed-shape arrays
(it is saved with the train state).

Hyperparameters a controller may change are declared by `HparamSpec`: a field name, inclusive
bounds and a map to an unconstrained space (``log``, ``logit`` or ``affine``) in which
exploration steps, sampling and gradient-based meta-learners work.

References: Jaderberg et al. 2017, "Population Based Training of Neural Networks";
Garivier & Moulines 2011, "On Upper-Confidence Bound Policies for Switching Bandit Problems".
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from superlearner.errors import UserError
from superlearner.schema import TRANSFORMS, HparamSpec  # noqa: F401  (re-exported: the meta-controllers' search space)

# ----------------------------------------------------------------------------------------------
# Declared hyperparameters.

def ppo_hparam_specs() -> tuple[HparamSpec, ...]:
    """PPO's search space, from its declarations (`superlearner.learners.ppo.PPO_HPARAMS`):
    every PPO hyperparameter but ``adam_eps``, which is left fixed."""
    from superlearner.learners.ppo import PPO_HPARAMS
    from superlearner.schema import hparam_specs

    return hparam_specs(PPO_HPARAMS)


CURRICULUM_PREFIX = "curriculum_"
"""A spec named ``curriculum_<field>`` adapts that field of the run's `CurriculumHparams`."""

LEAGUE_PREFIX = "league_"
"""A knob named ``league_<field>`` is that field of the league's `LeagueHparams` (opponent weights)."""

CURRICULUM_HPARAM_SPECS: tuple[HparamSpec, ...] = (
    HparamSpec("curriculum_replay_prob", 0.0, 1.0, "affine"),
    HparamSpec("curriculum_temperature", 1e-2, 10.0, "log"),
    HparamSpec("curriculum_staleness_coef", 0.0, 1.0, "affine"),
    HparamSpec("curriculum_fresh_ratio", 0.0, 1.0, "affine"),
    HparamSpec("curriculum_lp_fast_rate", 1e-3, 1.0, "log"),
    HparamSpec("curriculum_lp_slow_rate", 1e-4, 1.0, "log"),
    HparamSpec("curriculum_lp_epsilon", 0.0, 1.0, "affine"),
    HparamSpec("curriculum_lp_temperature", 1e-2, 10.0, "log"),
)
"""Search space over the curriculum's knobs (`superlearner.curriculum.levels.CurriculumHparams`), for
PBT in a run with a curriculum; `joint_hparams` puts them beside the PPO ones."""


def joint_hparams(hparams: Any, curriculum_hparams: Any) -> dict:
    """One dict of the learner's and the curriculum's hyperparameters (the latter's fields named
    ``curriculum_<field>``), the form PBT explores and copies; `split_joint_hparams` undoes it."""
    return joint_knobs(hparams, {CURRICULUM_PREFIX: curriculum_hparams})


def split_joint_hparams(joint: Mapping, hparams: Any, curriculum_hparams: Any) -> tuple[Any, Any]:
    """``(hparams, curriculum_hparams)`` with the values of ``joint`` (see `joint_hparams`),
    in the structures of the two given."""
    learner, groups = split_knobs(joint, hparams, {CURRICULUM_PREFIX: curriculum_hparams})
    return learner, groups[CURRICULUM_PREFIX]


def joint_knobs(hparams: Any, groups: Mapping[str, Any]) -> dict:
    """One dict of the learner's hyperparameters and every group of knobs, a group's fields named
    ``<prefix><field>`` (``groups``: ``{prefix: knobs}``, e.g. ``{"curriculum_": ..., "league_":
    ...}``); `split_knobs` undoes it."""
    joint = {name: _get_field(hparams, name) for name in _field_names(hparams)}
    for prefix, knobs in groups.items():
        for name in _field_names(knobs):
            joint[prefix + name] = _get_field(knobs, name)
    return joint


def split_knobs(joint: Mapping, hparams: Any, groups: Mapping[str, Any]) -> tuple[Any, dict]:
    """``(hparams, {prefix: knobs})`` with the values of ``joint`` (see `joint_knobs`), in the
    structures of those given."""
    learner = _with_fields(hparams, {name: joint[name] for name in _field_names(hparams)})
    split = {prefix: _with_fields(knobs, {name: joint[prefix + name] for name in _field_names(knobs)})
             for prefix, knobs in groups.items()}
    return learner, split


def _with_fields(tree: Any, values: dict) -> Any:
    return dict(tree, **values) if isinstance(tree, Mapping) else tree.replace(**values)


def select_specs(
    names: Sequence[str], specs: Sequence[HparamSpec] | None = None, **bounds: tuple[float, float],
) -> tuple[HparamSpec, ...]:
    """The specs named ``names`` (in that order), with bounds overridden by ``name=(low, high)``.

    ``specs`` is the search space to pick from: a learner's (`superlearner.schema.hparam_specs`
    of its declarations) plus `CURRICULUM_HPARAM_SPECS`; None means PPO's.

    Example: ``select_specs(["learning_rate"], learning_rate=(1e-5, 1e-1))``.
    """
    if specs is None:
        specs = ppo_hparam_specs() + CURRICULUM_HPARAM_SPECS
    by_name = {spec.name: spec for spec in specs}
    chosen = []
    for name in names:
        if name not in by_name:
            raise UserError(f"no hparam spec named {name!r}; known: {', '.join(by_name)}")
        chosen.append(by_name[name])
    for name in bounds:
        if name not in names:
            raise UserError(f"bounds given for {name!r}, which is not among the selected specs {list(names)}")
    return tuple(
        dataclasses.replace(spec, low=bounds[spec.name][0], high=bounds[spec.name][1])
        if spec.name in bounds
        else spec
        for spec in chosen
    )


def _check_specs(specs: Sequence[HparamSpec]) -> tuple[HparamSpec, ...]:
    specs = tuple(specs)
    for spec in specs:
        if not isinstance(spec, HparamSpec):
            raise UserError(f"hparam specs must be HparamSpec objects, got {type(spec).__name__}")
    names = [spec.name for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise UserError(f"hparam specs name {', '.join(duplicates)} more than once; give each field one spec")
    return specs


def _field_names(hparams: Any) -> list[str]:
    if isinstance(hparams, Mapping):
        return list(hparams)
    if dataclasses.is_dataclass(hparams):
        return [f.name for f in dataclasses.fields(hparams)]
    raise UserError(
        f"hparams of type {type(hparams).__name__} have no named fields; use a struct dataclass or a dict"
    )


def _get_field(hparams: Any, name: str) -> jax.Array:
    names = _field_names(hparams)
    if name not in names:
        raise UserError(
            f"hparam {name!r} is not a field of {type(hparams).__name__}; its fields are {', '.join(names)}"
        )
    return hparams[name] if isinstance(hparams, Mapping) else getattr(hparams, name)


def _replace_fields(hparams: Any, values: Mapping[str, jax.Array]) -> Any:
    values = {name: jnp.asarray(v, jnp.asarray(_get_field(hparams, name)).dtype) for name, v in values.items()}
    if isinstance(hparams, Mapping):
        return type(hparams)({**hparams, **values})
    return dataclasses.replace(hparams, **values)


def to_unconstrained(hparams: Any, specs: Sequence[HparamSpec]) -> jax.Array:
    """The spec'd fields of ``hparams`` in unconstrained form.

    Args:
      hparams: pytree with named fields, each spec'd field of shape ``[...]`` (e.g. ``[P]``).
      specs: S specs, S >= 1.

    Returns:
      float[..., S], column i is ``specs[i]``'s field.
    """
    specs = _check_specs(specs)
    if not specs:
        raise UserError("to_unconstrained needs at least one HparamSpec")
    return jnp.stack([spec.to_unconstrained(_get_field(hparams, spec.name)) for spec in specs], axis=-1)


def from_unconstrained(u: jax.Array, specs: Sequence[HparamSpec], hparams: Any) -> Any:
    """``hparams`` with the spec'd fields replaced by the values of ``u`` (not clipped).

    Args:
      u: float[..., S] (as returned by `to_unconstrained`).
      specs: the S specs, in the column order of ``u``.
      hparams: template; fields without a spec are returned unchanged, dtypes are kept.
    """
    specs = _check_specs(specs)
    values = {spec.name: spec.from_unconstrained(u[..., i]) for i, spec in enumerate(specs)}
    return _replace_fields(hparams, values)


def clip_to_bounds(hparams: Any, specs: Sequence[HparamSpec]) -> Any:
    """``hparams`` with every spec'd field clipped to its ``[low, high]``."""
    specs = _check_specs(specs)
    return _replace_fields(hparams, {spec.name: spec.clip(_get_field(hparams, spec.name)) for spec in specs})


def sample_hparams(key: jax.Array, specs: Sequence[HparamSpec], population_size: int, base_hparams: Any) -> Any:
    """Hparams for a population: spec'd fields drawn uniformly in unconstrained space.

    A ``log`` spec draws log-uniformly in ``[low, high]`` (e.g. learning rates in [1e-5, 1e-1]),
    a ``logit`` spec uniformly in log-odds, an ``affine`` spec uniformly.

    Args:
      key: consumed once.
      specs: the fields to draw.
      population_size: P.
      base_hparams: scalar or ``[P]`` fields; unspec'd fields are broadcast to ``[P]``.

    Returns:
      hparams with every field of shape ``[P]``.
    """
    specs = _check_specs(specs)

    def per_member(x):
        x = jnp.asarray(x)
        return jnp.broadcast_to(x, (population_size,) + x.shape[1:] if x.ndim else (population_size,))

    base = jax.tree.map(per_member, base_hparams)
    if not specs:
        return base
    low = jnp.asarray([spec.unconstrained_bounds[0] for spec in specs], jnp.float32)
    high = jnp.asarray([spec.unconstrained_bounds[1] for spec in specs], jnp.float32)
    u = jax.random.uniform(key, (population_size, len(specs)), jnp.float32, low, high)
    return clip_to_bounds(from_unconstrained(u, specs, base), specs)


def explore_hparams(
    key: jax.Array,
    hparams: Any,
    specs: Sequence[HparamSpec],
    perturb_factor: float = 1.25,
    resample_probability: float = 0.0,
) -> Any:
    """PBT's explore step: each spec'd value moves by ``+-log(perturb_factor)`` in unconstrained
    space (so a ``log`` value is multiplied by ``perturb_factor`` or its inverse), or with
    probability ``resample_probability`` is redrawn uniformly in unconstrained space; the result
    is clipped to the bounds. Fields without a spec are unchanged.

    Args:
      key: consumed once.
      hparams: spec'd fields of any common shape ``[...]``.
    """
    specs = _check_specs(specs)
    if not specs:
        return hparams
    u = to_unconstrained(hparams, specs)
    sign_key, resample_key, value_key = jax.random.split(key, 3)
    step = jnp.where(jax.random.bernoulli(sign_key, 0.5, u.shape), 1.0, -1.0) * math.log(perturb_factor)
    low = jnp.asarray([spec.unconstrained_bounds[0] for spec in specs], u.dtype)
    high = jnp.asarray([spec.unconstrained_bounds[1] for spec in specs], u.dtype)
    fresh = jax.random.uniform(value_key, u.shape, u.dtype, low, high)
    resample = jax.random.bernoulli(resample_key, resample_probability, u.shape)
    u = jnp.where(resample, fresh, u + step)
    return clip_to_bounds(from_unconstrained(u, specs, hparams), specs)


# ----------------------------------------------------------------------------------------------
# Progress signals.


def normalized_return(ret: jax.Array, low: jax.Array, high: jax.Array) -> jax.Array:
    """``(ret - low) / (high - low)``: 0 at a reference low (e.g. a random policy), 1 at a
    reference high (e.g. the best possible return). Not clipped, so worse-than-low stays visible."""
    return (ret - low) / (high - low)


def learning_progress(values: jax.Array, valid: jax.Array | None = None) -> jax.Array:
    """Least-squares slope of ``values`` against their index: progress per step of the window.

    Args:
      values: float[..., W], oldest first.
      valid: optional bool[..., W]; invalid entries are ignored (their index still counts as time).

    Returns:
      float[...]: the slope; 0 where fewer than two entries are valid.
    """
    values = jnp.asarray(values, jnp.float32)
    weight = jnp.ones_like(values) if valid is None else jnp.asarray(valid, jnp.float32)
    values = jnp.where(weight > 0, values, 0.0)  # an unfilled slot may hold anything, even NaN
    t = jnp.arange(values.shape[-1], dtype=jnp.float32)
    count = weight.sum(-1)
    t_mean = (weight * t).sum(-1) / jnp.maximum(count, 1.0)
    y_mean = (weight * values).sum(-1) / jnp.maximum(count, 1.0)
    dt = (t - t_mean[..., None]) * weight
    covariance = (dt * (values - y_mean[..., None])).sum(-1)
    variance = (dt * (t - t_mean[..., None])).sum(-1)
    return jnp.where(count >= 2, covariance / jnp.where(variance > 0, variance, 1.0), 0.0)


@struct.dataclass
class ReturnHistory:
    """A ring of the last W returns per member.

    Attributes:
      values: float32[..., W]; slot ``count % W`` is written next.
      count: int32[...], returns pushed so far.
    """

    values: jax.Array
    count: jax.Array


def init_return_history(population_size: int, window: int) -> ReturnHistory:
    """An empty `ReturnHistory` of shape ``[P, W]``."""
    return ReturnHistory(
        values=jnp.zeros((population_size, window), jnp.float32),
        count=jnp.zeros((population_size,), jnp.int32),
    )


def push_returns(history: ReturnHistory, returns: jax.Array, mask: jax.Array | None = None) -> ReturnHistory:
    """Appends ``returns`` (float[...]) where ``mask`` (bool[...], default all) is true."""
    window = history.values.shape[-1]
    push = jnp.ones(history.count.shape, bool) if mask is None else jnp.asarray(mask, bool)
    slot = jax.nn.one_hot(history.count % window, window, dtype=bool) & push[..., None]
    values = jnp.where(slot, jnp.asarray(returns, jnp.float32)[..., None], history.values)
    return ReturnHistory(values=values, count=history.count + push.astype(jnp.int32))


def returns_in_order(history: ReturnHistory) -> tuple[jax.Array, jax.Array]:
    """``(values[..., W], valid[..., W])``, oldest first, for `learning_progress`."""
    window = history.values.shape[-1]
    start = jnp.where(history.count >= window, history.count % window, 0)
    order = (start[..., None] + jnp.arange(window)) % window
    values = jnp.take_along_axis(history.values, order, axis=-1)
    valid = jnp.arange(window) < jnp.minimum(history.count, window)[..., None]
    return values, valid


def recent_mean(history: ReturnHistory) -> jax.Array:
    """float32[...]: the mean of the returns in the window; NaN where none was pushed yet
    (`truncation_selection` ranks NaN last)."""
    window = history.values.shape[-1]
    filled = jnp.minimum(history.count, window)
    valid = jnp.arange(window) < filled[..., None]  # slots fill from 0, so any order works
    total = jnp.where(valid, history.values, 0.0).sum(-1)
    return jnp.where(filled > 0, total / jnp.maximum(filled, 1), jnp.nan)


# ----------------------------------------------------------------------------------------------
# The controller interface.


@struct.dataclass
class PopulationState:
    """What a controller may read and replace, per member (leading axis P on every leaf).

    Attributes:
      learner: any pytree, e.g. params, optimizer state and update-rule meta parameters.
      hparams: pytree with named fields (struct dataclass or dict), each ``[P, ...]``.
      rng: uint32 key data ``[P, ...]`` (or typed keys ``[P]``), one stream per member.
    """

    learner: Any
    hparams: Any
    rng: jax.Array


Progress = jax.Array | Callable[[], jax.Array]


class MetaController(NamedTuple):
    """A meta-controller's pure functions (made by `make_pbt`, `make_sw_ucb`, and
    `superlearner.meta.metagrad.make_metagrad`, whose ``progress`` is a batch of experience).

    Attributes:
      init: ``(population_size, key) -> ctrl_state``.
      update: ``(ctrl_state, population, progress, key) -> (ctrl_state, population, events)``;
        call once per training iteration; a no-op (bit for bit) when no step is due.
        ``progress`` is float32[P], or (PBT, bandit) a zero-argument function returning it,
        called only when a step is due: a costly measurement such as games against fixed
        anchors then runs once per generation, not once per iteration.
    """

    init: Callable[[int, jax.Array], Any]
    update: Callable[[Any, PopulationState, jax.Array, jax.Array], tuple[Any, PopulationState, Any]]


def gather_members(tree: Any, index: jax.Array) -> Any:
    """``tree`` with member ``i`` taken from member ``index[i]`` (int32[P]) on every leaf.

    With a controller's ``events.parent`` this carries other per-member state (a
    `ReturnHistory`, episode statistics) along with an exploit.
    """
    return jax.tree.map(lambda x: x[index], tree)


def _select_members(mask: jax.Array, on_true: Any, on_false: Any) -> Any:
    def select(a, b):
        return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - mask.ndim)), a, b)

    return jax.tree.map(select, on_true, on_false)


def _fork_rng(rng: jax.Array, parent: jax.Array, replaced: jax.Array) -> jax.Array:
    """Member i takes ``fold_in(rng[parent[i]], i)`` where replaced, else keeps its own stream.

    Folding in the member's index keeps a copied member from replaying its parent's games.
    """
    typed = jnp.issubdtype(rng.dtype, jax.dtypes.prng_key)
    data = jax.random.key_data(rng) if typed else rng
    impl = jax.random.key_impl(rng) if typed else None
    members = jnp.arange(parent.shape[0], dtype=jnp.uint32)
    parent_keys = jax.random.wrap_key_data(data[parent], impl=impl)
    forked = jax.random.key_data(jax.vmap(jax.random.fold_in)(parent_keys, members))
    data = _select_members(replaced, forked, data)
    return jax.random.wrap_key_data(data, impl=impl) if typed else data


def _measure(progress: Progress) -> jax.Array:
    """``progress`` as float32[P]; a measuring function is called here, so a controller calls
    this inside the branch of a due step and the measurement runs only then."""
    return jnp.asarray(progress() if callable(progress) else progress, jnp.float32)


def _check_int(owner: str, name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise UserError(f"{owner}: {name}={value!r} must be an integer >= {low}")
    return int(value)


def _check_float(owner: str, name: str, value: Any, low: float, high: float, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{owner}: {name}={value!r} must be a number")
    if value < low or value > high or (low_open and value == low):
        interval = f"{'(' if low_open else '['}{low}, {high}]"
        raise UserError(f"{owner}: {name}={value!r} is out of range, accepted {interval}")
    return float(value)


def _population_axis(owner: str, state_members: jax.Array, progress: Progress) -> int:
    shape = jax.eval_shape(progress).shape if callable(progress) else jnp.shape(progress)
    if len(shape) != 1:
        raise UserError(f"{owner}: progress must have shape [P], got {shape}")
    size = shape[0]
    if state_members.shape[0] != size:
        raise UserError(
            f"{owner}: the controller state was made for {state_members.shape[0]} members, "
            f"but progress has {size}"
        )
    return size


# ----------------------------------------------------------------------------------------------
# Population based training (Jaderberg et al. 2017).


@struct.dataclass
class PBTState:
    """Population based training's state.

    Attributes:
      iterations_since_exploit: int32[P], update calls since the member was last replaced.
      num_calls: int32[], update calls so far.
      generation: int32[], exploit/explore steps done so far.
      parents: int32[G, P], a ring of the last G generations' parent ids: generation g is row
        ``g % G``; ``parents[r, i] == i`` where member i kept its own weights, -1 before any.
    """

    iterations_since_exploit: jax.Array
    num_calls: jax.Array
    generation: jax.Array
    parents: jax.Array


@struct.dataclass
class PBTEvents:
    """What one PBT update did.

    Attributes:
      due: bool[], a generation step ran at this call.
      did_exploit: bool[P], the member was replaced by a copy of ``parent``.
      parent: int32[P], the member each member now descends from (itself when not replaced).
    """

    due: jax.Array
    did_exploit: jax.Array
    parent: jax.Array


def num_truncated(population_size: int, truncation_fraction: float) -> int:
    """How many members form the bottom (and the top): ``ceil(fraction * P)``, at most ``P // 2``."""
    return min(math.ceil(truncation_fraction * population_size - 1e-9), population_size // 2)


def truncation_selection(
    key: jax.Array, fitness: jax.Array, eligible: jax.Array, num_selected: int
) -> tuple[jax.Array, jax.Array]:
    """Truncation selection: each of the ``num_selected`` worst members that is ``eligible``
    copies one of the ``num_selected`` best, drawn uniformly, when that one is strictly fitter.

    Ties in ``fitness`` are ranked in random order, so equal members share the risk of being
    cut; copying an equally fit member would only lose diversity, so it is not done.

    Args:
      key: consumed once.
      fitness: float[P], higher is better; NaN counts as worst.
      eligible: bool[P], members allowed to be replaced (ready).
      num_selected: static, ``0 <= num_selected <= P // 2``.

    Returns:
      ``(parent int32[P], replaced bool[P])``; ``parent[i] == i`` where not replaced.
    """
    size = fitness.shape[0]
    members = jnp.arange(size, dtype=jnp.int32)
    if num_selected == 0:
        return members, jnp.zeros((size,), bool)
    fitness = jnp.where(jnp.isnan(fitness), -jnp.inf, fitness)
    tie_key, choice_key = jax.random.split(key)
    tie_break = jax.random.permutation(tie_key, size)
    order = jnp.lexsort((tie_break, fitness)).astype(jnp.int32)  # worst first
    bottom, top = order[:num_selected], order[size - num_selected :]
    candidate = top[jax.random.randint(choice_key, (size,), 0, num_selected)]
    in_bottom = jnp.zeros((size,), bool).at[bottom].set(True)
    replaced = in_bottom & eligible & (fitness[candidate] > fitness)
    return jnp.where(replaced, candidate, members), replaced


def make_pbt(
    specs: Sequence[HparamSpec] | None = None,
    *,
    truncation_fraction: float = 0.25,
    ready_iterations: int = 10,
    interval: int | None = None,
    perturb_factor: float = 1.25,
    resample_probability: float = 0.0,
    lineage_length: int = 32,
) -> MetaController:
    """Population based training with truncation selection (Jaderberg et al. 2017).

    Every ``interval`` calls a generation step runs: members are ranked by ``progress``; each of
    the bottom ``truncation_fraction`` that has trained ``ready_iterations`` calls since it was
    last replaced is replaced by a uniformly drawn member of the top fraction that is strictly
    fitter (exploit: learner state, hparams and RNG stream are copied together, the stream then
    folded with the member's index), and the copied hparams are perturbed (explore, see
    `explore_hparams`). Other members are left bit for bit unchanged.

    Args:
      specs: the hparams explore may change (others are copied as they are).
      truncation_fraction: in (0, 0.5]; see `num_truncated`.
      ready_iterations: calls a member trains after being replaced before it may be again.
      interval: calls between generation steps (default: ``max(ready_iterations, 1)``).
      perturb_factor: >= 1; explore multiplies a ``log`` value by it or its inverse.
      resample_probability: in [0, 1]; chance a value is redrawn instead of perturbed.
      lineage_length: G, generations of parent ids kept in the state.
    """
    owner = "make_pbt"
    specs = _check_specs(ppo_hparam_specs() if specs is None else specs)
    truncation_fraction = _check_float(owner, "truncation_fraction", truncation_fraction, 0.0, 0.5, low_open=True)
    ready_iterations = _check_int(owner, "ready_iterations", ready_iterations, 0)
    interval = max(ready_iterations, 1) if interval is None else _check_int(owner, "interval", interval, 1)
    perturb_factor = _check_float(owner, "perturb_factor", perturb_factor, 1.0, math.inf)
    resample_probability = _check_float(owner, "resample_probability", resample_probability, 0.0, 1.0)
    lineage_length = _check_int(owner, "lineage_length", lineage_length, 1)

    def init(population_size: int, key: jax.Array) -> PBTState:
        del key  # PBT's state starts deterministic
        size = _check_int(owner, "population_size", population_size, 1)
        return PBTState(
            iterations_since_exploit=jnp.zeros((size,), jnp.int32),
            num_calls=jnp.int32(0),
            generation=jnp.int32(0),
            parents=jnp.full((lineage_length, size), -1, jnp.int32),
        )

    def update(
        state: PBTState, population: PopulationState, progress: Progress, key: jax.Array
    ) -> tuple[PBTState, PopulationState, PBTEvents]:
        """One call per training iteration; see `make_pbt`.

        Args:
          state: `PBTState` for P members.
          population: `PopulationState`, leading axis P.
          progress: float[P], fitness (higher is better), e.g. recent normalised return; or
            a function returning it, called only at a generation step.
          key: consumed once.
        """
        size = _population_axis(owner, state.iterations_since_exploit, progress)
        num_selected = num_truncated(size, truncation_fraction)
        members = jnp.arange(size, dtype=jnp.int32)
        since = state.iterations_since_exploit + 1
        num_calls = state.num_calls + 1
        due = (num_calls % interval == 0) & (num_selected > 0)
        selection_key, explore_key = jax.random.split(key)

        def generation(population):
            parent, replaced = truncation_selection(
                selection_key, _measure(progress), since >= ready_iterations, num_selected
            )
            hparams = gather_members(population.hparams, parent)
            explored = explore_hparams(explore_key, hparams, specs, perturb_factor, resample_probability)
            new = PopulationState(
                learner=gather_members(population.learner, parent),
                hparams=_select_members(replaced, explored, hparams),
                rng=_fork_rng(population.rng, parent, replaced),
            )
            return new, parent, replaced

        def skip(population):
            return population, members, jnp.zeros((size,), bool)

        population, parent, replaced = jax.lax.cond(due, generation, skip, population)
        slot = state.generation % lineage_length
        new_state = PBTState(
            iterations_since_exploit=jnp.where(replaced, 0, since),
            num_calls=num_calls,
            generation=state.generation + due.astype(jnp.int32),
            parents=jnp.where(due, state.parents.at[slot].set(parent), state.parents),
        )
        return new_state, population, PBTEvents(due=due, did_exploit=replaced, parent=parent)

    return MetaController(init=init, update=update)


# ----------------------------------------------------------------------------------------------
# Sliding-window UCB bandit (Garivier & Moulines 2011).


@struct.dataclass
class SWUCBState:
    """Sliding-window UCB state; every member runs its own bandit, pulls happen together.

    Attributes:
      arm_history: int32[P, W], a ring of the arms whose rewards are in the window (-1 unfilled).
      reward_history: float32[P, W], their rewards.
      num_rewards: int32[], rewards recorded so far (slot ``num_rewards % W`` is written next).
      current_arm: int32[P], the arm in use (-1 before the first pull).
      progress_at_pull: float32[P], progress when the current arm was pulled.
      num_calls: int32[], update calls so far.
      arm_counts: int32[P, K], pulls of each arm since the start (the window forgets, this not).
    """

    arm_history: jax.Array
    reward_history: jax.Array
    num_rewards: jax.Array
    current_arm: jax.Array
    progress_at_pull: jax.Array
    num_calls: jax.Array
    arm_counts: jax.Array


@struct.dataclass
class SWUCBEvents:
    """What one bandit update did.

    Attributes:
      due: bool[], a pull happened at this call.
      arm: int32[P], the arm in use after this call.
      reward: float32[P], the reward credited to the previous arm at this call (0 if none).
    """

    due: jax.Array
    arm: jax.Array
    reward: jax.Array


def sw_ucb_scores(
    arm_history: jax.Array, reward_history: jax.Array, num_rewards: jax.Array, num_arms: int, exploration: float
) -> jax.Array:
    """Sliding-window UCB indices ``mean_k + c * sqrt(log(min(t, W)) / n_k)`` over the window.

    Args:
      arm_history: int[..., W], arms of the rewards in the window (-1 for empty slots).
      reward_history: float[..., W].
      num_rewards: int[], t, rewards recorded so far.
      num_arms: K (static).
      exploration: c (Garivier & Moulines' ``B * sqrt(xi)``; scale it to the rewards' range).

    Returns:
      float[..., K]; ``+inf`` for arms not pulled within the window.
    """
    window = arm_history.shape[-1]
    pulled = arm_history[..., None] == jnp.arange(num_arms)  # [..., W, K]
    counts = pulled.sum(-2).astype(jnp.float32)
    sums = jnp.where(pulled, reward_history[..., None], 0.0).sum(-2)
    log_t = jnp.log(jnp.maximum(jnp.minimum(num_rewards, window), 1).astype(jnp.float32))
    safe_counts = jnp.maximum(counts, 1.0)
    scores = sums / safe_counts + exploration * jnp.sqrt(log_t / safe_counts)
    return jnp.where(counts > 0, scores, jnp.inf)


def make_sw_ucb(
    arms: Mapping[str, Any],
    *,
    window: int = 50,
    pull_interval: int = 1,
    exploration: float = 1.0,
    apply_fn: Callable[[PopulationState, jax.Array], PopulationState] | None = None,
) -> MetaController:
    """A sliding-window UCB bandit per member over a static table of hparam settings.

    Every ``pull_interval`` calls (the first call included) each member credits its current arm
    with the reward ``progress - progress at the previous pull``, picks the arm with the highest
    `sw_ucb_scores` over its last ``window`` rewards (ties, such as untried arms, broken at
    random) and writes that arm's values into its hparams. The window forgets old rewards, so the
    bandit follows a best arm that changes during training.

    Args:
      arms: ``{field: values[K, ...]}``, arm k sets each field to ``values[k]`` (e.g.
        ``{"gamma": [0.9, 0.99, 0.999]}``); every field must have the same K.
      window: W, the rewards each member remembers.
      pull_interval: calls between pulls.
      exploration: c in `sw_ucb_scores`.
      apply_fn: ``(population, arm int32[P]) -> population``, how a pulled arm is written;
        default: each ``arms`` field into ``population.hparams``. Give one to write arms
        elsewhere, e.g. the update-rule index in the learner's meta parameters
        (`superlearner.learners.update_rules.switch`); ``arms`` then only fixes K and its values are
        whatever ``apply_fn`` reads.
    """
    owner = "make_sw_ucb"
    if not isinstance(arms, Mapping) or not arms:
        raise UserError(f"{owner}: arms must be a non-empty mapping {{field: values[K]}}, got {arms!r}")
    table = {}
    for name, values in arms.items():
        values = np.asarray(values, np.float32)
        if values.ndim < 1 or values.shape[0] < 1:
            raise UserError(
                f"{owner}: arms[{name!r}] must have a leading axis of K >= 1 arms, got shape {values.shape}"
            )
        table[name] = values
    sizes = {name: values.shape[0] for name, values in table.items()}
    if len(set(sizes.values())) != 1:
        raise UserError(f"{owner}: every arms field needs the same number of arms, got {sizes}")
    num_arms = next(iter(sizes.values()))
    window = _check_int(owner, "window", window, 1)
    pull_interval = _check_int(owner, "pull_interval", pull_interval, 1)
    exploration = _check_float(owner, "exploration", exploration, 0.0, math.inf)

    def init(population_size: int, key: jax.Array) -> SWUCBState:
        del key  # ties are broken with the update's key
        size = _check_int(owner, "population_size", population_size, 1)
        return SWUCBState(
            arm_history=jnp.full((size, window), -1, jnp.int32),
            reward_history=jnp.zeros((size, window), jnp.float32),
            num_rewards=jnp.int32(0),
            current_arm=jnp.full((size,), -1, jnp.int32),
            progress_at_pull=jnp.zeros((size,), jnp.float32),
            num_calls=jnp.int32(0),
            arm_counts=jnp.zeros((size, num_arms), jnp.int32),
        )

    def apply_arm(hparams: Any, arm: jax.Array) -> Any:
        values = {}
        for name, column in table.items():
            current = jnp.asarray(_get_field(hparams, name))
            value = jnp.asarray(column)[arm]
            if value.shape != current.shape:
                raise UserError(
                    f"{owner}: arms[{name!r}] gives values of shape {value.shape[1:]} per member, "
                    f"but hparams.{name} has shape {current.shape[1:]}"
                )
            values[name] = value
        return _replace_fields(hparams, values)

    def update(
        state: SWUCBState, population: PopulationState, progress: Progress, key: jax.Array
    ) -> tuple[SWUCBState, PopulationState, SWUCBEvents]:
        """One call per training iteration; see `make_sw_ucb`.

        Args:
          state: `SWUCBState` for P members.
          population: `PopulationState`; only ``hparams`` is changed (or what ``apply_fn``
            writes).
          progress: float[P], a progress signal whose change rewards the arm in use; or a
            function returning it, called only at a pull.
          key: consumed once.
        """
        size = _population_axis(owner, state.current_arm, progress)
        due = state.num_calls % pull_interval == 0

        def pull(population):
            progress_now = _measure(progress)
            credited = state.current_arm[0] >= 0  # members pull together: all or none
            reward = jnp.where(credited, progress_now - state.progress_at_pull, 0.0)
            slot = state.num_rewards % window
            arm_history = jnp.where(
                credited, state.arm_history.at[:, slot].set(state.current_arm), state.arm_history
            )
            reward_history = jnp.where(
                credited, state.reward_history.at[:, slot].set(reward), state.reward_history
            )
            num_rewards = state.num_rewards + credited.astype(jnp.int32)
            scores = sw_ucb_scores(arm_history, reward_history, num_rewards, num_arms, exploration)
            best = scores == scores.max(-1, keepdims=True)
            arm = jax.random.categorical(key, jnp.where(best, 0.0, -jnp.inf), axis=-1).astype(jnp.int32)
            if apply_fn is None:
                population = population.replace(hparams=apply_arm(population.hparams, arm))
            else:
                population = apply_fn(population, arm)
            return population, arm_history, reward_history, num_rewards, arm, progress_now, reward

        def wait(population):
            return (
                population, state.arm_history, state.reward_history, state.num_rewards, state.current_arm,
                state.progress_at_pull, jnp.zeros((size,), jnp.float32),
            )

        population, arm_history, reward_history, num_rewards, arm, progress_at_pull, reward = jax.lax.cond(
            due, pull, wait, population
        )
        new_state = SWUCBState(
            arm_history=arm_history,
            reward_history=reward_history,
            num_rewards=num_rewards,
            current_arm=arm,
            progress_at_pull=progress_at_pull,
            num_calls=state.num_calls + 1,
            arm_counts=state.arm_counts + (due & (arm[:, None] == jnp.arange(num_arms))).astype(jnp.int32),
        )
        return new_state, population, SWUCBEvents(due=due, arm=arm, reward=reward)

    return MetaController(init=init, update=update)


def __getattr__(name: str):
    # ``PPO_HPARAM_SPECS``: PPO's search space, computed from its declarations on first use (an
    # import of the learner at module level would make this module's import heavy).
    if name == "PPO_HPARAM_SPECS":
        return ppo_hparam_specs()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
