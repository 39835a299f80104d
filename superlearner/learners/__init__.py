"""Learners in the optax style: a factory returns pure ``init`` and ``update`` functions."""
