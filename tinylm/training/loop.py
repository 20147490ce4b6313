"""Stage 4: the training loop. One loop for every model family, readable top to bottom.

    for each epoch:                         one pass over the shuffled training windows
        for each batch: forward, cross-entropy, backward, clip, step
        evaluate on the WHOLE validation split; keep the best weights in model.safetensors
        print a sample from a fixed prompt; append to metrics.jsonl; redraw loss.png
        checkpoint (weights, optimizer, RNG, counters); stop early after `patience` epochs without progress

Exact resume: the batch order of an epoch depends only on (seed, epoch), and the checkpoint holds the
optimizer and RNG states, so a run stopped anywhere and resumed ends with the same weights and metrics
as one that never stopped.
"""

from __future__ import annotations

import copy
import hashlib
import math
import shutil
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from ..config import UNLIMITED_EPOCHS, RunConfig
from ..data import IGNORE, EvalSet, LineSamples, TokenWindows, evaluation_examples, load_split, training_examples
from ..devices import (
    PrecisionChoice,
    apply_threads,
    hardware_description,
    hardware_summary,
    plural,
    process_age,
    resolve_device,
    training_precision,
)
from ..errors import NonFiniteScores, TinyLMError
from ..evaluation import score
from ..io import append_jsonl, read_jsonl, write_json, write_jsonl
from ..models import build_model, family_of
from ..plots import plot_loss
from ..rundir import clean_stale, data_source, hold, writing_folder
from ..runs import WEIGHTS, LoadedModel, check_out_dir, default_run_dir, load
from ..tokenizers import Tokenizer, build_tokenizer
from ..tracking import Logger, make_logger
from . import distributed
from .checkpoint import load_checkpoint, read_carried, read_state, save_checkpoint, save_weights
from .optim import build_optimizer

Echo = Callable[[str], None]


@dataclass
class TrainingState:
    """Counters saved with every checkpoint (state.json)."""

    epoch: int = 0  # completed epochs
    step: int = 0  # optimizer steps taken
    batch_in_epoch: int = 0  # batches of the current epoch already trained on
    epoch_loss_sum: float = 0.0
    epoch_loss_count: int = 0
    epoch_tokens: int = 0
    epoch_seconds: float = 0.0
    curve: list = field(default_factory=list)  # [step, running train loss] points of the current epoch
    best_val_loss: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0  # epochs since the best validation loss
    elapsed_seconds: float = 0.0  # training steps only
    wall_seconds: float = 0.0  # training steps and the work after each epoch: what --time-budget counts
    finished: bool = False
    stop_reason: str | None = None
    data_sha256: str = ""
    precision: str | None = None  # what the steps so far computed in (a resume keeps it where it can)


def lr_at(step: int, cfg, total_steps: int, elapsed: float = 0.0) -> float:
    """Linear warm-up, then constant, or cosine or linear decay to min_lr_ratio * lr. With a time budget the
    decay follows whichever runs out first, the steps or the seconds."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return cfg.lr
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
    if cfg.time_budget:
        progress = max(progress, min(1.0, elapsed / cfg.time_budget))
    left = 1 - progress if cfg.lr_schedule == "linear" else 0.5 * (1 + math.cos(math.pi * progress))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * left)


def _fingerprint(train_text: str, val_text: str) -> str:
    h = hashlib.sha256(train_text.encode("utf-8"))
    h.update(b"\0")
    h.update(val_text.encode("utf-8"))
    return h.hexdigest()


def _make_optimizer(model: torch.nn.Module, cfg) -> torch.optim.Optimizer:
    return build_optimizer(model, cfg)  # Adam(W), or Muon + AdamW; never imports torch._dynamo (see optim.py)


class _StopRequest:
    """First Ctrl-C asks the loop to checkpoint and stop at the next batch boundary; a second one aborts."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> "_StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\ninterrupt: saving a checkpoint at the end of this batch (Ctrl-C again to abort)", file=sys.stderr)

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class Interrupted(TinyLMError):
    """Training stopped by Ctrl-C after saving a checkpoint."""


def train(config: RunConfig | None = None, out: str | Path | None = None, *, overwrite: bool = False,
          progress: bool = True, echo: Echo = print) -> LoadedModel:
    """Train a new run from `config` into `out` (default runs/<data>-<model>-<time>); return the best model."""
    # a copy: the caller's config is never changed; re-derive what depends on fields changed since construction
    config = copy.deepcopy(config) if config is not None else RunConfig()
    config.__post_init__()
    for name in ("source", "val_source"):  # a local file or folder is kept absolute: the run loads from anywhere
        value = getattr(config.data, name)
        if isinstance(value, str) and ":" not in value[:12] and Path(value).expanduser().exists():
            setattr(config.data, name, str(Path(value).expanduser().resolve()))
    resolve_device(config.train.device)  # a device that isn't there fails before anything is written
    ddp = distributed.setup(config.train.device)
    if ddp.active and out is None:
        raise TinyLMError("--out is required when training with several processes (torchrun)")
    model_name = getattr(config.model, "cell", None) or family_of(config.model)
    run_dir = Path(out) if out is not None else default_run_dir(config.data.source, model_name)
    check_out_dir(run_dir, overwrite)
    from ..data.tokenfile import fixed_tokenizer_config, is_prepared, large_text_note, open_prepared

    # A prepared folder (tinylm prepare) brings its tokenizer and memory-mapped token files: no text is read.
    prepared = open_prepared(config.data.source) if is_prepared(config.data.source) else None
    if prepared is None:
        note = large_text_note(config.data.source)
        if note and ddp.main:
            echo(note)
        train_text, val_text = load_split(config.data)  # fail on bad data before touching the disk
        tokenizer = build_tokenizer(config.tokenizer, train_text)
        head = train_text
    else:
        config.tokenizer = fixed_tokenizer_config(prepared, config.tokenizer)
        tokenizer, train_text, val_text, head = prepared.tokenizer, None, None, prepared.head
    config.model.vocab_size = tokenizer.vocab_size
    if config.train.sample_prompt is None:  # line mode: a new line from <eos>; else the text's opening words
        opening = head.lstrip()[:32].split("\n")[0] or head[:8]
        config.train.sample_prompt = "" if config.data.lines else opening
    windows, val_set = _examples(tokenizer, train_text, val_text, config.data, prepared)
    with hold(run_dir, enabled=ddp.main):  # one process writes a run: a second training into it is refused
        if ddp.main:
            check_out_dir(run_dir, overwrite)  # again, now that no other process can write it
            # The run directory appears whole (config + tokenizer) or not at all: a kill here leaves nothing
            # half-made; it replaces an empty folder or a run the user asked to overwrite (check_out_dir).
            with writing_folder(run_dir) as staging:
                config.save(staging / "config.json")
                tokenizer.save(staging)
        ddp.barrier()
        state = TrainingState(data_sha256=_fingerprint(train_text, val_text) if prepared is None
                              else prepared.fingerprint)
        try:
            return _fit(run_dir, config, tokenizer, windows, val_set, state, ddp, resumed=False, progress=progress,
                        echo=echo)
        except BaseException:
            # Failed before its first checkpoint (a bad --lr, a second Ctrl-C): no half-made run blocks a rerun.
            if ddp.main and read_state(run_dir) is None and not (run_dir / "summary.json").is_file():
                shutil.rmtree(run_dir, ignore_errors=True)
            raise


MACHINE_FIELDS = ("device", "precision", "threads", "processes")
"""Training settings that may differ between the machine a run started on and the one it resumes on."""


def resume(run_dir: str | Path, epochs: int | None = None, max_steps: int | None = None, *,
           progress: bool = True, echo: Echo = print, **machine) -> LoadedModel:
    """Continue `run_dir` from its checkpoint until it has `epochs` epochs (or `max_steps` steps) in total.
    `machine` may change MACHINE_FIELDS (device, precision, threads, processes) for this machine; the results
    stay exact only where the precision is the same."""
    unknown = set(machine) - set(MACHINE_FIELDS)
    if unknown:
        raise TypeError(f"resume() got unexpected keyword arguments {sorted(unknown)}")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise TinyLMError(f"--resume {run_dir}: no such run directory")
    ddp = distributed.setup("auto")
    config = RunConfig.load(run_dir / "config.json")
    for name in ("source", "val_source"):  # relative to the run, never a device or kernel file
        value, refused = data_source(getattr(config.data, name), run_dir, from_hub=False)
        if refused:
            raise TinyLMError(f"{run_dir}/config.json names data that is not read: {refused}")
        setattr(config.data, name, value)
    raw = read_state(run_dir, TrainingState)
    if raw is None and (run_dir / "summary.json").is_file():  # a counting model: one pass, no checkpoint
        raise TinyLMError(f"{run_dir} already finished: a counting model learns in one pass; start a new run instead")
    # Killed before its first checkpoint: start over from the saved config and tokenizer.
    state = TrainingState(**raw) if raw is not None else TrainingState(data_sha256="")
    if epochs is not None:
        config.train.epochs = epochs
    if max_steps is not None:
        config.train.max_steps = max_steps
    changed = [f"--{name} {value} (was {getattr(config.train, name)})" for name, value in machine.items()
               if value is not None and value != getattr(config.train, name)]
    for name, value in machine.items():
        if value is not None:
            setattr(config.train, name, value)
    config.train.__post_init__()
    if changed and ddp.main:
        echo(f"resume: this machine's settings changed: {', '.join(changed)}")
    # Killed after its last checkpoint but before summary.json: only the closing work is left to do.
    completing = raw is not None and state.finished and not (run_dir / "summary.json").is_file()
    if completing:
        echo(f"{run_dir} had finished training ({state.stop_reason}); writing what its end left unwritten")
    elif state.stop_reason == "early_stopping":
        raise TinyLMError(f"{run_dir} already stopped early at epoch {state.epoch} (patience "
                          f"{config.train.patience}); its best weights are final — start a new run instead")
    elif state.epoch >= config.train.epochs:
        raise TinyLMError(f"{run_dir} already has {state.epoch} epochs; pass --epochs N with N > {state.epoch}")
    elif config.train.max_steps is not None and state.step >= config.train.max_steps:
        raise TinyLMError(f"{run_dir} already took {state.step} steps; pass a larger --max-steps")
    from ..data.tokenfile import is_prepared, open_prepared

    prepared = open_prepared(config.data.source) if is_prepared(config.data.source) else None
    if prepared is None:
        train_text, val_text = load_split(config.data)
        fingerprint = _fingerprint(train_text, val_text)
    else:  # the text and tokenizer the folder was prepared from (tokens.json)
        train_text = val_text = None
        fingerprint = prepared.fingerprint
    if raw is None:
        state.data_sha256 = fingerprint
        echo(f"{run_dir} has no checkpoint yet: training it from the start")
    if fingerprint != state.data_sha256:
        what = "the prepared tokens" if prepared is not None else "the text"
        raise TinyLMError(f"{what} of {config.data.source!r} changed since {run_dir} started; cannot resume exactly")
    if not completing:
        state.finished, state.stop_reason = False, None
    ddp.barrier()  # every rank has read config.json before rank 0 rewrites it
    with hold(run_dir, enabled=ddp.main):  # one process writes a run: a second resume of it is refused
        if ddp.main:
            config.save(run_dir / "config.json")
        tokenizer = Tokenizer.load(run_dir)
        return _fit(run_dir, config, tokenizer, *_examples(tokenizer, train_text, val_text, config.data, prepared),
                    state, ddp,
                    resumed=raw is not None,
                    progress=progress, echo=echo)


def _examples(tokenizer: Tokenizer, train_text: str | None, val_text: str | None, dc,
              prepared=None) -> tuple[TokenWindows | LineSamples, EvalSet]:
    """Training examples and the validation set, from the texts or from a prepared folder's token files;
    refuses data too short for either (before any file is written)."""
    if prepared is not None:
        from ..data import prepared_examples

        windows, val_set = prepared_examples(prepared, dc)
    else:
        windows = training_examples(tokenizer, train_text, dc)
        val_set = evaluation_examples(tokenizer, val_text, dc)
    if val_set.tokens < 2 or (dc.target == "last" and not dc.lines and val_set.tokens <= dc.block_size):
        raise TinyLMError(
            f"the validation split has {val_set.tokens} tokens, too few to evaluate "
            f"(need more than {dc.block_size if dc.target == 'last' else 1}); raise --val-fraction"
        )
    return windows, val_set


def _fit(run_dir: Path, config: RunConfig, tokenizer: Tokenizer, windows: TokenWindows | LineSamples, val_set: EvalSet,
         state: TrainingState, ddp: distributed.Distributed, *, resumed: bool, progress: bool,
         echo: Echo) -> LoadedModel:
    tc, dc = config.train, config.data
    device = distributed.device_for(ddp, resolve_device(tc.device))
    if not ddp.main:  # only rank 0 speaks
        echo, progress = (lambda line: None), False
    torch.manual_seed(tc.seed)
    if tc.stateful:
        steps_per_epoch = windows.num_stream_batches(tc.batch_size, ddp.world)
        if steps_per_epoch < 1:
            raise TinyLMError(f"--stateful cuts the training text into {tc.batch_size * ddp.world} streams of at "
                              f"least --block-size {dc.block_size} tokens: it has only {windows.num_tokens}; "
                              f"use a smaller --batch-size or --block-size")
    else:
        steps_per_epoch = windows.num_batches(tc.batch_size, ddp.world)
    total_steps = tc.epochs * steps_per_epoch
    if tc.max_steps is not None:
        total_steps = min(total_steps, tc.max_steps)

    model = build_model(config.model).to(device)
    if device.type == "cuda" and isinstance(windows, TokenWindows) and windows.num_tokens <= 100_000_000:
        windows = windows.to(device)  # batches gathered on the GPU, no host copy per step (<= 800 MB of ids)
    optimizer = _make_optimizer(model, tc) if model.trainable else None
    carried = None  # stateful training stopped inside an epoch: the state to go on from
    if resumed:
        load_checkpoint(run_dir, model, optimizer, device)
        if tc.stateful and state.batch_in_epoch and not ddp.active:  # (several ranks: only rank 0's is saved)
            carried = read_carried(run_dir, device)
    if ddp.rank:  # each rank its own dropout masks
        torch.manual_seed(tc.seed + 7919 * ddp.rank + state.step)
    if ddp.main:
        clean_stale(run_dir)  # temporaries and checkpoint.old of a killed run
    # Records past the checkpoint (written just before a crash) are redone.
    for name in ("metrics.jsonl", "samples.jsonl") if ddp.main else ():
        records = read_jsonl(run_dir / name, required={"epoch": int})
        if any(r["epoch"] > state.epoch for r in records):
            write_jsonl(run_dir / name, [r for r in records if r["epoch"] <= state.epoch])

    # --threads, else what the process has: the CLI sets the default (physical cores / processes), torchrun's
    # launcher OMP_NUM_THREADS, and an API caller's own torch.set_num_threads() is left alone
    threads = apply_threads(tc.threads) if tc.threads else torch.get_num_threads()
    precision = training_precision(tc.precision, device, model, _probe_batch(windows, tc, ddp, device)
                                   if model.trainable else None, previous=state.precision if resumed else None)
    if ddp.active:  # every rank computes in the precision rank 0 chose (its probe's timing decides)
        chosen = ddp.broadcast_float(1.0 if precision.bf16 else 0.0, device)
        if chosen != (1.0 if precision.bf16 else 0.0):
            precision = PrecisionChoice("bf16" if chosen else "fp32", "the choice of the first process")
    params = model.num_parameters()
    resuming = f"  (resuming after epoch {state.epoch}, step {state.step})" if resumed else ""
    echo(f"tinylm train -> {run_dir}{resuming}")
    shape = f", {len(windows):,} lines" if dc.lines else ""
    echo(f"  data        {dc.source}: {windows.num_tokens:,} training / {val_set.tokens:,} validation tokens{shape}, "
         f"{tokenizer.kind} tokenizer, vocabulary {tokenizer.vocab_size}")
    if model.trainable:
        echo(f"  model       {model.describe()}: {params:,} parameters")
        echo(f"  tokens/param {windows.num_tokens / max(params, 1):.2f} per epoch")
    else:
        echo(f"  model       {model.describe()}: its n-grams are counted in one pass")
    if model.trainable:
        until = f", at most {tc.max_steps:,} steps" if tc.max_steps else ""
        until += f", at most {tc.time_budget:g} s" if tc.time_budget else ""
        echo(f"  training    {_planned_epochs(tc)} x {steps_per_epoch:,} steps (batch {tc.batch_size} x block "
             f"{dc.block_size}, target {dc.target}){until}; {tc.optimizer} lr {tc.lr:g} {tc.lr_schedule}, "
             f"warm-up {tc.warmup_steps}, clip {tc.grad_clip:g}, patience {tc.patience or 'off'}")
    else:
        echo("  training    one counting pass over the training tokens")
    shown = [hardware_description(device)] + ([f"{plural(ddp.world, 'process')} (DDP)"] if ddp.active else [])
    if model.trainable:
        shown.insert(0, precision.describe())
    echo(f"  device      {device}: {'; '.join(shown)}")

    logger = make_logger(tc.logger if ddp.main else "none", run_dir, tc.wandb_project, tc.run_name)
    info = {"parameters": params, **hardware_summary(device, threads, ddp.world),
            "precision": precision.name if model.trainable else "fp32",
            "precision_reason": precision.reason if model.trainable else "a counting model",
            "hardware": hardware_description(device),
            "train_tokens": windows.num_tokens, "val_tokens": val_set.tokens, "steps_per_epoch": steps_per_epoch}
    logger.start(config.to_dict(), info)
    failed = True
    try:
        info["startup_seconds"] = process_age()  # from process start to the first training step
        ctx = _EpochContext(run_dir, config, model, tokenizer, val_set, steps_per_epoch, echo, device, logger, ddp)
        if model.trainable:
            state.precision = precision.name
            precision = _train_epochs(ctx, windows, optimizer, state, total_steps, precision, progress, carried)
            info["precision"], info["precision_reason"] = precision.name, precision.reason
        elif not state.finished:
            _fit_counts(ctx, windows.token_stream, state)
            info["parameters"] = model.num_parameters()  # a counting model's size is known after fitting
            echo(f"  counted     {info['parameters']:,} n-grams")
        ctx.plot(force=True)
        failed = False
    finally:
        summary = {**info, "best_val_loss": state.best_val_loss, "best_epoch": state.best_epoch,
                   "epochs": state.epoch, "steps": state.step, "train_seconds": round(state.elapsed_seconds, 2),
                   "wall_seconds": round(state.wall_seconds, 2),
                   "stop_reason": state.stop_reason, "finished": state.finished}
        if not failed and ddp.main:
            write_json(run_dir / "summary.json", summary)
        logger.finish(summary, failed=failed)
    ddp.barrier()  # rank 0 has written everything the others load below

    echo(f"done: best validation loss {state.best_val_loss:.4f} at epoch {state.best_epoch}; "
         f"{state.elapsed_seconds:.0f} s of training. Weights: {run_dir / WEIGHTS}")
    return load(run_dir, device=str(device))


@dataclass
class _EpochContext:
    """What the end-of-epoch work needs, bundled so the loops below stay short."""

    run_dir: Path
    config: RunConfig
    model: torch.nn.Module
    tokenizer: Tokenizer
    val_set: EvalSet
    steps_per_epoch: int
    echo: Echo
    device: torch.device
    logger: Logger
    ddp: distributed.Distributed
    plotted_at: float | None = None  # perf_counter() of the last loss.png redraw
    plotted_epochs: int = -1  # metrics records drawn then
    last_eval_seconds: float = 0.0  # the last end-of-epoch evaluation's seconds (for the run's ETA)

    def plot(self, force: bool = False) -> None:
        """Redraw loss.png: after an epoch at most every PLOT_EVERY_SECONDS (a redraw costs 0.2-0.7 s, more
        than a short epoch's training on a GPU), and at the end of training unless nothing changed since."""
        now = time.perf_counter()
        if not self.ddp.main or (not force and self.plotted_at is not None
                                 and now - self.plotted_at < PLOT_EVERY_SECONDS):
            return
        records = read_jsonl(self.run_dir / "metrics.jsonl")
        if force and len(records) == self.plotted_epochs:
            return
        plot_loss(records, self.run_dir / "loss.png", title=f"{self.model.describe()} on {self.config.data.source}")
        self.plotted_at, self.plotted_epochs = time.perf_counter(), len(records)


PLOT_EVERY_SECONDS = 20.0


def _fit_counts(ctx: _EpochContext, train_ids: torch.Tensor, state: TrainingState) -> None:
    """Counting models (n-grams) learn in one pass: fit, then one evaluated 'epoch'."""
    t0 = time.perf_counter()
    ctx.model.fit(train_ids.to(ctx.device))
    state.epoch_seconds = state.elapsed_seconds = time.perf_counter() - t0
    state.epoch_tokens, state.step = train_ids.numel(), 1
    _end_epoch(ctx, state, lr=0.0, partial=False)
    state.finished, state.stop_reason = True, "counted"


def _train_epochs(ctx: _EpochContext, windows: TokenWindows | LineSamples, optimizer: torch.optim.Optimizer,
                  state: TrainingState, total_steps: int, precision: PrecisionChoice, progress: bool,
                  carried=None) -> PrecisionChoice:
    """Train until a budget, early stopping or the planned epochs end the run; returns the precision used
    (fp32 after a bf16 kernel failed on the first step)."""
    from tqdm.auto import tqdm

    tc, model, device, run_dir, ddp = ctx.config.train, ctx.model, ctx.device, ctx.run_dir, ctx.ddp
    steps_per_epoch = ctx.steps_per_epoch
    # DDP averages gradients across ranks; evaluation, sampling and saving use the plain module.
    train_model = model
    if ddp.active:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    log_every = max(1, steps_per_epoch // 25)
    wall_start, wall_before = time.perf_counter(), state.wall_seconds
    steps_here, train_seconds_here = 0, 0.0  # this process's steps and their seconds: the ETA's pace

    def wall() -> float:  # seconds of this run's training phase, evaluations included (the budget's clock)
        return wall_before + time.perf_counter() - wall_start

    with _StopRequest() as stop:
        while state.epoch < tc.epochs and not state.finished:
            epoch_index = state.epoch
            model.train()
            bar = tqdm(total=steps_per_epoch, initial=state.batch_in_epoch,
                       desc=f"epoch {_epoch_of(epoch_index + 1, tc)}", unit="step", disable=not progress,
                       dynamic_ncols=True, leave=False, mininterval=0.5 if sys.stderr.isatty() else 15)
            t0 = time.perf_counter()
            running = None
            budget_hit = None
            make_batches = windows.stream_epoch if tc.stateful else windows.epoch
            batches = make_batches(tc.batch_size, seed=tc.seed * 1_000_003 + epoch_index, skip=state.batch_in_epoch,
                                   rank=ddp.rank, world=ddp.world)
            if not state.batch_in_epoch:
                carried = None  # stateful training: the state at the end of the previous batch, cut from its graph
            for x, y in batches:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                lr = lr_at(state.step, tc, total_steps, wall())
                for group in optimizer.param_groups:
                    group["lr"] = lr * group.get("lr_scale", 1.0)  # Muon's group runs at muon_lr / lr times
                step_start = time.perf_counter()
                try:
                    loss, new_carried = _forward_backward(train_model, optimizer, x, y, carried, precision, device)
                except RuntimeError as e:
                    if not precision.bf16 or steps_here:
                        raise
                    # a bf16 kernel that the probe did not meet: the same step again in fp32, said once
                    precision = PrecisionChoice("fp32", f"bf16 autocast failed on the first step: {_first_line(e)}")
                    ctx.echo(f"note: {precision.reason}; training in fp32")
                    state.precision = precision.name
                    loss, new_carried = _forward_backward(train_model, optimizer, x, y, carried, precision, device)
                carried = _detached(new_carried) if tc.stateful else None
                if not torch.isfinite(loss):
                    bar.close()
                    raise _diverged(f"the training loss became {loss.item()} at step {state.step + 1}", run_dir, state)
                if tc.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
                optimizer.step()

                value = loss.item()
                steps_here += 1
                train_seconds_here += time.perf_counter() - step_start
                running = value if running is None else 0.9 * running + 0.1 * value
                state.step += 1
                state.batch_in_epoch += 1
                state.epoch_loss_sum += value * x.size(0)
                state.epoch_loss_count += x.size(0)
                state.epoch_tokens += x.numel()
                elapsed = state.epoch_seconds + time.perf_counter() - t0
                tokens_per_s = state.epoch_tokens / max(elapsed, 1e-9)
                if state.batch_in_epoch % log_every == 0:
                    state.curve.append([epoch_index * steps_per_epoch + state.batch_in_epoch, round(running, 5)])
                    ctx.logger.log_step(state.step, {"train/loss": running, "train/lr": lr,
                                                     "train/tokens_per_s": tokens_per_s})
                bar.set_postfix(loss=f"{running:.4f}", tok_s=f"{tokens_per_s:,.0f}",
                                run_eta=_run_eta(state, tc, total_steps, train_seconds_here / steps_here,
                                                 ctx.last_eval_seconds, wall()), refresh=False)
                bar.update(1)
                if tc.max_steps is not None and state.step >= tc.max_steps:
                    budget_hit = "max_steps"
                elif tc.time_budget is not None and ddp.any(wall() >= tc.time_budget, device):
                    budget_hit = "time_budget"  # all ranks stop at the same step
                if budget_hit:
                    break
                mid_checkpoint = tc.checkpoint_every and state.step % tc.checkpoint_every == 0
                if stop.requested or mid_checkpoint:
                    state.epoch_seconds += time.perf_counter() - t0
                    state.elapsed_seconds += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    state.wall_seconds = wall()
                    if ddp.main:
                        save_checkpoint(run_dir, model, optimizer, asdict(state), carried)
                    if stop.requested:
                        bar.close()
                        raise Interrupted(
                            f"interrupted at step {state.step} (epoch {epoch_index + 1}); checkpoint saved. "
                            f"Continue with: tinylm train --resume {run_dir}"
                        )
            bar.close()
            now = time.perf_counter()
            state.epoch_seconds += now - t0
            state.elapsed_seconds += now - t0
            state.wall_seconds = wall()
            _end_epoch(ctx, state, optimizer.param_groups[0]["lr"], partial=bool(budget_hit))
            if budget_hit:
                state.finished, state.stop_reason = True, budget_hit
            elif tc.patience and state.bad_epochs >= tc.patience:
                state.finished, state.stop_reason = True, "early_stopping"
                ctx.echo(f"early stopping: no better validation loss for {tc.patience} epochs "
                         f"(best {state.best_val_loss:.4f} at epoch {state.best_epoch})")
            elif state.epoch >= tc.epochs:
                state.finished, state.stop_reason = True, "epochs"
            state.wall_seconds = wall()
            if ddp.main:
                save_checkpoint(run_dir, model, optimizer, asdict(state))
    return precision


def _diverged(what: str, run_dir: Path, state: TrainingState) -> TinyLMError:
    """The one-line error of a diverged run, saying whether a checkpoint to go back to exists."""
    kept = (f"The last good checkpoint (epoch {state.epoch}) is kept in {run_dir}"
            if (run_dir / "checkpoint" / "state.json").is_file() else "No checkpoint exists yet")
    return TinyLMError(f"{what}; stopped. {kept}; try a lower --lr")


def _forward_backward(model, optimizer, x, y, carried, precision: PrecisionChoice, device: torch.device):
    """The loss of one batch, its gradients computed; returns (loss, the model's new state)."""
    with precision.autocast(device):
        logits, carried = model(x, carried)
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1), ignore_index=IGNORE)
    optimizer.zero_grad(set_to_none=True)
    if torch.isfinite(loss):
        loss.backward()
    return loss, carried


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:160]


def _probe_batch(windows, tc, ddp, device) -> tuple[torch.Tensor, torch.Tensor]:
    """One training batch, for the precision probe (the first of a fixed order: the epochs' own are untouched)."""
    make_batches = windows.stream_epoch if tc.stateful else windows.epoch
    x, y = next(iter(make_batches(tc.batch_size, seed=0, rank=ddp.rank, world=ddp.world)))
    return x.to(device), y.to(device)


def _planned_epochs(tc) -> str:
    """The plan as people read it: "5 epochs", or "epochs until the 203 s budget" when a budget decides."""
    if tc.epochs < UNLIMITED_EPOCHS:
        return plural(tc.epochs, "epoch")
    return "epochs until " + (f"the {tc.time_budget:g} s budget" if tc.time_budget else f"step {tc.max_steps:,}")


def _epoch_of(epoch: int, tc) -> str:
    """ "3/5", or "3" when a budget decides how many epochs there are. """
    return f"{epoch}/{tc.epochs}" if tc.epochs < UNLIMITED_EPOCHS else str(epoch)


def _run_eta(state: TrainingState, tc, total_steps: int, seconds_per_step: float, eval_seconds: float,
             wall: float) -> str:
    """Time left for the whole run (the remaining steps and evaluations), not only this epoch's."""
    steps_left = max(0, total_steps - state.step)
    per_epoch = max(1, total_steps // max(1, tc.epochs)) if tc.epochs < UNLIMITED_EPOCHS else None
    evals_left = -(-steps_left // per_epoch) if per_epoch else 1
    left = steps_left * seconds_per_step + evals_left * eval_seconds
    if tc.time_budget:
        left = min(left, max(0.0, tc.time_budget - wall) + eval_seconds)
    minutes, seconds = divmod(int(left + 0.5), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}" if minutes >= 60 else f"{minutes}:{seconds:02d}"


def _detached(state):
    """A model state (a tensor or nested tuples of tensors) cut from the graph that made it."""
    if isinstance(state, torch.Tensor):
        return state.detach()
    return type(state)(_detached(s) for s in state) if isinstance(state, (tuple, list)) else state


def _end_epoch(ctx: _EpochContext, state: TrainingState, lr: float, partial: bool) -> None:
    """Evaluate on the whole validation split, keep the best weights, sample, log and plot."""
    run_dir, config, model, tokenizer, device = ctx.run_dir, ctx.config, ctx.model, ctx.tokenizer, ctx.device
    echo = ctx.echo
    tc, dc = config.train, config.data
    epoch = state.epoch + 1
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):  # the last steps diverged
        raise _diverged(f"the weights became NaN or infinite in epoch {epoch}", run_dir, state)
    t0 = time.perf_counter()
    ddp = ctx.ddp
    result = score(model, ctx.val_set, tc.eval_batch_size, dc.block_size, tokenizer.vocab_size, device,
                   shard=(ddp.rank, ddp.world), all_sum=lambda values: ddp.sum(values, device))
    # every rank takes rank 0's early-stopping decision
    result.loss = ctx.ddp.broadcast_float(result.loss, device)
    if not math.isfinite(result.loss):  # weights turned NaN by the last steps: nothing worth keeping
        raise _diverged(f"the validation loss became {result.loss} after epoch {epoch}", run_dir, state)
    eval_seconds = time.perf_counter() - t0
    ctx.last_eval_seconds = eval_seconds
    in_sync = ctx.ddp.in_sync(model, device)
    loss_sum, loss_count, tokens = ctx.ddp.sum([state.epoch_loss_sum, state.epoch_loss_count, state.epoch_tokens],
                                               device)
    improved = state.best_val_loss is None or result.loss < state.best_val_loss
    if improved:
        state.best_val_loss, state.best_epoch, state.bad_epochs = result.loss, epoch, 0
        if ctx.ddp.main:
            save_weights(model, run_dir / WEIGHTS)
    else:
        state.bad_epochs += 1
    train_loss = loss_sum / max(loss_count, 1)
    record = {
        "epoch": epoch,
        "step": state.step,
        "train_loss": round(train_loss, 6) if loss_count else None,  # None: a counting model trains no loss
        "val_loss": round(result.loss, 6),
        "val_perplexity": round(result.perplexity, 4),
        "val_bits_per_char": round(result.bits_per_char, 5),
        "val_context": result.context,
        "lr": lr,
        "tokens_per_s": round(tokens / max(state.epoch_seconds, 1e-9), 1),
        "epoch_seconds": round(state.epoch_seconds, 2),
        "eval_seconds": round(eval_seconds, 2),
        "elapsed_seconds": round(state.elapsed_seconds, 2),
        "wall_seconds": round(state.wall_seconds + eval_seconds, 2),
        "best": improved,
        "steps_per_epoch": ctx.steps_per_epoch,
        "train_curve": state.curve,
    }
    if partial:
        record["partial"] = True
    if ctx.ddp.active:
        record.update(world_size=ctx.ddp.world, ranks_in_sync=in_sync)
    if not ctx.ddp.main:
        _advance_epoch(state, partial)
        return
    append_jsonl(run_dir / "metrics.jsonl", record)
    star = " *best*" if improved else ""
    shown = f"{train_loss:.4f}" if loss_count else "-"  # counting models have no training loss
    echo(f"epoch {_epoch_of(epoch, tc)}: train {shown}  val {result.loss:.4f}  ppl {result.perplexity:.2f}  "
         f"bpc {result.bits_per_char:.3f}  ({record['tokens_per_s']:,.0f} tok/s, {state.epoch_seconds:.1f} s){star}")

    loaded = LoadedModel(model, tokenizer, config, run_dir, device)
    try:
        sample = loaded.generate(tc.sample_prompt or "", max_new_tokens=tc.sample_tokens,
                                 temperature=tc.sample_temperature, seed=tc.seed)
    except NonFiniteScores:  # finite weights, but so large that the scores overflow: diverged all the same
        raise _diverged(f"the model's scores became NaN or infinite in epoch {epoch}", run_dir, state) from None
    echo("  sample: " + sample.replace("\n", "\n          "))
    sample_record = {"epoch": epoch, "prompt": tc.sample_prompt, "temperature": tc.sample_temperature, "text": sample}
    append_jsonl(run_dir / "samples.jsonl", sample_record)
    ctx.logger.log_epoch(epoch, state.step, record, sample_record)
    ctx.plot()
    _advance_epoch(state, partial)


def _advance_epoch(state: TrainingState, partial: bool) -> None:
    """After a full epoch, reset the per-epoch counters (an epoch cut short by a budget stays open)."""
    if not partial:
        state.epoch, state.batch_in_epoch = state.epoch + 1, 0
        state.epoch_loss_sum, state.epoch_loss_count, state.epoch_tokens = 0.0, 0, 0
        state.epoch_seconds, state.curve = 0.0, []
