"""Shared test settings.

* Identical programs compiled by different tests (or by the CLI subprocesses tests start) are
  compiled once: a persistent compilation cache lives for the test session.
* JAX's key-reuse checker reports false positives for a `lax.scan` under `vmap` in the JAX
  versions we support, so it is switched on in the tests that can use it rather than globally.
"""

import os
import tempfile

import pytest

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
_CACHE_DIR = os.environ.setdefault(
    "SUPERLEARNER_TEST_COMPILATION_CACHE", os.path.join(tempfile.gettempdir(), "superlearner-test-xla-cache")
)

import jax  # noqa: E402

jax.config.update("jax_compilation_cache_dir", _CACHE_DIR)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.fixture
def subprocess_env():
    """Environment for CLI subprocesses: the same compilation cache, no progress bar noise."""
    env = dict(os.environ)
    env["JAX_COMPILATION_CACHE_DIR"] = _CACHE_DIR
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.5"
    env["PYTHONUNBUFFERED"] = "1"
    return env
