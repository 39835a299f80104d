"""Declarations that the config schema, the learners and the meta-controllers share.

* `field`: a config field with its one-line description and accepted range.
* `HparamSpec`: an adaptable hyperparameter's search range and its map to an unconstrained
  number (what PBT, the bandit and the meta-gradient move).
* `Hparam`: a learner's hyperparameter, declared once: name, default, description, accepted
  range and (when a meta-learner may adapt it) its `HparamSpec`. From a learner's tuple of
  `Hparam`s come its traced hyperparameter pytree (`hparams_type`), its config section's fields
  (`hparam_fields`) and the meta-controllers' search space (`hparam_specs`); there is no second
  list to keep in step.

Nothing here imports JAX-heavy modules beyond ``jax.numpy``; every layer may import it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import struct

from superlearner.errors import UserError


def field(default: Any, doc: str, *, low: float | None = None, high: float | None = None, **kwargs):
    """A config field with its description and optional numeric bounds (inclusive)."""
    metadata = {"doc": doc, "low": low, "high": high}
    if isinstance(default, type):  # a nested config section or an empty container
        return dataclasses.field(default_factory=default, metadata=metadata, **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


# ----------------------------------------------------------------------------------------------
# Search ranges of adaptable hyperparameters.

TRANSFORMS = ("log", "logit", "affine")


@dataclasses.dataclass(frozen=True)
class HparamSpec:
    """One adaptable hyperparameter: which field, its bounds, and its unconstrained form.

    Attributes:
      name: the field of the hparams pytree (a struct dataclass or a dict), e.g. ``"gamma"``.
      low: smallest allowed value (inclusive).
      high: largest allowed value (inclusive).
      transform: the map ``x -> u`` to an unconstrained number:
        ``"log"``: ``u = log(x)`` (needs ``0 < low``); a step ``d`` in ``u`` scales ``x`` by
        ``exp(d)``.
        ``"logit"``: ``u = log(x / (1 - x))`` (needs ``0 < low < high < 1``); a step scales the
        odds ``x / (1 - x)``, which for a discount is about its horizon ``1 / (1 - x)``.
        ``"affine"``: ``u = (x - low) / (high - low)``; a step moves ``x`` by that fraction of
        the range.
    """

    name: str
    low: float
    high: float
    transform: str = "log"

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise UserError(f"HparamSpec name={self.name!r} must be a non-empty field name")
        for bound in ("low", "high"):
            value = getattr(self, bound)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise UserError(f"HparamSpec {self.name!r}: {bound}={value!r} must be a finite number")
        if self.transform not in TRANSFORMS:
            raise UserError(
                f"HparamSpec {self.name!r}: transform={self.transform!r} is unknown, accepted "
                f"{', '.join(TRANSFORMS)}"
            )
        if not self.low < self.high:
            raise UserError(f"HparamSpec {self.name!r}: needs low < high, got low={self.low}, high={self.high}")
        if self.transform == "log" and not self.low > 0:
            raise UserError(f"HparamSpec {self.name!r}: transform 'log' needs low > 0, got low={self.low}")
        if self.transform == "logit" and not (0 < self.low and self.high < 1):
            raise UserError(
                f"HparamSpec {self.name!r}: transform 'logit' needs 0 < low < high < 1, "
                f"got low={self.low}, high={self.high}"
            )

    def to_unconstrained(self, x: jax.Array) -> jax.Array:
        """``u`` of values ``x`` (any shape; float dtype kept)."""
        x = jnp.asarray(x)
        if self.transform == "log":
            return jnp.log(x)
        if self.transform == "logit":
            return jnp.log(x) - jnp.log1p(-x)
        return (x - self.low) / (self.high - self.low)

    def from_unconstrained(self, u: jax.Array) -> jax.Array:
        """Values of unconstrained ``u`` (any shape); not clipped to the bounds."""
        u = jnp.asarray(u)
        if self.transform == "log":
            return jnp.exp(u)
        if self.transform == "logit":
            return jax.nn.sigmoid(u)
        return self.low + u * (self.high - self.low)

    def clip(self, x: jax.Array) -> jax.Array:
        """``x`` clipped to ``[low, high]`` (as represented in ``x``'s dtype)."""
        return jnp.clip(x, self.low, self.high)

    @property
    def unconstrained_bounds(self) -> tuple[float, float]:
        """``(u(low), u(high))``: the box that sampling and resampling draw from."""
        if self.transform == "log":
            return math.log(self.low), math.log(self.high)
        if self.transform == "logit":
            return tuple(math.log(b) - math.log1p(-b) for b in (self.low, self.high))
        return 0.0, 1.0


# ----------------------------------------------------------------------------------------------
# A learner's hyperparameters, declared once.


@dataclasses.dataclass(frozen=True)
class Hparam:
    """One traced hyperparameter of a learner.

    Attributes:
      name: the field name, in the hparams pytree, the config section and the logs.
      default: the starting value when the config gives none.
      doc: one line for the config reference.
      low, high: the values a config may give (inclusive).
      search: ``(low, high, transform)``: the range and unconstrained form a meta-controller
        explores (see `HparamSpec`); None when the value is never adapted.
    """

    name: str
    default: float
    doc: str
    low: float = 0.0
    high: float = 1e6
    search: tuple[float, float, str] | None = None

    def __post_init__(self):
        if not self.low <= self.default <= self.high:
            raise UserError(f"Hparam {self.name!r}: default {self.default} is outside {self.low}..{self.high}")
        if self.search is not None:
            HparamSpec(self.name, *self.search)  # validates the range and transform

    @property
    def spec(self) -> HparamSpec | None:
        """The meta-controllers' search space of this hyperparameter (None: not adaptable)."""
        return None if self.search is None else HparamSpec(self.name, *self.search)


def hparams_type(name: str, hparams: Sequence[Hparam], doc: str = "") -> type:
    """A `flax.struct` dataclass with one float32 array field per declared hyperparameter.

    The class has ``from_values(**values)``: every field from ``values`` or its declared default,
    as float32 arrays (an unknown name raises `UserError` listing the known ones), and
    ``declarations``, the `Hparam` tuple it was made from.
    """
    hparams = tuple(hparams)
    names = [h.name for h in hparams]
    if len(set(names)) != len(names):
        raise UserError(f"{name}: hyperparameters declared twice: {sorted({n for n in names if names.count(n) > 1})}")
    defaults = {h.name: h.default for h in hparams}

    def from_values(cls, **values: float):
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise UserError(f"{name}: unknown hyperparameter {unknown[0]!r}; known: {', '.join(names)}")
        merged = {**defaults, **values}
        return cls(**{n: jnp.asarray(merged[n], jnp.float32) for n in names})

    namespace = {
        "__annotations__": {n: jax.Array for n in names},
        "__doc__": doc or f"Traced hyperparameters ({', '.join(names)}), float32 arrays.",
        "__module__": __name__,
        "from_values": classmethod(from_values),
        "declarations": hparams,
    }
    return struct.dataclass(type(name, (), namespace))


def hparam_fields(hparams: Sequence[Hparam], prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``make_dataclass`` field triples of a config section holding these hyperparameters: each
    one number, or a list with one value per population member (type ``Any``)."""
    return [
        (h.name, Any, field(h.default, f"{prefix}{h.doc}", low=h.low, high=h.high))
        for h in hparams
    ]


def hparam_specs(hparams: Sequence[Hparam]) -> tuple[HparamSpec, ...]:
    """The search space of every adaptable hyperparameter among ``hparams``."""
    return tuple(h.spec for h in hparams if h.spec is not None)


def population_values(section: Any, hparams: Sequence[Hparam], size: int, cls: type):
    """``cls`` (from `hparams_type`) with a leading population axis ``[size]``, from a config
    section whose fields hold one number or one per member."""
    values = {}
    for h in hparams:
        value = getattr(section, h.name)
        values[h.name] = jnp.asarray(value if isinstance(value, tuple) else (value,) * size, jnp.float32)
    return cls(**values)
