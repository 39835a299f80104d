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
