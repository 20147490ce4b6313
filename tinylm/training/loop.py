"""Stage 4: tinylm's training loop. One loop for every model family, readable top to bottom.

    settle the machine once: device, threads, precision (tinylm.machine.devices.settle_machine)
    for each epoch:                         one pass over the shuffled training windows
        for each batch: forward, cross-entropy, backward, clip, step                 (_step)
        evaluate on the WHOLE validation split                                        (_end_epoch)
        report it to the run session: best weights, metrics.jsonl, sample, loss.png  (run.session.RunSession)
        checkpoint (weights, optimizer, RNG, counters); stop when the budget says so  (budget.Budget)

The loop is an engine: everything around it (the folder, the startup lines, the records, the rule of
improvement, the summary, the loggers) is the RunSession's, which the fine-tuning Trainer and Lightning report to
as well. Exact resume: the batch order of an epoch depends only on (seed, epoch), and the checkpoint holds the
optimizer and RNG states, so a run stopped anywhere and resumed ends with the same weights and metrics
as one that never stopped.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from ..config import RunConfig
from ..data import IGNORE, EvalSet, LineSamples, TokenWindows, TrainingData
from ..errors import NonFiniteScores, TinyLMError
from ..evaluation.scoring import score
from ..folders import clean_stale
from ..io import as_path
from ..loading import LoadedModel, load_run
from ..machine.devices import MachineChoice, PrecisionChoice, process_age, resolve_device, settle_machine
from ..models import build_model, model_name
from ..run.layout import CONFIG, SUMMARY, WEIGHTS, check_run_output, data_source, default_run_dir, default_sample_prompt
from ..run.session import Progress, RunSession
from ..tokenizers import Tokenizer
from . import distributed
from .budget import EARLY_STOPPING, Budget, Interrupted
from .checkpoint import load_checkpoint, read_carried, read_state, save_checkpoint, save_weights
from .optim import build_optimizer

Echo = Callable[[str], None]

MACHINE_FIELDS = ("device", "precision", "threads", "processes")
"""Training settings that may differ between the machine a run started on and the one it resumes on."""


@dataclass
class TrainingState(Progress):
    """Counters saved with every checkpoint (checkpoint/state.json), the Progress (best epoch, patience) included."""

    epoch: int = 0  # completed epochs
    step: int = 0  # optimizer steps taken
    batch_in_epoch: int = 0  # batches of the current epoch already trained on
    epoch_loss_sum: float = 0.0
    epoch_loss_count: int = 0
    epoch_tokens: int = 0
    epoch_seconds: float = 0.0
    curve: list = field(default_factory=list)  # [step, running train loss] points of the current epoch
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
    state = TrainingState(data_sha256=data.fingerprint)
    session = RunSession(run_dir, config, echo=echo, main=ddp.main, progress=state)

    def write_start(folder: Path) -> None:  # the run appears whole (config + tokenizer) or not at all
        config.save(folder / CONFIG)
        tokenizer.save(folder)

    with session.open_new(overwrite, write_start):  # held: a second training into it is refused
        ddp.barrier()
        return _fit(session, tokenizer, windows, val_set, state, ddp, resumed=False, progress=progress)


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
    train = config.train
    if train.sample_prompt is None:
        train = dataclasses.replace(train, sample_prompt=default_sample_prompt(data.head(), config.data.lines))
    return dataclasses.replace(config, tokenizer=data.tokenizer_config(config.tokenizer), train=train,
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
    raw = read_state(run_dir, TrainingState)
    if raw is None and (run_dir / SUMMARY).is_file():  # a counting model: one pass, no checkpoint
        raise TinyLMError(f"{run_dir} already finished: a counting model learns in one pass; start a new run instead")
    # Killed before its first checkpoint: start over from the saved config and tokenizer.
    state = TrainingState(**raw) if raw is not None else TrainingState(data_sha256="")
    config = _resumed_config(run_dir, dict(machine, epochs=epochs, max_steps=max_steps), echo if ddp.main else None)
    # Killed after its last checkpoint but before summary.json: only the closing work is left to do.
    completing = raw is not None and state.finished and not (run_dir / SUMMARY).is_file()
    _check_more_to_do(run_dir, state, config.train, completing, echo)
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
    session = RunSession(run_dir, config, echo=echo, main=ddp.main, progress=state)
    with session.open_existing():  # held: a second resume of it is refused
        tokenizer = Tokenizer.load(run_dir)
        return _fit(session, tokenizer, *data.examples(tokenizer, config.data), state, ddp,
                    resumed=raw is not None, progress=progress, rewrite_config=True)


def _resumed_config(run_dir: Path, asked: dict, echo: Echo | None) -> RunConfig:
    """The run's config.json with its data paths made safe to read and this resume's plan (`asked`: epochs,
    max_steps, and MACHINE_FIELDS; None: unchanged); a changed machine setting is said to `echo`."""
    config = RunConfig.load(run_dir / CONFIG)
    sources = {}
    for name in ("source", "val_source"):  # relative to the run, never a device or kernel file
        value, refused = data_source(getattr(config.data, name), run_dir, from_hub=False)
        if refused:
            raise TinyLMError(f"{run_dir}/{CONFIG} names data that is not read: {refused}")
        sources[name] = value
    plan = {name: asked.pop(name) for name in ("epochs", "max_steps") if asked[name] is not None}
    changed = {name: value for name, value in asked.items()
               if value is not None and value != getattr(config.train, name)}
    if changed and echo:
        said = ", ".join(f"--{name} {value} (was {getattr(config.train, name)})" for name, value in changed.items())
        echo(f"resume: this machine's settings changed: {said}")
    return dataclasses.replace(config, data=dataclasses.replace(config.data, **sources),
                               train=dataclasses.replace(config.train, **plan, **changed))


def _check_more_to_do(run_dir: Path, state: TrainingState, tc, completing: bool, echo: Echo) -> None:
    """Refuse a resume with nothing left to train (its plan reached, or early stopping ended it)."""
    if completing:
        echo(f"{run_dir} had finished training ({state.stop_reason}); writing what its end left unwritten")
    elif state.stop_reason == EARLY_STOPPING:
        raise TinyLMError(f"{run_dir} already stopped early at epoch {state.epoch} (patience "
                          f"{tc.patience}); its best weights are final — start a new run instead")
    elif not tc.epochs_left(state.epoch):
        raise TinyLMError(f"{run_dir} already has {state.epoch} epochs; pass --epochs N with N > {state.epoch}")
    elif tc.max_steps is not None and state.step >= tc.max_steps:
        raise TinyLMError(f"{run_dir} already took {state.step} steps; pass a larger --max-steps")


# -- the run ------------------------------------------------------------------------------------------------
@dataclass
class _Run:
    """What the steps and the end-of-epoch work share, bundled so the functions below stay short."""

    session: RunSession
    model: torch.nn.Module
    tokenizer: Tokenizer
    val_set: EvalSet
    machine: MachineChoice
    ddp: distributed.Distributed
    budget: Budget
    progress: bool  # progress bars
    last_eval_seconds: float = 0.0  # the last end-of-epoch evaluation's seconds (for the run's ETA)
    steps_here: int = 0  # this process's steps and their seconds: the ETA's pace
    step_seconds_here: float = 0.0

    @property
    def config(self) -> RunConfig:
        return self.session.config

    @property
    def device(self) -> torch.device:
        return self.machine.device

    @property
    def run_dir(self) -> Path:
        return self.session.run_dir


def _fit(session: RunSession, tokenizer: Tokenizer, windows: TokenWindows | LineSamples, val_set: EvalSet,
         state: TrainingState, ddp: distributed.Distributed, *, resumed: bool, progress: bool,
         rewrite_config: bool = False) -> LoadedModel:
    """Train the run the session holds (made, or resumed from `state`). Everything that can refuse (the device,
    the checkpoint, the precision, the run's records and the logger's files) is checked before anything is
    written; `rewrite_config`: a resume writes config.json again (its new plan; an older format upgraded)."""
    config, run_dir = session.config, session.run_dir
    tc, dc = config.train, config.data
    device = distributed.device_for(ddp, resolve_device(tc.device))
    torch.manual_seed(tc.seed)
    budget = Budget(tc, _steps_per_epoch(windows, tc, dc, ddp), wall_before=state.wall_seconds)
    model = build_model(config.model).to(device)
    if device.type == "cuda" and isinstance(windows, TokenWindows) and windows.num_tokens <= 100_000_000:
        windows = windows.to(device)  # batches gathered on the GPU, no host copy per step (<= 800 MB of ids)
    optimizer = build_optimizer(model, tc) if model.trainable else None  # never imports torch._dynamo
    carried = _restore(run_dir, model, optimizer, state, tc, ddp, device) if resumed else None
    if ddp.rank:  # each rank its own dropout masks
        torch.manual_seed(tc.seed + 7919 * ddp.rank + state.step)
    if ddp.main:
        clean_stale(run_dir)  # temporaries and checkpoint.old of a killed run
    machine = _agreed(settle_machine(device, tc.precision, tc.threads, model,
                                     lambda: _probe_batch(windows, tc, ddp, device),
                                     previous=state.precision if resumed else None, processes=ddp.world), ddp)
    session.check_records(resumed_after=state.epoch)  # the last check before writing: damaged records refuse
    if rewrite_config and ddp.main:
        config.save(run_dir / CONFIG)  # in today's format: an older run is upgraded as it is written again
    resuming = f"  (resuming after epoch {state.epoch}, step {state.step})" if resumed else ""
    session.start(f"tinylm train -> {run_dir}{resuming}", _startup_rows(config, model, tokenizer, windows,
                  val_set, budget), _facts(model, windows, val_set, budget), machine, model.trainable,
                  title=f"{model.describe()} on {dc.source}")
    run = _Run(session, model, tokenizer, val_set, machine, ddp, budget, progress and ddp.main)
    _train_or_count(run, windows, optimizer, state, carried)
    ddp.barrier()  # rank 0 has written everything the others load below
    session.echo(f"done: best validation loss {state.best_val_loss:.4f} at epoch {state.best_epoch}; "
                 f"{state.elapsed_seconds:.0f} s of training. Weights: {run_dir / WEIGHTS}")
    return load_run(run_dir, device=str(device))


def _train_or_count(run: _Run, windows, optimizer, state: TrainingState, carried) -> None:
    """Train (or count, for an n-gram model), then tell the session how it ended: summary.json."""
    outcome = {"startup_seconds": process_age()}  # from process start to the first training step
    failed = True
    try:
        if run.model.trainable:
            state.precision = run.machine.precision.name
            _train_epochs(run, windows, optimizer, state, carried)
        elif not state.finished:
            _fit_counts(run, windows.token_stream, state)
            outcome["parameters"] = run.model.num_parameters()  # a counting model's size is known after fitting
            run.session.echo(f"  counted     {outcome['parameters']:,} n-grams")
        failed = False
    finally:
        precision = run.machine.precision  # fp32 after a bf16 kernel failed on the first step
        run.session.finish(failed, **outcome, precision=precision.name, precision_reason=precision.reason,
                           epochs=state.epoch, steps=state.step, train_seconds=round(state.elapsed_seconds, 2),
                           wall_seconds=round(state.wall_seconds, 2), stop_reason=state.stop_reason,
                           finished=state.finished)


def _restore(run_dir: Path, model, optimizer, state: TrainingState, tc, ddp, device):
    """Load the checkpoint into the model and optimizer; returns the recurrent state a stateful run stopped
    inside an epoch carries on from (None otherwise; with several ranks only rank 0's was saved)."""
    load_checkpoint(run_dir, model, optimizer, device)
    return read_carried(run_dir, device) if tc.stateful and state.batch_in_epoch and not ddp.active else None


def _agreed(machine: MachineChoice, ddp: distributed.Distributed) -> MachineChoice:
    """Every rank computes in the precision rank 0 chose (its probe's timing decides)."""
    if not ddp.active:
        return machine
    mine = 1.0 if machine.precision.bf16 else 0.0
    chosen = ddp.broadcast_float(mine, machine.device)
    if chosen == mine:
        return machine
    return dataclasses.replace(machine, precision=PrecisionChoice("bf16" if chosen else "fp32",
                                                                  "the choice of the first process"))


def _steps_per_epoch(windows, tc, dc, ddp) -> int:
    if not tc.stateful:
        return windows.num_batches(tc.batch_size, ddp.world)
    steps = windows.num_stream_batches(tc.batch_size, ddp.world)
    if steps < 1:
        raise TinyLMError(f"--stateful cuts the training text into {tc.batch_size * ddp.world} streams of at "
                          f"least --block-size {dc.block_size} tokens: it has only {windows.num_tokens}; "
                          f"use a smaller --batch-size or --block-size")
    return steps


def _facts(model, windows, val_set: EvalSet, budget: Budget) -> dict:
    """What summary.json and the loggers record about the run before it trains (the machine's facts follow)."""
    return {"parameters": model.num_parameters(), "train_tokens": windows.num_tokens, "val_tokens": val_set.tokens,
            "steps_per_epoch": budget.steps_per_epoch}


def _startup_rows(config: RunConfig, model, tokenizer: Tokenizer, windows, val_set: EvalSet,
                  budget: Budget) -> list[tuple[str, str]]:
    """The startup lines' data, model and plan (the session adds the header and the machine)."""
    tc, dc = config.train, config.data
    shape = f", {len(windows):,} lines" if dc.lines else ""
    rows = [("data", f"{dc.source}: {windows.num_tokens:,} training / {val_set.tokens:,} validation tokens{shape}, "
                     f"{tokenizer.kind} tokenizer, vocabulary {tokenizer.vocab_size}")]
    if not model.trainable:
        return rows + [("model", f"{model.describe()}: its n-grams are counted in one pass"),
                       ("training", "one counting pass over the training tokens")]
    params = model.num_parameters()
    until = f", at most {tc.max_steps:,} steps" if tc.max_steps else ""
    until += f", at most {tc.time_budget:g} s" if tc.time_budget else ""
    return rows + [
        ("model", f"{model.describe()}: {params:,} parameters"),
        ("tokens/param", f"{windows.num_tokens / max(params, 1):.2f} per epoch"),
        ("training", f"{budget.describe()} x {budget.steps_per_epoch:,} steps (batch {tc.batch_size} x block "
                     f"{dc.block_size}, target {dc.target}){until}; {tc.optimizer} lr {tc.lr:g} {tc.lr_schedule}, "
                     f"warm-up {tc.warmup_steps}, clip {tc.grad_clip:g}, patience {tc.patience or 'off'}"),
    ]


def _fit_counts(run: _Run, train_ids: torch.Tensor, state: TrainingState) -> None:
    """Counting models (n-grams) learn in one pass: fit, then one evaluated 'epoch'."""
    t0 = time.perf_counter()
    run.model.fit(train_ids.to(run.device))
    state.epoch_seconds = state.elapsed_seconds = time.perf_counter() - t0
    state.epoch_tokens, state.step = train_ids.numel(), 1
    _end_epoch(run, state, lr=0.0, partial=False)
    state.finished, state.stop_reason = True, "counted"


# -- the epochs and their steps -------------------------------------------------------------------------------
def _train_epochs(run: _Run, windows: TokenWindows | LineSamples, optimizer: torch.optim.Optimizer,
                  state: TrainingState, carried=None) -> None:
    """Train until the budget ends the run."""
    train_model = _for_training(run.model, run.ddp, run.device)
    with run.budget:  # Ctrl-C: checkpoint at the end of the batch, then stop
        while run.budget.another_epoch(state):
            cut_short, carried = _train_epoch(run, train_model, windows, optimizer, state, carried)
            _end_epoch(run, state, optimizer.param_groups[0]["lr"], partial=bool(cut_short))
            _close_epoch(run, optimizer, state, cut_short)


def _train_epoch(run: _Run, train_model, windows, optimizer, state: TrainingState, carried):
    """One epoch's steps (the rest of one, after a resume inside it). Returns (the budget that cut it short or
    None, the recurrent state stateful training carries into the next batch)."""
    tc, budget, device = run.config.train, run.budget, run.device
    run.model.train()
    meter = _EpochMeter(state, budget, log_every=max(1, budget.steps_per_epoch // 25))
    bar = _epoch_bar(run, state)
    if not state.batch_in_epoch:
        carried = None  # stateful training: the state at the end of the previous batch, cut from its graph
    cut_short = None
    for x, y in _epoch_batches(windows, tc, state, run.ddp):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        lr = _set_lr(optimizer, budget.lr(state.step))
        step_start = time.perf_counter()
        loss, carried = _step(run, train_model, optimizer, x, y, carried, state)
        run.steps_here += 1
        run.step_seconds_here += time.perf_counter() - step_start
        meter.count(run, x, loss.item(), lr)
        bar.set_postfix(loss=f"{meter.running:.4f}", tok_s=f"{meter.tokens_per_s:,.0f}", refresh=False,
                        run_eta=budget.eta(state.step, run.step_seconds_here / run.steps_here, run.last_eval_seconds))
        bar.update(1)
        cut_short = budget.after_step(state.step, lambda hit: run.ddp.any(hit, device))
        if cut_short:
            break
        if budget.interrupted or (tc.checkpoint_every and state.step % tc.checkpoint_every == 0):
            meter.lap()
            _checkpoint_inside_epoch(run, optimizer, state, carried, bar)
    bar.close()
    meter.lap()
    return cut_short, carried


@dataclass
class _EpochMeter:
    """An epoch's running loss, clocks and counters: each step's numbers go into the state (checkpointed) and, every
    `log_every` steps, to the session's logger and the loss curve."""

    state: TrainingState
    budget: Budget
    log_every: int
    running: float | None = None  # the running (smoothed) training loss
    since: float = field(default_factory=time.perf_counter)  # the clocks count from here

    @property
    def tokens_per_s(self) -> float:
        return self.state.epoch_tokens / max(self.state.epoch_seconds + time.perf_counter() - self.since, 1e-9)

    def count(self, run: _Run, x: torch.Tensor, loss: float, lr: float) -> None:
        state = self.state
        self.running = loss if self.running is None else 0.9 * self.running + 0.1 * loss
        state.step, state.batch_in_epoch = state.step + 1, state.batch_in_epoch + 1
        state.epoch_loss_sum += loss * x.size(0)
        state.epoch_loss_count += x.size(0)
        state.epoch_tokens += x.numel()
        if state.batch_in_epoch % self.log_every == 0:
            state.curve.append([state.epoch * self.budget.steps_per_epoch + state.batch_in_epoch,
                                round(self.running, 5)])
            run.session.log_step(state.step, self.running, lr, self.tokens_per_s)

    def lap(self) -> None:
        """Add the seconds since the last lap to the state's clocks (before a checkpoint and at the epoch's end)."""
        now = time.perf_counter()
        self.state.epoch_seconds += now - self.since
        self.state.elapsed_seconds += now - self.since
        self.state.wall_seconds = self.budget.wall()
        self.since = now


def _step(run: _Run, train_model, optimizer, x, y, carried, state: TrainingState):
    """One optimizer step on the batch (x, y): forward, loss, backward, clip, step. Returns (the loss, the model's
    new state, cut from the graph for stateful training). A bf16 kernel that fails on the run's first step is
    retried in fp32, which the run then keeps; a loss that is not finite ends the run."""
    tc = run.config.train
    try:
        loss, carried = _forward_backward(train_model, optimizer, x, y, carried, run.machine.precision, run.device)
    except RuntimeError as e:
        if not run.machine.precision.bf16 or run.steps_here:
            raise
        run.machine = dataclasses.replace(run.machine, precision=PrecisionChoice(
            "fp32", f"bf16 autocast failed on the first step: {_first_line(e)}"))
        run.session.echo(f"note: {run.machine.precision.reason}; training in fp32")
        state.precision = "fp32"
        loss, carried = _forward_backward(train_model, optimizer, x, y, carried, run.machine.precision, run.device)
    if not torch.isfinite(loss):
        raise Budget.diverged(f"the training loss became {loss.item()} at step {state.step + 1}", run.run_dir, state)
    if tc.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), tc.grad_clip)
    optimizer.step()
    return loss, _detached(carried) if tc.stateful else None


def _forward_backward(model, optimizer, x, y, carried, precision: PrecisionChoice, device: torch.device):
    """The loss of one batch, its gradients computed; returns (loss, the model's new state)."""
    with precision.autocast(device):
        logits, carried = model(x, carried)
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1), ignore_index=IGNORE)
    optimizer.zero_grad(set_to_none=True)
    if torch.isfinite(loss):
        loss.backward()
    return loss, carried


def _checkpoint_inside_epoch(run: _Run, optimizer, state: TrainingState, carried, bar) -> None:
    """--checkpoint-every N, or a first Ctrl-C (then training stops here, resumable)."""
    if run.ddp.main:
        save_checkpoint(run.run_dir, run.model, optimizer, asdict(state), carried)
    if run.budget.interrupted:
        bar.close()
        raise Interrupted(f"interrupted at step {state.step} (epoch {state.epoch + 1}); checkpoint saved. "
                          f"Continue with: tinylm train --resume {run.run_dir}")


def _close_epoch(run: _Run, optimizer, state: TrainingState, cut_short: str | None) -> None:
    """After an evaluated epoch: ask the budget whether the run ends (and why), then checkpoint."""
    reason = run.budget.after_epoch(state, cut_short)
    if reason:
        state.finished, state.stop_reason = True, reason
    if reason == EARLY_STOPPING:
        run.session.echo(f"early stopping: no better validation loss for {run.config.train.patience} epochs "
                         f"(best {state.best_val_loss:.4f} at epoch {state.best_epoch})")
    state.wall_seconds = run.budget.wall()
    if run.ddp.main:
        save_checkpoint(run.run_dir, run.model, optimizer, asdict(state))


def _for_training(model: torch.nn.Module, ddp: distributed.Distributed, device: torch.device) -> torch.nn.Module:
    """The module the steps call: with several processes, DDP around the model to average gradients across ranks
    (evaluation, sampling and saving use the plain model)."""
    if not ddp.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def _epoch_batches(windows, tc, state: TrainingState, ddp):
    """This rank's batches of the current epoch, in the order (seed, epoch) fixes, past those already trained."""
    make_batches = windows.stream_epoch if tc.stateful else windows.epoch
    return make_batches(tc.batch_size, seed=tc.seed * 1_000_003 + state.epoch, skip=state.batch_in_epoch,
                        rank=ddp.rank, world=ddp.world)


def _epoch_bar(run: _Run, state: TrainingState):
    from tqdm.auto import tqdm

    return tqdm(total=run.budget.steps_per_epoch, initial=state.batch_in_epoch, unit="step",
                desc=f"epoch {run.config.train.epoch_label(state.epoch + 1)}", disable=not run.progress,
                dynamic_ncols=True, leave=False, mininterval=0.5 if sys.stderr.isatty() else 15)


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> float:
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)  # Muon's group runs at muon_lr / lr times
    return lr


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
    """Evaluate on the whole validation split (every rank its shard), then report the epoch to the session."""
    dc, model, device, ddp = run.config.data, run.model, run.device, run.ddp
    epoch = state.epoch + 1
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):  # the last steps diverged
        raise Budget.diverged(f"the weights became NaN or infinite in epoch {epoch}", run.run_dir, state)
    t0 = time.perf_counter()
    result = score(model, run.val_set, run.config.train.eval_batch_size, dc.block_size, run.tokenizer.vocab_size,
                   device, shard=(ddp.rank, ddp.world), all_sum=lambda values: ddp.sum(values, device))
    result.loss = ddp.broadcast_float(result.loss, device)  # every rank takes rank 0's early-stopping decision
    if not math.isfinite(result.loss):  # weights turned NaN by the last steps: nothing worth keeping
        raise Budget.diverged(f"the validation loss became {result.loss} after epoch {epoch}", run.run_dir, state)
    run.last_eval_seconds = eval_seconds = time.perf_counter() - t0
    in_sync = ddp.in_sync(model, device)
    loss_sum, loss_count, tokens = ddp.sum([state.epoch_loss_sum, state.epoch_loss_count, state.epoch_tokens], device)
    extra = {"wall_seconds": round(state.wall_seconds + eval_seconds, 2)}
    if partial:
        extra["partial"] = True
    if ddp.active:
        extra.update(world_size=ddp.world, ranks_in_sync=in_sync)
    try:
        run.session.end_epoch(
            model=LoadedModel(model, run.tokenizer, run.config, run.run_dir, device),
            keep_best=lambda path: save_weights(model, path), epoch=epoch, step=state.step,
            train_loss=loss_sum / loss_count if loss_count else None, result=result, lr=lr, tokens=tokens,
            epoch_seconds=state.epoch_seconds, eval_seconds=eval_seconds, elapsed_seconds=state.elapsed_seconds,
            steps_per_epoch=run.budget.steps_per_epoch, curve=state.curve, **extra)
    except NonFiniteScores:  # finite weights, but so large that the scores overflow: diverged all the same
        raise Budget.diverged(f"the model's scores became NaN or infinite in epoch {epoch}", run.run_dir,
                              state) from None
    state.end_epoch(partial)
