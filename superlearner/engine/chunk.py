"""The compiled train chunk: a population's iteration mapped over members, looped K times.

`make_train_chunk` turns ``init(seed)`` and one ``iteration(state) -> (state, metrics)`` into the
run's two programs; `initial_state` and `lower_init` compile the init; `map_population` maps a
member's function over the population (the mesh's ``pop`` axis).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

def map_population(member_fn: Callable, size: int, num_shared: int = 0) -> Callable:
    """``member_fn`` over a population of ``size``: every argument but the last ``num_shared``
    has a leading member axis, and so does every output.

    Members map to the mesh's `pop` axis: a sharding constraint inside a member's code
    (`superlearner.core.distributed.split_over_data`) then keeps the population split. A single
    member runs unbatched: a batch axis of one still turns every matmul and convolution into a
    batched one, which XLA's CPU backend runs markedly slower.
    """
    if size > 1:
        def mapped(*args):
            in_axes = (0,) * (len(args) - num_shared) + (None,) * num_shared
            return jax.vmap(member_fn, in_axes=in_axes, spmd_axis_name="pop")(*args)

        return mapped

    def unbatched(*args):
        cut = len(args) - num_shared
        members = jax.tree.map(lambda x: x[0], args[:cut])
        return jax.tree.map(lambda x: x[None], member_fn(*members, *args[cut:]))

    return unbatched


def make_train_chunk(init: Callable, iteration: Callable, num_iterations: int) -> tuple[Callable, Callable]:
    """``(init, train_chunk)`` of an engine from its ``init(seed)`` and one ``iteration(state)
    -> (state, metrics)``; every learner's engine builds its chunk here.

    Both come back jitted, so each is traced once: the metric shapes read here come from traces
    that the train chunk's and `initial_state`'s own traces then reuse from JAX's cache.
    """
    init_traced, iteration_traced = jax.jit(init), jax.jit(iteration)
    metric_shapes = jax.eval_shape(lambda s: iteration_traced(s)[1], jax.eval_shape(init_traced, jnp.int32(0)))

    def train_chunk(state, num_chunk_iterations: int) -> tuple[Any, dict]:
        """Runs ``num_chunk_iterations`` (static) iterations, fewer where the run ends first;
        returns metrics ``[K, P]`` and a ``valid`` flag ``[K]`` (false, with NaN metrics, for
        iterations past the end of the run).

        A loop over a traced count rather than a scan with a per-iteration branch: the last,
        partial chunk of a run reuses the same program, and the iterations carry no branch.
        """
        count = jnp.clip(num_iterations - state.iteration, 0, num_chunk_iterations)
        buffers = jax.tree.map(lambda s: jnp.full((num_chunk_iterations,) + s.shape, jnp.nan, s.dtype), metric_shapes)

        def body(index, carry):
            state, buffers = carry
            state, metrics = iteration_traced(state)
            buffers = jax.tree.map(lambda b, m: jax.lax.dynamic_update_index_in_dim(b, m, index, 0), buffers, metrics)
            return state, buffers

        state, metrics = jax.lax.fori_loop(0, count, body, (state, buffers))
        metrics["valid"] = jnp.arange(num_chunk_iterations) < count
        metrics["iteration"] = state.iteration - count + jnp.minimum(jnp.arange(num_chunk_iterations) + 1, count)
        return state, metrics

    return init_traced, train_chunk


# XLA's backend optimisation level for the init program. It runs once per run, so the default
# level's code-generation time is wasted; level 0 halves init's compile time on CPU.
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def initial_state(engine, seed: int, out_shardings: Any = None):
    """The TrainState of a fresh run of ``engine`` for ``seed``, built by one compiled program.

    The seed is traced, so every seed reuses one program (and the persistent compilation cache
    entry); ``out_shardings`` places the state on a device mesh (None: the default device).
    Host-side only (it compiles a program of its own); inside a trace call ``engine.init``.
    """
    init = _compiled_init(engine.init, out_shardings)
    return init(jnp.int32(seed))


def lower_init(engine, out_shardings: Any = None):
    """``engine.init`` lowered for a traced int32 seed (compile it with ``.compile()``; call the
    result with ``jnp.int32(seed)``), as `initial_state` compiles it."""
    return _compiled_init(engine.init, out_shardings).lower(jax.ShapeDtypeStruct((), jnp.int32))


def compile_concurrently(*lowered) -> list:
    """Compiles lowered programs at the same time: the first on this thread, the others each on a
    thread of its own; returns them compiled, in order.

    XLA compiles one program on one thread, so a run's init and train chunk compiled together on
    a machine with two or more cores take as long as the chunk alone. An error in any of them is
    raised here, after all have finished.
    """
    import threading

    results: list = [None] * len(lowered)
    errors: list = []

    def compile_one(index):
        try:
            results[index] = lowered[index].compile()
        except BaseException as error:  # re-raised on the caller's thread below
            errors.append(error)

    threads = [threading.Thread(target=compile_one, args=(index,), daemon=True) for index in range(1, len(lowered))]
    for thread in threads:
        thread.start()
    compile_one(0)
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def _compiled_init(init_fn: Callable, out_shardings: Any):
    options = dict(compiler_options=INIT_COMPILER_OPTIONS)
    if out_shardings is not None:
        options["out_shardings"] = out_shardings
    return jax.jit(init_fn, **options)


