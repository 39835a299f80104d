"""Hashing of arrays inside jit (level de-duplication, seeds derived from contents)."""

import jax
import jax.numpy as jnp

Array = jax.Array


def fmix32(h: Array) -> Array:
    """MurmurHash3's finaliser on uint32 words: every input bit affects every output bit."""
    h = h ^ (h >> jnp.uint32(16))
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> jnp.uint32(13))
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> jnp.uint32(16))
