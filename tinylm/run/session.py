"""The run session: everything around a trainer, in one place. tinylm's own loop, the transformers Trainer
(fine-tuning) and Lightning are engines: they train, and report events to a RunSession, which writes the run.

    session = RunSession(run_dir, config, echo=print)
    with session.open_new(overwrite, write_start):     # check, lock, stage config + tokenizer, swap in whole
        session.start(header, rows, facts, machine, title=...)   # the startup lines; the logger's start
        ...  session.log_step(step, loss, lr, tokens_per_s)          every few steps
        ...  session.end_epoch(epoch=..., result=..., model=...)     after each evaluation
        session.finish(stop_reason=..., ...)            summary.json, loss.png, the logger closed

What it owns, so a fix reaches every engine at once: opening the folder (staging, lock; a new run that fails
before it trained anything is removed), the startup lines, each epoch's metrics.jsonl record, the rule of
improvement and patience (`Progress`), the best weights, the sample after each epoch, loss.png, the loggers and
summary.json. In a process other than the first of a multi-process run (`main=False`) it judges the epochs (every
process stops together) but writes nothing and says nothing.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from ..folders import hold, writing_output
from ..io import append_jsonl, read_jsonl, write_json, write_jsonl
from .layout import CHECKPOINT, LOSS_PLOT, METRICS, RUN_FOLDER, SAMPLES, SUMMARY, WEIGHTS
from .loggers import make_logger

Echo = Callable[[str], None]

PLOT_EVERY_SECONDS = 20.0
"""loss.png is redrawn after an epoch at most this often (a redraw costs 0.2-0.7 s, more than a short epoch's
training on a GPU), and always when training ends."""


def _silent(line: str) -> None:
    pass


# -- the rule of improvement -----------------------------------------------------------------------------
@dataclass
class Progress:
    """The best validation loss so far and the epochs since it: the one rule every engine's "best" flag, kept
    weights and early stopping follow. (tinylm's loop checkpoints it inside its TrainingState.)"""

    best_val_loss: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0  # evaluations since the best validation loss

    def judge(self, epoch: int, val_loss: float) -> bool:
        """Count epoch `epoch`'s validation loss; True when it improved: strictly lower than every earlier one."""
        improved = self.best_val_loss is None or val_loss < self.best_val_loss
        if improved:
            self.best_val_loss, self.best_epoch, self.bad_epochs = val_loss, epoch, 0
        else:
            self.bad_epochs += 1
        return improved

    def out_of_patience(self, patience: int) -> bool:
        """Whether `patience` evaluations without a better validation loss have passed (0: never)."""
        return bool(patience) and self.bad_epochs >= patience


# -- what a run directory records --------------------------------------------------------------------------
def epoch_record(*, epoch: int, step: int, train_loss: float | None, result, lr: float | None, tokens: float,
                 epoch_seconds: float, eval_seconds: float, elapsed_seconds: float, best: bool,
                 steps_per_epoch: int | None, curve: list, **extra) -> dict:
    """An evaluated epoch's metrics.jsonl record: `result` is its EvalResult on the whole validation split,
    `train_loss` the epoch's mean (None: a counting model), `tokens` those trained on, `curve` the running training
    loss ([step, loss] points); `extra` adds fields (val_context, wall_seconds, partial, world_size...)."""
    return {
        "epoch": epoch, "step": step,
        "train_loss": None if train_loss is None else round(train_loss, 6),
        "val_loss": round(result.loss, 6), "val_perplexity": round(result.perplexity, 4),
        "val_bits_per_char": round(result.bits_per_char, 5), "lr": lr,
        "tokens_per_s": round(tokens / max(epoch_seconds, 1e-9), 1), "epoch_seconds": round(epoch_seconds, 2),
        "eval_seconds": round(eval_seconds, 2), "elapsed_seconds": round(elapsed_seconds, 2), "best": best,
        "steps_per_epoch": steps_per_epoch, "train_curve": curve, "val_context": result.context, **extra,
    }


def epoch_line(label: str, record: dict) -> str:
    """The line printed after an evaluated epoch, from its metrics record ("-": a counting model trains no loss)."""
    train = "-" if record.get("train_loss") is None else f"{record['train_loss']:.4f}"
    return (f"epoch {label}: train {train}  val {record['val_loss']:.4f}  ppl {record['val_perplexity']:.2f}  "
            f"bpc {record['val_bits_per_char']:.3f}  ({record['tokens_per_s']:,.0f} tok/s, "
            f"{record['epoch_seconds']:.1f} s)" + (" *best*" if record["best"] else ""))


def startup_lines(header: str, rows: Iterable[tuple[str, str]]) -> list[str]:
    """What is about to happen, before the first step: the header, then one aligned line per (label, text)."""
    return [header] + [f"  {label:<11} {text}" for label, text in rows]


def has_checkpoint_or_summary(run_dir: Path) -> bool:
    """Whether a run holds a checkpoint to resume from or the summary of its end."""
    return (run_dir / CHECKPOINT / "state.json").is_file() or (run_dir / SUMMARY).is_file()


# -- the session -------------------------------------------------------------------------------------------
class RunSession:
    """One training run's directory while an engine trains it (see the module's docstring).

    `config` is the run's RunConfig (its train section names the logger, the sample's prompt and length, the
    patience), `progress` the Progress to judge epochs with (a resume passes the one its checkpoint restored)."""

    def __init__(self, run_dir: str | os.PathLike, config, *, echo: Echo = print, main: bool = True,
                 progress: Progress | None = None):
        self.run_dir, self.config, self.main = Path(run_dir), config, main
        self.title = ""  # loss.png's title, given at start
        self.echo = echo if main else _silent
        self.progress = progress if progress is not None else Progress()
        tc = config.train
        # made first: a logger whose package is missing refuses the run before anything is written
        self.logger = make_logger(tc.logger if main else "none", self.run_dir, tc.wandb_project, tc.run_name)
        self.facts: dict = {}
        self._held = ExitStack()
        self._new = False
        self.epochs_written = 0  # epochs written whole by this session
        self._plotted_at: float | None = None  # perf_counter() of the last loss.png redraw
        self._plotted_epochs = -1  # metrics records drawn then

    # -- the folder ------------------------------------------------------------------------------------
    def open_new(self, overwrite: bool, write_start: Callable[[Path], None], *, resumable: bool = True,
                 keep: Iterable[str] = ()) -> RunSession:
        """Hold the folder until `close`, then write the run's first files (`write_start(folder)`: config and
        tokenizer) in a staging folder that replaces the old folder whole: an empty one, or a run when
        `overwrite`. `keep`: entries of the old folder the new run takes over (Lightning's checkpoints)."""
        self._held.enter_context(hold(self.run_dir, enabled=self.main))
        try:
            if self.main:
                hint = f", or --resume {self.run_dir}" if resumable else ""
                with writing_output(RUN_FOLDER, self.run_dir, overwrite=overwrite, hint=hint, held=True,
                                    keep=keep) as staging:
                    write_start(staging)
        except BaseException:
            self._held.close()  # refused (or failed) before the folder was ours: nothing of it is touched
            raise
        self._new = True  # the folder is this session's own from here: a failure may remove it
        return self

    def open_existing(self) -> RunSession:
        """Hold a run that exists (a resume) until `close`; nothing is replaced."""
        self._held.enter_context(hold(self.run_dir, enabled=self.main))
        return self

    def close(self, failed: bool = False) -> None:
        """Let the folder go. A new run that failed before any epoch was written whole and before any checkpoint
        is removed: a half-made run blocks no rerun (and holds nothing of the user's: this session made it)."""
        try:
            if (failed and self._new and self.main and not self.epochs_written and self.run_dir.is_dir()
                    and not has_checkpoint_or_summary(self.run_dir)):
                shutil.rmtree(self.run_dir, ignore_errors=True)
        finally:
            self._held.close()

    def __enter__(self) -> RunSession:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self.close(failed=kind is not None)

    # -- before the first step ---------------------------------------------------------------------------
    def check_records(self, resumed_after: int | None = None) -> None:
        """Read what the run already holds (metrics.jsonl, samples.jsonl, the logger's own files), refusing a
        damaged file; on a resume from the checkpoint after epoch `resumed_after`, drop the records of later
        epochs (written by a run killed before its checkpoint): the resume writes them again."""
        if not self.main:
            return
        for name in (METRICS, SAMPLES):
            records = read_jsonl(self.run_dir / name, required={"epoch": int})
            if resumed_after is not None and any(r["epoch"] > resumed_after for r in records):
                write_jsonl(self.run_dir / name, [r for r in records if r["epoch"] <= resumed_after])
        self.logger.check()

    def start(self, header: str, rows: Iterable[tuple[str, str]], facts: dict, machine=None,
              trainable: bool = True, *, title: str) -> None:
        """Say what is about to happen (`rows` of (label, text), then the machine's line) and give the logger
        the run's config and `facts` (parameters, tokens...), with the machine's (device, precision...).
        `title` heads loss.png."""
        self.title = title
        device_row = [("device", machine.describe(trainable))] if machine is not None else []
        for line in startup_lines(header, [*rows, *device_row]):
            self.echo(line)
        self.facts = {**facts, **(machine.facts() if machine is not None else {})}
        self.logger.start(self.config.to_dict(), self.facts)

    # -- while training ------------------------------------------------------------------------------------
    def log_step(self, step: int, loss: float, lr: float, tokens_per_s: float) -> None:
        self.logger.log_step(step, {"train/loss": loss, "train/lr": lr, "train/tokens_per_s": tokens_per_s})

    def end_epoch(self, *, model, keep_best: Callable[[Path], None], **measured) -> dict:
        """An evaluated epoch (`measured`: epoch_record's fields but `best`): judge it (Progress), then keep the
        weights when it improved (`keep_best(path)` saves them: the folder holds the best model at every
        moment), append its record to metrics.jsonl, say its line, write a sample from the fixed prompt to
        samples.jsonl (`model`: a LoadedModel), give the logger the epoch, redraw loss.png. Returns the record."""
        record = epoch_record(best=self.progress.judge(measured["epoch"], measured["result"].loss), **measured)
        if not self.main:
            return record
        tc = self.config.train
        if record["best"]:
            keep_best(self.run_dir / WEIGHTS)
        append_jsonl(self.run_dir / METRICS, record)
        self.echo(epoch_line(tc.epoch_label(record["epoch"]), record))
        text = model.generate(tc.sample_prompt or "", max_new_tokens=tc.sample_tokens,
                              temperature=tc.sample_temperature, seed=tc.seed)
        self.echo("  sample: " + text.replace("\n", "\n          "))
        sample = {"epoch": record["epoch"], "prompt": tc.sample_prompt, "temperature": tc.sample_temperature,
                  "text": text}
        append_jsonl(self.run_dir / SAMPLES, sample)
        self.logger.log_epoch(record["epoch"], record["step"], record, sample)
        self.plot()
        self.epochs_written += 1
        return record

    def plot(self, force: bool = False) -> None:
        """Redraw loss.png: after an epoch at most every PLOT_EVERY_SECONDS, and at the end of training unless
        nothing changed since."""
        from ..plots import plot_loss

        now = time.perf_counter()
        if not self.main or (not force and self._plotted_at is not None
                             and now - self._plotted_at < PLOT_EVERY_SECONDS):
            return
        records = read_jsonl(self.run_dir / METRICS)
        if not records or (force and len(records) == self._plotted_epochs):
            return
        plot_loss(records, self.run_dir / LOSS_PLOT, title=self.title)
        self._plotted_at, self._plotted_epochs = time.perf_counter(), len(records)

    # -- the end -------------------------------------------------------------------------------------------
    def summary(self, **outcome) -> dict:
        """summary.json: the facts given at `start`, the best epoch (Progress), then the engine's `outcome`
        (epochs, steps, train_seconds, stop_reason, finished, ...)."""
        return {**self.facts, "best_val_loss": self.progress.best_val_loss, "best_epoch": self.progress.best_epoch,
                **outcome}

    def finish(self, failed: bool = False, **outcome) -> dict:
        """The end of training, also after an error: summary.json and a last loss.png only when it ended well;
        the logger is closed either way. Returns the summary."""
        summary = self.summary(**outcome)
        try:
            if not failed and self.main:
                self.plot(force=True)
                write_json(self.run_dir / SUMMARY, summary)
        finally:
            self.logger.finish(summary, failed=failed)
        return summary


__all__ = ["PLOT_EVERY_SECONDS", "Progress", "RunSession", "epoch_line", "epoch_record",
           "has_checkpoint_or_summary", "startup_lines"]
