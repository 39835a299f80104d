"""Every registered environment passes the conformance checker."""

import pytest

import superlearner as sl
from superlearner.testing import check_env


@pytest.mark.parametrize("env_id", sl.list_envs())
def test_builtin_env_conforms(env_id):
    check_env(sl.make(env_id))
