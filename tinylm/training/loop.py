"""Stage 4: the training loop. One loop for every model family, readable top to bottom.

    for each epoch:                         one pass over the shuffled training windows
        for each batch: forward, cross-entropy, backward, clip, step
        evaluate on the WHOLE validation split; keep the best weights in model.safetensors
        print a sample from a fixed prompt; append to metrics.jsonl; redraw loss.png     (rundir.RunWriter)
        checkpoint (weights, optimizer, RNG, counters); stop when the budget says so     (budget.Budget)

Exact resume: the batch order of an epoch depends only on (seed, epoch), and the checkpoint holds the
optimizer and RNG states, so a run stopped anywhere and resumed ends with the same weights and metrics
as one that never stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..config import RunConfig
from ..data import (
    IGNORE,
    EvalSet,
    LineSamples,
    TokenWindows,
    evaluation_examples,
    is_prepared,
    load_split,
    open_prepared,
    prepared_examples,
    training_examples,
)
from ..data.tokenfile import fixed_tokenizer_config, large_text_note
from ..errors import NonFiniteScores, TinyLMError
from ..evaluation.scoring import score
from ..folders import clean_stale, hold, writing_folder
from ..io import as_path
from ..machine.devices import (
    PrecisionChoice,
    apply_threads,
    hardware_description,
    hardware_summary,
    plural,
    process_age,
    resolve_device,
    training_precision,
)
from ..models import build_model, model_name
from ..run.layout import (
    CONFIG,
    SUMMARY,
    WEIGHTS,
    check_run_output,
    data_source,
    default_run_dir,
    default_sample_prompt,
)
from ..run.loading import LoadedModel, load_run
from ..run.session import RunWriter, epoch_record
from ..tokenizers import Tokenizer, build_tokenizer
from . import distributed
from .budget import EARLY_STOPPING, Budget, Interrupted
from .checkpoint import load_checkpoint, read_carried, read_state, save_checkpoint, save_weights
from .loggers import make_logger
from .optim import build_optimizer

Echo = Callable[[str], None]

MACHINE_FIELDS = ("device", "precision", "threads", "processes")
"""Training settings that may differ between the machine a run started on and the one it resumes on."""


@dataclass
class TrainingState:
    """Counters saved with every checkpoint (checkpoint/state.json)."""

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

    def end_epoch(self, partial: bool) -> None:
        """After a full epoch, reset the per-epoch counters (an epoch cut short by a budget stays open)."""
        if not partial:
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
            self.epoch_loss_sum, self.epoch_loss_count, self.epoch_tokens = 0.0, 0, 0
            self.epoch_seconds, self.curve = 0.0, []


# -- the data, chosen once -------------------------------------------------------------------------------
@dataclass
class TrainingData:
    """What a run trains on: a prepared folder's token files (tinylm prepare: no text is read) or the text of a
    source, split into training and validation parts."""

    prepared: Any = None
    train_text: str | None = None
    val_text: str | None = None

    @classmethod
    def open(cls, dc, echo: Echo | None = None) -> TrainingData:
        """The data `dc` (a DataConfig) names; a note about a large text goes to `echo`. Bad data fails here,
        before anything is written."""
        if is_prepared(dc.source):
            return cls(prepared=open_prepared(dc.source))
        note = large_text_note(dc.source)
        if note and echo:
            echo(note)
        train_text, val_text = load_split(dc)
        return cls(train_text=train_text, val_text=val_text)

    @property
    def fingerprint(self) -> str:
        """The data's digest: a resume refuses data that changed since the run started."""
        if self.prepared is not None:
            return self.prepared.fingerprint
        digest = hashlib.sha256(self.train_text.encode("utf-8"))
        digest.update(b"\0")
        digest.update(self.val_text.encode("utf-8"))
        return digest.hexdigest()

    def what(self) -> str:
        return "the prepared tokens" if self.prepared is not None else "the text"

    def head(self) -> str:
        """The start of the training text (the default sample prompt comes from it)."""
        return self.prepared.head if self.prepared is not None else self.train_text

    def tokenizer(self, config) -> Tokenizer:
        """A prepared folder's own tokenizer, or one built from the training text as `config` says."""
        return self.prepared.tokenizer if self.prepared is not None else build_tokenizer(config, self.train_text)

    def examples(self, tokenizer: Tokenizer, dc) -> tuple[TokenWindows | LineSamples, EvalSet]:
        """Training examples and the validation set; refuses data too short for either (before any file is
        written)."""
        if self.prepared is not None:
            windows, val_set = prepared_examples(self.prepared, dc)
        else:
            windows = training_examples(tokenizer, self.train_text, dc)
            val_set = evaluation_examples(tokenizer, self.val_text, dc)
        if val_set.tokens < 2 or (dc.target == "last" and not dc.lines and val_set.tokens <= dc.block_size):
            raise TinyLMError(
                f"the validation split has {val_set.tokens} tokens, too few to evaluate "
                f"(need more than {dc.block_size if dc.target == 'last' else 1}); raise --val-fraction"
            )
        return windows, val_set


# -- starting and resuming ---------------------------------------------------------------------------------
def train(config: RunConfig | None = None, out: str | Path | None = None, *, overwrite: bool = False,
          progress: bool = True, echo: Echo = print) -> LoadedModel:
    """Train a new run from `config` into `out` (default runs/<data>-<model>-<time>); return the best model.
    The caller's `config` is never changed: the run's own (config.json) is derived from it."""
    config = config if config is not None else RunConfig()
    if not isinstance(config, RunConfig):
        raise TinyLMError(f"config must be a tinylm.RunConfig, got {type(config).__name__}")
    out = as_path(out, "out") if out is not None else None
    config = dataclasses.replace(config, data=_absolute_sources(config.data))  # a new object, re-validated
    resolve_device(config.train.device)  # a device that isn't there fails before anything is written
    ddp = distributed.setup(config.train.device)
    if ddp.active and out is None:
        raise TinyLMError("--out is required when training with several processes (torchrun)")
    run_dir = Path(out) if out is not None else default_run_dir(config.data.source, model_name(config.model))
    check_run_output(run_dir, overwrite)

    data = TrainingData.open(config.data, echo if ddp.main else None)
    tokenizer = data.tokenizer(config.tokenizer)
    config = _fixed_by_data(config, data, tokenizer)
    windows, val_set = data.examples(tokenizer, config.data)
    with hold(run_dir, enabled=ddp.main):  # one process writes a run: a second training into it is refused
        if ddp.main:
            check_run_output(run_dir, overwrite)  # again, now that no other process can write it
            # The run directory appears whole (config + tokenizer) or not at all: a kill here leaves nothing
            # half-made; it replaces an empty folder or a run the user asked to overwrite.
            with writing_folder(run_dir) as staging:
                config.save(staging / CONFIG)
                tokenizer.save(staging)
        ddp.barrier()
        state = TrainingState(data_sha256=data.fingerprint)
        try:
            return _fit(run_dir, config, tokenizer, windows, val_set, state, ddp, resumed=False, progress=progress,
                        echo=echo)
        except BaseException:
            # Failed before its first checkpoint (a bad --lr, a second Ctrl-C): no half-made run blocks a rerun.
            if ddp.main and read_state(run_dir) is None and not (run_dir / SUMMARY).is_file():
                shutil.rmtree(run_dir, ignore_errors=True)
            raise


def _absolute_sources(dc):
    """A local file or folder is kept absolute: the run loads from anywhere."""
    changed = {}
    for name in ("source", "val_source"):
        value = getattr(dc, name)
        if isinstance(value, str) and ":" not in value[:12] and Path(value).expanduser().exists():
            changed[name] = str(Path(value).expanduser().resolve())
    return dataclasses.replace(dc, **changed)


def _fixed_by_data(config: RunConfig, data: TrainingData, tokenizer: Tokenizer) -> RunConfig:
    """The run's config once the data is known: the vocabulary size, a prepared folder's tokenizer, and the
    sample prompt (line mode: a new line from <eos>; else the text's opening words)."""
    tokenizer_config = config.tokenizer
    if data.prepared is not None:
        tokenizer_config = fixed_tokenizer_config(data.prepared, config.tokenizer)
    train = config.train
    if train.sample_prompt is None:
        train = dataclasses.replace(train, sample_prompt=default_sample_prompt(data.head(), config.data.lines))
    return dataclasses.replace(config, tokenizer=tokenizer_config, train=train,
                               model=dataclasses.replace(config.model, vocab_size=tokenizer.vocab_size))


def resume(run_dir: str | Path, epochs: int | None = None, max_steps: int | None = None, *,
           progress: bool = True, echo: Echo = print, **machine) -> LoadedModel:
    """Continue `run_dir` from its checkpoint until it has `epochs` epochs (or `max_steps` steps) in total.
    `machine` may change MACHINE_FIELDS (device, precision, threads, processes) for this machine; the results
    stay exact only where the precision is the same."""
    unknown = set(machine) - set(MACHINE_FIELDS)
    if unknown:
        raise TypeError(f"resume() got unexpected keyword arguments {sorted(unknown)}")
    run_dir = as_path(run_dir, "run_dir")
    if not run_dir.is_dir():
        raise TinyLMError(f"--resume {run_dir}: no such run directory")
    ddp = distributed.setup("auto")
    config = RunConfig.load(run_dir / CONFIG)
    sources = {}
    for name in ("source", "val_source"):  # relative to the run, never a device or kernel file
        value, refused = data_source(getattr(config.data, name), run_dir, from_hub=False)
        if refused:
            raise TinyLMError(f"{run_dir}/{CONFIG} names data that is not read: {refused}")
        sources[name] = value
    raw = read_state(run_dir, TrainingState)
    if raw is None and (run_dir / SUMMARY).is_file():  # a counting model: one pass, no checkpoint
        raise TinyLMError(f"{run_dir} already finished: a counting model learns in one pass; start a new run instead")
    # Killed before its first checkpoint: start over from the saved config and tokenizer.
    state = TrainingState(**raw) if raw is not None else TrainingState(data_sha256="")
    plan = {name: value for name, value in (("epochs", epochs), ("max_steps", max_steps)) if value is not None}
    changed = {name: value for name, value in machine.items()
               if value is not None and value != getattr(config.train, name)}
    if changed and ddp.main:
        said = ", ".join(f"--{name} {value} (was {getattr(config.train, name)})" for name, value in changed.items())
        echo(f"resume: this machine's settings changed: {said}")
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, **sources),
                                 train=dataclasses.replace(config.train, **plan, **changed))
    tc = config.train
    # Killed after its last checkpoint but before summary.json: only the closing work is left to do.
    completing = raw is not None and state.finished and not (run_dir / SUMMARY).is_file()
    if completing:
        echo(f"{run_dir} had finished training ({state.stop_reason}); writing what its end left unwritten")
    elif state.stop_reason == EARLY_STOPPING:
        raise TinyLMError(f"{run_dir} already stopped early at epoch {state.epoch} (patience "
                          f"{tc.patience}); its best weights are final — start a new run instead")
    elif not tc.epochs_left(state.epoch):
        raise TinyLMError(f"{run_dir} already has {state.epoch} epochs; pass --epochs N with N > {state.epoch}")
    elif tc.max_steps is not None and state.step >= tc.max_steps:
        raise TinyLMError(f"{run_dir} already took {state.step} steps; pass a larger --max-steps")
    data = TrainingData.open(config.data)  # the text, or the prepared folder's tokens (tokens.json)
    if raw is None:
        state.data_sha256 = data.fingerprint
        echo(f"{run_dir} has no checkpoint yet: training it from the start")
    if data.fingerprint != state.data_sha256:
        raise TinyLMError(f"{data.what()} of {config.data.source!r} changed since {run_dir} started; cannot resume "
                          f"exactly")
    if not completing:
        state.finished, state.stop_reason = False, None
    ddp.barrier()  # every rank has read config.json before rank 0 rewrites it
    with hold(run_dir, enabled=ddp.main):  # one process writes a run: a second resume of it is refused
        tokenizer = Tokenizer.load(run_dir)
        return _fit(run_dir, config, tokenizer, *data.examples(tokenizer, config.data), state, ddp,
                    resumed=raw is not None, progress=progress, echo=echo, rewrite_config=True)


# -- the run ------------------------------------------------------------------------------------------------
@dataclass
class _Run:
    """What the steps and the end-of-epoch work share, bundled so the functions below stay short."""

    run_dir: Path
    config: RunConfig
    model: torch.nn.Module
    tokenizer: Tokenizer
    val_set: EvalSet
    device: torch.device
    ddp: distributed.Distributed
    writer: RunWriter
    budget: Budget
    echo: Echo
    last_eval_seconds: float = 0.0  # the last end-of-epoch evaluation's seconds (for the run's ETA)


def _fit(run_dir: Path, config: RunConfig, tokenizer: Tokenizer, windows: TokenWindows | LineSamples,
         val_set: EvalSet, state: TrainingState, ddp: distributed.Distributed, *, resumed: bool, progress: bool,
         echo: Echo, rewrite_config: bool = False) -> LoadedModel:
    """Train the run in `run_dir` (made, or resumed from `state`). Everything that can refuse (the device, the
    checkpoint, the precision, the run's records and the logger's files) is checked before anything is written;
    `rewrite_config`: a resume writes config.json again (its new plan; an older format upgraded) only then."""
    tc, dc = config.train, config.data
    device = distributed.device_for(ddp, resolve_device(tc.device))
    if not ddp.main:  # only rank 0 speaks
        echo, progress = (lambda line: None), False
    torch.manual_seed(tc.seed)
    steps_per_epoch = _steps_per_epoch(windows, tc, dc, ddp)
    budget = Budget(tc, steps_per_epoch, wall_before=state.wall_seconds)

    model = build_model(config.model).to(device)
    if device.type == "cuda" and isinstance(windows, TokenWindows) and windows.num_tokens <= 100_000_000:
        windows = windows.to(device)  # batches gathered on the GPU, no host copy per step (<= 800 MB of ids)
    optimizer = build_optimizer(model, tc) if model.trainable else None  # never imports torch._dynamo
    carried = None  # stateful training stopped inside an epoch: the state to go on from
    if resumed:
        load_checkpoint(run_dir, model, optimizer, device)
        if tc.stateful and state.batch_in_epoch and not ddp.active:  # (several ranks: only rank 0's is saved)
            carried = read_carried(run_dir, device)
    if ddp.rank:  # each rank its own dropout masks
        torch.manual_seed(tc.seed + 7919 * ddp.rank + state.step)
    if ddp.main:
        clean_stale(run_dir)  # temporaries and checkpoint.old of a killed run

    # --threads, else what the process has: the CLI sets the default (physical cores / processes), torchrun's
    # launcher OMP_NUM_THREADS, and an API caller's own torch.set_num_threads() is left alone
    threads = apply_threads(tc.threads) if tc.threads else torch.get_num_threads()
    precision = training_precision(tc.precision, device, model, _probe_batch(windows, tc, ddp, device)
                                   if model.trainable else None, previous=state.precision if resumed else None)
    if ddp.active:  # every rank computes in the precision rank 0 chose (its probe's timing decides)
        chosen = ddp.broadcast_float(1.0 if precision.bf16 else 0.0, device)
        if chosen != (1.0 if precision.bf16 else 0.0):
            precision = PrecisionChoice("bf16" if chosen else "fp32", "the choice of the first process")
    _preflight(echo, run_dir, config, model, tokenizer, windows, val_set, state, resumed, budget, precision, device,
               ddp)

    logger = make_logger(tc.logger if ddp.main else "none", run_dir, tc.wandb_project, tc.run_name)
    writer = RunWriter(run_dir, logger, title=f"{model.describe()} on {dc.source}", echo=echo, main=ddp.main)
    writer.check()  # the run's records and the logger's files are readable: the last check before writing
    if rewrite_config and ddp.main:
        config.save(run_dir / CONFIG)  # in today's format: an older run is upgraded as it is written again
    writer.redo_after(state.epoch)  # records past the checkpoint (written just before a crash) are redone
    info = {"parameters": model.num_parameters(), **hardware_summary(device, threads, ddp.world),
            "precision": precision.name if model.trainable else "fp32",
            "precision_reason": precision.reason if model.trainable else "a counting model",
            "hardware": hardware_description(device),
            "train_tokens": windows.num_tokens, "val_tokens": val_set.tokens, "steps_per_epoch": steps_per_epoch}
    writer.start(config.to_dict(), info)
    run = _Run(run_dir, config, model, tokenizer, val_set, device, ddp, writer, budget, echo)
    failed = True
    try:
        info["startup_seconds"] = process_age()  # from process start to the first training step
        if model.trainable:
            state.precision = precision.name
            precision = _train_epochs(run, windows, optimizer, state, precision, progress, carried)
            info["precision"], info["precision_reason"] = precision.name, precision.reason
        elif not state.finished:
            _fit_counts(run, windows.token_stream, state)
            info["parameters"] = model.num_parameters()  # a counting model's size is known after fitting
            echo(f"  counted     {info['parameters']:,} n-grams")
        failed = False
    finally:
        writer.finish({**info, "best_val_loss": state.best_val_loss, "best_epoch": state.best_epoch,
                       "epochs": state.epoch, "steps": state.step, "train_seconds": round(state.elapsed_seconds, 2),
                       "wall_seconds": round(state.wall_seconds, 2), "stop_reason": state.stop_reason,
                       "finished": state.finished}, failed=failed)
    ddp.barrier()  # rank 0 has written everything the others load below

    echo(f"done: best validation loss {state.best_val_loss:.4f} at epoch {state.best_epoch}; "
         f"{state.elapsed_seconds:.0f} s of training. Weights: {run_dir / WEIGHTS}")
    return load_run(run_dir, device=str(device))


def _steps_per_epoch(windows, tc, dc, ddp) -> int:
    if not tc.stateful:
        return windows.num_batches(tc.batch_size, ddp.world)
    steps = windows.num_stream_batches(tc.batch_size, ddp.world)
    if steps < 1:
        raise TinyLMError(f"--stateful cuts the training text into {tc.batch_size * ddp.world} streams of at "
                          f"least --block-size {dc.block_size} tokens: it has only {windows.num_tokens}; "
                          f"use a smaller --batch-size or --block-size")
    return steps


def _preflight(echo, run_dir, config, model, tokenizer, windows, val_set, state, resumed, budget, precision, device,
               ddp) -> None:
    """What is about to happen, before the first step: data, model, plan, device and precision."""
    tc, dc = config.train, config.data
    params = model.num_parameters()
    resuming = f"  (resuming after epoch {state.epoch}, step {state.step})" if resumed else ""
    echo(f"tinylm train -> {run_dir}{resuming}")
    shape = f", {len(windows):,} lines" if dc.lines else ""
    echo(f"  data        {dc.source}: {windows.num_tokens:,} training / {val_set.tokens:,} validation tokens{shape}, "
         f"{tokenizer.kind} tokenizer, vocabulary {tokenizer.vocab_size}")
    if model.trainable:
        echo(f"  model       {model.describe()}: {params:,} parameters")
        echo(f"  tokens/param {windows.num_tokens / max(params, 1):.2f} per epoch")
        until = f", at most {tc.max_steps:,} steps" if tc.max_steps else ""
        until += f", at most {tc.time_budget:g} s" if tc.time_budget else ""
        echo(f"  training    {budget.describe()} x {budget.steps_per_epoch:,} steps (batch {tc.batch_size} x block "
             f"{dc.block_size}, target {dc.target}){until}; {tc.optimizer} lr {tc.lr:g} {tc.lr_schedule}, "
             f"warm-up {tc.warmup_steps}, clip {tc.grad_clip:g}, patience {tc.patience or 'off'}")
    else:
        echo(f"  model       {model.describe()}: its n-grams are counted in one pass")
        echo("  training    one counting pass over the training tokens")
    shown = [hardware_description(device)] + ([f"{plural(ddp.world, 'process')} (DDP)"] if ddp.active else [])
    if model.trainable:
        shown.insert(0, precision.describe())
    echo(f"  device      {device}: {'; '.join(shown)}")


def _fit_counts(run: _Run, train_ids: torch.Tensor, state: TrainingState) -> None:
    """Counting models (n-grams) learn in one pass: fit, then one evaluated 'epoch'."""
    t0 = time.perf_counter()
    run.model.fit(train_ids.to(run.device))
    state.epoch_seconds = state.elapsed_seconds = time.perf_counter() - t0
    state.epoch_tokens, state.step = train_ids.numel(), 1
    _end_epoch(run, state, lr=0.0, partial=False)
    state.finished, state.stop_reason = True, "counted"


def _train_epochs(run: _Run, windows: TokenWindows | LineSamples, optimizer: torch.optim.Optimizer,
                  state: TrainingState, precision: PrecisionChoice, progress: bool, carried=None) -> PrecisionChoice:
    """Train until the budget ends the run; returns the precision used (fp32 after a bf16 kernel failed on the
    first step)."""
    from tqdm.auto import tqdm

    tc, model, device, run_dir, ddp, budget = run.config.train, run.model, run.device, run.run_dir, run.ddp, run.budget
    steps_per_epoch = budget.steps_per_epoch
    # DDP averages gradients across ranks; evaluation, sampling and saving use the plain module.
    train_model = model
    if ddp.active:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    log_every = max(1, steps_per_epoch // 25)
    steps_here, train_seconds_here = 0, 0.0  # this process's steps and their seconds: the ETA's pace

    with budget:  # Ctrl-C: checkpoint at the end of the batch, then stop
        while budget.another_epoch(state):
            epoch_index = state.epoch
            model.train()
            bar = tqdm(total=steps_per_epoch, initial=state.batch_in_epoch,
                       desc=f"epoch {tc.epoch_label(epoch_index + 1)}", unit="step", disable=not progress,
                       dynamic_ncols=True, leave=False, mininterval=0.5 if sys.stderr.isatty() else 15)
            t0 = time.perf_counter()
            running = None
            cut_short = None
            make_batches = windows.stream_epoch if tc.stateful else windows.epoch
            batches = make_batches(tc.batch_size, seed=tc.seed * 1_000_003 + epoch_index, skip=state.batch_in_epoch,
                                   rank=ddp.rank, world=ddp.world)
            if not state.batch_in_epoch:
                carried = None  # stateful training: the state at the end of the previous batch, cut from its graph
            for x, y in batches:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                lr = budget.lr(state.step)
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
                    run.echo(f"note: {precision.reason}; training in fp32")
                    state.precision = precision.name
                    loss, new_carried = _forward_backward(train_model, optimizer, x, y, carried, precision, device)
                carried = _detached(new_carried) if tc.stateful else None
                if not torch.isfinite(loss):
                    bar.close()
                    raise Budget.diverged(f"the training loss became {loss.item()} at step {state.step + 1}", run_dir,
                                          state)
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
                tokens_per_s = state.epoch_tokens / max(state.epoch_seconds + time.perf_counter() - t0, 1e-9)
                if state.batch_in_epoch % log_every == 0:
                    state.curve.append([epoch_index * steps_per_epoch + state.batch_in_epoch, round(running, 5)])
                    run.writer.log_step(state.step, running, lr, tokens_per_s)
                bar.set_postfix(loss=f"{running:.4f}", tok_s=f"{tokens_per_s:,.0f}",
                                run_eta=budget.eta(state.step, train_seconds_here / steps_here, run.last_eval_seconds),
                                refresh=False)
                bar.update(1)
                cut_short = budget.after_step(state.step, lambda hit: ddp.any(hit, device))
                if cut_short:
                    break
                if budget.interrupted or (tc.checkpoint_every and state.step % tc.checkpoint_every == 0):
                    t0 = _count_seconds(state, t0, budget)
                    if ddp.main:
                        save_checkpoint(run_dir, model, optimizer, asdict(state), carried)
                    if budget.interrupted:
                        bar.close()
                        raise Interrupted(
                            f"interrupted at step {state.step} (epoch {epoch_index + 1}); checkpoint saved. "
                            f"Continue with: tinylm train --resume {run_dir}"
                        )
            bar.close()
            _count_seconds(state, t0, budget)
            _end_epoch(run, state, optimizer.param_groups[0]["lr"], partial=bool(cut_short))
            reason = budget.after_epoch(state, cut_short)
            if reason:
                state.finished, state.stop_reason = True, reason
            if reason == EARLY_STOPPING:
                run.echo(f"early stopping: no better validation loss for {tc.patience} epochs "
                         f"(best {state.best_val_loss:.4f} at epoch {state.best_epoch})")
            state.wall_seconds = budget.wall()
            if ddp.main:
                save_checkpoint(run_dir, model, optimizer, asdict(state))
    return precision


def _count_seconds(state: TrainingState, since: float, budget: Budget) -> float:
    """Add the seconds of training since `since` to the state's clocks; returns now."""
    now = time.perf_counter()
    state.epoch_seconds += now - since
    state.elapsed_seconds += now - since
    state.wall_seconds = budget.wall()
    return now


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


def _detached(state):
    """A model state (a tensor or nested tuples of tensors) cut from the graph that made it."""
    if isinstance(state, torch.Tensor):
        return state.detach()
    return type(state)(_detached(s) for s in state) if isinstance(state, (tuple, list)) else state


# -- the end of an epoch --------------------------------------------------------------------------------------
def _end_epoch(run: _Run, state: TrainingState, lr: float, partial: bool) -> None:
    """Evaluate on the whole validation split, then the RunWriter keeps the best weights, samples, logs, plots."""
    tc, dc, model, device, ddp = run.config.train, run.config.data, run.model, run.device, run.ddp
    epoch = state.epoch + 1
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):  # the last steps diverged
        raise Budget.diverged(f"the weights became NaN or infinite in epoch {epoch}", run.run_dir, state)
    t0 = time.perf_counter()
    result = score(model, run.val_set, tc.eval_batch_size, dc.block_size, run.tokenizer.vocab_size, device,
                   shard=(ddp.rank, ddp.world), all_sum=lambda values: ddp.sum(values, device))
    result.loss = ddp.broadcast_float(result.loss, device)  # every rank takes rank 0's early-stopping decision
    if not math.isfinite(result.loss):  # weights turned NaN by the last steps: nothing worth keeping
        raise Budget.diverged(f"the validation loss became {result.loss} after epoch {epoch}", run.run_dir, state)
    run.last_eval_seconds = eval_seconds = time.perf_counter() - t0
    in_sync = ddp.in_sync(model, device)
    loss_sum, loss_count, tokens = ddp.sum([state.epoch_loss_sum, state.epoch_loss_count, state.epoch_tokens], device)
    improved = state.best_val_loss is None or result.loss < state.best_val_loss
    if improved:
        state.best_val_loss, state.best_epoch, state.bad_epochs = result.loss, epoch, 0
    else:
        state.bad_epochs += 1
    extra = {"val_context": result.context, "wall_seconds": round(state.wall_seconds + eval_seconds, 2)}
    if partial:
        extra["partial"] = True
    if ddp.active:
        extra.update(world_size=ddp.world, ranks_in_sync=in_sync)
    record = epoch_record(epoch=epoch, step=state.step, train_loss=loss_sum / loss_count if loss_count else None,
                          result=result, lr=lr, tokens=tokens, epoch_seconds=state.epoch_seconds,
                          eval_seconds=eval_seconds, elapsed_seconds=state.elapsed_seconds, best=improved,
                          steps_per_epoch=run.budget.steps_per_epoch, curve=state.curve, **extra)
    loaded = LoadedModel(model, run.tokenizer, run.config, run.run_dir, device)
    try:
        run.writer.end_epoch(record, tc.epoch_label(epoch), loaded, tc, lambda path: save_weights(model, path))
    except NonFiniteScores:  # finite weights, but so large that the scores overflow: diverged all the same
        raise Budget.diverged(f"the model's scores became NaN or infinite in epoch {epoch}", run.run_dir,
                              state) from None
    state.end_epoch(partial)
