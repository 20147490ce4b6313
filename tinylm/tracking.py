"""Experiment tracking: what the training loop reports, and where it goes.

The loop calls a Logger at four points; the default logger does nothing, so the core never needs an
optional package. Concrete loggers register in LOGGERS by name (`--logger NAME`). Whatever the logger,
the run directory's own metrics.jsonl is always written by the loop itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from .errors import TinyLMError


class Logger:
    """Receives metrics from the training loop. Subclasses override what they need."""

    def __init__(self, run_dir: Path, project: str | None = None, name: str | None = None):
        self.run_dir = Path(run_dir)
        self.project = project
        self.name = name or self.run_dir.name

    def start(self, config: dict[str, Any], info: dict[str, Any]) -> None:
        """Before the first step: the run's config.json content and facts such as parameters and device."""

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        """Every few steps: train/loss, train/lr, train/tokens_per_s."""

    def log_epoch(self, epoch: int, step: int, metrics: dict[str, Any], sample: dict[str, Any]) -> None:
        """After each epoch: the metrics.jsonl record and the sample {"epoch", "prompt", "temperature", "text"}."""

    def finish(self, summary: dict[str, Any], failed: bool = False) -> None:
        """At the end (also after an error): summary.json's content; loss.png is in run_dir."""


LOGGERS: dict[str, Callable[..., Logger]] = {"none": Logger}


def make_logger(name: str, run_dir: Path, project: str | None = None, run_name: str | None = None) -> Logger:
    if name not in LOGGERS:
        raise TinyLMError(f"unknown logger {name!r}; choose one of {', '.join(LOGGERS)}")
    return LOGGERS[name](run_dir, project=project, name=run_name)
