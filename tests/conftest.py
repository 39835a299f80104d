"""Shared test settings.

JAX's key-reuse checker reports false positives for a `lax.scan` under `vmap` in the JAX versions
we support, so it is switched on per test (see tests/test_keys.py) rather than for the whole
suite.
"""

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
