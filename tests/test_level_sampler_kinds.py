"""The level sampler's kinds: each of `KINDS` has a factory in the registry, and every sampler
carries the same functions whatever its kind."""

import inspect

import jax
import jax.numpy as jnp
import pytest

from superlearner.curriculum import levels as cur


def sample(key):
    return jax.random.randint(key, (), 0, 100, dtype=jnp.int32)


def mutate(key, level, num_edits):
    del key
    return level + num_edits


def test_every_kind_has_a_factory_and_no_other():
    assert tuple(cur._SAMPLERS) == cur.KINDS


@pytest.mark.parametrize("kind", cur.KINDS)
def test_each_kind_builds_a_sampler_of_that_kind_with_the_shared_signatures(kind):
    sampler = cur.make_level_sampler(kind, capacity=4, batch_size=2, sample_fn=sample, mutate_fn=mutate)
    assert (sampler.kind, sampler.capacity, sampler.batch_size) == (kind, 4, 2)
    assert list(inspect.signature(sampler.update).parameters) == [
        "buffer", "batch", "scores", "max_returns", "success_rates", "mask"
    ]
    buffer = sampler.init(jnp.int32(0))
    buffer, batch = sampler.next_levels(buffer, jax.random.key(0), cur.CurriculumHparams.from_values())
    assert batch.levels.shape == (2,) and batch.indices.shape == (2,)
    # An empty buffer has nothing to replay: every kind starts on fresh levels.
    assert int(batch.mode) == cur.MODE_FRESH and (batch.indices == -1).all()
