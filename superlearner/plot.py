"""Learning-curve figures (PNG) from a run's ``metrics.jsonl``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from superlearner.errors import UserError
from superlearner.logs import read_metrics

PANELS = (
    ("return", ("episode_return",)),
    ("losses", ("loss_total", "loss_policy", "loss_value")),
    ("entropy", ("entropy", "approx_kl", "clip_fraction")),
    ("speed", ("steps_per_second",)),
)


def plot_run(run_dir: str | Path) -> list[Path]:
    """Writes ``plots/*.png`` into ``run_dir``; returns the paths written."""
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
        values = []
        for r in records:
            value = r.get(group, {}).get(name) if group else r.get(name)
            if value is None:
                return None
            values.append(np.atleast_1d(np.asarray(value, dtype=np.float64)))
        return np.stack(values)

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
    return written


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
