"""Training throughput of JaxUED's own maze examples, for the same-run comparison of
`python scripts/benchmark.py curriculum --jaxued DIR`.

    python scripts/reference_jaxued.py --checkout DIR --example plr|accel|dr [--updates N] [--chunks K]

``DIR`` is a JaxUED checkout (its ``examples/maze_plr.py`` and ``examples/maze_dr.py``; the
``jaxued`` package importable by the Python that runs this). Prints one JSON line: env steps per
second of the example's own training step with compilation excluded, and how many of the timed
updates replayed, mutated or drew fresh levels.

How the example is run, unmodified:

* Its config is what its own argument parser gives (the statements of its ``__main__`` block up to
  the ``group_name`` entry, run with ``--checkpoint_save_interval 0``, plus ``--use_accel`` for
  ACCEL), read from the file.
* Its ``train_step`` and ``create_train_state`` are closures inside its ``main()``; the statements of
  ``main()`` that build them (from ``env = Maze(...)`` to the definition of ``eval``) and the
  train-state setup (from ``rng = jax.random.PRNGKey(config["seed"])`` to ``runner_state = ...``)
  are run as they are in the file. Nothing of wandb, evaluation, checkpoints or logging runs
  (wandb is a stub that refuses every use).
* One timed chunk is its ``train_and_eval_step``'s training scan, ``N`` updates, without the
  evaluation that follows it every 250 updates. Timing starts after the buffer holds
  ``minimum_fill_ratio`` of its capacity, as in a run past its first minutes: before that robust
  PLR and ACCEL only draw fresh levels and never take a gradient step.
"""

from __future__ import annotations

import argparse
import ast
import importlib.metadata
import importlib.util
import json
import sys
import time
import types

FLAGS = {"plr": ("maze_plr.py", []), "accel": ("maze_plr.py", ["--use_accel"]), "dr": ("maze_dr.py", [])}


class _RefusingModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise RuntimeError(f"wandb.{name} was used; the benchmark runs no logging")


def _is_assignment_to(node: ast.stmt, text: str) -> bool:
    return isinstance(node, ast.Assign) and len(node.targets) == 1 and ast.unparse(node.targets[0]).replace("'", '"') == text


def _run_statements(statements: list[ast.stmt], filename: str, namespace: dict) -> None:
    exec(compile(ast.Module(body=statements, type_ignores=[]), filename, "exec"), namespace)


def _index(statements: list[ast.stmt], predicate, start: int = 0) -> int:
    for i in range(start, len(statements)):
        if predicate(statements[i]):
            return i
    raise SystemExit("the example's main() does not have the expected structure; was the checkout changed?")


def build(checkout: str, example: str) -> tuple[dict, dict]:
    """The example's namespace after its setup (``train_step``, ``runner_state``, ...) and config."""
    filename, flags = FLAGS[example]
    path = f"{checkout}/examples/{filename}"
    source = open(path, encoding="utf-8").read()
    tree = ast.parse(source, filename=path)
    sys.modules.setdefault("wandb", _RefusingModule("wandb"))
    spec = importlib.util.spec_from_file_location(f"jaxued_{example}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # not __main__: its main block does not run
    namespace = dict(vars(module))

    block = next(node for node in tree.body if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test))
    parser = block.body[: _index(block.body, lambda n: _is_assignment_to(n, 'config["group_name"]')) + 1]
    argv, sys.argv = sys.argv, [path, *flags, "--checkpoint_save_interval", "0"]
    try:
        _run_statements(parser, path, namespace)
    finally:
        sys.argv = argv

    body = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "main").body
    start = _index(body, lambda n: _is_assignment_to(n, "env") and ast.unparse(n.value).startswith("Maze("))
    end = _index(body, lambda n: isinstance(n, ast.FunctionDef) and n.name == "eval", start)
    setup = _index(body, lambda n: _is_assignment_to(n, "rng") and "PRNGKey" in ast.unparse(n.value), end)
    ready = _index(body, lambda n: _is_assignment_to(n, "runner_state"), setup)
    _run_statements(body[start:end] + body[setup:ready + 1], path, namespace)
    return namespace, namespace["config"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", required=True, help="a JaxUED checkout (holding examples/)")
    parser.add_argument("--example", choices=sorted(FLAGS), required=True)
    parser.add_argument("--updates", type=int, default=20, help="updates per timed chunk (default 20)")
    parser.add_argument("--chunks", type=int, default=3, help="timed chunks; the best counts (default 3)")
    args = parser.parse_args()

    import jax

    namespace, config = build(args.checkout, args.example)
    train_step, state = namespace["train_step"], namespace["runner_state"]

    def chunk(state):
        return jax.lax.scan(train_step, state, None, args.updates)[0]

    programs = {}

    def run(state):
        # A state whose types changed after a chunk (a weakly typed counter becoming strong) gets
        # its own program, as the example's own jit would compile one; compiling is not timed.
        leaves, tree = jax.tree.flatten(state)
        signature = (tree, tuple((x.shape, str(x.dtype), getattr(x, "weak_type", False)) for x in leaves))
        if signature not in programs:
            programs[signature] = jax.jit(chunk).lower(state).compile()
        start = time.perf_counter()
        state = jax.block_until_ready(programs[signature](state))
        return state, time.perf_counter() - start

    def counts(state):
        train_state = state[1]
        if args.example == "dr":
            return {"updates": int(train_state.update_count)}
        return {"fresh": int(train_state.num_dr_updates), "replay": int(train_state.num_replay_updates),
                "mutate": int(train_state.num_mutation_updates), "buffer": int(train_state.sampler["size"])}

    start = time.perf_counter()
    state, _ = run(state)
    compile_seconds = time.perf_counter() - start
    if args.example != "dr":
        while counts(state)["buffer"] < config["minimum_fill_ratio"] * config["level_buffer_capacity"]:
            state, _ = run(state)
    before = counts(state)
    seconds = []
    for _ in range(args.chunks):
        state, elapsed = run(state)
        seconds.append(elapsed)
    after = counts(state)
    steps = args.updates * config["num_train_envs"] * config["num_steps"]
    print(json.dumps(dict(
        example=args.example, seconds=seconds, rate=steps / min(seconds), first_chunk_with_compile=compile_seconds,
        counts={name: after[name] - before[name] for name in after if name != "buffer"},
        settings={name: config[name] for name in ("num_train_envs", "num_steps", "epoch_ppo", "num_minibatches")},
        versions={name: importlib.metadata.version(name) for name in ("jax", "flax")},
    )))


if __name__ == "__main__":
    main()
