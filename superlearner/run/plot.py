"""Figures (PNG): learning curves from a run's ``metrics.jsonl``, update rules' drift surfaces and
the PBT lineage tree."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from superlearner.errors import UserError
from superlearner.run.logs import read_metrics

PANELS = (
    ("return", ("episode_return",)),
    ("losses", ("loss_total", "loss_policy", "loss_value")),
    ("entropy", ("entropy", "approx_kl", "clip_fraction")),
    ("speed", ("steps_per_second",)),
)


def plot_run(run_dir: str | Path) -> list[Path]:
    """Writes ``plots/*.png`` into ``run_dir``; returns the paths written.

    Given a learned update-rule file (``.npz``) instead, draws its drift surface beside it
    (`plot_rule_file`), so ``superlearner plot rule.npz`` works too.
    """
    if Path(run_dir).suffix == ".npz":
        return [plot_rule_file(run_dir)]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    records = read_metrics(run_dir)
    if not records:
        raise UserError(f"{run_dir}: no metrics.jsonl records to plot")
    out_dir = run_dir / "plots"
    out_dir.mkdir(exist_ok=True)
    steps = np.array([r["env_steps"] for r in records], dtype=np.float64)
    written = []

    def series(name: str, group: str = "metrics") -> np.ndarray | None:
        # A record without the value (null: undefined in that chunk, e.g. the losses of an update
        # a curriculum skipped) is a gap in the curve; a metric no record has is not drawn.
        values = [r.get(group, {}).get(name) if group else r.get(name) for r in records]
        values = [None if v is None else np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in values]
        shape = next((v.shape for v in values if v is not None), None)
        if shape is None:
            return None
        return np.stack([np.full(shape, np.nan) if v is None else v for v in values])

    def save(fig, name):
        path = out_dir / f"{name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    for name, keys in PANELS:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        drawn = False
        for key in keys:
            values = series(key, None if key == "steps_per_second" else "metrics")
            if values is None:
                continue
            drawn = True
            if values.shape[1] == 1:
                ax.plot(steps, values[:, 0], label=key)
            else:
                for member in range(values.shape[1]):
                    ax.plot(steps, values[:, member], alpha=0.6, label=f"{key} [{member}]")
        if not drawn:
            plt.close(fig)
            continue
        ax.set_xlabel("env steps per member")
        ax.set_title(f"{run_dir.name}: {name}")
        ax.grid(alpha=0.3)
        if len(ax.lines) <= 10:
            ax.legend(fontsize=7)
        save(fig, name)

    # Strength against the fixed anchors, measured during training (two-player games).
    strength = sorted({k for r in records for k in r.get("metrics", {}) if k.startswith("vs_") or k.startswith("exploitability")})
    if strength:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for key in strength:
            xs = [r["env_steps"] for r in records if r.get("metrics", {}).get(key) is not None]
            ys = [np.mean(r["metrics"][key]) for r in records if r.get("metrics", {}).get(key) is not None]
            ax.plot(xs, ys, marker="o", markersize=3, label=key)
        ax.set_xlabel("env steps per member")
        ax.set_title(f"{run_dir.name}: strength against fixed anchors")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        save(fig, "strength")

    # The online rating measured inside the run (``rating.kind``), with its 95% band.
    online, online_stderr = series("rating"), series("rating_stderr")
    if online is not None and online_stderr is not None:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for member in range(online.shape[1]):
            measured = np.isfinite(online_stderr[:, member])
            xs, ys, half = steps[measured], online[measured, member], 1.96 * online_stderr[measured, member]
            label = "rating" if online.shape[1] == 1 else f"rating [{member}]"
            ax.plot(xs, ys, marker="o", markersize=3, label=label)
            ax.fill_between(xs, ys - half, ys + half, alpha=0.2)
        ax.set_xlabel("env steps per member")
        ax.set_ylabel("Elo (first anchor = 0)")
        ax.set_title(f"{run_dir.name}: online rating (95% band)")
        ax.grid(alpha=0.3)
        if online.shape[1] <= 10:
            ax.legend(fontsize=7)
        save(fig, "online_rating")

    # The rating curve written by `superlearner ratings`.
    ratings_path = run_dir / "ratings.json"
    if ratings_path.exists():
        import json

        table = json.loads(ratings_path.read_text())
        points = _rating_points(table)
        if points:
            fig, ax = plt.subplots(figsize=(6, 3.6))
            xs, ys, lows, highs = zip(*points)
            ax.plot(xs, ys, marker="o", label="checkpoints")
            ax.fill_between(xs, lows, highs, alpha=0.2)
            ax.set_xlabel("env steps per member")
            ax.set_ylabel("Elo (random = 0)")
            ax.set_title(f"{run_dir.name}: rating over training")
            ax.grid(alpha=0.3)
            save(fig, "ratings")

    # Curricula: held-out solve rate, the level buffer's statistics, and its levels over time.
    written.extend(_curriculum_figures(run_dir, records, out_dir, plt))

    hparam_names = sorted(records[-1].get("hparams", {}))
    effective_lr = series("learning_rate")
    if hparam_names:
        fig, axes = plt.subplots(len(hparam_names), 1, figsize=(6, 1.6 * len(hparam_names)), sharex=True, squeeze=False)
        for ax, name in zip(axes[:, 0], hparam_names):
            values = series(name, "hparams")
            if name == "learning_rate" and effective_lr is not None:
                values = effective_lr
                name = "learning_rate (effective)"
            for member in range(values.shape[1]):
                ax.plot(steps, values[:, member], alpha=0.8)
            ax.set_ylabel(name, fontsize=7)
            ax.grid(alpha=0.3)
        axes[-1, 0].set_xlabel("env steps per member")
        save(fig, "hparams")

    # The update rule's drift surface, for rules with a drift of their own (not plain PPO-clip).
    learner = _run_config(run_dir).get("learner", {})
    if learner.get("update_rule") in ("dpo", "learned"):
        from superlearner.learners.update_rules import make_update_rule, ppo_clip

        rule = make_update_rule(learner["update_rule"], learner.get("update_rule_file") or None)
        clip_eps = float(np.mean(records[-1].get("hparams", {}).get("clip_eps", 0.2)))
        written.append(plot_drift_surfaces(
            {"ppo_clip": (ppo_clip(), {}), rule.name: (rule, rule.init_meta_params())},
            out_dir / "drift_surface.png", clip_eps=clip_eps, title=f"{run_dir.name}: drift",
        ))

    # The PBT lineage tree, as the controller recorded it in the last checkpoint.
    if _run_config(run_dir).get("meta", {}).get("kind") == "pbt":
        lineage = read_lineage(run_dir)
        if lineage is not None:
            written.append(plot_lineage(lineage, out_dir / "lineage.png", title=f"{run_dir.name}: PBT lineage"))
    return written


CURRICULUM_PANELS = (
    ("heldout_solve_rate", "held-out solve rate (named levels)"),
    ("buffer_score_mean", "buffer score, mean"),
    ("buffer_score_max", "buffer score, max"),
    ("buffer_path_length_mean", "buffer shortest path, mean"),
    ("buffer_levels", "levels in the buffer"),
)


def _measured(records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(env steps, mean over members) of the records that hold metric ``key``."""
    rows = [(r["env_steps"], float(np.nanmean(r["metrics"][key]))) for r in records
            if r.get("metrics", {}).get(key) is not None]
    if not rows:
        return None
    xs, ys = zip(*rows)
    return np.asarray(xs, np.float64), np.asarray(ys, np.float64)


def _curriculum_figures(run_dir: Path, records: list[dict], out_dir: Path, plt) -> list[Path]:
    """``heldout.png``, ``curriculum_buffer.png`` and ``level_gallery.png``, where the run
    measured them (``curriculum.probe_every_chunks``)."""
    from superlearner.curriculum.probe import read_galleries

    written = []
    heldout = _measured(records, "heldout_solve_rate")
    if heldout is not None:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        ax.plot(*heldout, marker="o", markersize=3)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("env steps per member")
        ax.set_ylabel("solve rate")
        ax.set_title(f"{run_dir.name}: held-out solve rate over training")
        ax.grid(alpha=0.3)
        path = out_dir / "heldout.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    panels = [(key, title, _measured(records, key)) for key, title in CURRICULUM_PANELS[1:]]
    panels = [p for p in panels if p[2] is not None]
    if panels:
        fig, axes = plt.subplots(len(panels), 1, figsize=(6, 1.7 * len(panels)), sharex=True, squeeze=False)
        for ax, (_, title, (xs, ys)) in zip(axes[:, 0], panels):
            ax.plot(xs, ys, marker="o", markersize=2)
            ax.set_ylabel(title, fontsize=7)
            ax.grid(alpha=0.3)
        axes[-1, 0].set_xlabel("env steps per member")
        axes[0, 0].set_title(f"{run_dir.name}: level buffer over training")
        path = out_dir / "curriculum_buffer.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    galleries = [g for g in read_galleries(run_dir) if g["levels"]]
    if galleries:
        written.append(plot_level_gallery(galleries, out_dir / "level_gallery.png", title=f"{run_dir.name}: buffer levels",
                                          level_image=_level_drawing(run_dir)))
    return written


def _level_drawing(run_dir: Path):
    """``text -> RGB float[H, W, 3]`` from the run's env's level space where it draws levels
    (`level_to_image`, e.g. a game's start positions as boards), else None (the maze's text)."""
    from superlearner.core.registry import make

    env_config = _run_config(run_dir).get("env") or {}
    try:
        space = make(env_config["id"], **(env_config.get("options") or {})).level_space
    except (KeyError, UserError):
        return None
    if not (hasattr(space, "level_to_image") and hasattr(space, "level_from_text")):
        return None
    return lambda text: space.level_to_image(space.level_from_text(text))


def plot_level_gallery(galleries: list[dict], path: str | Path, *, title: str = "levels", max_rows: int = 6,
                       level_image=None) -> Path:
    """A grid of levels: one row per measurement (up to ``max_rows``, evenly spread over the
    run), the highest-scored levels of the buffer left to right, each titled with its score and
    shortest path (where the level has one). ``level_image(text) -> float[H, W, 3]`` draws a
    level from its text form; by default the maze's: walls black, free cells white, the start
    blue, the goal green. A game's start positions are drawn as boards (its level space's
    ``level_to_image``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [galleries[int(i)] for i in np.unique(np.linspace(0, len(galleries) - 1, min(max_rows, len(galleries))).round())]
    cols = max(len(g["levels"]) for g in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.3 * cols, 1.45 * len(rows)), squeeze=False)
    for r, gallery in enumerate(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(gallery["levels"]):
                ax.axis("off")
                continue
            level = gallery["levels"][c]
            ax.imshow((level_image or _level_image)(level["text"]), interpolation="nearest")
            length = level.get("path_length")
            ax.set_title(f"{level['score']:.3f}" + ("" if length is None else f" / {length}"), fontsize=6)
            if c == 0:
                ax.set_ylabel(f"it {gallery['iteration']}", fontsize=7)
    with_paths = any(level.get("path_length") is not None for g in rows for level in g["levels"])
    fig.suptitle(f"{title} (score / shortest path)" if with_paths else f"{title} (score)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def _level_image(text: str) -> np.ndarray:
    """RGB float[H, W, 3] of a level's text form: '#' wall, 'G' goal, an arrow or 'S' the start."""
    lines = [line for line in text.splitlines() if line.strip()]
    width = max(len(line) for line in lines)
    image = np.ones((len(lines), width, 3))
    for i, line in enumerate(lines):
        for j, char in enumerate(line):
            if char == "#":
                image[i, j] = 0.0
            elif char == "G":
                image[i, j] = (0.1, 0.7, 0.2)
            elif char not in ".":
                image[i, j] = (0.15, 0.35, 0.9)
    return image


def _run_config(run_dir: Path) -> dict:
    """The resolved config a run wrote (``config.yaml``), or {}."""
    import yaml

    path = run_dir / "config.yaml"
    try:
        raw = yaml.safe_load(path.read_text()) if path.is_file() else {}
    except yaml.YAMLError:
        return {}
    return raw if isinstance(raw, dict) else {}


# ----------------------------------------------------------------------------------------------
# Update rules: the drift surface (Lu et al. 2022, Fig. 2 shows the same view of DPO's drift).

RATIO_RANGE = (0.25, 4.0)
ADVANTAGE_RANGE = (-3.0, 3.0)


def drift_surface(rule, meta_params, clip_eps: float = 0.2, num_points: int = 121):
    """(ratio[R], advantage[A], drift[A, R]) of ``rule`` on a log-spaced ratio grid in
    `RATIO_RANGE` by a linear advantage grid in `ADVANTAGE_RANGE`."""
    import jax.numpy as jnp

    ratio = np.geomspace(*RATIO_RANGE, num_points).astype(np.float32)
    advantage = np.linspace(*ADVANTAGE_RANGE, num_points).astype(np.float32)
    grid_r, grid_a = np.meshgrid(ratio, advantage)
    drift = rule.drift(meta_params, jnp.asarray(grid_r.ravel()), jnp.asarray(grid_a.ravel()), jnp.float32(clip_eps))
    return ratio, advantage, np.asarray(drift).reshape(grid_r.shape)


def plot_drift_surfaces(rules: dict, path: str | Path, *, clip_eps: float = 0.2, title: str = "drift") -> Path:
    """Writes one heat map per rule of its drift over ratio x advantage; returns ``path``.

    Args:
      rules: name -> (UpdateRule, meta params).
      path: the PNG to write.
      clip_eps: the clip range the rules are evaluated with.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(rules), figsize=(3.6 * len(rules), 3.4), squeeze=False)
    for ax, (name, (rule, meta_params)) in zip(axes[0], rules.items()):
        ratio, advantage, drift = drift_surface(rule, meta_params, clip_eps)
        image = ax.pcolormesh(ratio, advantage, drift, shading="auto", cmap="viridis")
        ax.contour(ratio, advantage, drift, levels=6, colors="white", linewidths=0.5, alpha=0.6)
        ax.axvline(1.0, color="red", linewidth=0.8, alpha=0.7)
        ax.set_xscale("log")
        ticks = [t for t in (0.25, 0.5, 1.0, 2.0, 4.0) if RATIO_RANGE[0] <= t <= RATIO_RANGE[1]]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("probability ratio r")
        ax.set_ylabel("advantage A")
        ax.set_title(f"{name} (max {drift.max():.2g})", fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.suptitle(f"{title}, clip_eps={clip_eps:g}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_rule_file(rule_file: str | Path, path: str | Path | None = None, *, clip_eps: float = 0.2) -> Path:
    """The drift surfaces of PPO-clip, DPO and the learned rule in ``rule_file`` (default PNG:
    beside the file, ``<name>_drift.png``); returns the PNG's path."""
    from superlearner.learners.update_rules import dpo, learned, load_rule_file, ppo_clip

    rule_file = Path(rule_file)
    path = rule_file.with_name(rule_file.stem + "_drift.png") if path is None else Path(path)
    rules = {"ppo_clip": (ppo_clip(), {}), "dpo": (dpo(), dpo().init_meta_params()),
             f"learned ({rule_file.name})": (learned(), load_rule_file(rule_file))}
    return plot_drift_surfaces(rules, path, clip_eps=clip_eps, title="drift")


# ----------------------------------------------------------------------------------------------
# Population based training: the lineage tree.


def read_lineage(run_dir: str | Path) -> np.ndarray | None:
    """int[G, P]: the parent of every member at each recorded PBT generation, oldest first, from
    the run's latest checkpoint (None when the run has no checkpoint or no PBT controller).

    The controller keeps the last G generations in a ring (`superlearner.meta.controllers.make_pbt`,
    ``lineage_length``); older ones are not recorded.
    """
    from superlearner.run.agent import load_train_state
    from superlearner.errors import CheckpointError

    try:
        _, state, _ = load_train_state(run_dir)
    except (CheckpointError, FileNotFoundError):
        return None
    controller = state.meta.get("controller") if isinstance(state.meta, dict) else None
    if controller is None or not hasattr(controller, "parents"):
        return None
    return lineage_in_order(np.asarray(controller.parents), int(controller.generation))


def lineage_in_order(parents: np.ndarray, generation: int) -> np.ndarray:
    """The ring ``parents[G, P]`` (slot ``g % G`` holds generation g) after ``generation``
    generations, as int[min(generation, G), P] oldest first."""
    size = parents.shape[0]
    count = min(generation, size)
    slots = [(generation - count + i) % size for i in range(count)]
    return parents[slots] if slots else parents[:0]


def plot_lineage(parents, path: str | Path, *, title: str = "PBT lineage") -> Path:
    """Writes the lineage tree of ``parents[G, P]`` (the member each member copied at each
    generation; itself when it was kept) as a PNG; returns ``path``.

    Each column is a generation, each row a member slot; an edge joins a member to the slot it
    came from. Exploits (copies from another member) are drawn in colour, kept members in grey,
    and the ancestry of today's members is drawn bold, so surviving lines stand out.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parents = np.asarray(parents, np.int64)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    num_generations, size = parents.shape if parents.ndim == 2 else (0, 0)
    # Which (generation, member) nodes are ancestors of the final population.
    alive = np.zeros((num_generations + 1, size), bool)
    alive[num_generations] = True
    for g in range(num_generations - 1, -1, -1):
        alive[g, parents[g][alive[g + 1]]] = True
    palette = [c for i, c in enumerate(plt.get_cmap("tab10").colors) if i != 7]  # 7 is the grey of kept members

    def colours(index):
        return palette[index % len(palette)]

    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * num_generations + 2.5), max(2.5, 0.4 * size + 1.5)))
    for g in range(num_generations):
        for member in range(size):
            parent = int(parents[g, member])
            exploited = parent != member
            bold = alive[g + 1, member]
            ax.plot(
                [g, g + 1], [parent, member],
                color=colours(parent) if exploited else "0.6",
                linewidth=2.2 if bold else 0.8, alpha=0.95 if bold else 0.5, zorder=3 if exploited else 2,
            )
    for g in range(num_generations + 1):
        ax.scatter([g] * size, range(size), s=14, c=["black" if a else "0.7" for a in alive[g]], zorder=4)
    ax.set_xlabel("PBT generation (recorded)")
    ax.set_ylabel("member")
    ax.set_yticks(range(size))
    ax.set_title(f"{title}: {int((parents != np.arange(size)).sum())} exploits", fontsize=10)
    ax.grid(alpha=0.2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _rating_points(table: dict) -> list[tuple[float, float, float, float]]:
    """(env steps, rating, low, high) of each rated checkpoint in a ``ratings.json``."""
    players = table.get("players") or table.get("ratings") or []
    checkpoints = {c.get("name"): c for c in table.get("checkpoints", [])} if isinstance(table.get("checkpoints"), list) else {}
    points = []
    for player in players:
        name = player.get("name")
        info = checkpoints.get(name) or player
        steps = info.get("env_steps")
        if steps is None or player.get("rating") is None:
            continue
        low = player.get("low", player["rating"])
        high = player.get("high", player["rating"])
        points.append((float(steps), float(player["rating"]), float(low), float(high)))
    return sorted(points)
