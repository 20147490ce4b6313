"""When training stops, and why: the planned epochs, a step budget, a wall-clock budget, early stopping
(patience), Ctrl-C, and a loss or weights that are no longer finite. The loop asks the budget after every
step and every epoch; the reason it gives is `summary.json`'s `stop_reason`.

The wall clock counts the training steps and the work after each epoch (evaluation, sample, checkpoint), across
resumes: what `--time-budget` limits. The learning-rate schedule decays over whichever runs out first, the
planned steps or the seconds.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from pathlib import Path

from ..errors import TinyLMError
from ..machine.devices import plural
from .checkpoint import checkpoint_path

STEP_BUDGET, TIME_BUDGET, EARLY_STOPPING, PLANNED_EPOCHS = "max_steps", "time_budget", "early_stopping", "epochs"


class Interrupted(TinyLMError):
    """Training stopped by Ctrl-C after saving a checkpoint."""


class Budget:
    """The stopping rules of one training run (a TrainConfig's epochs, max_steps, time_budget, patience) with
    `steps_per_epoch` known; `wall_before` is the wall time spent before this process (a resume)."""

    def __init__(self, tc, steps_per_epoch: int, wall_before: float = 0.0):
        self.tc, self.steps_per_epoch = tc, steps_per_epoch
        self._wall_before, self._started = wall_before, time.perf_counter()
        self.interrupted = False  # a first Ctrl-C: checkpoint at the end of this batch, then stop
        planned = [n for n in (tc.epochs and tc.epochs * steps_per_epoch, tc.max_steps) if n]
        self.planned_steps: int | None = min(planned) if planned else None
        """The steps the plan allows (None: only the time budget decides)."""

    def wall(self) -> float:
        """Seconds of wall time this run has trained, evaluations included (the time budget's clock)."""
        return self._wall_before + time.perf_counter() - self._started

    # -- the rules ----------------------------------------------------------------------------------------
    def another_epoch(self, state) -> bool:
        return not state.finished and self.tc.epochs_left(state.epoch)

    def after_step(self, step: int, any_rank=lambda hit: hit) -> str | None:
        """Why training stops after optimizer step `step`, or None. `any_rank(hit)` is True when any process's
        clock ran out (several processes stop at the same step)."""
        if self.tc.max_steps is not None and step >= self.tc.max_steps:
            return STEP_BUDGET
        if self.tc.time_budget is not None and any_rank(self.wall() >= self.tc.time_budget):
            return TIME_BUDGET
        return None

    def after_epoch(self, state, cut_short: str | None) -> str | None:
        """Why training stops after the epoch just evaluated (`cut_short`: the budget that ended it early)."""
        if cut_short:
            return cut_short
        if state.out_of_patience(self.tc.patience):  # the run session's Progress (tinylm.run.session)
            return EARLY_STOPPING
        if not self.tc.epochs_left(state.epoch):
            return PLANNED_EPOCHS
        return None

    @staticmethod
    def diverged(what: str, run_dir: Path, state) -> TinyLMError:
        """The one-line error of a run whose loss or weights are no longer finite, saying whether a checkpoint
        to go back to exists."""
        kept = (f"The last good checkpoint (epoch {state.epoch}) is kept in {run_dir}"
                if checkpoint_path(run_dir) is not None else "No checkpoint exists yet")
        return TinyLMError(f"{what}; stopped. {kept}; try a lower --lr")

    # -- the learning rate --------------------------------------------------------------------------------
    def lr(self, step: int) -> float:
        """Linear warm-up, then constant, or cosine or linear decay to min_lr_ratio * lr over the planned steps
        or the time budget, whichever runs out first."""
        return lr_at(step, self.tc, self.planned_steps, self.wall())

    # -- Ctrl-C ------------------------------------------------------------------------------------------
    def __enter__(self) -> Budget:
        """While training: the first Ctrl-C sets `interrupted` (the loop checkpoints at the end of the batch and
        stops), a second one aborts."""
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_interrupt)
        return self

    def _on_interrupt(self, signum, frame) -> None:
        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted = True
        print("\ninterrupt: saving a checkpoint at the end of this batch (Ctrl-C again to abort)", file=sys.stderr)

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    # -- what people see ----------------------------------------------------------------------------------
    def eta(self, step: int, seconds_per_step: float, eval_seconds: float) -> str:
        """Time left for the whole run (the remaining steps and evaluations), not only this epoch's."""
        if self.planned_steps is None:
            left = max(0.0, self.tc.time_budget - self.wall()) + eval_seconds
        else:
            steps_left = max(0, self.planned_steps - step)
            evals_left = -(-steps_left // max(1, self.steps_per_epoch))
            left = steps_left * seconds_per_step + evals_left * eval_seconds
            if self.tc.time_budget:
                left = min(left, max(0.0, self.tc.time_budget - self.wall()) + eval_seconds)
        minutes, seconds = divmod(int(left + 0.5), 60)
        return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}" if minutes >= 60 else f"{minutes}:{seconds:02d}"

    def describe(self) -> str:
        """The plan as people read it: "5 epochs", or "epochs until the 203 s budget" when a budget decides."""
        if self.tc.epochs is not None:
            return plural(self.tc.epochs, "epoch")
        return "epochs until " + (f"the {self.tc.time_budget:g} s budget" if self.tc.time_budget
                                  else f"step {self.tc.max_steps:,}")


def lr_at(step: int, cfg, total_steps: int | None, elapsed: float = 0.0) -> float:
    """Linear warm-up, then constant, or cosine or linear decay to min_lr_ratio * lr. With a time budget the
    decay follows whichever runs out first, the steps (`total_steps`; None: only the seconds) or the seconds."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return cfg.lr
    progress = 0.0 if total_steps is None else \
        min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
    if cfg.time_budget:
        progress = max(progress, min(1.0, elapsed / cfg.time_budget))
    left = 1 - progress if cfg.lr_schedule == "linear" else 0.5 * (1 + math.cos(math.pi * progress))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * left)
