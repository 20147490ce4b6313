"""tinylm inside PyTorch Lightning: any tinylm model as a LightningModule, tinylm's data as a LightningDataModule,
and the result saved as a tinylm run directory (so `tinylm sample`, `eval`, `push` and `tinylm.load` read it).

    pip install 'tinylm[lightning]'

    import lightning.pytorch as pl
    from tinylm.training.lightning import LitCharRNN, TextDataModule, callbacks, save_run

    data = TextDataModule.exercise("shakespeare")      # maxlen-40 / step-3 windows, many-to-one, batch 128
    model = LitCharRNN(data.vocab_size)                # the exercise's signature: embed 64, hidden 128, ...
    recorder, *others = callbacks("runs/lit", patience=5)   # EarlyStopping(patience=5), ModelCheckpoint
    pl.Trainer(max_epochs=50, callbacks=[recorder, *others]).fit(model, data)
    save_run(model, data, "runs/lit", recorder)        # config.json, tokenizer, model.safetensors, metrics.jsonl

or in one call: `run = fit(model, data, "runs/lit", max_epochs=50)`, which returns the loaded run.

What differs from `tinylm train`: Lightning's own loop trains (fp32 unless the Trainer is given a precision,
Adam/AdamW at a constant learning rate, gradient clipping by the Trainer), and the validation loss after each
epoch scores the validation split by windows, each read from a fresh state (`val_context: windows` in
metrics.jsonl); `tinylm eval RUN` reads recurrent models' text as streams, so its loss can be a little lower.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F

from ..config import DataConfig, RunConfig, TrainConfig, check_learning_rate
from ..data import IGNORE, evaluation_examples, load_split, training_examples
from ..errors import TinyLMError
from ..evaluation.scoring import summarize, token_losses
from ..loading import LoadedModel, load_run
from ..machine.devices import MachineChoice, PrecisionChoice
from ..models import LanguageModel, build_model, config_to_dict, model_config
from ..models.weights import load_weights, save_weights
from ..run.layout import CONFIG, RUN_FOLDER, WEIGHTS, default_sample_prompt
from ..run.session import RunSession
from ..tokenizers import TokenizerConfig, build_tokenizer
from .presets import PRESETS

try:  # the optional extra: `import tinylm` never needs it, `import tinylm.training.lightning` does
    import lightning.pytorch as pl
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar
except ImportError:
    raise TinyLMError("tinylm.training.lightning needs PyTorch Lightning: pip install 'tinylm[lightning]'") from None

LIGHTNING_DIR = "lightning"  # ModelCheckpoint's .ckpt files inside the run directory (for trainer.fit(ckpt_path=))

__all__ = ["LIGHTNING_DIR", "LitCharRNN", "LitLanguageModel", "RunRecorder", "TextDataModule", "callbacks", "fit",
           "prepare_out_dir", "save_run"]


class LitLanguageModel(pl.LightningModule):
    """Any tinylm model (`logits, state = model(ids, state)`) trained by Lightning on tinylm's (x, y) batches:
    cross-entropy over the targets that are not IGNORE (every position, the last one only, or a padded line's
    tokens), Adam or AdamW at a constant learning rate.

    `model` is a model config (`tinylm.model_config("gru", hidden=256)`) or a built tinylm model; the vocabulary
    size must be the tokenizer's (`TextDataModule.vocab_size`)."""

    def __init__(self, model: Any, lr: float = 3e-3, optimizer: str = "adamw", weight_decay: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.99)):
        super().__init__()
        self.model = model if isinstance(model, LanguageModel) else build_model(model)
        if not self.model.trainable:
            raise TinyLMError(f"a {self.model.family} model learns by counting, not by gradient steps: "
                              f"train it with tinylm.train")
        if self.model.config.vocab_size < 1:
            raise TinyLMError("the model config has no vocabulary size: pass vocab_size=data.vocab_size")
        if optimizer not in ("adam", "adamw"):
            raise TinyLMError(f"optimizer must be adam or adamw, got {optimizer!r}")
        check_learning_rate(lr, "lr")
        if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or not 0 <= weight_decay < 1e3:
            raise TinyLMError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
        self.lr, self.optimizer_name, self.weight_decay, self.betas = lr, optimizer, weight_decay, tuple(betas)
        self.save_hyperparameters({"model": config_to_dict(self.model.config), "lr": lr, "optimizer": optimizer,
                                   "weight_decay": weight_decay, "betas": list(betas)})
        self._val_nats, self._val_tokens = 0.0, 0

    @property
    def model_config(self) -> Any:
        return self.model.config

    def forward(self, ids: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        return self.model(ids, state)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_index: int) -> torch.Tensor:
        x, y = batch
        logits, _ = self.model(x, None)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1), ignore_index=IGNORE)
        self.log("train_loss", loss, prog_bar=True, batch_size=x.size(0))
        return loss

    # The validation loss is the mean over every scored token of the split (not a mean of batch means):
    # summed over the batches of the epoch, divided at its end.
    def on_validation_epoch_start(self) -> None:
        self._val_nats, self._val_tokens = 0.0, 0

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_index: int) -> None:
        nats, tokens = token_losses(self.model, [batch], self.device)
        self._val_nats += nats
        self._val_tokens += tokens

    def on_validation_epoch_end(self) -> None:
        if self._val_tokens:
            self.log("val_loss", self._val_nats / self._val_tokens, prog_bar=True)

    def validation_totals(self) -> tuple[float, int]:
        """(nats, scored tokens) of the validation epoch that just ended."""
        return self._val_nats, self._val_tokens

    def configure_optimizers(self) -> torch.optim.Optimizer:
        kind = torch.optim.AdamW if self.optimizer_name == "adamw" else torch.optim.Adam
        return kind(self.model.parameters(), lr=self.lr, betas=self.betas, weight_decay=self.weight_decay)


class LitCharRNN(LitLanguageModel):
    """The Shakespeare exercise's model with its signature: a character embedding (`embed_dim`), one LSTM layer
    (`hidden_size`), dropout -> dense + ReLU -> dropout -> logits, Adam at `lr`. It is tinylm's `exercise`
    preset, so it is many-to-one when trained on `TextDataModule.exercise(...)` windows (maxlen 40, step 3:
    only the character after each window is a target), and generates character by character."""

    def __init__(self, vocab_size: int, embed_dim: int = 64, hidden_size: int = 128, dropout: float = 0.2,
                 lr: float = 5e-3):
        preset = {k: v for k, v in PRESETS["exercise"]["model"].items() if k != "name"}
        config = model_config(PRESETS["exercise"]["model"]["name"], **{
            **preset, "vocab_size": vocab_size, "embed": embed_dim, "hidden": hidden_size, "dropout": dropout})
        super().__init__(config, lr=lr, optimizer=PRESETS["exercise"]["train"]["optimizer"])


class _Batches:
    """A re-iterable source of (x, y) batches for Lightning: `make(epoch)` builds one epoch's batches."""

    def __init__(self, make: Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]], length: int | None):
        self._make, self._length = make, length

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return iter(self._make())

    def __len__(self) -> int:
        if self._length is None:
            raise TypeError("the number of batches is not known in advance")
        return self._length


class TextDataModule(pl.LightningDataModule):
    """tinylm's data stage as a LightningDataModule: the text of a `DataConfig` (a file, a folder, a built-in
    corpus, gutenberg:ID, hf:NAME; its validation split), a tokenizer trained on the training text, and the
    examples tinylm trains on: windows with a target at every position, the exercise's many-to-one windows
    (`target="last"`, `block_size` = maxlen, `stride` = step) or one padded line per sample (`lines=True`).

    The text is read and the tokenizer built at construction, so `vocab_size` is known before the model is
    made. Each epoch's batch order depends only on (seed, epoch), as in `tinylm train`."""

    def __init__(self, data: DataConfig | str | Path = "shakespeare", tokenizer: TokenizerConfig | str = "char", *,
                 batch_size: int = 64, eval_batch_size: int = 128, seed: int = 1337):
        super().__init__()
        self.data = data if isinstance(data, DataConfig) else DataConfig(source=str(data))
        self.tokenizer_config = tokenizer if isinstance(tokenizer, TokenizerConfig) else TokenizerConfig(kind=tokenizer)
        if batch_size < 1 or eval_batch_size < 1:
            raise TinyLMError("batch sizes must be at least 1")
        self.batch_size, self.eval_batch_size, self.seed = batch_size, eval_batch_size, seed
        self.train_text, self.val_text = load_split(self.data)
        self.tokenizer = build_tokenizer(self.tokenizer_config, self.train_text)
        self.train_examples = training_examples(self.tokenizer, self.train_text, self.data)
        self.val_examples = evaluation_examples(self.tokenizer, self.val_text, self.data)
        if self.val_examples.tokens <= (self.data.block_size if self.data.target == "last" else 1):
            raise TinyLMError(f"the validation split has {self.val_examples.tokens} tokens, too few to evaluate; "
                              f"raise val_fraction")

    @classmethod
    def exercise(cls, source: str | Path = "shakespeare", **options: Any) -> "TextDataModule":
        """The exercise's data: windows of 40 characters every 3 (the `exercise` preset), batches of 128."""
        options.setdefault("batch_size", PRESETS["exercise"]["train"]["batch_size"])
        strip = options.pop("strip_gutenberg", False)
        return cls(DataConfig(source=str(source), strip_gutenberg=strip, **PRESETS["exercise"]["data"]), **options)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def train_dataloader(self) -> _Batches:
        examples, size = self.train_examples, self.batch_size
        return _Batches(lambda: examples.epoch(size, seed=self.seed * 1_000_003 + self._epoch()),
                        examples.num_batches(size))

    def val_dataloader(self) -> _Batches:
        return _Batches(lambda: self.val_examples.batches(self.eval_batch_size), None)


class RunRecorder(pl.Callback):
    """Reports Lightning's events to tinylm's RunSession, as tinylm's own loop and the fine-tuning Trainer do:

    - when fitting starts, the run directory `out` is opened: checked (an empty folder, or a run when
      `overwrite`), held against a second writer, and config.json with the tokenizer written in a staging folder
      that replaces the old one whole (Lightning's own checkpoints in OUT/lightning are kept); the startup lines;
    - after each validation, the epoch: the session judges it, keeps the best weights in model.safetensors,
      appends the metrics.jsonl record (losses, perplexity, bits per character, speed), writes a sample to
      samples.jsonl, logs it (`logger`: none, csv, tensorboard, wandb) and redraws loss.png;
    - `save_run` finishes it: summary.json, and the folder is let go."""

    def __init__(self, out: str | Path | None = None, *, overwrite: bool = False, logger: str = "none",
                 sample_prompt: str | None = None, echo: Callable[[str], None] = print) -> None:
        self.out = Path(out) if out is not None else None
        self.overwrite, self.logger, self.sample_prompt, self.echo = overwrite, logger, sample_prompt, echo
        self.session: RunSession | None = None
        self._held_lines: list[str] = []  # said while a rich progress bar draws: printed by `finish`
        self.records: list[dict] = []
        self.train_seconds = 0.0
        self._eval_started = 0.0
        self._reset_epoch()

    @property
    def best_val_loss(self) -> float | None:
        return self.session.progress.best_val_loss if self.session else None

    @property
    def best_epoch(self) -> int | None:
        return self.session.progress.best_epoch if self.session else None

    def _reset_epoch(self) -> None:
        self._loss_sum, self._rows, self._tokens, self._curve = 0.0, 0, 0, []
        self._started = time.perf_counter()

    def on_fit_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if self.out is None:
            raise TinyLMError("RunRecorder needs the run directory to write: RunRecorder(out) or callbacks(out)")
        data = trainer.datamodule
        if not isinstance(data, TextDataModule):
            raise TinyLMError("RunRecorder writes a tinylm run from a TextDataModule: "
                              "trainer.fit(model, datamodule=TextDataModule(...))")
        _check_fits(module, data)
        config = _run_config(module, data, trainer, self.sample_prompt, self.logger)
        self.session = RunSession(self.out, config, echo=_printer(trainer, self.echo, self._held_lines))

        def write_start(folder: Path) -> None:
            config.save(folder / CONFIG)
            data.tokenizer.save(folder)

        self.session.open_new(self.overwrite, write_start, resumable=False, keep=(LIGHTNING_DIR,))
        self.session.start(f"tinylm + Lightning {pl.__version__} -> {self.out}", _startup_rows(module, data, trainer),
                           _facts(module, data), _machine(module, trainer),
                           title=f"{module.model.describe()} on {data.data.source} (Lightning)")

    def on_exception(self, trainer: pl.Trainer, module: pl.LightningModule, exception: BaseException) -> None:
        if self.session is not None:
            try:
                self.session.finish(failed=True, steps=trainer.global_step, finished=False)
            finally:
                self.session.close(failed=True)

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._reset_epoch()

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_index: int) -> None:
        x, _ = batch
        loss = float(outputs["loss"] if isinstance(outputs, dict) else outputs)
        self._loss_sum += loss * x.size(0)
        self._rows += x.size(0)
        self._tokens += x.numel()
        self._curve.append([trainer.global_step, round(loss, 5)])
        if self.session is not None and trainer.global_step % max(1, (_steps(trainer) or 25) // 25) == 0:
            seconds = max(time.perf_counter() - self._started, 1e-9)  # as the loop: about 25 points an epoch
            self.session.log_step(trainer.global_step, loss, trainer.optimizers[0].param_groups[0]["lr"],
                                  self._tokens / seconds)

    def on_validation_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._eval_started = time.perf_counter()

    def on_validation_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        nats, tokens = module.validation_totals()
        if trainer.sanity_checking or not tokens or self.session is None:
            return
        seconds = self._eval_started - self._started  # the epoch's training, its validation left out
        self.train_seconds += seconds
        examples = trainer.datamodule.val_examples
        steps = _steps(trainer)
        cut_short = bool(trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps and steps
                         and trainer.global_step % steps)  # a step budget ended the epoch early
        session = self.session
        self.records.append(session.end_epoch(
            model=LoadedModel(module.model, trainer.datamodule.tokenizer, session.config, session.run_dir,
                              module.device),
            keep_best=lambda path: save_weights(module.model, path),
            epoch=trainer.current_epoch + 1, step=trainer.global_step,
            train_loss=self._loss_sum / self._rows if self._rows else None,
            result=summarize(nats, tokens, examples.chars, examples.tokens, "windows"),
            lr=trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None, tokens=self._tokens,
            epoch_seconds=seconds, eval_seconds=time.perf_counter() - self._eval_started,
            elapsed_seconds=self.train_seconds, steps_per_epoch=steps,
            # tinylm's loss plot draws the running loss against the epoch: [step within the run, loss] points
            curve=[[s, v] for s, v in self._curve[:: max(1, len(self._curve) // 25)]],
            **({"partial": True} if cut_short else {})))
        module.model.train(module.training)  # the sample put the model in eval mode

    def finish(self, trainer: pl.Trainer | None, module: LitLanguageModel, sample_prompt: str | None = None) -> None:
        """The end of the run (called by `save_run`): the best weights back into `module`, summary.json, the
        folder let go."""
        session = self.session
        for line in self._held_lines:
            print(line)
        self._held_lines.clear()
        try:
            if sample_prompt is not None and sample_prompt != session.config.train.sample_prompt:
                session.config.train.sample_prompt = sample_prompt
                session.config.save(session.run_dir / CONFIG)
            if (session.run_dir / WEIGHTS).is_file():
                load_weights(module.model, session.run_dir / WEIGHTS, module.device)
            else:  # no validation ran: the weights as they are
                save_weights(module.model, session.run_dir / WEIGHTS)
            early = _early_stopping(trainer)
            session.finish(**_outcome(trainer, self, early))
        except BaseException:
            session.close(failed=True)
            raise
        session.close()


def _printer(trainer: pl.Trainer, echo: Callable[[str], None], held: list[str]) -> Callable[[str], None]:
    """Where the session's lines go. Plain printing goes through a tqdm progress bar's own print, which keeps the
    bar whole; under Lightning's rich progress bar the lines are held in `held` and printed when the run is
    saved (printing while rich draws its bar in a notebook recurses without end). Another `echo` is kept."""
    bar = getattr(trainer, "progress_bar_callback", None)
    if echo is not print or bar is None:
        return echo
    return held.append if isinstance(bar, RichProgressBar) else bar.print


def _steps(trainer: pl.Trainer) -> int | None:
    """Batches per training epoch (None: not known in advance)."""
    return trainer.num_training_batches if math.isfinite(trainer.num_training_batches) else None


def _early_stopping(trainer: pl.Trainer | None) -> EarlyStopping | None:
    return next((c for c in (trainer.callbacks if trainer else []) if isinstance(c, EarlyStopping)), None)


def _run_config(module: LitLanguageModel, data: TextDataModule, trainer: pl.Trainer | None,
                sample_prompt: str | None, logger: str = "none") -> RunConfig:
    """The run's config.json: the data, tokenizer and model, and the Trainer's settings in tinylm's terms."""
    if sample_prompt is None:  # as tinylm train: a new line in line mode, else the text's opening words
        sample_prompt = default_sample_prompt(data.train_text, data.data.lines)
    early = _early_stopping(trainer)
    train = TrainConfig(epochs=trainer.max_epochs if trainer and trainer.max_epochs and trainer.max_epochs > 0 else 1,
                        max_steps=trainer.max_steps if trainer and trainer.max_steps > 0 else None,
                        batch_size=data.batch_size, lr=module.lr, optimizer=module.optimizer_name,
                        weight_decay=module.weight_decay, betas=module.betas, warmup_steps=0,
                        grad_clip=float(trainer.gradient_clip_val or 0) if trainer else 0.0,
                        patience=early.patience if early else 0, seed=data.seed,
                        precision=_machine_precision(trainer).name, eval_batch_size=data.eval_batch_size,
                        sample_prompt=sample_prompt, logger=logger)
    return RunConfig(data=dataclasses.replace(data.data), tokenizer=data.tokenizer_config,
                     model=dataclasses.replace(module.model.config), train=train)


def _machine_precision(trainer: pl.Trainer | None) -> PrecisionChoice:
    precision = str(getattr(trainer, "precision", "32-true")) if trainer else "32-true"
    return PrecisionChoice("bf16" if "bf16" in precision else "fp32", f"the Trainer's precision {precision}")


def _machine(module: LitLanguageModel, trainer: pl.Trainer) -> MachineChoice:
    """Lightning chose the device and precision; the session records them as tinylm's own loop does."""
    return MachineChoice(module.device, _machine_precision(trainer), torch.get_num_threads(), trainer.world_size)


def _facts(module: LitLanguageModel, data: TextDataModule) -> dict:
    return {"trainer": f"lightning {pl.__version__}", "parameters": module.model.num_parameters(),
            "train_tokens": data.train_examples.num_tokens, "val_tokens": data.val_examples.tokens}


def _startup_rows(module: LitLanguageModel, data: TextDataModule, trainer: pl.Trainer) -> list[tuple[str, str]]:
    early = _early_stopping(trainer)
    plan = f"at most {trainer.max_epochs} epochs" if trainer.max_epochs and trainer.max_epochs > 0 else "epochs"
    plan += f", at most {trainer.max_steps:,} steps" if trainer.max_steps > 0 else ""
    return [("data", f"{data.data.source}: {data.train_examples.num_tokens:,} training / "
                     f"{data.val_examples.tokens:,} validation tokens, {data.tokenizer.kind} tokenizer, "
                     f"vocabulary {data.vocab_size}"),
            ("model", f"{module.model.describe()}: {module.model.num_parameters():,} parameters"),
            ("training", f"{plan} (batch {data.batch_size}); {module.optimizer_name} lr {module.lr:g} constant, "
                         f"patience {early.patience if early else 'off'} (Lightning's EarlyStopping)")]


def _outcome(trainer: pl.Trainer | None, recorder: RunRecorder, early: EarlyStopping | None) -> dict:
    """How the Lightning run ended, for summary.json."""
    stopped = None
    if trainer is not None:
        stopped = "early_stopping" if early is not None and early.stopped_epoch > 0 else (
            "max_steps" if trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps else "epochs")
    return {"epochs": len(recorder.records), "steps": trainer.global_step if trainer else None,
            "train_seconds": round(recorder.train_seconds, 2), "stop_reason": stopped, "finished": True,
            "early_stopping_epoch": early.stopped_epoch + 1 if early is not None and early.stopped_epoch > 0 else None}


def callbacks(out: str | Path, patience: int = 5, *, overwrite: bool = False, logger: str = "none",
              echo: Callable[[str], None] = print) -> list[pl.Callback]:
    """[RunRecorder, EarlyStopping, ModelCheckpoint]: tinylm's recorder writing the run directory `out` (an
    earlier run there is replaced when fitting starts, if `overwrite`), stopping after `patience` epochs without
    a better validation loss, and Lightning's own checkpoint of the best epoch in OUT/lightning/best.ckpt (to
    continue with `trainer.fit(..., ckpt_path=...)`)."""
    return [RunRecorder(out, overwrite=overwrite, logger=logger, echo=echo),
            # checked after each validation (not at the end of a training epoch, which a step budget may cut
            # short with no validation: save_run then validates the last weights itself)
            EarlyStopping(monitor="val_loss", mode="min", patience=patience, check_on_train_epoch_end=False),
            ModelCheckpoint(dirpath=Path(out) / LIGHTNING_DIR, filename="best", monitor="val_loss", mode="min",
                            save_top_k=1)]


def _check_fits(module: LitLanguageModel, data: TextDataModule) -> None:
    """The model reads the data's tokens, and a fixed-context model (a GPT) its windows."""
    config = module.model.config
    if config.vocab_size != data.vocab_size:
        raise TinyLMError(f"the model has {config.vocab_size} output tokens but the data's tokenizer has "
                          f"{data.vocab_size}: build it with vocab_size=data.vocab_size")
    context = getattr(config, "block_size", None)
    if context is not None and context != data.data.block_size:
        raise TinyLMError(f"the model's context ({context}) differs from the data's block size "
                          f"({data.data.block_size}): build the model with block_size={data.data.block_size}")


def prepare_out_dir(out: str | Path, overwrite: bool = False) -> None:
    """Refuse, before training, an `out` that holds something else than a run (or a run, unless `overwrite`); a
    folder holding only Lightning's checkpoints is fine. Nothing is changed: the recorder replaces the old run
    whole when fitting starts."""
    RUN_FOLDER.check(out, overwrite, keep=(LIGHTNING_DIR,))


def save_run(module: LitLanguageModel, data: TextDataModule, out: str | Path, recorder: RunRecorder | None = None,
             *, trainer: pl.Trainer | None = None, overwrite: bool = False, sample_prompt: str | None = None) -> Path:
    """Finish the run directory `out`: with the `recorder` that recorded the training into it, validate a last
    epoch a step budget cut short, load the best epoch's weights back into `module` and write summary.json;
    without one (an untrained or hand-trained module), write the run whole: config.json, the tokenizer files and
    model.safetensors. `tinylm sample OUT`, `tinylm eval OUT` and `tinylm.load(OUT)` read it like a run of
    `tinylm train`."""
    out = Path(out)
    _check_fits(module, data)
    if recorder is None or recorder.session is None:
        recorder = RunRecorder(out, overwrite=overwrite, sample_prompt=sample_prompt, echo=lambda line: None)
        recorder.on_fit_start(_Unfitted(data), module)
    elif recorder.session.run_dir.resolve() != out.resolve():
        raise TinyLMError(f"the recorder wrote {recorder.session.run_dir}, not {out}")
    if trainer is not None and trainer.global_step and (
            not recorder.records or recorder.records[-1]["step"] < trainer.global_step):
        # A step budget ended training inside an epoch, before its validation: validate the last weights now,
        # as tinylm's own loop does (the recorder adds the record; early stopping and checkpoints ignore it)
        trainer.validate(module, datamodule=data, verbose=False)
    recorder.finish(trainer, module, sample_prompt)
    return out


class _Unfitted:
    """Stands in for a Trainer when `save_run` writes a module no recorder followed."""

    max_epochs, max_steps, gradient_clip_val, world_size, precision = 1, -1, 0, 1, "32-true"
    callbacks: list = []

    def __init__(self, data: TextDataModule):
        self.datamodule = data


def fit(module: LitLanguageModel, data: TextDataModule, out: str | Path, *, max_epochs: int = 50,
        max_steps: int = -1, patience: int = 5, overwrite: bool = False, progress: bool = True,
        logger: str = "none", **trainer_options: Any) -> LoadedModel:
    """Train `module` on `data` with `pl.Trainer` (EarlyStopping(patience), ModelCheckpoint, gradient clipping
    at 1.0), written as a tinylm run directory in `out` (`logger`: tinylm's none, csv, tensorboard or wandb), and
    return the best epoch loaded (`run.generate(...)`, `run.evaluate()`). `trainer_options` go to `pl.Trainer`
    (accelerator, precision, ...)."""
    out = Path(out)
    _check_fits(module, data)  # fail before training, not after
    prepare_out_dir(out, overwrite)
    recorder, *others = callbacks(out, patience, overwrite=overwrite, logger=logger,
                                  echo=print if progress else (lambda line: None))
    options = {"gradient_clip_val": 1.0, "logger": False, "num_sanity_val_steps": 0,
               "enable_progress_bar": progress, "enable_model_summary": progress, **trainer_options}
    try:  # before the folder is touched: a Trainer that refuses its options leaves the old run as it was
        trainer = pl.Trainer(max_epochs=max_epochs, max_steps=max_steps, callbacks=[recorder, *others], **options)
    except (ValueError, TypeError, MisconfigurationException) as e:
        raise TinyLMError(f"pl.Trainer refused its options: {str(e).strip().splitlines()[0]}") from None
    trainer.fit(module, datamodule=data)
    save_run(module, data, out, recorder, trainer=trainer)
    return load_run(out)
