"""Gymnasium, both ways: superlearner envs as `gymnasium.Env`, gymnasium envs as a source."""

from __future__ import annotations

GYMNASIUM_NAMESPACE = "superlearner"


def register_gymnasium_id(env_id: str) -> None:
    """Makes ``gymnasium.make("superlearner/<env_id>")`` work."""
    import gymnasium

    full_id = f"{GYMNASIUM_NAMESPACE}/{env_id}"
    if full_id in gymnasium.registry:
        return
    gymnasium.register(id=full_id, entry_point="superlearner.gym:make_gymnasium_env", kwargs={"env_id": env_id})


def register_all() -> None:
    from superlearner.registry import list_envs

    for env_id in list_envs():
        register_gymnasium_id(env_id)


def make_gymnasium_env(env_id: str, **options):
    return to_gymnasium(env_id, **options)


def to_gymnasium(env_or_id, **options):
    raise NotImplementedError
