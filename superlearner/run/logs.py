"""Run logs: ``metrics.jsonl`` (one JSON object per logged step), TensorBoard, optional W&B.

On resume, entries written after the checkpoint being resumed from are dropped, so the file
never holds two entries for one step; TensorBoard is told to purge the same steps. A line torn by
a killed process is skipped by readers and dropped on resume. A write that fails (a full disk, a
lost permission) raises `RunWriteError` naming the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from superlearner.config import ExperimentConfig
from superlearner.errors import RunWriteError


class MetricsLog:
    """Writes one record per train chunk to every configured sink."""

    FILE = "metrics.jsonl"

    def __init__(self, run_dir: str | Path, config: ExperimentConfig, resume_from: int | None = None):
        self.path = Path(run_dir) / self.FILE
        try:
            if resume_from is not None:
                kept = [r for r in read_metrics(self.path) if r["iteration"] <= resume_from]
                tmp = self.path.with_suffix(".jsonl.tmp")
                tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
                os.replace(tmp, self.path)
            self._file = open(self.path, "a")
        except OSError as error:
            raise RunWriteError.of(self.path, "the metrics log", error) from None
        self._tensorboard = None
        if config.log.tensorboard:
            from tensorboardX import SummaryWriter

            purge = None if resume_from is None else resume_from + 1
            self._tensorboard = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=purge)
        self._wandb = None
        if config.log.wandb:
            try:
                import wandb
            except ImportError:
                from superlearner.errors import ConfigError

                raise ConfigError("log.wandb is true but the wandb package is not installed (pip install wandb)") from None
            self._wandb = wandb.init(project=config.log.wandb_project, name=config.name, dir=str(run_dir), resume="allow")

    def write(self, **record: Any) -> dict:
        record = _jsonable(record)
        try:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        except OSError as error:
            raise RunWriteError.of(self.path, "the metrics log", error) from None
        step = record["iteration"]
        scalars = {}
        for group in ("metrics", "hparams"):
            for name, value in record.get(group, {}).items():
                values = np.atleast_1d(np.asarray(value, dtype=np.float64))
                scalars[f"{group}/{name}"] = float(np.mean(values))
                if values.size > 1:
                    for member, v in enumerate(values):
                        scalars[f"{group}/{name}/member_{member}"] = float(v)
        scalars["perf/steps_per_second"] = record.get("steps_per_second", 0.0)
        scalars["perf/env_steps"] = record.get("env_steps", 0)
        # A metric undefined in this chunk (null in the file, e.g. a solve rate before any level
        # was measured) is left out of the dashboards rather than drawn as NaN.
        scalars = {name: value for name, value in scalars.items() if np.isfinite(value)}
        if self._tensorboard is not None:
            for name, value in scalars.items():
                self._tensorboard.add_scalar(name, value, step)
            self._tensorboard.flush()
        if self._wandb is not None:
            self._wandb.log(scalars, step=step)
        return record

    def close(self) -> None:
        try:
            self._file.close()
        except OSError:
            pass  # the failed write that stopped the run was reported; buffered bytes are lost
        if self._tensorboard is not None:
            self._tensorboard.close()
        if self._wandb is not None:
            self._wandb.finish()


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a ``metrics.jsonl`` (a torn last line from a crash is skipped)."""
    path = Path(path)
    if path.is_dir():
        path = path / MetricsLog.FILE
    if not path.exists():
        return []
    records = []
    for line in path.read_text(errors="replace").splitlines():  # a torn line may end mid-character
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("iteration"), int):
            records.append(record)
    return records


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
