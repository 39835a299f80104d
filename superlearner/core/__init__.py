"""The environment contract and what every layer above needs of it: `env` (the contract and its
shared bookkeeping), `registry` (env ids), `wrappers`, `testing` (`check_env`), `gym` (the Gymnasium
bridge), `distributed` (device meshes), `evaluate` (episodes of a policy).
"""
