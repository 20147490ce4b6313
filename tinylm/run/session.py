"""The run session: what every trainer's run directory holds while it trains and when it ends, written in one
place. tinylm's loop, the transformers Trainer (fine-tuning) and Lightning only report events to it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from ..io import append_jsonl, read_jsonl, write_json, write_jsonl
from .layout import LOSS_PLOT, METRICS, SAMPLES, SUMMARY, WEIGHTS

# -- writing a run while it trains ----------------------------------------------------------------------
PLOT_EVERY_SECONDS = 20.0
"""loss.png is redrawn after an epoch at most this often (a redraw costs 0.2-0.7 s, more than a short epoch's
training on a GPU), and always when training ends."""


def epoch_record(*, epoch: int, step: int, train_loss: float | None, result, lr: float, tokens: float,
                 epoch_seconds: float, eval_seconds: float, elapsed_seconds: float, best: bool, steps_per_epoch: int,
                 curve: list, **extra) -> dict:
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
        "steps_per_epoch": steps_per_epoch, "train_curve": curve, **extra,
    }


def epoch_line(label: str, record: dict) -> str:
    """The line printed after an evaluated epoch, from its metrics record ("-": a counting model trains no loss)."""
    train = "-" if record.get("train_loss") is None else f"{record['train_loss']:.4f}"
    return (f"epoch {label}: train {train}  val {record['val_loss']:.4f}  ppl {record['val_perplexity']:.2f}  "
            f"bpc {record['val_bits_per_char']:.3f}  ({record['tokens_per_s']:,.0f} tok/s, "
            f"{record['epoch_seconds']:.1f} s)" + (" *best*" if record["best"] else ""))


class RunWriter:
    """Keeps a run directory up to date while a model trains: tinylm's loop and the fine-tuning Trainer (through
    a TrainerCallback, tinylm/training/finetune.py) both write through it, so their runs hold the same files and their
    loggers get the same keys.

    After each evaluated epoch (`end_epoch`): the best weights in model.safetensors (the folder holds the best
    model at every moment), the record in metrics.jsonl, the epoch's line, a sample from the fixed prompt in
    samples.jsonl, the logger's epoch (metrics and the samples table), loss.png. Every few steps (`log_step`):
    train/loss, train/lr, train/tokens_per_s to the logger. At the end (`finish`): summary.json (only when
    training ended well), loss.png, the logger closed. In a process other than the first of a multi-process run
    (`main=False`) it writes nothing and says nothing."""

    def __init__(self, run_dir: str | os.PathLike, logger, *, title: str, echo: Callable[[str], None] = print,
                 main: bool = True):
        self.run_dir, self.logger, self.title, self.main = Path(run_dir), logger, title, main
        self.echo = echo if main else (lambda line: None)
        self._plotted_at: float | None = None  # perf_counter() of the last loss.png redraw
        self._plotted_epochs = -1  # metrics records drawn then

    def start(self, config: dict, info: dict) -> None:
        """Before the first step: the logger gets the run's config and facts (parameters, device...)."""
        self.logger.start(config, info)

    def check(self) -> None:
        """Read what the run already holds (metrics.jsonl, samples.jsonl, the logger's own files), refusing a
        damaged file, before a resume writes anything."""
        if self.main:
            for name in (METRICS, SAMPLES):
                read_jsonl(self.run_dir / name, required={"epoch": int})
            self.logger.check()

    def redo_after(self, epoch: int) -> None:
        """Drop the records of epochs after `epoch` (written by a run killed before its checkpoint): a resume
        from that checkpoint writes them again."""
        for name in (METRICS, SAMPLES) if self.main else ():
            records = read_jsonl(self.run_dir / name, required={"epoch": int})
            if any(r["epoch"] > epoch for r in records):
                write_jsonl(self.run_dir / name, [r for r in records if r["epoch"] <= epoch])

    def log_step(self, step: int, loss: float, lr: float, tokens_per_s: float) -> None:
        self.logger.log_step(step, {"train/loss": loss, "train/lr": lr, "train/tokens_per_s": tokens_per_s})

    def end_epoch(self, record: dict, label: str, run, tc, keep_best: Callable[[Path], None]) -> dict | None:
        """Write an evaluated epoch: `record` is its metrics.jsonl record ("best" says whether it improved), `label`
        its number as shown ("3/5"), `run` the model as a LoadedModel (it writes the sample), `tc` the TrainConfig
        (the sample's prompt, length, temperature and seed), `keep_best(path)` saves the weights there. Returns
        the sample record (None in a process that does not write)."""
        if not self.main:
            return None
        if record["best"]:
            keep_best(self.run_dir / WEIGHTS)
        append_jsonl(self.run_dir / METRICS, record)
        self.echo(epoch_line(label, record))
        text = run.generate(tc.sample_prompt or "", max_new_tokens=tc.sample_tokens,
                            temperature=tc.sample_temperature, seed=tc.seed)
        self.echo("  sample: " + text.replace("\n", "\n          "))
        sample = {"epoch": record["epoch"], "prompt": tc.sample_prompt, "temperature": tc.sample_temperature,
                  "text": text}
        append_jsonl(self.run_dir / SAMPLES, sample)
        self.logger.log_epoch(record["epoch"], record["step"], record, sample)
        self.plot()
        return sample

    def plot(self, force: bool = False) -> None:
        """Redraw loss.png: after an epoch at most every PLOT_EVERY_SECONDS, and at the end of training unless
        nothing changed since."""
        from ..plots import plot_loss

        now = time.perf_counter()
        if not self.main or (not force and self._plotted_at is not None
                             and now - self._plotted_at < PLOT_EVERY_SECONDS):
            return
        records = read_jsonl(self.run_dir / METRICS)
        if force and len(records) == self._plotted_epochs:
            return
        plot_loss(records, self.run_dir / LOSS_PLOT, title=self.title)
        self._plotted_at, self._plotted_epochs = time.perf_counter(), len(records)

    def finish(self, summary: dict, failed: bool = False) -> None:
        """The end of training, also after an error: summary.json and a last loss.png only when it ended well;
        the logger is closed either way."""
        try:
            if not failed and self.main:
                self.plot(force=True)
                write_json(self.run_dir / SUMMARY, summary)
        finally:
            self.logger.finish(summary, failed=failed)
